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

/// A job worker that has not gone round its loop for this long is stuck (twice a job's lease:
/// a job that long is hung, not slow).
pub const WORKER_STUCK_MS: i64 = 2 * 300_000;
/// Jobs due this long ago and still waiting mean the workers do not keep up.
pub const JOB_BACKLOG_MS: i64 = 10 * 60_000;

fn check(result: Result<(), String>, hard: bool) -> Check {
    match result {
        Ok(()) => Check { ok: true, hard, detail: None },
        Err(detail) => Check { ok: false, hard, detail: Some(detail) },
    }
}

fn minutes(ms: i64) -> String {
    let m = ms / 60_000;
    if m < 1 { format!("{} s", ms / 1000) } else { format!("{m} min") }
}

/// This replica's worker beats, and no due job waits too long (on any replica).
async fn jobs(state: &AppState) -> Result<(), String> {
    let (age, running) = state.worker.age_ms();
    if !running {
        return Err("the job worker is not running".into());
    }
    if age > WORKER_STUCK_MS {
        return Err(format!("the job worker has not moved for {}", minutes(age)));
    }
    let now = crate::db::now_ms();
    let waiting: Result<(i64, Option<i64>), _> =
        sqlx::query_as("SELECT count(*), min(run_at) FROM jobs WHERE state = 'pending' AND run_at < $1")
            .bind(now - JOB_BACKLOG_MS)
            .fetch_one(state.db.pool())
            .await;
    match waiting {
        Ok((0, _)) => Ok(()),
        Ok((n, oldest)) => {
            Err(format!("{n} job(s) waiting; the oldest has been due for {}", minutes(now - oldest.unwrap_or(now))))
        }
        Err(_) => Err("the job queue cannot be read".into()),
    }
}

/// Every SIEM stream is within `audit.stream_max_lag` of the log's head.
async fn audit_streams(state: &AppState) -> Result<(), String> {
    let streams: Vec<(String, i64, i64)> =
        sqlx::query_as("SELECT id, last_seq, failures FROM audit_streams ORDER BY id")
            .fetch_all(state.db.pool())
            .await
            .map_err(|_| "the stream positions cannot be read".to_owned())?;
    let now = crate::db::now_ms();
    let mut behind = Vec::new();
    for (id, last_seq, failures) in streams {
        let oldest: Option<(i64,)> =
            sqlx::query_as("SELECT occurred_at FROM audit_events WHERE seq > $1 ORDER BY seq LIMIT 1")
                .bind(last_seq)
                .fetch_optional(state.db.pool())
                .await
                .map_err(|_| "the audit log cannot be read".to_owned())?;
        if let Some((at,)) = oldest
            && now - at > crate::db::ms(state.config.audit_stream_max_lag)
        {
            behind.push(format!("stream {id} is {} behind ({failures} failed deliveries in a row)", minutes(now - at)));
        }
    }
    if behind.is_empty() { Ok(()) } else { Err(behind.join("; ")) }
}

/// Every configured identity provider's discovery document can be read.
async fn identity_providers(state: &AppState) -> Result<(), String> {
    let probes = state.oidc.providers.iter().map(|provider| async move {
        match tokio::time::timeout(CHECK_TIMEOUT, state.oidc.reachable(provider)).await {
            Ok(Ok(())) => None,
            Ok(Err(why)) => Some(format!("{}: {why}", provider.config.id)),
            Err(_) => Some(format!("{}: discovery timed out", provider.config.id)),
        }
    });
    let failing: Vec<String> = futures_util::future::join_all(probes).await.into_iter().flatten().collect();
    if failing.is_empty() { Ok(()) } else { Err(failing.join("; ")) }
}

/// The data directory takes a write (git repositories, temporary files and, on SQLite, the
/// database live there).
async fn data_dir(state: &AppState) -> Result<(), String> {
    let dir = state.config.data_dir.join("tmp");
    let probe = dir.join(format!(".ready-{}", uuid::Uuid::new_v4().simple()));
    let result = async {
        tokio::fs::create_dir_all(&dir).await?;
        tokio::fs::write(&probe, b"ready").await?;
        tokio::fs::remove_file(&probe).await
    }
    .await;
    result.map_err(|e| format!("cannot write to the data directory ({})", e.kind()))
}

/// Run one check within [`CHECK_TIMEOUT`].
async fn bounded(f: impl Future<Output = Result<(), String>>, hard: bool) -> Check {
    match tokio::time::timeout(CHECK_TIMEOUT, f).await {
        Ok(result) => check(result, hard),
        Err(_) => check(Err("timed out".into()), hard),
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
    let storage = async { check(state.storage.check(CHECK_TIMEOUT).await, true) };
    let (db, storage, data, jobs) =
        tokio::join!(db, storage, bounded(data_dir(state), true), bounded(jobs(state), false),);
    let mut checks = BTreeMap::new();
    checks.insert("database", db);
    checks.insert("storage", storage);
    checks.insert("data_directory", data);
    checks.insert("jobs", jobs);
    if !state.config.audit_stream_urls.is_empty() {
        checks.insert("audit_stream", bounded(audit_streams(state), false).await);
    }
    if !state.oidc.providers.is_empty() {
        checks.insert("identity_providers", check(identity_providers(state).await, false));
    }
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
