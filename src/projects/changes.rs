//! Change requests: for the local provider, each Maker's session branch is reviewed and merged
//! in Arno (hosted providers open a pull/merge request instead). A change request shows what the
//! branch changes against the default branch (three-dot: since they parted), who changed each
//! file, and lets a Maker merge it (fast-forward or merge commit) or close it.
//!
//! Also here: noticing that the default branch moved (a merge here, a push elsewhere), re-scanning
//! and telling open pages.

use askama::Template;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::ToSchema;
use utoipa_axum::routes;

use super::editor::{DiffLine, line_diff};
use super::model::{Project, ProjectState};
use super::writeback::{self, Activity, SessionBranch};
use super::{git_error, store};
use crate::app::AppState;
use crate::audit::{self, Actor, Event, Origin, Outcome};
use crate::auth::access::{self, EditSpecs, MergeChanges, View};
use crate::auth::{ApiUser, Authenticated, PageUser};
use crate::db::now_ms;
use crate::error::{AppError, AppResult, ErrorBody};
use crate::git::{GitError, MergeMode, MergeRequest, Person};
use crate::http::RequestContext;
use crate::http::api::{ApiRouter, PageForm};
use crate::jobs::lock::Lock;
use crate::ui::{PageContext, render};

/// Files shown with their author and text differences; beyond this, a change request lists paths only.
const DIFF_FILES: usize = 50;
/// Files listed in one change request.
const MAX_FILES: usize = 1_000;
const LOCK_TTL: std::time::Duration = std::time::Duration::from_secs(120);

pub fn api() -> ApiRouter {
    ApiRouter::new().routes(routes!(list_changes)).routes(routes!(show_change)).routes(routes!(change_action))
}

/// A file a change request changes.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ChangedFile {
    pub path: String,
    /// `added`, `modified`, `deleted`.
    pub status: crate::git::DiffStatus,
    /// Who last changed it on the branch, and when (RFC 3339).
    pub author: Option<String>,
    pub changed_at: Option<String>,
    /// Who must review it by the repository's CODEOWNERS on the default branch (empty: nobody).
    pub owners: Vec<String>,
    #[serde(skip)]
    pub diff: Option<Vec<DiffLine>>,
}

impl ChangedFile {
    pub fn status_label(&self) -> &'static str {
        match self.status {
            crate::git::DiffStatus::Added => "added",
            crate::git::DiffStatus::Modified => "modified",
            crate::git::DiffStatus::Deleted => "deleted",
        }
    }
}

/// A session branch compared with the default branch.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ChangeRequest {
    #[serde(flatten)]
    pub branch: SessionBranch,
    pub default_branch: String,
    /// The branch's head now (`null` when it does not exist).
    pub head: Option<String>,
    /// Where the branch parted from the default branch.
    pub base: Option<String>,
    pub files: Vec<ChangedFile>,
    /// Changed files and folders left out of `files` because they lie deeper than
    /// [`MAX_TREE_DEPTH`](crate::git::MAX_TREE_DEPTH) folders or have paths longer than
    /// [`MAX_PATH_BYTES`](crate::git::MAX_PATH_BYTES) (a folder counts once). Arno does not
    /// merge such a branch with a merge commit; a fast-forward still works.
    pub skipped_paths: usize,
    /// Whether the default branch can simply move to the branch's head.
    pub can_fast_forward: bool,
    /// On a hosted repository (GitHub): the branch's pull request, as Arno last saw it. Merging
    /// happens there (reviews, CODEOWNERS, branch protection), not in Arno.
    pub pull_request: Option<super::onboarding::PullRecord>,
    /// The CODEOWNERS file the owners come from (`null`: the repository has none).
    pub codeowners_file: Option<String>,
    /// Why the owners could not be read, if they could not (the page still shows the rest).
    pub codeowners_problem: Option<String>,
}

