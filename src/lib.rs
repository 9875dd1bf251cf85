//! Arno: a self-hosted product-design workspace on top of a company's own git repositories.
//!
//! The crate is organised by domain (see `ARCHITECTURE.md`); `app` wires the domains into one
//! router that `main.rs` serves and the integration tests drive.

pub mod admin;
pub mod app;
pub mod audit;
pub mod auth;
pub mod backup;
pub mod config;
pub mod db;
pub mod error;
#[cfg(test)]
mod fuzz;
pub mod git;
pub mod http;
pub mod jobs;
pub mod keys;
pub mod projects;
pub mod specs;
pub mod storage;
pub mod telemetry;
pub mod ui;
pub mod workflow;
