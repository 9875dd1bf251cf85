//! The database-backed job queue: work that must happen eventually (committing saved specs to
//! git), survives restarts, runs once across replicas, and is retried with backoff.
//!
//! - **Enqueue** inside the caller's transaction, so a job exists exactly when the change that
//!   needs it committed. A `dedup_key` allows one *pending* job per key; enqueueing again moves
//!   its run time (that is the write-back's debounce).
//! - **Claim**: a worker takes the oldest due job and holds a lease on it
//!   (`FOR UPDATE SKIP LOCKED` on PostgreSQL, so replicas never take the same job; SQLite has one
//!   writer). A lease that runs out (the replica died) makes the job claimable again.
//! - **Finish**: done, retried later (exponential backoff from `jobs.retry_base`, or the time a
//!   provider asked for), or failed with its reason after `jobs.max_attempts`.
//!
//! Finished jobs are kept for a week (failed ones for 30 days) so operators can see them.

pub mod lock;
pub mod worker;

use std::time::Duration;

use serde::Serialize;
use sqlx::AnyConnection;
use utoipa::ToSchema;

use crate::db::{Backend, Db, ms, now_ms, rfc3339};
use crate::error::AppResult;

/// How long a claimed job is ours before another worker may take it over.
pub const LEASE: Duration = Duration::from_secs(300);
/// The longest wait between two attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(600);

/// A job to add.
#[derive(Debug, Clone)]
pub struct NewJob<'a> {
    pub kind: &'a str,
    pub dedup_key: Option<&'a str>,
    pub payload: serde_json::Value,
    /// When it may run (epoch ms).
    pub run_at: i64,
    pub max_attempts: u32,
}

/// A claimed job.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Job {
    pub id: String,
    pub kind: String,
    pub payload: String,
    /// Including this one.
    pub attempts: i64,
    pub max_attempts: i64,
}

/// Why a job did not finish.
#[derive(Debug)]
pub enum JobError {
    /// Try again later (after `after`, or the backoff).
    Retry { error: String, after: Option<Duration> },
    /// Trying again cannot help.
    Fatal(String),
}

impl JobError {
    pub fn retry(error: impl std::fmt::Display) -> Self {
        JobError::Retry { error: error.to_string(), after: None }
    }
}

/// A job as operators see it.
#[derive(Debug, Clone, Serialize, ToSchema, sqlx::FromRow)]
pub struct JobInfo {
    pub id: String,
    pub kind: String,
    pub state: String,
    pub attempts: i64,
    pub last_error: Option<String>,
    #[serde(skip)]
    pub run_at: i64,
    #[serde(skip)]
    pub updated_at: i64,
}

impl JobInfo {
    pub fn run_at_text(&self) -> String {
        rfc3339(self.run_at)
    }
}

/// Add a job, or (same pending `dedup_key`) move the pending one to the new run time and payload.
pub async fn enqueue(conn: &mut AnyConnection, job: &NewJob<'_>) -> AppResult<()> {
    let now = now_ms();
    sqlx::query(
        "INSERT INTO jobs (id, kind, dedup_key, payload, state, attempts, max_attempts, run_at, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, 'pending', 0, $5, $6, $7, $7) \
         ON CONFLICT (dedup_key) WHERE state = 'pending' \
         DO UPDATE SET run_at = excluded.run_at, payload = excluded.payload, updated_at = excluded.updated_at",
    )
    .bind(uuid::Uuid::now_v7().to_string())
    .bind(job.kind)
    .bind(job.dedup_key)
    .bind(job.payload.to_string())
    .bind(i64::from(job.max_attempts))
    .bind(job.run_at)
    .bind(now)
    .execute(conn)
    .await?;
    Ok(())
}

/// Take the oldest due job (or one whose lease ran out), holding a lease as `owner`.
pub async fn claim(db: &Db, owner: &str) -> AppResult<Option<Job>> {
    let now = now_ms();
    let skip_locked = if db.backend() == Backend::Postgres { " FOR UPDATE SKIP LOCKED" } else { "" };
    let job: Option<Job> = sqlx::query_as(&format!(
        "UPDATE jobs SET state = 'running', lease_owner = $1, lease_until = $2, attempts = attempts + 1, updated_at = $3 \
         WHERE id = (SELECT id FROM jobs \
                     WHERE (state = 'pending' AND run_at <= $3) OR (state = 'running' AND lease_until < $3) \
                     ORDER BY run_at LIMIT 1{skip_locked}) \
         RETURNING id, kind, payload, attempts, max_attempts"
    ))
    .bind(owner)
    .bind(now + ms(LEASE))
    .bind(now)
    .fetch_optional(db.pool())
    .await?;
    Ok(job)
}