impl ChangeRequest {
    /// What the change page says about `skipped_paths`.
    pub fn skipped_text(&self) -> String {
        format!(
            "{} changed path(s) lie deeper than {} folders or are longer than {} bytes: Arno does not show them, \
             and merges this branch only by fast-forward (or merge it in git).",
            self.skipped_paths,
            crate::git::MAX_TREE_DEPTH,
            crate::git::MAX_PATH_BYTES
        )
    }
}

async fn load_change(state: &AppState, project: &Project, handle: &str, with_diff: bool) -> AppResult<ChangeRequest> {
    let branch = {
        let mut conn = state.db.pool().acquire().await?;
        writeback::branch_of(&mut conn, &project.id, handle).await?.ok_or(AppError::NotFound)?
    };
    let provider = state.repos.get(project).await?;
    let default = provider.default_branch().await.map_err(git_error)?;
    let head = match provider.resolve(&format!("refs/heads/{}", branch.branch)).await {
        Ok(id) => Some(id),
        Err(GitError::NotFound(_)) => None,
        Err(e) => return Err(git_error(e)),
    };
    let mut files = vec![];
    let mut skipped_paths = 0;
    let mut base = None;
    let mut can_fast_forward = false;
    if let (Some(head), Some(default_head)) = (&head, &default.commit) {
        base = provider.merge_base(default_head, head).await.map_err(git_error)?;
        can_fast_forward = base.as_deref() == Some(default_head.as_str()) && head != default_head;
        if let Some(base) = &base {
            let mut cursor: Option<String> = None;
            loop {
                let page = provider.diff(base, head, cursor.as_deref(), 500).await.map_err(git_error)?;
                // Every page counts the whole diff.
                skipped_paths = page.skipped.count;
                for d in page.items {
                    files.push(ChangedFile {
                        path: d.path,
                        status: d.status,
                        author: None,
                        changed_at: None,
                        owners: vec![],
                        diff: None,
                    });
                }
                match page.next {
                    Some(next) if files.len() < MAX_FILES => cursor = Some(next),
                    _ => break,
                }
            }
        }
        // Authors and differences of the first files only: each costs a history walk and two reads.
        for f in files.iter_mut().take(DIFF_FILES) {
            if let Some(c) = provider.last_commit(head, &f.path).await.map_err(git_error)? {
                f.author = Some(c.author.name);
                f.changed_at = Some(crate::db::rfc3339(c.time_ms));
            }
            if with_diff {
                let read = |commit: Option<String>| {
                    let provider = provider.clone();
                    let path = f.path.clone();
                    async move {
                        let Some(commit) = commit else { return Ok(String::new()) };
                        match provider.read_file(&commit, &path).await {
                            Ok(bytes) => Ok(String::from_utf8_lossy(&bytes).into_owned()),
                            Err(GitError::NotFound(_)) => Ok(String::new()),
                            Err(e) => Err(git_error(e)),
                        }
                    }
                };
                let (old, new) = (read(base.clone()).await?, read(Some(head.clone())).await?);
                let diff = tokio::task::spawn_blocking(move || line_diff(&old, &new))
                    .await
                    .map_err(|e| AppError::Internal(anyhow::anyhow!("diff task failed: {e}")))?;
                f.diff = Some(diff);
            }
        }
    }
    let (mut codeowners_file, mut codeowners_problem) = (None, None);
    if let (Some(default_head), false) = (&default.commit, files.is_empty()) {
        match state.repos.codeowners(&project.id, provider.as_ref(), default_head).await {
            Ok(file) => {
                if let Some((path, owners)) = file.as_ref() {
                    for f in &mut files {
                        f.owners = owners.owners_of(&f.path).to_vec();
                    }
                    codeowners_file = Some(path.clone());
                }
            }
            Err(e) => codeowners_problem = Some(format!("the CODEOWNERS file could not be read: {}", git_error(e))),
        }
    }
    let pull_request = {
        let mut conn = state.db.pool().acquire().await?;
        super::onboarding::pull_for_branch(&mut conn, &project.id, &branch.branch).await?
    };
    Ok(ChangeRequest {
        branch,
        default_branch: default.name,
        head,
        base,
        files,
        skipped_paths,
        can_fast_forward,
        pull_request,
        codeowners_file,
        codeowners_problem,
    })
}

