//! Keeping a hosted project in step with its repository: the webhook deliveries that concern it
//! (see [`crate::git::webhooks`]) and reconciliation, which catches whatever no delivery told.
//!
//! One job per project (`sync:{project}`), one run at a time (a lock). A run works through the
//! project's deliveries in the order they arrived, each as a hint only — a renamed, transferred,
//! deleted or archived repository, an App uninstalled or suspended, a repository taken out of the
//! installation, a pull request whose state changed, a push — and then re-reads the default
//! branch's head: if it moved since the last scan, the project is re-scanned from git (not from
//! the payload's commit list, which GitHub caps at 20) and open editors are told. A push to a
//! session branch whose new head is the commit Arno wrote is Arno's own and skipped.
//!
//! Reconciliation runs the same job every [`RECONCILE_EVERY`] for every hosted project that is
//! not archived (and when someone asks for a scan), and then also refreshes every open pull
//! request. Deliveries missed while Arno was down are found through the App's delivery list at
//! start ([`missed_deliveries`]).

use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::model::{Project, ProjectState};
use super::onboarding::{self, PullRecord};
use super::store;
use crate::app::AppState;
use crate::audit::{self, Actor, Event, Origin, Outcome};
use crate::db::now_ms;
use crate::error::{AppError, AppResult};
use crate::git::{GitError, PullState};
use crate::jobs::lock::Lock;
use crate::jobs::{self, Job, JobError, NewJob};

pub const JOB_KIND: &str = "sync";
/// How often a hosted project is reconciled with its repository without being told.
pub const RECONCILE_EVERY: Duration = Duration::from_secs(600);
/// Deliveries one run handles (the next run takes the rest).
const BATCH: i64 = 500;
const LOCK_TTL: Duration = Duration::from_secs(300);

#[derive(Debug, Serialize, Deserialize)]
struct Payload {
    project_id: String,
    /// Also refresh every open pull request (reconciliation), not only those deliveries named.
    #[serde(default)]
    reconcile: bool,
}

/// Schedule the project's sync (one pending job per project and kind of run — deliveries, or
/// reconciliation, which also refreshes every open pull request — so that neither replaces the
/// other; a later call moves it).
pub async fn schedule(conn: &mut sqlx::AnyConnection, project_id: &str, reconcile: bool) -> AppResult<()> {
    schedule_at(conn, project_id, reconcile, now_ms()).await
}

async fn schedule_at(conn: &mut sqlx::AnyConnection, project_id: &str, reconcile: bool, run_at: i64) -> AppResult<()> {
    let key = format!("{}:{project_id}", if reconcile { "reconcile" } else { "sync" });
    let payload = json!(Payload { project_id: project_id.into(), reconcile });
    jobs::enqueue(conn, &NewJob { kind: JOB_KIND, dedup_key: Some(&key), payload, run_at, max_attempts: 8 }).await
}

/// What a run did (for the log and the tests).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct SyncOutcome {
    pub deliveries: usize,
    /// Pushes Arno made itself.
    pub own_pushes: usize,
    pub pulls_refreshed: usize,
    pub rescanned: bool,
}

/// Run one sync job.
pub async fn run(state: &AppState, job: &Job) -> Result<(), JobError> {
    let payload: Payload =
        serde_json::from_str(&job.payload).map_err(|e| JobError::Fatal(format!("bad sync job: {e}")))?;
    let Some(lock) = Lock::try_acquire(&state.db, &format!("sync:{}", payload.project_id), LOCK_TTL)
        .await
        .map_err(JobError::retry)?
    else {
        // Another run of this project is under way: this one follows it, without spending an
        // attempt.
        let mut conn = state.db.pool().acquire().await.map_err(|e| JobError::retry(AppError::from(e)))?;
        schedule_at(&mut conn, &payload.project_id, payload.reconcile, now_ms() + 2_000)
            .await
            .map_err(JobError::retry)?;
        return Ok(());
    };
    let result = sync(state, &payload.project_id, payload.reconcile).await;
    if let Err(e) = lock.release(&state.db).await {
        tracing::warn!(event_type = "lock_release_failed", error = %e, "could not release a sync lock");
    }
    match result {
        Ok(outcome) => {
            tracing::info!(
                event_type = "project_synced",
                project_id = %payload.project_id,
                deliveries = outcome.deliveries,
                own_pushes = outcome.own_pushes,
                pulls_refreshed = outcome.pulls_refreshed,
                rescanned = outcome.rescanned,
                "project synced with its repository"
            );
            Ok(())
        }
        Err(SyncError::RateLimited(ms)) => Err(JobError::Retry {
            error: "the git provider asked us to slow down".into(),
            after: Some(Duration::from_millis(ms)),
        }),
        Err(SyncError::Other(e)) => Err(JobError::retry(e)),
    }
}

