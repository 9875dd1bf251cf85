-- The spec editor: the version of each spec file Arno holds, its last 20 versions (plus
-- backups kept when a user discards their text in a conflict).

CREATE TABLE spec_files (
    project_id      TEXT NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    path            TEXT NOT NULL,
    current_version BIGINT NOT NULL,
    next_version    BIGINT NOT NULL,               -- versions and backups share one counter
    content         TEXT NOT NULL,
    content_sha     TEXT NOT NULL,
    updated_by      TEXT REFERENCES users (id) ON DELETE SET NULL,
    updated_at      BIGINT NOT NULL,
    PRIMARY KEY (project_id, path)
);

CREATE TABLE spec_versions (
    project_id     TEXT NOT NULL,
    path           TEXT NOT NULL,
    version        BIGINT NOT NULL,
    kind           TEXT NOT NULL CHECK (kind IN ('git', 'save', 'restore', 'backup')),
    parent_version BIGINT,
    content        TEXT NOT NULL,
    content_sha    TEXT NOT NULL,
    saved_by       TEXT REFERENCES users (id) ON DELETE SET NULL,
    session_id     TEXT,
    label          TEXT,
    saved_at       BIGINT NOT NULL,
    PRIMARY KEY (project_id, path, version),
    FOREIGN KEY (project_id, path) REFERENCES spec_files (project_id, path) ON DELETE CASCADE
);

-- Comments on specs: threads (a root comment) with replies; a thread is resolved or open.
CREATE TABLE spec_comments (
    id          TEXT PRIMARY KEY NOT NULL,
    project_id  TEXT NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    path        TEXT NOT NULL,
    thread_id   TEXT NOT NULL,                     -- the root comment's id (itself for a root)
    author_id   TEXT REFERENCES users (id) ON DELETE SET NULL,
    body        TEXT NOT NULL,
    version     BIGINT,                            -- the spec version it was written against
    created_at  BIGINT NOT NULL,
    resolved_at BIGINT,                            -- on the root
    resolved_by TEXT REFERENCES users (id) ON DELETE SET NULL
);
CREATE INDEX spec_comments_file ON spec_comments (project_id, path, created_at);
CREATE INDEX spec_comments_author ON spec_comments (author_id);
