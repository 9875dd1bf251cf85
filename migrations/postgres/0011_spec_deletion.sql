-- Deleting a component is a version of its spec file like a save: the text is gone (stored
-- empty), `deleted` says so, and restoring an earlier version undoes it. The deletion is written
-- back as the file's removal from the author's session branch.
ALTER TABLE spec_files ADD COLUMN deleted BIGINT NOT NULL DEFAULT 0;
ALTER TABLE spec_versions ADD COLUMN deleted BIGINT NOT NULL DEFAULT 0;
ALTER TABLE writeback_files ADD COLUMN deleted BIGINT NOT NULL DEFAULT 0;