enum SyncError {
    RateLimited(u64),
    Other(AppError),
}

impl From<AppError> for SyncError {
    fn from(e: AppError) -> Self {
        SyncError::Other(e)
    }
}

impl From<sqlx::Error> for SyncError {
    fn from(e: sqlx::Error) -> Self {
        SyncError::Other(e.into())
    }
}

#[derive(sqlx::FromRow)]
struct Delivery {
    delivery_id: String,
    event: String,
    hint: String,
}

async fn sync(state: &AppState, project_id: &str, reconcile: bool) -> Result<SyncOutcome, SyncError> {
    let mut outcome = SyncOutcome::default();
    let (project, deliveries) = {
        let mut conn = state.db.pool().acquire().await?;
        let Some(project) = store::find(&mut conn, project_id).await? else { return Ok(outcome) };
        let deliveries: Vec<Delivery> = sqlx::query_as(
            "SELECT d.delivery_id, d.event, d.hint FROM webhook_work w \
             JOIN webhook_deliveries d ON d.delivery_id = w.delivery_id \
             WHERE w.project_id = $1 ORDER BY d.received_at, d.delivery_id LIMIT $2",
        )
        .bind(project_id)
        .bind(BATCH)
        .fetch_all(&mut *conn)
        .await
        .map_err(AppError::from)?;
        (project, deliveries)
    };
    outcome.deliveries = deliveries.len();
    let mut project = project;
    // What the deliveries say, applied in order. Claims that the repository became unreachable
    // are only suspicions until the head read below fails (an uninstalled installation may be
    // another account's).
    let mut suspect: Option<&'static str> = None;
    let mut pulls: Vec<i64> = vec![];
    // Commits whose checks reported.
    let mut commits: Vec<String> = vec![];
    for d in &deliveries {
        let hint: Value = serde_json::from_str(&d.hint).unwrap_or(Value::Null);
        let action = hint["action"].as_str().unwrap_or_default();
        match (d.event.as_str(), action) {
            ("repository", "renamed" | "transferred") => {
                if let Some(new_name) = hint["new_full_name"].as_str().filter(|n| n.contains('/')) {
                    moved(state, &project, new_name).await?;
                    project.repo_path = new_name.to_owned();
                }
            }
            ("repository", "deleted") => suspect = Some("the repository was deleted on GitHub"),
            ("repository", "archived") => {
                let mut conn = state.db.pool().acquire().await?;
                let note =
                    "the repository was archived on GitHub: it is read-only, write-back fails until it is unarchived";
                super::writeback::activity(&mut conn, &project.id, None, "repository.archived", note, None, None)
                    .await?;
            }
            ("installation", "deleted") => {
                suspect = Some("the GitHub App was uninstalled from the repository's account")
            }
            ("installation", "suspend") => suspect = Some("the GitHub App's installation was suspended"),
            ("installation_repositories", "removed") => {
                let repository = project.repo_path.to_ascii_lowercase();
                if hint["removed"].as_array().is_some_and(|l| l.iter().any(|r| r.as_str() == Some(&repository))) {
                    suspect = Some("the repository was removed from the GitHub App's installation");
                }
            }
            ("pull_request", _) => pulls.extend(hint["pull"].as_i64()),
            ("check_run" | "check_suite" | "status", _) => commits.extend(hint["sha"].as_str().map(str::to_owned)),
            ("push", _) => {
                let branch = hint["ref"].as_str().and_then(|r| r.strip_prefix("refs/heads/")).unwrap_or_default();
                if let Some(after) = hint["after"].as_str()
                    && own_push(state, &project.id, branch, after).await?
                {
                    outcome.own_pushes += 1;
                }
            }
            _ => {}
        }
    }
    if deliveries
        .iter()
        .any(|d| matches!(d.event.as_str(), "installation" | "installation_repositories" | "repository"))
    {
        // Access may have changed: a new token and a fresh look at the repository.
        state.repos.forget_connection(project.git_connection.as_deref().unwrap_or_default());
    }
    // Pull requests whose state may have changed.
    let open: Vec<PullRecord> = {
        let mut conn = state.db.pool().acquire().await?;
        onboarding::open_pulls(&mut conn, &project.id).await?
    };
    let wanted: Vec<&PullRecord> = open
        .iter()
        .filter(|p| reconcile || pulls.contains(&p.number) || p.head_sha.as_ref().is_some_and(|h| commits.contains(h)))
        .collect();
    if !wanted.is_empty() {
        outcome.pulls_refreshed = refresh_pulls(state, &project, &wanted).await?;
    }
    // The default branch: re-scanned when it moved.
    let before = project.scanned_commit.clone();
    match super::changes::watch_one(state, &project.id).await {
        Ok(()) => {}
        Err(AppError::Upstream(reason) | AppError::Conflict(reason)) => {
            // The repository cannot be reached (uninstalled, removed, gone): say why, keep
            // everything, and reconnect next time.
            let reason = suspect.map_or(reason.clone(), |s| format!("{s} ({reason})"));
            let mut tx = state.db.begin().await?;
            if project.scan_error.as_deref() != Some(reason.as_str()) {
                store::record_scan_error(&mut tx, &project.id, &reason).await?;
                super::writeback::activity(&mut tx, &project.id, None, "repository.unavailable", &reason, None, None)
                    .await?;
            }
            handled(&mut tx, &project.id, &deliveries).await?;
            tx.commit().await?;
            state.repos.forget_project(&project.id);
            return Ok(outcome);
        }
        Err(AppError::RateLimited { retry_after_ms }) => return Err(SyncError::RateLimited(retry_after_ms)),
        Err(e) => return Err(e.into()),
    }
    let fresh = {
        let mut conn = state.db.pool().acquire().await?;
        store::find(&mut conn, &project.id).await?
    };
    outcome.rescanned = fresh.as_ref().and_then(|p| p.scanned_commit.clone()) != before;
    if let Some(fresh) = fresh.filter(|p| p.scan_error.is_some() && !outcome.rescanned) {
        // Reachable again (reinstalled, unsuspended, added back) with the head where it was: a
        // scan says what holds now, clearing what no longer does.
        let provider = state.repos.get(&fresh).await?;
        let report = super::scan::refresh(&state.db, provider.as_ref(), &fresh).await?;
        super::changes::announce_scan(state, &fresh, &report).await?;
        outcome.rescanned = true;
    }
    let mut tx = state.db.begin().await?;
    handled(&mut tx, &project.id, &deliveries).await?;
    tx.commit().await?;
    if deliveries.len() as i64 == BATCH {
        let mut conn = state.db.pool().acquire().await?;
        schedule(&mut conn, &project.id, false).await?;
    }
    Ok(outcome)
}

