-- Audit log (PostgreSQL): an append-only, hash-chained record of every permission decision and
-- state change. See docs/audit.md for the hash and signature definitions.

-- The chain head: one row, updated in the same transaction as each appended record. Its row
-- lock gives all records one total order, whichever replica writes.
CREATE TABLE audit_head (
    id          INTEGER PRIMARY KEY NOT NULL CHECK (id = 1),
    seq         BIGINT NOT NULL,
    hash        TEXT NOT NULL,
    occurred_at BIGINT NOT NULL
);
INSERT INTO audit_head (id, seq, hash, occurred_at)
VALUES (1, 0, '0000000000000000000000000000000000000000000000000000000000000000', 0);

CREATE TABLE audit_events (
    seq           BIGINT PRIMARY KEY NOT NULL,
    id            TEXT NOT NULL UNIQUE,
    occurred_at   BIGINT NOT NULL,
    actor_kind    TEXT NOT NULL CHECK (actor_kind IN ('user', 'token', 'system', 'anonymous')),
    actor_id      TEXT,
    personal      TEXT NOT NULL,
    personal_salt TEXT,
    ip            TEXT,
    user_agent    TEXT,
    action        TEXT NOT NULL,
    outcome       TEXT NOT NULL CHECK (outcome IN ('allowed', 'denied')),
    project_id    TEXT,
    target_type   TEXT,
    target_id     TEXT,
    intent        TEXT NOT NULL,
    request_id    TEXT,
    trace_id      TEXT,
    prev_hash     TEXT NOT NULL,
    hash          TEXT NOT NULL
);
CREATE INDEX audit_events_occurred_at ON audit_events (occurred_at);
CREATE INDEX audit_events_actor ON audit_events (actor_id, seq);
CREATE INDEX audit_events_action ON audit_events (action, seq);
CREATE INDEX audit_events_project ON audit_events (project_id, seq);

CREATE TABLE audit_checkpoints (
    seq       BIGINT PRIMARY KEY NOT NULL,
    hash      TEXT NOT NULL,
    prev_seq  BIGINT NOT NULL,
    prev_hash TEXT NOT NULL,
    signed_at BIGINT NOT NULL,
    key_id    TEXT NOT NULL,
    signature TEXT NOT NULL
);

-- Kept for parity with SQLite; on PostgreSQL the gate is the transaction-local setting
-- `arno.audit_maintenance`, which only the retention and erasure code sets (SET LOCAL).
CREATE TABLE audit_gate (
    id   INTEGER PRIMARY KEY NOT NULL CHECK (id = 1),
    open INTEGER NOT NULL
);
INSERT INTO audit_gate (id, open) VALUES (1, 0);

CREATE FUNCTION arno_audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'UPDATE' AND TG_TABLE_NAME = 'audit_checkpoints' THEN
        RAISE EXCEPTION 'audit checkpoints are append-only' USING ERRCODE = 'insufficient_privilege';
    END IF;
    IF coalesce(current_setting('arno.audit_maintenance', true), '') <> 'on' THEN
        RAISE EXCEPTION '% are append-only', TG_TABLE_NAME USING ERRCODE = 'insufficient_privilege';
    END IF;
    IF TG_OP = 'DELETE' THEN
        RETURN OLD;
    END IF;
    RETURN NEW;
END
$$;

CREATE TRIGGER audit_events_append_only BEFORE UPDATE OR DELETE ON audit_events
    FOR EACH ROW EXECUTE FUNCTION arno_audit_append_only();
CREATE TRIGGER audit_checkpoints_append_only BEFORE UPDATE OR DELETE ON audit_checkpoints
    FOR EACH ROW EXECUTE FUNCTION arno_audit_append_only();
-- TRUNCATE bypasses row triggers: refuse it outright.
CREATE FUNCTION arno_audit_no_truncate() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% cannot be truncated', TG_TABLE_NAME USING ERRCODE = 'insufficient_privilege';
END
$$;
CREATE TRIGGER audit_events_no_truncate BEFORE TRUNCATE ON audit_events
    FOR EACH STATEMENT EXECUTE FUNCTION arno_audit_no_truncate();
CREATE TRIGGER audit_checkpoints_no_truncate BEFORE TRUNCATE ON audit_checkpoints
    FOR EACH STATEMENT EXECUTE FUNCTION arno_audit_no_truncate();