/// Merge a session branch into the default branch; returns the default branch's new head.
pub async fn merge(
    state: &AppState,
    auth: &Authenticated,
    origin: &Origin,
    on: &super::Granted<MergeChanges>,
    handle: &str,
    mode: MergeMode,
) -> AppResult<String> {
    let project = on.project();
    if project.git_connection.is_some() {
        return Err(AppError::Conflict(
            "this repository is on GitHub: merge the branch's pull request there (reviews, CODEOWNERS and branch \
             protection apply)"
                .into(),
        ));
    }
    let sb = {
        let mut conn = state.db.pool().acquire().await?;
        writeback::branch_of(&mut conn, &project.id, handle).await?.ok_or(AppError::NotFound)?
    };
    let provider = state.repos.get(project).await?;
    let default = provider.default_branch().await.map_err(git_error)?;
    let default_head =
        default.commit.clone().ok_or_else(|| AppError::Conflict("the default branch has no commits".into()))?;
    // Hold both branches: no write-back may land on the session branch while it is merged.
    let busy = || AppError::Conflict("a write to these branches is in progress; try again in a moment".into());
    let session_lock =
        Lock::try_acquire(&state.db, &format!("git:{}:{}", project.id, sb.branch), LOCK_TTL).await?.ok_or_else(busy)?;
    let default_lock =
        match Lock::try_acquire(&state.db, &format!("git:{}:{}", project.id, default.name), LOCK_TTL).await {
            Ok(Some(l)) => l,
            other => {
                session_lock.release(&state.db).await?;
                return Err(other.err().unwrap_or_else(busy));
            }
        };
    let result = async {
        let head = match provider.resolve(&format!("refs/heads/{}", sb.branch)).await {
            Ok(id) => id,
            Err(GitError::NotFound(_)) => return Err(AppError::Conflict(format!("{} no longer exists", sb.branch))),
            Err(e) => return Err(git_error(e)),
        };
        let message = format!(
            "Merge {} into {}\n\nChanges saved in Arno by {}; merged by {}.\n",
            sb.branch, default.name, sb.user_name, auth.user.name
        );
        let request = MergeRequest {
            branch: default.name.clone(),
            expected: default_head.clone(),
            source: head.clone(),
            mode,
            message,
            author: Person { name: auth.user.name.clone(), email: auth.user.email.clone() },
        };
        let mode_text = match mode {
            MergeMode::FastForward => "fast_forward",
            MergeMode::MergeCommit => "merge_commit",
        };
        match provider.merge(request).await {
            Ok(info) => {
                let mut tx = state.db.begin().await?;
                sqlx::query(
                    "UPDATE session_branches SET review = 'merged', review_by = $3, review_at = $4, merged_commit = $5 \
                     WHERE project_id = $1 AND user_id = $2",
                )
                .bind(&project.id)
                .bind(&sb.user_id)
                .bind(&auth.user.id)
                .bind(now_ms())
                .bind(&info.id)
                .execute(&mut *tx)
                .await?;
                let summary = format!("merged {} into {} ({})", sb.branch, default.name, mode_text.replace('_', " "));
                writeback::activity(
                    &mut tx,
                    &project.id,
                    Some(&auth.user.id),
                    "change.merged",
                    &summary,
                    Some(&sb.branch),
                    Some(&info.id),
                )
                .await?;
                let event = Event::new("change.merge", Outcome::Allowed, Actor::of(auth), origin)
                    .project(&project.id)
                    .target("branch", &sb.branch)
                    .intent(json!({"mode": mode_text, "into": default.name, "source": head, "commit": info.id}));
                audit::record(&mut tx, event).await?;
                tx.commit().await?;
                Ok(info.id)
            }
            Err(e) => {
                let error = git_error(e);
                let event = Event::new("change.merge", Outcome::Denied, Actor::of(auth), origin)
                    .project(&project.id)
                    .target("branch", &sb.branch)
                    .intent(json!({"mode": mode_text, "into": default.name, "reason": error.to_string()}));
                audit::record_alone(&state.db, event).await?;
                Err(error)
            }
        }
    }
    .await;
    default_lock.release(&state.db).await?;
    session_lock.release(&state.db).await?;
    let commit = result?;
    // The default branch moved: read it again and tell open pages.
    rescan(state, project).await;
    Ok(commit)
}