/// The repository is known by a new name (renamed or transferred on GitHub).
async fn moved(state: &AppState, project: &Project, new_name: &str) -> AppResult<()> {
    if project.repo_path.eq_ignore_ascii_case(new_name) && project.repo_path == new_name {
        return Ok(());
    }
    let mut tx = state.db.begin().await?;
    store::set_repo_path(&mut tx, &project.id, new_name).await?;
    let summary = format!("the repository is now {new_name} on GitHub (was {})", project.repo_path);
    super::writeback::activity(&mut tx, &project.id, None, "repository.moved", &summary, None, None).await?;
    let origin = Origin::system();
    let event = Event::new("project.repository_moved", Outcome::Allowed, Actor::System, &origin)
        .project(&project.id)
        .target("project", &project.id)
        .intent(json!({"from": project.repo_path, "to": new_name}));
    audit::record(&mut tx, event).await?;
    tx.commit().await?;
    state.repos.forget_project(&project.id);
    Ok(())
}

/// Whether `after` on `branch` is the commit Arno itself last wrote there.
async fn own_push(state: &AppState, project_id: &str, branch: &str, after: &str) -> AppResult<bool> {
    let mut conn = state.db.pool().acquire().await?;
    let row: Option<(Option<String>,)> =
        sqlx::query_as("SELECT last_commit FROM session_branches WHERE project_id = $1 AND branch = $2")
            .bind(project_id)
            .bind(branch)
            .fetch_optional(&mut *conn)
            .await?;
    Ok(row.and_then(|(c,)| c).is_some_and(|c| c == after))
}

