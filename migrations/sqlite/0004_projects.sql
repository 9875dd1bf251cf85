-- Projects, their members and the cache of component specs read from the repository.
-- Ids are UUID text; times are UTC milliseconds since the Unix epoch.

CREATE TABLE projects (
    id               TEXT PRIMARY KEY NOT NULL,
    slug             TEXT NOT NULL UNIQUE,
    name             TEXT NOT NULL,
    owner_id         TEXT REFERENCES users (id),
    visibility       TEXT NOT NULL CHECK (visibility IN ('private', 'unlisted', 'public')),
    state            TEXT NOT NULL CHECK (state IN ('pending_setup', 'active', 'archived')),
    size_bytes       BIGINT NOT NULL,              -- files on the default branch at the last scan
    quota_bytes      BIGINT,                       -- NULL: the instance default
    audit_retention_ms BIGINT,                     -- NULL: the instance's; else longer than it
    provider         TEXT NOT NULL,                -- 'local' (GitHub and GitLab later)
    repo_path        TEXT NOT NULL,                -- local: absolute path of the repository
    repo_managed     BIGINT NOT NULL,              -- 1: Arno created it under {data}/repos
    default_branch   TEXT,
    scanned_commit   TEXT,
    config_json      TEXT,                         -- the effective .arno/config.json at the last scan
    config_present   BIGINT NOT NULL,              -- 1: the file exists on the default branch
    scan_error       TEXT,                         -- why the last scan could not complete
    scanned_at       BIGINT,
    created_at       BIGINT NOT NULL,
    updated_at       BIGINT NOT NULL,
    last_activity_at BIGINT NOT NULL               -- archived after 90 days without changes
);

CREATE TABLE project_members (
    project_id TEXT NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    user_id    TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    role       TEXT NOT NULL CHECK (role IN ('maker', 'frontend', 'editor', 'viewer')),
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (project_id, user_id)
);
CREATE INDEX project_members_user_id ON project_members (user_id);

CREATE TABLE components (
    project_id    TEXT NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    file_path     TEXT NOT NULL,
    declared_id   TEXT,                            -- the frontmatter id when it is a UUID
    component_id  TEXT,                            -- declared_id unless another file claimed it first
    name          TEXT NOT NULL,
    blob_id       TEXT NOT NULL,                   -- git blob id: unchanged blob, no re-parse
    content_sha   TEXT NOT NULL,                   -- SHA-256 of raw_text, hex
    raw_text      TEXT NOT NULL,
    model_json    TEXT NOT NULL,                   -- the parsed component (props, events, errors)
    error_line    BIGINT,                          -- the first error, if any
    error_message TEXT,
    size_bytes    BIGINT NOT NULL,
    scanned_at    BIGINT NOT NULL,
    PRIMARY KEY (project_id, file_path)
);
CREATE UNIQUE INDEX components_component_id ON components (project_id, component_id) WHERE component_id IS NOT NULL;
