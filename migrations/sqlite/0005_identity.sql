-- Single sign-on: external identities, in-flight OpenID Connect logins, device-flow grants,
-- SCIM provisioning, and where a role came from.

CREATE TABLE user_identities (
    issuer        TEXT NOT NULL,                   -- exact issuer URL
    subject       TEXT NOT NULL,                   -- `sub`: the key, never the e-mail address
    provider_id   TEXT NOT NULL,                   -- the [[oidc]] id that last signed them in
    user_id       TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at    BIGINT NOT NULL,
    last_login_at BIGINT NOT NULL,
    PRIMARY KEY (issuer, subject)
);
CREATE INDEX user_identities_user_id ON user_identities (user_id);

-- An authorization-code flow between /auth/oidc/{id}/login and its callback.
CREATE TABLE oidc_logins (
    state_hash    TEXT PRIMARY KEY NOT NULL,       -- SHA-256 of the `state` parameter
    binding_hash  TEXT NOT NULL,                   -- SHA-256 of the pre-auth cookie
    provider_id   TEXT NOT NULL,
    pkce_verifier TEXT NOT NULL,
    nonce         TEXT NOT NULL,
    next_path     TEXT NOT NULL,
    expires_at    BIGINT NOT NULL
);

ALTER TABLE users ADD COLUMN last_login_at BIGINT;
ALTER TABLE users ADD COLUMN role_source TEXT;       -- NULL: set in Arno; 'oidc:<id>': the IdP decides
ALTER TABLE users ADD COLUMN scim_id TEXT;           -- set when provisioned by SCIM
ALTER TABLE users ADD COLUMN scim_external_id TEXT;
ALTER TABLE sessions ADD COLUMN oidc_provider TEXT;   -- signed in through this IdP
ALTER TABLE sessions ADD COLUMN id_token TEXT;        -- its ID token: the hint for RP-initiated logout
ALTER TABLE project_members ADD COLUMN source TEXT NOT NULL DEFAULT 'manual';  -- or 'oidc:<id>'

-- OAuth 2.0 Device Authorization Grant (RFC 8628) for `arno login`.
CREATE TABLE device_grants (
    device_code_hash TEXT PRIMARY KEY NOT NULL,    -- SHA-256 of the device code
    user_code        TEXT NOT NULL UNIQUE,         -- what the person types, e.g. BDFG-HJKL
    client_id        TEXT NOT NULL,
    created_at       BIGINT NOT NULL,
    expires_at       BIGINT NOT NULL,
    interval_ms      BIGINT NOT NULL,              -- grows by 5 s on each `slow_down`
    last_poll_at     BIGINT,
    approved_by      TEXT REFERENCES users (id) ON DELETE CASCADE,
    denied           BIGINT NOT NULL,
    redeemed         BIGINT NOT NULL
);

-- SCIM 2.0 groups (RFC 7643 §4.2) and their members.
CREATE TABLE scim_groups (
    id           TEXT PRIMARY KEY NOT NULL,
    display_name TEXT NOT NULL UNIQUE,
    external_id  TEXT,
    created_at   BIGINT NOT NULL,
    updated_at   BIGINT NOT NULL
);
CREATE TABLE scim_group_members (
    group_id TEXT NOT NULL REFERENCES scim_groups (id) ON DELETE CASCADE,
    user_id  TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    PRIMARY KEY (group_id, user_id)
);
CREATE INDEX scim_group_members_user_id ON scim_group_members (user_id);
