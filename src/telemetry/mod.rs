//! Logs, metrics, liveness and readiness.

pub mod logging;
pub mod metrics;

use std::collections::BTreeMap;
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::app::AppState;

pub use metrics::Metrics;

const CHECK_TIMEOUT: Duration = Duration::from_secs(3);

#[derive(Serialize)]
pub struct Check {
    pub ok: bool,
    pub hard: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

#[derive(Serialize)]
pub struct Readiness {
    pub status: &'static str,
    pub checks: BTreeMap<&'static str, Check>,
}

/// `GET /health`: the process serves.
pub async fn health() -> Json<serde_json::Value> {
    Json(serde_json::json!({ "status": "ok" }))
}

/// `GET /ready`: hard dependencies (database, storage) decide 200 vs 503; soft ones only
/// degrade. Checks run concurrently, each bounded by a timeout.
pub async fn ready(State(state): State<AppState>) -> Response {
    let readiness = readiness(&state).await;
    let code = if readiness.status == "unavailable" { StatusCode::SERVICE_UNAVAILABLE } else { StatusCode::OK };
    (code, Json(readiness)).into_response()
}

/// A failing hard check makes the instance unavailable; failing soft checks only degrade it.
fn overall(checks: &BTreeMap<&'static str, Check>) -> &'static str {
    if checks.values().any(|c| c.hard && !c.ok) {
        "unavailable"
    } else if checks.values().any(|c| !c.ok) {
        "degraded"
    } else {
        "ready"
    }
}

pub async fn readiness(state: &AppState) -> Readiness {
    let db = async {
        match tokio::time::timeout(CHECK_TIMEOUT, state.db.ping()).await {
            Ok(Ok(())) => Check { ok: true, hard: true, detail: None },
            Ok(Err(_)) => Check { ok: false, hard: true, detail: Some("query failed".into()) },
            Err(_) => Check { ok: false, hard: true, detail: Some("timed out".into()) },
        }
    };
    let storage = async {
        match state.storage.check(CHECK_TIMEOUT).await {
            Ok(()) => Check { ok: true, hard: true, detail: None },
            Err(detail) => Check { ok: false, hard: true, detail: Some(detail) },
        }
    };
    let (db, storage) = tokio::join!(db, storage);
    let mut checks = BTreeMap::new();
    checks.insert("database", db);
    checks.insert("storage", storage);
    let status = overall(&checks);
    if status != "ready" {
        let failing: Vec<&str> = checks.iter().filter(|(_, c)| !c.ok).map(|(n, _)| *n).collect();
        tracing::warn!(event_type = "readiness", status, failing = failing.join(","), "not ready");
    }
    Readiness { status, checks }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn checks(list: &[(&'static str, bool, bool)]) -> BTreeMap<&'static str, Check> {
        list.iter().map(|(n, ok, hard)| (*n, Check { ok: *ok, hard: *hard, detail: None })).collect()
    }

    #[test]
    fn hard_failures_make_unavailable_soft_ones_degrade() {
        assert_eq!(overall(&checks(&[("database", true, true), ("git", true, false)])), "ready");
        assert_eq!(overall(&checks(&[("database", true, true), ("git", false, false)])), "degraded");
        assert_eq!(overall(&checks(&[("database", false, true), ("git", false, false)])), "unavailable");
    }
}
