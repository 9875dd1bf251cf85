-- Permissions from GitHub: Arno users' accounts on a connection's GitHub, verified by the device
-- flow of the connection's App; the flows waiting for the user; and which projects map repository
-- permissions to roles. Memberships a sync grants have source 'github:<connection>'; it never
-- touches one given by hand or by the identity provider.
CREATE TABLE user_git_logins (
    user_id          TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    connection       TEXT NOT NULL,
    login            TEXT NOT NULL,
    login_lower      TEXT NOT NULL,
    provider_user_id BIGINT NOT NULL,
    linked_at        BIGINT NOT NULL,
    PRIMARY KEY (user_id, connection)
);
CREATE UNIQUE INDEX user_git_logins_account ON user_git_logins (connection, provider_user_id);
CREATE INDEX user_git_logins_login ON user_git_logins (connection, login_lower);

CREATE TABLE git_login_flows (
    user_id            TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    connection         TEXT NOT NULL,
    device_code_sealed TEXT NOT NULL,
    user_code          TEXT NOT NULL,
    verification_uri   TEXT NOT NULL,
    expires_at         BIGINT NOT NULL,
    interval_secs      BIGINT NOT NULL,
    next_poll_at       BIGINT NOT NULL,
    PRIMARY KEY (user_id, connection)
);

CREATE TABLE project_role_sync (
    project_id TEXT PRIMARY KEY NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    roles      TEXT NOT NULL,
    synced_at  BIGINT,
    -- When a sync last started, done or not: the hourly round waits an hour from it.
    attempted_at BIGINT,
    last_error TEXT,
    updated_at BIGINT NOT NULL
);