/// Close a change request without merging (the branch stays; a new save reopens it).
pub async fn close(
    state: &AppState,
    auth: &Authenticated,
    origin: &Origin,
    on: &super::Granted<MergeChanges>,
    handle: &str,
) -> AppResult<()> {
    let project = on.project();
    let mut tx = state.db.begin().await?;
    let sb = writeback::branch_of(&mut tx, &project.id, handle).await?.ok_or(AppError::NotFound)?;
    if sb.review != "open" {
        return Err(AppError::Conflict(format!("the change request of {} is not open", sb.branch)));
    }
    sqlx::query(
        "UPDATE session_branches SET review = 'closed', review_by = $3, review_at = $4 WHERE project_id = $1 AND user_id = $2",
    )
    .bind(&project.id)
    .bind(&sb.user_id)
    .bind(&auth.user.id)
    .bind(now_ms())
    .execute(&mut *tx)
    .await?;
    let summary = format!("closed the change request of {}", sb.branch);
    writeback::activity(&mut tx, &project.id, Some(&auth.user.id), "change.closed", &summary, Some(&sb.branch), None)
        .await?;
    let event = Event::new("change.close", Outcome::Allowed, Actor::of(auth), origin)
        .project(&project.id)
        .target("branch", &sb.branch);
    audit::record(&mut tx, event).await?;
    tx.commit().await?;
    Ok(())
}

/// Re-scan after the default branch moved and tell open pages what changed. Errors are logged:
/// the merge itself already happened.
async fn rescan(state: &AppState, project: &Project) {
    let result = async {
        let provider = state.repos.get(project).await?;
        let report = super::scan::refresh(&state.db, provider.as_ref(), project).await?;
        announce_scan(state, project, &report).await
    };
    if let Err(e) = result.await {
        tracing::warn!(event_type = "rescan_failed", project_id = %project.id, error = %e, "re-scan after a merge failed");
    }
}

/// Tell open editors and pages about specs the default branch changed.
pub async fn announce_scan(state: &AppState, project: &Project, report: &super::scan::ScanReport) -> AppResult<()> {
    for (path, synced) in &report.changed_specs {
        let (kind, version, sha) = match synced {
            Some((v, sha)) => ("spec_saved", *v, sha.clone()),
            None => ("default_updated", 0, String::new()),
        };
        let event = super::events::ProjectEvent {
            project_id: project.id.clone(),
            kind: kind.into(),
            path: path.clone(),
            version,
            content_sha: sha,
            by_name: format!("the {} branch", report_branch(project)),
            by_handle: String::new(),
            state: None,
        };
        state.events.publish(&state.db, event).await?;
    }
    Ok(())
}

fn report_branch(project: &Project) -> String {
    project.default_branch.clone().unwrap_or_else(|| "default".into())
}

