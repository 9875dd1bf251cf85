//! Streaming audit records to SIEM endpoints (`ARNO_AUDIT_STREAM_URLS`).
//!
//! The audit log is the queue. Each endpoint has a cursor row (`audit_streams.last_seq`): a
//! record is POSTed as JSON (the JSON Lines export's record shape, with its stable `id` for
//! de-duplication) with the header `X-Arno-Verification-Token`, and the cursor moves only after a
//! 2xx — at-least-once delivery that survives restarts. Failures back off exponentially (2 s
//! doubling to 5 min). A lease row lets exactly one replica deliver to an endpoint at a time.
//! `audit_stream_lag_seconds{stream}` is the age of the oldest record not yet delivered.

use std::sync::LazyLock;
use std::time::Duration;

use prometheus::GaugeVec;
use sha2::{Digest, Sha256};
use tokio::sync::watch;

use super::store;
use crate::config::Secret;
use crate::db::{Db, now_ms};
use crate::error::{AppError, AppResult};

const BATCH: i64 = 100;
const LEASE_MS: i64 = 60_000;
const MAX_BACKOFF_MS: i64 = 300_000;

pub static LAG_SECONDS: LazyLock<GaugeVec> = LazyLock::new(|| {
    GaugeVec::new(
        prometheus::Opts::new(
            "audit_stream_lag_seconds",
            "Age of the oldest audit record not yet delivered to a stream",
        ),
        &["stream"],
    )
    .expect("valid metric")
});

/// The stable id of an endpoint: its URL's hash (the URL itself may carry credentials).
pub fn stream_id(url: &url::Url) -> String {
    hex::encode(&Sha256::digest(url.as_str().as_bytes())[..8])
}

/// Register the configured endpoints. A new endpoint starts at the current head: it receives
/// records from now on (use an export for history).
pub async fn register(db: &Db, urls: &[url::Url]) -> AppResult<()> {
    let mut tx = db.begin().await?;
    let (head,): (i64,) = sqlx::query_as("SELECT seq FROM audit_head WHERE id = 1").fetch_one(&mut *tx).await?;
    for url in urls {
        sqlx::query(
            "INSERT INTO audit_streams (id, url, last_seq, failures, next_attempt_at, lease_until) \
             VALUES ($1, $2, $3, 0, 0, 0) ON CONFLICT (id) DO NOTHING",
        )
        .bind(stream_id(url))
        .bind(url.as_str())
        .bind(head)
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    Ok(())
}

/// Deliver until `stop` says so.
pub async fn run(db: Db, urls: Vec<url::Url>, token: Secret, mut stop: watch::Receiver<bool>) {
    let owner = uuid::Uuid::new_v4().to_string();
    // Never follow redirects: each delivery carries the stream's bearer token, which must reach
    // only the configured endpoint.
    let client = match reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .redirect(reqwest::redirect::Policy::none())
        .build()
    {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(event_type = "audit_stream_failed", error = %e, "cannot build the HTTP client");
            return;
        }
    };
    loop {
        let mut more = false;
        for url in &urls {
            match deliver(&db, &client, url, &token, &owner).await {
                Ok(full_batch) => more |= full_batch,
                Err(e) => {
                    tracing::warn!(event_type = "audit_stream_failed", stream = %stream_id(url), error = %e, "audit stream delivery failed")
                }
            }
        }
        let pause = if more { Duration::ZERO } else { Duration::from_secs(1) };
        tokio::select! {
            _ = tokio::time::sleep(pause) => {}
            _ = stop.changed() => return,
        }
    }
}

/// One round for one endpoint; `Ok(true)` when a full batch went out (more may be waiting).
async fn deliver(db: &Db, client: &reqwest::Client, url: &url::Url, token: &Secret, owner: &str) -> AppResult<bool> {
    let id = stream_id(url);
    let now = now_ms();
    // Take (or keep) the lease; skip while backing off or while another replica holds it.
    let leased = sqlx::query(
        "UPDATE audit_streams SET lease_owner = $1, lease_until = $2 \
         WHERE id = $3 AND next_attempt_at <= $4 AND (lease_until < $4 OR lease_owner = $1)",
    )
    .bind(owner)
    .bind(now + LEASE_MS)
    .bind(&id)
    .bind(now)
    .execute(db.pool())
    .await?;
    if leased.rows_affected() == 0 {
        return Ok(false);
    }
    let (last_seq, failures): (i64, i64) = sqlx::query_as("SELECT last_seq, failures FROM audit_streams WHERE id = $1")
        .bind(&id)
        .fetch_one(db.pool())
        .await?;
    let rows = {
        let mut conn = db.pool().acquire().await?;
        store::rows_between(&mut conn, last_seq, i64::MAX, BATCH).await?
    };
    let lag = rows.first().map(|r| (now - r.occurred_at).max(0) as f64 / 1000.0).unwrap_or(0.0);
    LAG_SECONDS.with_label_values(&[id.as_str()]).set(lag);
    let mut delivered = last_seq;
    let mut error = None;
    for row in &rows {
        let body = super::export::jsonl_record(row).to_string();
        let sent = client
            .post(url.clone())
            .header("content-type", "application/json")
            .header("x-arno-verification-token", token.expose())
            .header("x-arno-event-id", &row.id)
            .body(body)
            .send()
            .await;
        match sent {
            Ok(r) if r.status().is_success() => delivered = row.seq,
            Ok(r) => {
                error = Some(format!("HTTP {}", r.status().as_u16()));
                break;
            }
            Err(e) => {
                error = Some(if e.is_timeout() { "timed out".into() } else { "connection failed".into() });
                break;
            }
        }
    }
    let now = now_ms();
    match error {
        None => {
            sqlx::query(
                "UPDATE audit_streams SET last_seq = $1, delivered_at = $2, failures = 0, next_attempt_at = 0, \
                 last_error = NULL WHERE id = $3",
            )
            .bind(delivered)
            .bind(now)
            .bind(&id)
            .execute(db.pool())
            .await?;
            if rows.len() as i64 == BATCH {
                return Ok(true);
            }
            LAG_SECONDS.with_label_values(&[id.as_str()]).set(0.0);
            Ok(false)
        }
        Some(e) => {
            let backoff = (2_000i64 << failures.min(10)).min(MAX_BACKOFF_MS);
            sqlx::query(
                "UPDATE audit_streams SET last_seq = $1, failures = failures + 1, next_attempt_at = $2, \
                 last_error = $3 WHERE id = $4",
            )
            .bind(delivered)
            .bind(now + backoff)
            .bind(&e)
            .bind(&id)
            .execute(db.pool())
            .await?;
            Err(AppError::Upstream(format!("stream {id}: {e}; retrying in {} s", backoff / 1000)))
        }
    }
}
