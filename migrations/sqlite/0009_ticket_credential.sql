-- A workflow ticket remembers the credential it was issued against (a session by its hash, or an
-- API token by id), so a connection opened with it ends when that credential is revoked.
-- Tickets issued before this migration have none and are refused (they live one minute).
ALTER TABLE workflow_tickets ADD COLUMN credential TEXT;
