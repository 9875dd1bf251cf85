//! Write-back: every Maker's saved specs reach git as commits on their own session branch
//! `arno/{handle}`, authored by them, after a quiet period without further saves.
//!
//! A save records the saved text in `writeback_files` and (re)schedules one job per (project,
//! user) in the same transaction: the text is durable before the editor says "saved", and the
//! job exists exactly when the save committed. The job:
//!
//! 1. takes the per-(project, branch) lock in the database (replicas), with an expiry;
//! 2. re-reads the branch head and writes only when it is the commit Arno last wrote there —
//!    or when neither the branch nor Arno's last commit holds anything the default branch lacks
//!    (a new branch, a merged one), in which case it first fast-forwards to the default branch;
//! 3. otherwise marks the branch **diverged** and writes nothing: the user chooses to open the
//!    branch or to discard their pending text (kept as backup versions) and take the branch as
//!    it is. Arno never rewrites a branch it did not write last, and never force-pushes.
//!
//! The commit goes through the provider's compare-and-swap, so a push that lands between the
//! re-read and the commit is a conflict (retried, then seen as divergence), never an overwrite.

use std::sync::LazyLock;
use std::time::Duration;

use prometheus::{IntCounterVec, Opts};
use serde::{Deserialize, Serialize};
use serde_json::json;
use sqlx::AnyConnection;
use utoipa::ToSchema;

use super::model::{Project, ProjectState};
use super::store;
use crate::app::AppState;
use crate::audit::{self, Actor, Event, Origin, Outcome};
use crate::auth::model::User;
use crate::db::{now_ms, rfc3339};
use crate::error::{AppError, AppResult};
use crate::git::{Change, CommitRequest, GitError, GitProvider, Person};
use crate::jobs::lock::Lock;
use crate::jobs::{self, Job, JobError, NewJob};
use crate::specs::versions;

pub const JOB_KIND: &str = "writeback";
/// Long enough for a commit of many files; a crashed holder frees the branch after this.
const LOCK_TTL: Duration = Duration::from_secs(120);

/// `git_push_total{result}`: write-back attempts by outcome (`committed`, `unchanged`,
/// `diverged`, `retry`, `failed`).
pub static PUSH_TOTAL: LazyLock<IntCounterVec> = LazyLock::new(|| {
    IntCounterVec::new(Opts::new("git_push_total", "Write-backs to session branches, by result"), &["result"])
        .expect("valid metric")
});

/// A Maker's session branch in a project, as pages and the API show it.
#[derive(Debug, Clone, Serialize, ToSchema, sqlx::FromRow)]
pub struct SessionBranch {
    pub user_id: String,
    pub user_name: String,
    pub user_handle: String,
    pub branch: String,
    /// `pending` (saved text waits for the quiet period or a retry), `committed`, `diverged`
    /// (the branch changed outside Arno; nothing is written until its owner decides), `failed`.
    pub state: String,
    /// Why it is diverged or failed, or what the last retry hit.
    pub reason: Option<String>,
    /// The commit Arno last wrote (or adopted) on the branch.
    pub last_commit: Option<String>,
    /// When diverged: the head found on the branch instead.
    pub found_head: Option<String>,
    /// The change request: `none` (nothing committed yet), `open`, `merged`, `closed`.
    pub review: String,
    pub merged_commit: Option<String>,
    /// Saved files not yet committed.
    pub pending_files: i64,
    #[serde(skip)]
    pub updated_at: i64,
}

impl SessionBranch {
    pub fn updated_at_text(&self) -> String {
        rfc3339(self.updated_at)
    }
}

/// One entry of a project's activity list.
#[derive(Debug, Clone, Serialize, ToSchema, sqlx::FromRow)]
pub struct Activity {
    pub kind: String,
    pub summary: String,
    pub user_name: Option<String>,
    pub branch: Option<String>,
    pub commit_id: Option<String>,
    #[serde(skip)]
    pub at: i64,
}

