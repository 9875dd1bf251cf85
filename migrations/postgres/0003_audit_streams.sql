-- Streaming audit records to SIEM endpoints. The audit log is the queue: each endpoint keeps a
-- cursor (the last seq it acknowledged), so delivery survives restarts and retries with backoff.
CREATE TABLE audit_streams (
    id              TEXT PRIMARY KEY NOT NULL,   -- derived from the URL
    url             TEXT NOT NULL,
    last_seq        BIGINT NOT NULL,             -- delivered and acknowledged up to here
    delivered_at    BIGINT,
    failures        BIGINT NOT NULL,             -- consecutive
    next_attempt_at BIGINT NOT NULL,
    last_error      TEXT,
    lease_owner     TEXT,                        -- the replica delivering now
    lease_until     BIGINT NOT NULL
);
