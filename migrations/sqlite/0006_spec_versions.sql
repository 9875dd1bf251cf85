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