impl Activity {
    pub fn at_text(&self) -> String {
        rfc3339(self.at)
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct Payload {
    project_id: String,
    user_id: String,
}

pub fn branch_for(handle: &str) -> String {
    format!("arno/{handle}")
}

fn job_key(project_id: &str, user_id: &str) -> String {
    format!("writeback:{project_id}:{user_id}")
}

fn lock_name(project_id: &str, branch: &str) -> String {
    format!("git:{project_id}:{branch}")
}

fn short(commit: &str) -> &str {
    commit.get(..12).unwrap_or(commit)
}

/// When write-backs run: the quiet period and the attempts of their jobs.
#[derive(Debug, Clone, Copy)]
pub struct Schedule {
    pub debounce: Duration,
    pub max_attempts: u32,
}

impl Schedule {
    pub fn of(config: &crate::config::Config) -> Schedule {
        Schedule { debounce: config.writeback_debounce, max_attempts: config.jobs_max_attempts }
    }
}

/// The workflow's file in the repository: written from the live document when the job runs.
pub const WORKFLOW_FILE: &str = ".arno/workflow.json";

/// In a save's transaction: keep the saved text (`None`: the file is deleted) for the author's
/// session branch and (re)schedule its write-back after the quiet period.
#[allow(clippy::too_many_arguments)]
pub async fn note_save(
    conn: &mut AnyConnection,
    schedule: Schedule,
    project_id: &str,
    user_id: &str,
    handle: &str,
    path: &str,
    version: i64,
    content: Option<&str>,
) -> AppResult<()> {
    let now = now_ms();
    sqlx::query(
        "INSERT INTO writeback_files (project_id, user_id, path, version, content, saved_at, deleted) \
         VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (project_id, user_id, path) \
         DO UPDATE SET version = excluded.version, content = excluded.content, saved_at = excluded.saved_at, \
         deleted = excluded.deleted",
    )
    .bind(project_id)
    .bind(user_id)
    .bind(path)
    .bind(version)
    .bind(content.unwrap_or(""))
    .bind(now)
    .bind(i64::from(content.is_none()))
    .execute(&mut *conn)
    .await?;
    // A diverged branch stays diverged until its owner decides; the text waits with it.
    sqlx::query(
        "INSERT INTO session_branches (project_id, user_id, branch, state, review, updated_at) \
         VALUES ($1, $2, $3, 'pending', 'none', $4) ON CONFLICT (project_id, user_id) DO UPDATE SET \
         state = CASE WHEN session_branches.state = 'diverged' THEN 'diverged' ELSE 'pending' END, \
         updated_at = excluded.updated_at",
    )
    .bind(project_id)
    .bind(user_id)
    .bind(branch_for(handle))
    .bind(now)
    .execute(&mut *conn)
    .await?;
    let key = job_key(project_id, user_id);
    let job = NewJob {
        kind: JOB_KIND,
        dedup_key: Some(&key),
        payload: json!({"project_id": project_id, "user_id": user_id}),
        run_at: now + crate::db::ms(schedule.debounce),
        max_attempts: schedule.max_attempts,
    };
    jobs::enqueue(conn, &job).await
}

/// The workflow document as its canonical, diff-friendly file: keys in a stable (sorted) order,
/// two-space indentation, a final newline.
pub fn workflow_file(content: &serde_json::Value) -> String {
    fn sorted(v: &serde_json::Value) -> serde_json::Value {
        match v {
            serde_json::Value::Object(m) => {
                let ordered: std::collections::BTreeMap<&String, serde_json::Value> =
                    m.iter().map(|(k, v)| (k, sorted(v))).collect();
                serde_json::Value::Object(ordered.into_iter().map(|(k, v)| (k.clone(), v)).collect())
            }
            serde_json::Value::Array(a) => serde_json::Value::Array(a.iter().map(sorted).collect()),
            other => other.clone(),
        }
    }
    let mut text = serde_json::to_string_pretty(&sorted(content)).unwrap_or_else(|_| "{}".into());
    text.push('\n');
    text
}

#[derive(sqlx::FromRow)]
struct BranchRow {
    branch: String,
    state: String,
    last_commit: Option<String>,
}

#[derive(sqlx::FromRow)]
struct PendingFile {
    path: String,
    version: i64,
    content: String,
    /// 1: the file is to be removed.
    deleted: i64,
}

async fn branch_row(conn: &mut AnyConnection, project_id: &str, user_id: &str) -> AppResult<Option<BranchRow>> {
    Ok(sqlx::query_as("SELECT branch, state, last_commit FROM session_branches WHERE project_id = $1 AND user_id = $2")
        .bind(project_id)
        .bind(user_id)
        .fetch_optional(conn)
        .await?)
}

async fn pending(conn: &mut AnyConnection, project_id: &str, user_id: &str) -> AppResult<Vec<PendingFile>> {
    Ok(sqlx::query_as(
        "SELECT path, version, content, deleted FROM writeback_files WHERE project_id = $1 AND user_id = $2 \
         ORDER BY path",
    )
    .bind(project_id)
    .bind(user_id)
    .fetch_all(conn)
    .await?)
}

fn db_retry(e: impl std::fmt::Display) -> JobError {
    JobError::retry(format!("database: {e}"))
}

/// A git failure as the job sees it: retry what may pass, fail what cannot.
fn git_job_error(e: GitError) -> JobError {
    match e {
        GitError::RateLimited { retry_after_ms } => JobError::Retry {
            error: "the git provider asked us to slow down".into(),
            after: Some(Duration::from_millis(retry_after_ms)),
        },
        GitError::Invalid(m) | GitError::Limit(m) => JobError::Fatal(m),
        GitError::Unauthorized(m) => JobError::retry(format!("the git provider refused access: {m}")),
        other => JobError::retry(other),
    }
}

/// Run one write-back job.
pub async fn run(state: &AppState, job: &Job) -> Result<(), JobError> {
    let payload: Payload =
        serde_json::from_str(&job.payload).map_err(|e| JobError::Fatal(format!("bad write-back job: {e}")))?;
    let db = &state.db;
    let mut conn = db.pool().acquire().await.map_err(db_retry)?;
    let Some(project) = store::find(&mut conn, &payload.project_id).await.map_err(db_retry)? else {
        return Err(JobError::Fatal("the project no longer exists".into()));
    };
    if project.state == ProjectState::Archived {
        return Err(JobError::Fatal("the project is archived; restore it to write its saved specs to git".into()));
    }
    let Some((user, _active)) = crate::auth::users::find_any(&mut conn, &payload.user_id).await.map_err(db_retry)?
    else {
        return Err(JobError::Fatal("the author no longer exists".into()));
    };
    let Some(row) = branch_row(&mut conn, &project.id, &user.id).await.map_err(db_retry)? else { return Ok(()) };
    drop(conn);
    if row.state == "diverged" {
        return Ok(());
    }
    let provider = state.repos.get(&project).await.map_err(JobError::retry)?;
    let Some(lock) = Lock::try_acquire(db, &lock_name(&project.id, &row.branch), LOCK_TTL).await.map_err(db_retry)?
    else {
        return Err(JobError::Retry {
            error: format!("{} is being written by another worker", row.branch),
            after: Some(Duration::from_secs(2)),
        });
    };
    let result = write(state, &project, &user, &row, provider.as_ref(), &lock).await;
    if let Err(e) = lock.release(db).await {
        tracing::warn!(event_type = "lock_release_failed", error = %e, "could not release a write-back lock");
    }
    result
}

/// Whether `commit` is contained in (an ancestor of, or equal to) `default_head`.
async fn contained(provider: &dyn GitProvider, commit: &str, default_head: &str) -> Result<bool, JobError> {
    if commit == default_head {
        return Ok(true);
    }
    match provider.merge_base(commit, default_head).await {
        Ok(base) => Ok(base.as_deref() == Some(commit)),
        // A commit that no longer exists (a rewritten history) is not contained.
        Err(GitError::NotFound(_)) => Ok(false),
        Err(e) => Err(git_job_error(e)),
    }
}

async fn write(
    state: &AppState,
    project: &Project,
    user: &User,
    row: &BranchRow,
    provider: &dyn GitProvider,
    lock: &Lock,
) -> Result<(), JobError> {
    let db = &state.db;
    let files = {
        let mut conn = db.pool().acquire().await.map_err(db_retry)?;
        pending(&mut conn, &project.id, &user.id).await.map_err(db_retry)?
    };
    if files.is_empty() {
        return Ok(());
    }
    let branch = row.branch.as_str();
    let default = provider.default_branch().await.map_err(git_job_error)?;
    let Some(default_head) = default.commit else {
        return Err(JobError::Fatal("the repository has no commits yet".into()));
    };
    let head = match provider.resolve(&format!("refs/heads/{branch}")).await {
        Ok(id) => Some(id),
        Err(GitError::NotFound(_)) => None,
        Err(e) => return Err(git_job_error(e)),
    };

    // Is it safe to build on what is there?
    let ours = head.is_some() && head == row.last_commit;
    let safe = ours || {
        let head_merged = match &head {
            Some(h) => contained(provider, h, &default_head).await?,
            None => true,
        };
        let last_merged = match &row.last_commit {
            Some(last) => contained(provider, last, &default_head).await?,
            None => true,
        };
        head_merged && last_merged
    };
    if !safe {
        let reason = match (&head, &row.last_commit) {
            (None, _) => format!("{branch} was deleted outside Arno before its changes were merged"),
            (Some(h), Some(last)) => {
                format!("{branch} changed outside Arno: it is at {} but Arno last wrote {}", short(h), short(last))
            }
            (Some(h), None) => format!("{branch} already exists with commits Arno did not write (at {})", short(h)),
        };
        return diverged(state, project, user, branch, head.as_deref(), &reason).await;
    }

    // Start from the default branch when the session branch holds nothing it lacks.
    let parent = match &head {
        None => {
            provider.create_branch(branch, &default_head).await.map_err(git_job_error)?;
            default_head.clone()
        }
        Some(h) if *h != default_head && contained(provider, h, &default_head).await? => {
            provider.fast_forward(branch, h, &default_head).await.map_err(git_job_error)?;
            default_head.clone()
        }
        Some(h) => h.clone(),
    };

    // The workflow file is written as the live document is now.
    let mut files = files;
    for f in files.iter_mut().filter(|f| f.path == WORKFLOW_FILE) {
        let room = state.rooms.open(&project.id).await.map_err(JobError::retry)?;
        let content = room.content().await.map_err(JobError::retry)?;
        f.content = workflow_file(&content);
    }
    // Only files whose text differs from the branch's (removals of files the branch has).
    let mut changes = vec![];
    let mut listed = vec![];
    for f in &files {
        let there = match provider.read_file(&parent, &f.path).await {
            Ok(bytes) => Some(bytes),
            Err(GitError::NotFound(_)) => None,
            Err(e) => return Err(git_job_error(e)),
        };
        let removed = f.deleted != 0;
        match (&there, removed) {
            (Some(_), true) => changes.push(Change::Delete { path: f.path.clone() }),
            (None, true) => continue,
            (Some(bytes), false) if bytes == f.content.as_bytes() => continue,
            (_, false) => {
                changes.push(Change::Upsert { path: f.path.clone(), content: f.content.clone().into_bytes() })
            }
        }
        listed.push(Listed { path: f.path.as_str(), version: f.version, removed });
    }
    if changes.is_empty() {
        recorded(state, project, user, branch, &parent, &files, None).await?;
        PUSH_TOTAL.with_label_values(&["unchanged"]).inc();
        return Ok(());
    }
    // The lock must outlive the commit; if it is nearly gone, let the next attempt start over.
    if !lock.still_held(db, Duration::from_secs(15)).await.map_err(db_retry)? {
        return Err(JobError::Retry { error: "the branch lock expired".into(), after: Some(Duration::from_secs(1)) });
    }
    let request = CommitRequest {
        branch: branch.to_owned(),
        parent: parent.clone(),
        message: commit_message(user, &listed),
        author: Person { name: user.name.clone(), email: user.email.clone() },
        changes,
    };
    let info = provider.commit(request).await.map_err(git_job_error)?;
    recorded(state, project, user, branch, &info.id, &files, Some(&listed)).await?;
    PUSH_TOTAL.with_label_values(&["committed"]).inc();
    tracing::info!(
        event_type = "writeback_committed",
        project_id = %project.id,
        branch,
        commit = %info.id,
        files = listed.len(),
        "saved specs committed to a session branch"
    );
    Ok(())
}

/// A file a commit writes: its path, the version, and whether it is removed.
#[derive(Debug, Clone, Copy)]
pub struct Listed<'a> {
    pub path: &'a str,
    pub version: i64,
    pub removed: bool,
}

/// The commit message: what changed, in which version.
pub fn commit_message(user: &User, files: &[Listed<'_>]) -> String {
    let mut message = match files {
        [Listed { path, removed: true, .. }] => format!("Arno: delete {path}\n\n"),
        [Listed { path, .. }] => format!("Arno: update {path}\n\n"),
        _ => format!("Arno: update {} specs\n\n", files.len()),
    };
    for f in files {
        let what = if f.removed { "deleted in version" } else { "version" };
        message.push_str(&format!("- {} ({what} {})\n", f.path, f.version));
    }
    message.push_str(&format!("\nSaved in Arno by {}.\n", user.name));
    message
}

/// After a commit (or finding nothing to commit): forget the written text — unless a newer save
/// of the same file arrived meanwhile — and record the branch's new head.
async fn recorded(
    state: &AppState,
    project: &Project,
    user: &User,
    branch: &str,
    head: &str,
    files: &[PendingFile],
    committed: Option<&[Listed<'_>]>,
) -> Result<(), JobError> {
    let db = &state.db;
    let work = async {
        let mut tx = db.begin().await?;
        for f in files {
            sqlx::query(
                "DELETE FROM writeback_files WHERE project_id = $1 AND user_id = $2 AND path = $3 AND version = $4",
            )
            .bind(&project.id)
            .bind(&user.id)
            .bind(&f.path)
            .bind(f.version)
            .execute(&mut *tx)
            .await?;
        }
        let (left,): (i64,) =
            sqlx::query_as("SELECT COUNT(*) FROM writeback_files WHERE project_id = $1 AND user_id = $2")
                .bind(&project.id)
                .bind(&user.id)
                .fetch_one(&mut *tx)
                .await?;
        let state_now = if left > 0 { "pending" } else { "committed" };
        let review = if committed.is_some() { "'open'" } else { "review" };
        sqlx::query(&format!(
            "UPDATE session_branches SET state = $3, reason = NULL, found_head = NULL, last_commit = $4, \
             review = {review}, updated_at = $5 WHERE project_id = $1 AND user_id = $2"
        ))
        .bind(&project.id)
        .bind(&user.id)
        .bind(state_now)
        .bind(head)
        .bind(now_ms())
        .execute(&mut *tx)
        .await?;
        if let Some(files) = committed {
            let list: Vec<String> = files
                .iter()
                .map(|f| format!("{}{} v{}", if f.removed { "the removal of " } else { "" }, f.path, f.version))
                .collect();
            let summary = format!("committed {} to {branch}", list.join(", "));
            activity(&mut tx, &project.id, Some(&user.id), "writeback.committed", &summary, Some(branch), Some(head))
                .await?;
            let origin = Origin::system();
            let event = Event::new("writeback.commit", Outcome::Allowed, Actor::System, &origin)
                .project(&project.id)
                .target("branch", branch)
                .intent(json!({"on_behalf_of": user.id, "commit": head, "files": files.len()}));
            audit::record(&mut tx, event).await?;
            // A hosted repository reviews the branch in a pull request, opened or updated by a
            // job of its own (exactly when the commit is recorded).
            if project.git_connection.is_some() {
                super::pulls::schedule(&mut tx, &project.id, &user.id, branch).await?;
            }
        }
        tx.commit().await?;
        AppResult::Ok(state_now)
    };
    let state_now = work.await.map_err(db_retry)?;
    announce(state, project, user, state_now).await;
    Ok(())
}

/// The branch changed outside Arno: write nothing, say so, wait for the owner.
async fn diverged(
    state: &AppState,
    project: &Project,
    user: &User,
    branch: &str,
    found: Option<&str>,
    reason: &str,
) -> Result<(), JobError> {
    let work = async {
        let mut tx = state.db.begin().await?;
        sqlx::query(
            "UPDATE session_branches SET state = 'diverged', reason = $3, found_head = $4, updated_at = $5 \
             WHERE project_id = $1 AND user_id = $2",
        )
        .bind(&project.id)
        .bind(&user.id)
        .bind(reason)
        .bind(found)
        .bind(now_ms())
        .execute(&mut *tx)
        .await?;
        activity(&mut tx, &project.id, Some(&user.id), "writeback.diverged", reason, Some(branch), found).await?;
        let origin = Origin::system();
        let event = Event::new("writeback.diverged", Outcome::Denied, Actor::System, &origin)
            .project(&project.id)
            .target("branch", branch)
            .intent(json!({"on_behalf_of": user.id, "found_head": found, "reason": reason}));
        audit::record(&mut tx, event).await?;
        tx.commit().await?;
        AppResult::Ok(())
    };
    work.await.map_err(db_retry)?;
    PUSH_TOTAL.with_label_values(&["diverged"]).inc();
    tracing::warn!(event_type = "writeback_diverged", project_id = %project.id, branch, "session branch changed outside Arno; nothing written");
    announce(state, project, user, "diverged").await;
    Ok(())
}

/// After a failed attempt: show the reason (and, once the job gave up, the failed state).
pub async fn attempt_failed(state: &AppState, job: &Job, error: &str, now: &str) {
    let Ok(payload) = serde_json::from_str::<Payload>(&job.payload) else { return };
    let failed = now == "failed";
    PUSH_TOTAL.with_label_values(&[if failed { "failed" } else { "retry" }]).inc();
    let work = async {
        let mut tx = state.db.begin().await?;
        let reason = if failed { error.to_owned() } else { format!("will retry: {error}") };
        let new_state = if failed { "'failed'" } else { "state" };
        sqlx::query(&format!(
            "UPDATE session_branches SET state = {new_state}, reason = $3, updated_at = $4 \
             WHERE project_id = $1 AND user_id = $2 AND state <> 'diverged'"
        ))
        .bind(&payload.project_id)
        .bind(&payload.user_id)
        .bind(&reason)
        .bind(now_ms())
        .execute(&mut *tx)
        .await?;
        if failed {
            let summary = format!("write-back failed: {error}");
            activity(&mut tx, &payload.project_id, Some(&payload.user_id), "writeback.failed", &summary, None, None)
                .await?;
        }
        tx.commit().await?;
        let mut conn = state.db.pool().acquire().await?;
        let project = store::find(&mut conn, &payload.project_id).await?;
        let user = crate::auth::users::find_any(&mut conn, &payload.user_id).await?;
        AppResult::Ok(project.zip(user))
    };
    match work.await {
        Ok(Some((project, (user, _)))) if failed => announce(state, &project, &user, "failed").await,
        Ok(_) => {}
        Err(e) => {
            tracing::warn!(event_type = "writeback_state_failed", error = %e, "could not record a write-back failure")
        }
    }
}

async fn announce(state: &AppState, project: &Project, user: &User, now: &str) {
    let event = super::events::ProjectEvent {
        project_id: project.id.clone(),
        kind: "writeback".into(),
        path: String::new(),
        version: 0,
        content_sha: String::new(),
        by_name: user.name.clone(),
        by_handle: user.handle.clone(),
        state: Some(now.to_owned()),
    };
    if let Err(e) = state.events.publish(&state.db, event).await {
        tracing::warn!(event_type = "event_publish_failed", error = %e, "could not announce a write-back");
    }
}

/// Add an entry to a project's activity list (in the caller's transaction).
pub async fn activity(
    conn: &mut AnyConnection,
    project_id: &str,
    user_id: Option<&str>,
    kind: &str,
    summary: &str,
    branch: Option<&str>,
    commit_id: Option<&str>,
) -> AppResult<()> {
    sqlx::query(
        "INSERT INTO project_activity (id, project_id, at, user_id, kind, summary, branch, commit_id) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(uuid::Uuid::now_v7().to_string())
    .bind(project_id)
    .bind(now_ms())
    .bind(user_id)
    .bind(kind)
    .bind(summary)
    .bind(branch)
    .bind(commit_id)
    .execute(conn)
    .await?;
    Ok(())
}

/// The newest `limit` entries of a project's activity list.
pub async fn recent_activity(conn: &mut AnyConnection, project_id: &str, limit: i64) -> AppResult<Vec<Activity>> {
    Ok(sqlx::query_as(
        "SELECT a.kind, a.summary, u.name AS user_name, a.branch, a.commit_id, a.at FROM project_activity a \
         LEFT JOIN users u ON u.id = a.user_id WHERE a.project_id = $1 ORDER BY a.at DESC, a.id DESC LIMIT $2",
    )
    .bind(project_id)
    .bind(limit)
    .fetch_all(conn)
    .await?)
}

const BRANCH_COLUMNS: &str = "s.user_id, u.name AS user_name, u.handle AS user_handle, s.branch, s.state, s.reason, \
    s.last_commit, s.found_head, s.review, s.merged_commit, s.updated_at, \
    (SELECT COUNT(*) FROM writeback_files w WHERE w.project_id = s.project_id AND w.user_id = s.user_id) AS pending_files";

/// Every session branch of a project, most recently changed first.
pub async fn branches(conn: &mut AnyConnection, project_id: &str) -> AppResult<Vec<SessionBranch>> {
    Ok(sqlx::query_as(&format!(
        "SELECT {BRANCH_COLUMNS} FROM session_branches s JOIN users u ON u.id = s.user_id \
         WHERE s.project_id = $1 ORDER BY s.updated_at DESC"
    ))
    .bind(project_id)
    .fetch_all(conn)
    .await?)
}

/// One session branch, by its owner's handle.
pub async fn branch_of(conn: &mut AnyConnection, project_id: &str, handle: &str) -> AppResult<Option<SessionBranch>> {
    Ok(sqlx::query_as(&format!(
        "SELECT {BRANCH_COLUMNS} FROM session_branches s JOIN users u ON u.id = s.user_id \
         WHERE s.project_id = $1 AND u.handle = $2"
    ))
    .bind(project_id)
    .bind(handle)
    .fetch_optional(conn)
    .await?)
}

/// "Discard mine, take theirs" on a diverged branch: the owner's unwritten text becomes backup
/// versions (nothing is thrown away), and Arno adopts the branch as it is now.
pub async fn take_theirs(
    state: &AppState,
    auth: &crate::auth::Authenticated,
    origin: &Origin,
    on: &super::Granted<crate::auth::access::EditSpecs>,
) -> AppResult<usize> {
    let project = on.project();
    let user = &auth.user;
    let branch = branch_for(&user.handle);
    let provider = state.repos.get(project).await?;
    let head = match provider.resolve(&format!("refs/heads/{}", branch)).await {
        Ok(id) => Some(id),
        Err(GitError::NotFound(_)) => None,
        Err(e) => return Err(super::git_error(e)),
    };
    let lock = Lock::try_acquire(&state.db, &lock_name(&project.id, &branch), LOCK_TTL)
        .await?
        .ok_or_else(|| AppError::Conflict(format!("{branch} is being written right now; try again in a moment")))?;
    let result = async {
        let mut tx = state.db.begin().await?;
        let row = branch_row(&mut tx, &project.id, &user.id).await?.ok_or(AppError::NotFound)?;
        if row.state != "diverged" {
            return Err(AppError::Conflict(format!("{branch} has not diverged; nothing to resolve")));
        }
        let files = pending(&mut tx, &project.id, &user.id).await?;
        // The workflow file is rebuilt from the live document; there is no text of it to keep.
        for f in files.iter().filter(|f| f.path != WORKFLOW_FILE) {
            let save = versions::Save {
                project_id: &project.id,
                path: &f.path,
                content: &f.content,
                base_version: 0,
                session_id: "",
                user_id: &user.id,
            };
            versions::backup(&mut tx, state.db.backend(), &save, "not written: branch changed outside Arno", None)
                .await?;
        }
        sqlx::query("DELETE FROM writeback_files WHERE project_id = $1 AND user_id = $2")
            .bind(&project.id)
            .bind(&user.id)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "UPDATE session_branches SET state = 'committed', reason = NULL, found_head = NULL, last_commit = $3, \
             review = CASE WHEN $3 IS NULL THEN 'none' ELSE 'open' END, updated_at = $4 \
             WHERE project_id = $1 AND user_id = $2",
        )
        .bind(&project.id)
        .bind(&user.id)
        .bind(head.as_deref())
        .bind(now_ms())
        .execute(&mut *tx)
        .await?;
        let summary = format!("took {branch} as it is; {} unwritten file(s) kept as backups", files.len());
        activity(
            &mut tx,
            &project.id,
            Some(&user.id),
            "writeback.take_theirs",
            &summary,
            Some(&branch),
            head.as_deref(),
        )
        .await?;
        let event = Event::new("writeback.take_theirs", Outcome::Allowed, Actor::of(auth), origin)
            .project(&project.id)
            .target("branch", &branch)
            .intent(json!({"head": head, "backups": files.len()}));
        audit::record(&mut tx, event).await?;
        tx.commit().await?;
        Ok(files.len())
    }
    .await;
    lock.release(&state.db).await?;
    let kept = result?;
    announce(state, project, user, "committed").await;
    Ok(kept)
}

/// Forget a user's unwritten text and their name in activity lists (GDPR erasure).
pub async fn forget_user(conn: &mut AnyConnection, user_id: &str) -> AppResult<u64> {
    let r = sqlx::query("DELETE FROM writeback_files WHERE user_id = $1").bind(user_id).execute(&mut *conn).await?;
    sqlx::query("UPDATE project_activity SET user_id = NULL WHERE user_id = $1").bind(user_id).execute(conn).await?;
    Ok(r.rows_affected())
}

/// A user's unwritten text (GDPR export): project, path, version.
pub async fn pending_of(conn: &mut AnyConnection, user_id: &str) -> AppResult<Vec<(String, String, i64)>> {
    Ok(sqlx::query_as(
        "SELECT project_id, path, version FROM writeback_files WHERE user_id = $1 ORDER BY project_id, path",
    )
    .bind(user_id)
    .fetch_all(conn)
    .await?)
}
