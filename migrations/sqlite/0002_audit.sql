-- Audit log: an append-only, hash-chained record of every permission decision and state change.
-- See docs/audit.md for the hash and signature definitions.

-- The chain head: one row, updated in the same transaction as each appended record. Its row
-- lock (the write lock on SQLite) gives all records one total order, whichever replica writes.
CREATE TABLE audit_head (
    id          INTEGER PRIMARY KEY NOT NULL CHECK (id = 1),
    seq         BIGINT NOT NULL,
    hash        TEXT NOT NULL,
    occurred_at BIGINT NOT NULL           -- last record's time: times never go backwards
);
INSERT INTO audit_head (id, seq, hash, occurred_at)
VALUES (1, 0, '0000000000000000000000000000000000000000000000000000000000000000', 0);

CREATE TABLE audit_events (
    seq           BIGINT PRIMARY KEY NOT NULL,
    id            TEXT NOT NULL UNIQUE,   -- stable event id (UUIDv7), for de-duplication downstream
    occurred_at   BIGINT NOT NULL,
    actor_kind    TEXT NOT NULL CHECK (actor_kind IN ('user', 'token', 'system', 'anonymous')),
    actor_id      TEXT,                   -- user id; deleted_user_<hmac> after erasure
    personal      TEXT NOT NULL,          -- commitment to actor_id, ip, user_agent (hashed instead of them)
    personal_salt TEXT,                   -- NULL once the person is erased
    ip            TEXT,
    user_agent    TEXT,
    action        TEXT NOT NULL,
    outcome       TEXT NOT NULL CHECK (outcome IN ('allowed', 'denied')),
    project_id    TEXT,
    target_type   TEXT,
    target_id     TEXT,
    intent        TEXT NOT NULL,          -- short structured JSON; never secrets or content
    request_id    TEXT,
    trace_id      TEXT,
    prev_hash     TEXT NOT NULL,
    hash          TEXT NOT NULL
);
CREATE INDEX audit_events_occurred_at ON audit_events (occurred_at);
CREATE INDEX audit_events_actor ON audit_events (actor_id, seq);
CREATE INDEX audit_events_action ON audit_events (action, seq);
CREATE INDEX audit_events_project ON audit_events (project_id, seq);

-- Signed chain heads. Each signs (seq, hash) and the previous checkpoint's (seq, hash).
CREATE TABLE audit_checkpoints (
    seq       BIGINT PRIMARY KEY NOT NULL,
    hash      TEXT NOT NULL,
    prev_seq  BIGINT NOT NULL,
    prev_hash TEXT NOT NULL,
    signed_at BIGINT NOT NULL,
    key_id    TEXT NOT NULL,
    signature TEXT NOT NULL
);

-- Append-only: UPDATE and DELETE are refused unless the retention/erasure code opened the gate
-- inside its own (audited) transaction. SQLite has no session variables, so the gate is a row;
-- SQLite's single writer means no one else can see it open.
CREATE TABLE audit_gate (
    id   INTEGER PRIMARY KEY NOT NULL CHECK (id = 1),
    open INTEGER NOT NULL
);
INSERT INTO audit_gate (id, open) VALUES (1, 0);

CREATE TRIGGER audit_events_no_update BEFORE UPDATE ON audit_events
WHEN (SELECT open FROM audit_gate WHERE id = 1) = 0
BEGIN
    SELECT RAISE(ABORT, 'audit records are append-only');
END;
CREATE TRIGGER audit_events_no_delete BEFORE DELETE ON audit_events
WHEN (SELECT open FROM audit_gate WHERE id = 1) = 0
BEGIN
    SELECT RAISE(ABORT, 'audit records are append-only');
END;
CREATE TRIGGER audit_checkpoints_no_update BEFORE UPDATE ON audit_checkpoints
BEGIN
    SELECT RAISE(ABORT, 'audit checkpoints are append-only');
END;
CREATE TRIGGER audit_checkpoints_no_delete BEFORE DELETE ON audit_checkpoints
WHEN (SELECT open FROM audit_gate WHERE id = 1) = 0
BEGIN
    SELECT RAISE(ABORT, 'audit checkpoints are append-only');
END;
