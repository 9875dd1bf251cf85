//! The worker: claims due jobs and runs them until shutdown; between jobs it also notices when
//! a project's default branch moved outside Arno (a push, a merge elsewhere) and re-scans it.

use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::time::Duration;

use tokio::sync::watch;

use super::{Job, JobError};
use crate::app::AppState;

/// How often an idle worker looks for due jobs.
const POLL: Duration = Duration::from_millis(500);
/// How often default branches are compared with the last scan.
const WATCH: Duration = Duration::from_secs(30);

/// When this replica's worker last went round its loop (or started), for `/ready`: a worker
/// that stops beating (a job hung on a git remote, a panicked task) degrades the instance.
#[derive(Debug)]
pub struct Heartbeat {
    at_ms: AtomicI64,
    running: AtomicBool,
}

impl Default for Heartbeat {
    fn default() -> Self {
        Heartbeat { at_ms: AtomicI64::new(crate::db::now_ms()), running: AtomicBool::new(false) }
    }
}

impl Heartbeat {
    /// The worker is about to run (set by `serve` before it spawns it, so a probe right after
    /// start does not see "not running").
    pub fn started(&self) {
        self.running.store(true, Ordering::Relaxed);
        self.beat();
    }

    fn beat(&self) {
        self.at_ms.store(crate::db::now_ms(), Ordering::Relaxed);
    }

    /// Milliseconds since the last beat, and whether a worker loop is running at all.
    pub fn age_ms(&self) -> (i64, bool) {
        ((crate::db::now_ms() - self.at_ms.load(Ordering::Relaxed)).max(0), self.running.load(Ordering::Relaxed))
    }
}

/// Marks the worker stopped when its loop ends, however it ends.
struct Running<'a>(&'a Heartbeat);

impl Drop for Running<'_> {
    fn drop(&mut self) {
        self.0.running.store(false, Ordering::Relaxed);
    }
}

/// Run jobs until `stop`. A job in progress at shutdown finishes (or its lease expires and
/// another replica takes it over after a crash).
pub async fn run(state: AppState, mut stop: watch::Receiver<bool>) {
    let owner = format!("worker-{}", uuid::Uuid::new_v4());
    let mut watch_tick = tokio::time::interval(WATCH);
    watch_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let heartbeat = state.worker.clone();
    heartbeat.started();
    let _running = Running(&heartbeat);
    loop {
        heartbeat.beat();
        if *stop.borrow() {
            return;
        }
        match super::claim(&state.db, &owner).await {
            Ok(Some(job)) => {
                run_one(&state, &owner, job).await;
                continue;
            }
            Ok(None) => {}
            Err(e) => tracing::warn!(event_type = "job_claim_failed", error = %e, "could not claim a job"),
        }
        tokio::select! {
            _ = stop.changed() => return,
            _ = watch_tick.tick() => {
                crate::projects::changes::watch_default_branches(&state).await;
                if let Err(e) = crate::projects::sync::reconcile_due(&state).await {
                    tracing::warn!(event_type = "reconcile_failed", error = %e, "could not schedule reconciliation");
                }
                if let Err(e) = crate::projects::github_roles::schedule_due(&state.db).await {
                    tracing::warn!(event_type = "role_sync_failed", error = %e, "could not schedule role syncs");
                }
                crate::workflow::history::periodic(&state).await;
                state.rooms.evict_idle();
            }
            _ = tokio::time::sleep(POLL) => {}
        }
    }
}

async fn run_one(state: &AppState, owner: &str, job: Job) {
    let result = match job.kind.as_str() {
        crate::projects::writeback::JOB_KIND => crate::projects::writeback::run(state, &job).await,
        crate::workflow::compact::JOB_KIND => crate::workflow::compact::run(state, &job).await,
        crate::projects::pulls::JOB_KIND => {
            crate::projects::pulls::run(&state.db, &state.repos, state.config.public_url.as_str(), &job).await
        }
        crate::projects::sync::JOB_KIND => crate::projects::sync::run(state, &job).await,
        crate::projects::github_roles::JOB_KIND => {
            match crate::projects::github_roles::run(&state.db, &state.repos, &job).await {
                Ok(Some(project_id)) => {
                    state.rooms.access_changed(&project_id).await;
                    Ok(())
                }
                Ok(None) => Ok(()),
                Err(e) => Err(e),
            }
        }
        other => Err(JobError::Fatal(format!("unknown job kind {other:?}"))),
    };
    match result {
        Ok(()) => {
            if let Err(e) = super::complete(&state.db, &job, owner).await {
                tracing::warn!(event_type = "job_complete_failed", job_id = %job.id, error = %e, "could not mark a job done");
            }
        }
        Err(error) => {
            let message = match &error {
                JobError::Retry { error, .. } | JobError::Fatal(error) => error.clone(),
            };
            match super::fail(&state.db, &job, owner, &error, state.config.jobs_retry_base).await {
                Ok(now) => {
                    tracing::warn!(event_type = "job_failed", job_id = %job.id, kind = %job.kind, attempts = job.attempts, state = now, error = %message, "job attempt failed");
                    if job.kind == crate::projects::writeback::JOB_KIND && now != "done" {
                        crate::projects::writeback::attempt_failed(state, &job, &message, now).await;
                    }
                }
                Err(e) => {
                    tracing::warn!(event_type = "job_fail_failed", job_id = %job.id, error = %e, "could not record a job failure")
                }
            }
        }
    }
}
