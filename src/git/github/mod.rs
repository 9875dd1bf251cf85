//! The GitHub provider (github.com and Enterprise Server), reached through a GitHub App that a
//! connection names (docs/github.md): the App's JWT and App-level calls ([`app`]), one connection's HTTP client with
//! its token cache and rate governor ([`client`]), and [`provider::GitHubProvider`], the
//! [`crate::git::GitProvider`] for one repository, and its pull requests ([`reviews`]).

pub mod app;
pub mod client;
pub mod device;
pub mod provider;
pub mod reviews;
