-- The webhook inbox: each delivery a hosted provider made (GitHub: X-GitHub-Delivery, stable
-- on redelivery, so a repeat is recognised), kept as a hint of what changed — never trusted as
-- the change itself: the worker re-reads the repository. Answered 202 once stored; handled in
-- order per project by the sync job; pruned after a week.
CREATE TABLE webhook_deliveries (
    delivery_id TEXT PRIMARY KEY,
    connection  TEXT NOT NULL,
    event       TEXT NOT NULL,
    action      TEXT,
    repository  TEXT,                     -- owner/name (lower case) as Arno knew it
    renamed_to  TEXT,                     -- a rename or transfer: the new owner/name (lower case)
    hint        TEXT NOT NULL,
    received_at BIGINT NOT NULL,
    handled_at  BIGINT
);
CREATE INDEX webhook_deliveries_received ON webhook_deliveries (received_at);
CREATE INDEX webhook_deliveries_renamed ON webhook_deliveries (connection, renamed_to);

-- What each delivery asks of each project it concerns (an installation event concerns every
-- project of the connection): the project's sync job works through its rows in order and
-- deletes them; the delivery is handled when none is left.
CREATE TABLE webhook_work (
    project_id  TEXT NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    delivery_id TEXT NOT NULL REFERENCES webhook_deliveries (delivery_id) ON DELETE CASCADE,
    PRIMARY KEY (project_id, delivery_id)
);
CREATE INDEX webhook_work_delivery ON webhook_work (delivery_id);
