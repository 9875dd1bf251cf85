-- Pull requests Arno opened on a hosted provider (GitHub): the onboarding one that adds
-- `.arno/config.json` to a repository, and one per Maker's session branch. The provider is the
-- truth; this is what Arno last saw of it (webhooks and reconciliation refresh it).
CREATE TABLE pull_requests (
    project_id TEXT NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    branch     TEXT NOT NULL,
    kind       TEXT NOT NULL,
    number     BIGINT NOT NULL,
    url        TEXT NOT NULL,
    state      TEXT NOT NULL,
    head_sha   TEXT,
    opened_at  BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (project_id, branch)
);
CREATE INDEX pull_requests_open ON pull_requests (kind, state, opened_at);