/// Compare every local project's default branch (archived ones excepted) with its last scan;
/// re-scan those that moved (a push or a merge outside Arno). One replica does each project (a
/// lock), the others skip it. Hosted projects cost requests: webhooks and reconciliation
/// ([`super::sync`]) watch them instead.
pub async fn watch_default_branches(state: &AppState) {
    let projects: Vec<(String,)> =
        match sqlx::query_as("SELECT id FROM projects WHERE state <> 'archived' AND provider = 'local'")
            .fetch_all(state.db.pool())
            .await
        {
            Ok(rows) => rows,
            Err(e) => {
                tracing::warn!(event_type = "watch_failed", error = %e, "could not list projects to watch");
                return;
            }
        };
    for (id,) in projects {
        if let Err(e) = watch_one(state, &id).await {
            tracing::warn!(event_type = "watch_failed", project_id = %id, error = %e, "could not check a default branch");
        }
    }
}

pub(crate) async fn watch_one(state: &AppState, id: &str) -> AppResult<()> {
    let project = {
        let mut conn = state.db.pool().acquire().await?;
        store::find(&mut conn, id).await?
    };
    let Some(project) = project.filter(|p| p.state != ProjectState::Archived) else { return Ok(()) };
    let provider = state.repos.get(&project).await?;
    let head = provider.default_branch().await.map_err(git_error)?;
    if head.commit == project.scanned_commit {
        return Ok(());
    }
    let Some(lock) = Lock::try_acquire(&state.db, &format!("scan:{id}"), LOCK_TTL).await? else { return Ok(()) };
    let result = async {
        // Another replica may have scanned it a moment ago.
        let fresh = {
            let mut conn = state.db.pool().acquire().await?;
            store::find(&mut conn, id).await?.ok_or(AppError::NotFound)?
        };
        if fresh.scanned_commit == head.commit {
            return Ok(());
        }
        let report = super::scan::refresh(&state.db, provider.as_ref(), &fresh).await?;
        let mut tx = state.db.begin().await?;
        let summary = format!(
            "{} moved to {}; {} spec(s) re-read",
            head.name,
            head.commit.as_deref().map_or("nothing", |c| c.get(..12).unwrap_or(c)),
            report.parsed
        );
        writeback::activity(&mut tx, id, None, "default.moved", &summary, Some(&head.name), head.commit.as_deref())
            .await?;
        tx.commit().await?;
        announce_scan(state, &fresh, &report).await
    }
    .await;
    lock.release(&state.db).await?;
    result
}

// ---------------------------------------------------------------------------------------------
// API

/// `GET /api/v1/projects/{id}/changes`: the project's session branches (their write-back state
/// and change request) and its activity list.
#[utoipa::path(get, path = "/api/v1/projects/{id}/changes", tag = "changes",
    security(("token" = []), ("session" = [])),
    params(("id" = String, Path, description = "Project id or slug")),
    responses((status = 200, description = "`{\"branches\": [SessionBranch], \"activity\": [Activity]}`"),
        (status = 404, body = ErrorBody)))]
pub async fn list_changes(
    State(state): State<AppState>,
    ApiUser(auth): ApiUser,
    ctx: RequestContext,
    Path(id): Path<String>,
) -> AppResult<Json<serde_json::Value>> {
    let (project, _) = super::authorize::<View>(&state.db, &auth, &Origin::from(&ctx), &id, "project.view").await?;
    let mut conn = state.db.pool().acquire().await?;
    let branches = writeback::branches(&mut conn, &project.id).await?;
    let activity = writeback::recent_activity(&mut conn, &project.id, 100).await?;
    let activity: Vec<serde_json::Value> = activity
        .into_iter()
        .map(|a| {
            let at = a.at_text();
            let mut v = serde_json::to_value(a).unwrap_or_default();
            v["at"] = json!(at);
            v
        })
        .collect();
    Ok(Json(json!({"branches": branches, "activity": activity})))
}

/// `GET /api/v1/projects/{id}/changes/{handle}`: one session branch against the default branch.
#[utoipa::path(get, path = "/api/v1/projects/{id}/changes/{handle}", tag = "changes",
    security(("token" = []), ("session" = [])),
    params(("id" = String, Path, description = "Project id or slug"), ("handle" = String, Path, description = "The branch owner's handle")),
    responses((status = 200, body = ChangeRequest), (status = 404, body = ErrorBody)))]
