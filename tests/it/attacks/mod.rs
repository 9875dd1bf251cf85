//! The attack suite: one module per hole found by an adversarial review (issue 15). Each test
//! does what a hostile user would and asserts that it no longer works; each was written to fail
//! on the code before its fix.

mod audit_floods;
mod auditor;
mod backup_repos;
mod csrf_bearer;
mod deep_trees;
mod last_admin_mappings;
mod lockout;
mod presence;
mod revocation;
mod scim_local_accounts;
mod sso_unverified_email;
mod workflow_filter;
