//! The GitHub provider (github.com and Enterprise Server), reached through a GitHub App that a
//! connection names (docs/github.md). This part: the App's own credential, the JWT it signs its
//! requests for installation tokens with.

pub mod app;
