-- Write-back of saved specs to per-user session branches, the job queue that runs it, leases
-- that work across replicas, and the project activity list.

-- Work that must happen eventually, retried with backoff. At most one *pending* job per
-- dedup_key: enqueueing it again moves its run time (debounce). A running job holds a lease;
-- when the lease runs out (a crashed replica) another worker takes the job over.
CREATE TABLE jobs (
    id           TEXT PRIMARY KEY NOT NULL,
    kind         TEXT NOT NULL,
    dedup_key    TEXT,
    payload      TEXT NOT NULL,                          -- JSON
    state        TEXT NOT NULL CHECK (state IN ('pending', 'running', 'done', 'failed')),
    attempts     BIGINT NOT NULL DEFAULT 0,
    max_attempts BIGINT NOT NULL,
    run_at       BIGINT NOT NULL,
    lease_owner  TEXT,
    lease_until  BIGINT,
    last_error   TEXT,
    created_at   BIGINT NOT NULL,
    updated_at   BIGINT NOT NULL
);
CREATE UNIQUE INDEX jobs_pending_key ON jobs (dedup_key) WHERE state = 'pending';
CREATE INDEX jobs_due ON jobs (state, run_at);

-- Named locks with an expiry (a holder that died frees its lock by time).
CREATE TABLE locks (
    name       TEXT PRIMARY KEY NOT NULL,
    owner      TEXT NOT NULL,
    expires_at BIGINT NOT NULL
);

-- Each Maker's session branch in a project: where its write-back stands and its change request.
CREATE TABLE session_branches (
    project_id    TEXT NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    user_id       TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    branch        TEXT NOT NULL,
    state         TEXT NOT NULL CHECK (state IN ('pending', 'committed', 'diverged', 'failed')),
    reason        TEXT,
    last_commit   TEXT,                                  -- the head Arno last wrote or adopted
    found_head    TEXT,                                  -- when diverged: the head found instead
    review        TEXT NOT NULL CHECK (review IN ('none', 'open', 'merged', 'closed')),
    review_by     TEXT REFERENCES users (id) ON DELETE SET NULL,
    review_at     BIGINT,
    merged_commit TEXT,
    updated_at    BIGINT NOT NULL,
    PRIMARY KEY (project_id, user_id)
);
CREATE UNIQUE INDEX session_branches_name ON session_branches (project_id, branch);

-- Saved text waiting to be committed to its author's session branch (one row per file: the
-- newest version that user saved).
CREATE TABLE writeback_files (
    project_id TEXT NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    user_id    TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    path       TEXT NOT NULL,
    version    BIGINT NOT NULL,
    content    TEXT NOT NULL,
    saved_at   BIGINT NOT NULL,
    PRIMARY KEY (project_id, user_id, path)
);

-- What happened in a project, newest first on its page: write-backs, merges, divergences.
CREATE TABLE project_activity (
    id         TEXT PRIMARY KEY NOT NULL,                -- UUIDv7, time-ordered
    project_id TEXT NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    at         BIGINT NOT NULL,
    user_id    TEXT REFERENCES users (id) ON DELETE SET NULL,
    kind       TEXT NOT NULL,
    summary    TEXT NOT NULL,
    branch     TEXT,
    commit_id  TEXT
);
CREATE INDEX project_activity_recent ON project_activity (project_id, at);