async fn refresh_pulls(state: &AppState, project: &Project, pulls: &[&PullRecord]) -> Result<usize, SyncError> {
    let provider = match state.repos.get(project).await {
        Ok(p) => p,
        // Unreachable: the head check below says why.
        Err(AppError::Upstream(_)) => return Ok(0),
        Err(e) => return Err(e.into()),
    };
    let Some(reviews) = provider.reviews() else { return Ok(0) };
    let mut refreshed = 0;
    for record in pulls {
        let number = u64::try_from(record.number).unwrap_or_default();
        let pull = match reviews.pull(number).await {
            Ok(p) => p,
            Err(GitError::RateLimited { retry_after_ms }) => return Err(SyncError::RateLimited(retry_after_ms)),
            Err(GitError::NotFound(_)) => continue,
            Err(e) => return Err(SyncError::Other(super::git_error(e))),
        };
        refreshed += 1;
        // The checks on its head, while it is open (a merged or closed one's no longer matter).
        let checks = match pull.state {
            PullState::Open => match reviews.checks(&pull.head_sha).await {
                Ok(c) => Some(c),
                Err(GitError::RateLimited { retry_after_ms }) => return Err(SyncError::RateLimited(retry_after_ms)),
                // The state still counts; the checks wait for the next refresh.
                Err(e) => {
                    tracing::warn!(project = %project.id, error = %e, "the checks of a pull request could not be read");
                    None
                }
            },
            _ => None,
        };
        let checks_changed = checks.as_ref().is_some_and(|c| record.checks.0.as_ref() != Some(c));
        if pull.state.as_str() == record.state
            && record.head_sha.as_deref() == Some(pull.head_sha.as_str())
            && !checks_changed
        {
            continue;
        }
        let mut tx = state.db.begin().await?;
        onboarding::set_pull_state(&mut tx, &project.id, &record.branch, pull.state, Some(&pull.head_sha)).await?;
        if let Some(checks) = checks.as_ref().filter(|_| checks_changed) {
            onboarding::set_pull_checks(&mut tx, &project.id, &record.branch, checks).await?;
        }
        if pull.state.as_str() != record.state {
            let summary = format!("pull request #{} is {} on GitHub", pull.number, pull.state.as_str());
            super::writeback::activity(
                &mut tx,
                &project.id,
                None,
                "pull_request.state",
                &summary,
                Some(&record.branch),
                None,
            )
            .await?;
        }
        tx.commit().await?;
    }
    Ok(refreshed)
}