/// The job is done.
pub async fn complete(db: &Db, job: &Job, owner: &str) -> AppResult<()> {
    sqlx::query(
        "UPDATE jobs SET state = 'done', lease_owner = NULL, lease_until = NULL, last_error = NULL, updated_at = $3 \
         WHERE id = $1 AND lease_owner = $2",
    )
    .bind(&job.id)
    .bind(owner)
    .bind(now_ms())
    .execute(db.pool())
    .await?;
    Ok(())
}

/// The wait before attempt `attempts + 1`: `base · 2^(attempts-1)`, at most ten minutes.
pub fn backoff(base: Duration, attempts: i64) -> Duration {
    let exp = u32::try_from(attempts.clamp(1, 20) - 1).unwrap_or(0);
    base.saturating_mul(2u32.saturating_pow(exp)).min(MAX_BACKOFF)
}

/// Record a failed attempt: back to pending after the backoff, or failed for good once it used
/// its attempts (or the error is fatal). Returns the state it is in now.
pub async fn fail(db: &Db, job: &Job, owner: &str, error: &JobError, retry_base: Duration) -> AppResult<&'static str> {
    let now = now_ms();
    let (message, after) = match error {
        JobError::Retry { error, after } if job.attempts < job.max_attempts => {
            (error.as_str(), Some(after.unwrap_or_else(|| backoff(retry_base, job.attempts))))
        }
        JobError::Retry { error, .. } | JobError::Fatal(error) => (error.as_str(), None),
    };
    let message: String = message.chars().take(1000).collect();
    if let Some(after) = after {
        let retried = sqlx::query(
            "UPDATE jobs SET state = 'pending', lease_owner = NULL, lease_until = NULL, last_error = $3, run_at = $4, \
             updated_at = $5 WHERE id = $1 AND lease_owner = $2",
        )
        .bind(&job.id)
        .bind(owner)
        .bind(&message)
        .bind(now + ms(after))
        .bind(now)
        .execute(db.pool())
        .await;
        match retried {
            Ok(_) => return Ok("pending"),
            // A newer pending job with the same key exists; it does this work when it runs.
            Err(e) if crate::db::is_unique_violation(&e) => {
                let superseded = format!("{message} (a newer job with the same key takes over)");
                finish(db, job, owner, "done", &superseded).await?;
                return Ok("done");
            }
            Err(e) => return Err(e.into()),
        }
    }
    finish(db, job, owner, "failed", &message).await?;
    Ok("failed")
}

async fn finish(db: &Db, job: &Job, owner: &str, state: &str, message: &str) -> AppResult<()> {
    sqlx::query(
        "UPDATE jobs SET state = $3, lease_owner = NULL, lease_until = NULL, last_error = $4, updated_at = $5 \
         WHERE id = $1 AND lease_owner = $2",
    )
    .bind(&job.id)
    .bind(owner)
    .bind(state)
    .bind(message)
    .bind(now_ms())
    .execute(db.pool())
    .await?;
    Ok(())
}

/// Jobs with a key, newest first (what a project's page shows about its write-backs).
pub async fn by_key_prefix(conn: &mut AnyConnection, prefix: &str, limit: i64) -> AppResult<Vec<JobInfo>> {
    let pattern = format!("{}%", prefix.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_"));
    Ok(sqlx::query_as(
        "SELECT id, kind, state, attempts, last_error, run_at, updated_at FROM jobs \
         WHERE dedup_key LIKE $1 ESCAPE '\\' ORDER BY updated_at DESC LIMIT $2",
    )
    .bind(pattern)
    .bind(limit)
    .fetch_all(conn)
    .await?)
}

/// Forget finished jobs: done ones after a week, failed ones after 30 days.
pub async fn sweep(conn: &mut AnyConnection) -> AppResult<u64> {
    let now = now_ms();
    let day = 86_400_000;
    let r = sqlx::query(
        "DELETE FROM jobs WHERE (state = 'done' AND updated_at < $1) OR (state = 'failed' AND updated_at < $2)",
    )
    .bind(now - 7 * day)
    .bind(now - 30 * day)
    .execute(conn)
    .await?;
    Ok(r.rows_affected())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_is_capped() {
        let base = Duration::from_secs(5);
        assert_eq!(backoff(base, 1), Duration::from_secs(5));
        assert_eq!(backoff(base, 2), Duration::from_secs(10));
        assert_eq!(backoff(base, 4), Duration::from_secs(40));
        assert_eq!(backoff(base, 30), MAX_BACKOFF);
        assert_eq!(backoff(base, 0), Duration::from_secs(5));
    }
}
