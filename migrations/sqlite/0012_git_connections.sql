-- Connections to remote git providers (a GitHub App on github.com or Enterprise Server): named
-- by Admins, referred to by projects. The private key and the webhook secret are sealed with
-- the instance key (`v1:` values, bound to the connection's name and the field); the CA bundle
-- holds only public certificates.
CREATE TABLE git_connections (
    name                  TEXT PRIMARY KEY,
    provider              TEXT NOT NULL,
    api_url               TEXT NOT NULL,
    app_id                TEXT NOT NULL,
    client_id             TEXT,
    private_key_sealed    TEXT NOT NULL,
    webhook_secret_sealed TEXT NOT NULL,
    ca_bundle             TEXT,
    created_at            BIGINT NOT NULL,
    updated_at            BIGINT NOT NULL,
    secrets_rotated_at    BIGINT NOT NULL
);
-- The connection a project's repository is reached through (none for local repositories); a
-- connection in use cannot be deleted, even by a deletion racing an assignment.
ALTER TABLE projects ADD COLUMN git_connection TEXT REFERENCES git_connections (name);
CREATE INDEX projects_git_connection ON projects (git_connection);
