-- The webhook inbox: each delivery a hosted provider made (GitHub: X-GitHub-Delivery, stable
-- on redelivery, so a repeat is recognised), kept as a hint of what changed — never trusted as
-- the change itself: the worker re-reads the repository. Answered 202 once stored; handled in
-- order per project by the sync job; pruned after a week.
CREATE TABLE webhook_deliveries (
    delivery_id TEXT PRIMARY KEY,
    connection  TEXT NOT NULL,
    event       TEXT NOT NULL,
    action      TEXT,
    repository  TEXT,
    hint        TEXT NOT NULL,
    received_at BIGINT NOT NULL,
    handled_at  BIGINT
);
CREATE INDEX webhook_deliveries_pending ON webhook_deliveries (connection, handled_at, received_at);

-- What each delivery asks of each project it concerns (an installation event concerns every
-- project of the connection): the project's sync job works through its rows in order and
-- deletes them; the delivery is handled when none is left.
CREATE TABLE webhook_work (
    project_id  TEXT NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    delivery_id TEXT NOT NULL REFERENCES webhook_deliveries (delivery_id) ON DELETE CASCADE,
    PRIMARY KEY (project_id, delivery_id)
);