pub async fn show_change(
    State(state): State<AppState>,
    ApiUser(auth): ApiUser,
    ctx: RequestContext,
    Path((id, handle)): Path<(String, String)>,
) -> AppResult<Json<ChangeRequest>> {
    let (project, _) = super::authorize::<View>(&state.db, &auth, &Origin::from(&ctx), &id, "project.view").await?;
    Ok(Json(load_change(&state, &project, &handle, false).await?))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MergeBody {
    /// For `merge`: `fast_forward` or `merge_commit` (default).
    #[serde(default)]
    pub mode: Option<MergeMode>,
}

/// `POST /api/v1/projects/{id}/changes/{handle}/{action}`: `merge` (Makers), `close` (Makers),
/// `take-theirs` (the branch owner, when the branch diverged: their unwritten text becomes backup
/// versions and Arno adopts the branch as it is).
#[utoipa::path(post, path = "/api/v1/projects/{id}/changes/{handle}/{action}", tag = "changes",
    security(("token" = []), ("session" = [])),
    params(("id" = String, Path, description = "Project id or slug"), ("handle" = String, Path, description = "The branch owner's handle"),
        ("action" = String, Path, description = "`merge`, `close` or `take-theirs`")),
    request_body = MergeBody,
    responses((status = 200, description = "`{\"commit\"}` (merge), `{}` (close), `{\"backups\"}` (take-theirs)"),
        (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody, description = "Conflicting changes, a branch that moved, nothing to merge")))]
pub async fn change_action(
    State(state): State<AppState>,
    ApiUser(auth): ApiUser,
    ctx: RequestContext,
    Path((id, handle, action)): Path<(String, String, String)>,
    body: axum::body::Bytes,
) -> AppResult<Response> {
    let origin = Origin::from(&ctx);
    // The body is optional (close and take-theirs need none).
    let body: MergeBody = if body.iter().all(u8::is_ascii_whitespace) {
        MergeBody { mode: None }
    } else {
        serde_json::from_slice(&body).map_err(|e| AppError::validation(format!("invalid JSON body: {e}")))?
    };
    let value = act(&state, &auth, &origin, &id, &handle, &action, body.mode).await?;
    Ok((StatusCode::OK, Json(value)).into_response())
}

async fn act(
    state: &AppState,
    auth: &Authenticated,
    origin: &Origin,
    id: &str,
    handle: &str,
    action: &str,
    mode: Option<MergeMode>,
) -> AppResult<serde_json::Value> {
    match action {
        "merge" => {
            let on = super::authorize_on::<MergeChanges>(&state.db, auth, origin, id, "change.merge").await?;
            let commit = merge(state, auth, origin, &on, handle, mode.unwrap_or(MergeMode::MergeCommit)).await?;
            Ok(json!({"commit": commit}))
        }
        "close" => {
            let on = super::authorize_on::<MergeChanges>(&state.db, auth, origin, id, "change.close").await?;
            close(state, auth, origin, &on, handle).await?;
            Ok(json!({}))
        }
        "take-theirs" => {
            let on = super::authorize_on::<EditSpecs>(&state.db, auth, origin, id, "writeback.take_theirs").await?;
            let project = on.project();
            if handle != auth.user.handle {
                let branch = writeback::branch_for(handle);
                let event = Event::new("writeback.take_theirs", Outcome::Denied, Actor::of(auth), origin)
                    .project(&project.id)
                    .target("branch", &branch)
                    .intent(json!({"reason": "only the branch's owner decides"}));
                audit::record_alone(&state.db, event).await?;
                return Err(AppError::forbidden("only the owner of a session branch can discard its unwritten text"));
            }
            let backups = writeback::take_theirs(state, auth, origin, &on).await?;
            Ok(json!({"backups": backups}))
        }
        _ => Err(AppError::field("action", "must be merge, close or take-theirs")),
    }
}

