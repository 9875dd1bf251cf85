//! Integration tests: the real app, served on ephemeral ports, driven over HTTP.
//! `TEST_DATABASE=postgres` (with `TEST_PG_URL`) runs everything on PostgreSQL instead of
//! SQLite; `TEST_S3_ENDPOINT` enables the S3 tests; `TEST_REQUIRE_SERVICES=1` (set by
//! `scripts/test`) turns a missing service into a failure instead of a skip.

mod admin;
mod admin_git;
mod api;
mod attacks;
mod audit;
mod auth;
mod backup;
mod branch_view;
mod cli;
mod components;
mod configured_connections;
mod deletion;
mod device;
mod fake_github;
mod gdpr;
mod git;
mod git_connections;
mod github;
mod github_projects;
mod github_reviews;
mod github_roles;
mod impact;
mod live_scale;
mod oidc;
mod ops;
mod projects;
mod provider_suite;
mod role_matrix;
mod scim;
mod setup;
mod spec_editor;
mod specs;
mod storage;
mod store;
mod support;
mod webhooks;
mod workflow;
mod writeback;
mod zero_config;