/// The deliveries are done for this project; a delivery no project still has work for is handled.
async fn handled(conn: &mut sqlx::AnyConnection, project_id: &str, deliveries: &[Delivery]) -> AppResult<()> {
    let now = now_ms();
    for d in deliveries {
        sqlx::query("DELETE FROM webhook_work WHERE project_id = $1 AND delivery_id = $2")
            .bind(project_id)
            .bind(&d.delivery_id)
            .execute(&mut *conn)
            .await?;
        sqlx::query(
            "UPDATE webhook_deliveries SET handled_at = $2 WHERE delivery_id = $1 \
             AND NOT EXISTS (SELECT 1 FROM webhook_work WHERE delivery_id = $1)",
        )
        .bind(&d.delivery_id)
        .bind(now)
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

/// Schedule reconciliation of every hosted project not archived whose turn it is (called by the
/// worker's watch tick; local projects are watched directly, they cost no requests).
pub async fn reconcile_due(state: &AppState) -> AppResult<usize> {
    let projects: Vec<(String,)> =
        sqlx::query_as("SELECT id FROM projects WHERE provider <> 'local' AND state <> $1 ORDER BY id")
            .bind(ProjectState::Archived.as_str())
            .fetch_all(state.db.pool())
            .await?;
    let mut scheduled = 0;
    for (id,) in projects {
        if state.repos.reconcile_due(&id, RECONCILE_EVERY) {
            let mut conn = state.db.pool().acquire().await?;
            schedule(&mut conn, &id, true).await?;
            scheduled += 1;
        }
    }
    Ok(scheduled)
}

/// At start: deliveries GitHub made (or tried) that are not in the inbox — made while Arno was
/// down or unreachable — mean every project of that connection is reconciled now.
pub async fn missed_deliveries(state: &AppState) -> AppResult<usize> {
    let Some(hosted) = state.repos.hosted() else { return Ok(0) };
    let connections: Vec<(String,)> =
        sqlx::query_as("SELECT DISTINCT git_connection FROM projects WHERE git_connection IS NOT NULL AND state <> $1")
            .bind(ProjectState::Archived.as_str())
            .fetch_all(state.db.pool())
            .await?;
    let mut reconciled = 0;
    for (name,) in connections {
        let client = match hosted.get(&name).await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(event_type = "missed_deliveries_failed", connection = %name, error = %e, "could not list webhook deliveries");
                continue;
            }
        };
        let guids = match crate::git::github::app::recent_deliveries(&client).await {
            Ok(g) => g,
            Err(e) => {
                tracing::warn!(event_type = "missed_deliveries_failed", connection = %name, error = %e, "could not list webhook deliveries");
                continue;
            }
        };
        let since = now_ms() - crate::git::webhooks::KEEP_MS;
        let mut conn = state.db.pool().acquire().await?;
        let mut missed = 0;
        for (guid, delivered_at) in &guids {
            // Too old to tell (pruned from the inbox), or so recent it may still be on its way.
            if *delivered_at < since || *delivered_at > now_ms() - 60_000 {
                continue;
            }
            let known: Option<(String,)> =
                sqlx::query_as("SELECT delivery_id FROM webhook_deliveries WHERE delivery_id = $1")
                    .bind(guid)
                    .fetch_optional(&mut *conn)
                    .await?;
            if known.is_none() {
                missed += 1;
                // Recorded as handled by the reconciliation below, so it is not missed again.
                sqlx::query(
                    "INSERT INTO webhook_deliveries (delivery_id, connection, event, hint, received_at, handled_at) \
                     VALUES ($1, $2, 'missed', '{}', $3, $3) ON CONFLICT (delivery_id) DO NOTHING",
                )
                .bind(guid)
                .bind(&name)
                .bind(now_ms())
                .execute(&mut *conn)
                .await?;
            }
        }
        if missed == 0 {
            continue;
        }
        let projects: Vec<(String,)> =
            sqlx::query_as("SELECT id FROM projects WHERE git_connection = $1 AND state <> $2")
                .bind(&name)
                .bind(ProjectState::Archived.as_str())
                .fetch_all(&mut *conn)
                .await?;
        for (id,) in &projects {
            schedule(&mut conn, id, true).await?;
        }
        tracing::info!(event_type = "missed_deliveries", connection = %name, missed, projects = projects.len(), "reconciling after missed webhook deliveries");
        reconciled += projects.len();
    }
    Ok(reconciled)
}
