-- A connection declared in the configuration file ([[git.connections]]) is written at start from
-- there and is read-only in the console and the API: 1 for those.
ALTER TABLE git_connections ADD COLUMN from_config BIGINT NOT NULL DEFAULT 0;
