-- The live workflow document (Yjs): an append-only log of accepted updates, folded into
-- snapshots by compaction; named and periodic snapshots for history; single-use connect tickets.

CREATE TABLE workflow_updates (
    id         BIGSERIAL PRIMARY KEY,
    project_id TEXT NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    data       BYTEA NOT NULL,                           -- a Yjs update (v1 encoding)
    user_id    TEXT REFERENCES users (id) ON DELETE SET NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX workflow_updates_project ON workflow_updates (project_id, id);

CREATE TABLE workflow_snapshots (
    id         TEXT PRIMARY KEY NOT NULL,
    project_id TEXT NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    kind       TEXT NOT NULL CHECK (kind IN ('compaction', 'periodic', 'named')),
    upto_id    BIGINT NOT NULL,                         -- the log rows folded in (compaction)
    state      BYTEA NOT NULL,                           -- the whole document as one update
    label      TEXT,
    created_by TEXT REFERENCES users (id) ON DELETE SET NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX workflow_snapshots_project ON workflow_snapshots (project_id, kind, created_at);

CREATE TABLE workflow_tickets (
    ticket_hash TEXT PRIMARY KEY NOT NULL,              -- SHA-256 of the ticket; the ticket is never stored
    user_id     TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    project_id  TEXT NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    expires_at  BIGINT NOT NULL
);