// ---------------------------------------------------------------------------------------------
// Pages

#[derive(Template)]
#[template(path = "changes.html")]
struct ChangesPage {
    page: PageContext,
    project: Project,
    branches: Vec<SessionBranch>,
    activity: Vec<Activity>,
}

/// `GET /projects/{slug}/changes`
pub async fn changes_page(
    State(state): State<AppState>,
    PageUser(auth): PageUser,
    ctx: RequestContext,
    Path(slug): Path<String>,
) -> AppResult<Response> {
    let (project, _) = super::authorize::<View>(&state.db, &auth, &Origin::from(&ctx), &slug, "project.view").await?;
    let mut conn = state.db.pool().acquire().await?;
    let branches = writeback::branches(&mut conn, &project.id).await?;
    let activity = writeback::recent_activity(&mut conn, &project.id, 50).await?;
    drop(conn);
    let html =
        render(&ChangesPage { page: PageContext::for_user(&auth, &state.keys.csrf), project, branches, activity })?;
    Ok(html.into_response())
}

#[derive(Template)]
#[template(path = "change.html")]
struct ChangePage {
    page: PageContext,
    project: Project,
    change: ChangeRequest,
    can_merge: bool,
    is_owner: bool,
    error: Option<String>,
}

async fn change_page(
    state: &AppState,
    auth: &Authenticated,
    project: &Project,
    role: Option<access::ProjectRole>,
    handle: &str,
    error: Option<String>,
) -> AppResult<Response> {
    let change = load_change(state, project, handle, true).await?;
    let facts = project.facts(role);
    let status = if error.is_some() { StatusCode::CONFLICT } else { StatusCode::OK };
    let html = render(&ChangePage {
        page: PageContext::for_user(auth, &state.keys.csrf),
        // A hosted repository merges on the provider (its reviews and protections apply).
        can_merge: access::decide::<MergeChanges>(&auth.user, &facts).is_ok() && project.git_connection.is_none(),
        is_owner: change.branch.user_handle == auth.user.handle
            && access::decide::<EditSpecs>(&auth.user, &facts).is_ok(),
        project: project.clone(),
        change,
        error,
    })?;
    Ok((status, html).into_response())
}

/// `GET /projects/{slug}/changes/{handle}`
pub async fn change(
    State(state): State<AppState>,
    PageUser(auth): PageUser,
    ctx: RequestContext,
    Path((slug, handle)): Path<(String, String)>,
) -> AppResult<Response> {
    let (project, grant) =
        super::authorize::<View>(&state.db, &auth, &Origin::from(&ctx), &slug, "project.view").await?;
    change_page(&state, &auth, &project, grant.role(), &handle, None).await
}

#[derive(Debug, Deserialize)]
pub struct ActionForm {
    /// For merge: `fast_forward` or `merge_commit`.
    mode: Option<MergeMode>,
}

/// `POST /projects/{slug}/changes/{handle}/{action}`
pub async fn change_submit(
    State(state): State<AppState>,
    PageUser(auth): PageUser,
    ctx: RequestContext,
    Path((slug, handle, action)): Path<(String, String, String)>,
    PageForm(form): PageForm<ActionForm>,
) -> AppResult<Response> {
    let origin = Origin::from(&ctx);
    let (project, grant) = super::authorize::<View>(&state.db, &auth, &origin, &slug, "project.view").await?;
    match act(&state, &auth, &origin, &project.id, &handle, &action, form.mode).await {
        Ok(_) => Ok(Redirect::to(&format!("/projects/{}/changes/{}", project.slug, handle)).into_response()),
        Err(e @ AppError::Conflict(_)) => {
            change_page(&state, &auth, &project, grant.role(), &handle, Some(e.to_string())).await
        }
        Err(e) => Err(e),
    }
}
