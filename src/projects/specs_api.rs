//! The spec editor's API: read a spec, save it under the versioned save contract, list its
//! versions, view one, keep a backup, restore. `{*path}` is the file's path in the repository;
//! the suffixes `/versions`, `/versions/{n}`, `/versions/{n}/restore` and `/backups` address its
//! history (spec paths end in `.md`, so they cannot be mistaken for one).

use std::sync::LazyLock;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, Opts};
use serde::Deserialize;
use serde_json::json;
use utoipa::ToSchema;
use utoipa_axum::routes;

use super::impact::{self, Impact};
use super::model::Project;
use super::store;
use crate::app::AppState;
use crate::audit::{self, Actor, Event, Origin, Outcome};
use crate::auth::access::{EditSpecs, View};
use crate::auth::{ApiUser, Authenticated};
use crate::error::{AppError, AppResult, ErrorBody};
use crate::http::RequestContext;
use crate::http::api::{ApiJson, ApiRouter};
use crate::specs::SpecFile;
use crate::specs::versions::{self, Current, Save, Saved, VersionInfo};

/// `md_save_total{result}`: saves by outcome (`saved`, `fast_forward`, `conflict`).
pub static SAVE_TOTAL: LazyLock<IntCounterVec> = LazyLock::new(|| {
    IntCounterVec::new(Opts::new("md_save_total", "Spec saves, by result"), &["result"]).expect("valid metric")
});
/// `md_save_duration_seconds`: the save path, from request to commit.
pub static SAVE_DURATION: LazyLock<HistogramVec> = LazyLock::new(|| {
    HistogramVec::new(
        HistogramOpts::new("md_save_duration_seconds", "Spec save latency, request to durable commit")
            .buckets(vec![0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0]),
        &["result"],
    )
    .expect("valid metric")
});

pub fn api() -> ApiRouter {
    ApiRouter::new().routes(routes!(read_spec, save_spec, spec_action, super::removal::delete_spec))
}

/// What a `{*path}` addresses.
enum Target {
    File(String),
    Versions(String),
    Version(String, i64),
    Restore(String, i64),
    /// A version's prose rendered as sanitized HTML (the editor's live preview).
    Preview(String, i64),
    Backups(String),
    /// What a proposed text would break on the project's screens.
    Impact(String),
}

fn target(raw: &str) -> AppResult<Target> {
    let parsed = parse_target(raw);
    // Arno does not read trees beyond these limits, so a spec saved there could never be read
    // back from git (and would reach every walk of the branch it is written to). Said plainly
    // rather than as "not a spec path".
    let path = parsed.as_ref().map_or(raw.trim_start_matches('/'), file_of);
    if let Some(problem) = crate::git::path_limit_problem(path) {
        return Err(AppError::field("path", problem));
    }
    parsed
}

fn parse_target(raw: &str) -> AppResult<Target> {
    let raw = raw.trim_start_matches('/');
    let bad = || AppError::field("path", "must be a spec path ending in .md");
    if let Some(file) = raw.strip_suffix("/versions") {
        return Ok(Target::Versions(file.to_owned()));
    }
    if let Some(file) = raw.strip_suffix("/backups") {
        return Ok(Target::Backups(file.to_owned()));
    }
    if let Some(file) = raw.strip_suffix(".md/impact") {
        let file = format!("{file}.md");
        return if crate::git::valid_path(&file) { Ok(Target::Impact(file)) } else { Err(bad()) };
    }
    if let Some((file, rest)) = raw.rsplit_once(".md/versions/") {
        let file = format!("{file}.md");
        return match rest.split_once('/') {
            Some((n, "restore")) => Ok(Target::Restore(file, n.parse().map_err(|_| bad())?)),
            Some((n, "preview")) => Ok(Target::Preview(file, n.parse().map_err(|_| bad())?)),
            None => Ok(Target::Version(file, rest.parse().map_err(|_| bad())?)),
            _ => Err(bad()),
        };
    }
    if raw.ends_with(".md") && crate::git::valid_path(raw) { Ok(Target::File(raw.to_owned())) } else { Err(bad()) }
}

/// A `{*path}` that must be the spec file itself (no suffix).
pub(crate) fn spec_file(raw: &str) -> AppResult<String> {
    match target(raw)? {
        Target::File(file) => Ok(file),
        _ => Err(AppError::field("path", "must be the spec's own path")),
    }
}

fn file_of(t: &Target) -> &str {
    match t {
        Target::File(f)
        | Target::Versions(f)
        | Target::Version(f, _)
        | Target::Restore(f, _)
        | Target::Preview(f, _)
        | Target::Backups(f)
        | Target::Impact(f) => f,
    }
}

/// The spec as scanned from git, if the scan has it, and whether the path is a spec path at all.
pub(crate) async fn scanned(state: &AppState, project: &Project, path: &str) -> AppResult<(bool, Option<String>)> {
    let mut conn = state.db.pool().acquire().await?;
    let raw = store::component_raw(&mut conn, &project.id, path).await?;
    Ok((project.repo_config().is_spec_path(path), raw))
}

/// `GET /api/v1/projects/{id}/specs/{*path}`: the spec (`{"path","content","version","content_sha"}`),
/// or with `/versions` its history, with `/versions/{n}` one version, with `/versions/{n}/preview`
/// that version's prose as sanitized HTML and its problems.
#[utoipa::path(get, path = "/api/v1/projects/{id}/specs/{*path}", tag = "specs",
    security(("token" = []), ("session" = [])),
    params(("id" = String, Path, description = "Project id or slug"),
        ("path" = String, Path, description = "Spec path, e.g. Design_system/Button.md; append /versions, /versions/{n} or /versions/{n}/preview")),
    responses((status = 200, body = Current), (status = 404, body = ErrorBody)))]
pub async fn read_spec(
    State(state): State<AppState>,
    ApiUser(auth): ApiUser,
    ctx: RequestContext,
    Path((id, path)): Path<(String, String)>,
) -> AppResult<Response> {
    let t = target(&path)?;
    let (project, _) = super::authorize::<View>(&state.db, &auth, &Origin::from(&ctx), &id, "project.view").await?;
    let (_, git) = scanned(&state, &project, file_of(&t)).await?;
    let mut conn = state.db.pool().acquire().await?;
    let preview = matches!(t, Target::Preview(..));
    match t {
        Target::File(file) => {
            let current =
                versions::current(&mut conn, &project.id, &file, git.as_deref()).await?.ok_or(AppError::NotFound)?;
            Ok(Json(current).into_response())
        }
        Target::Versions(file) => {
            let mut list = versions::list(&mut conn, &project.id, &file).await?;
            if list.is_empty() {
                // Never saved: the only version is the one from git.
                let current = versions::current(&mut conn, &project.id, &file, git.as_deref())
                    .await?
                    .ok_or(AppError::NotFound)?;
                list.push(VersionInfo {
                    version: 1,
                    kind: "git".into(),
                    parent_version: None,
                    content_sha: current.content_sha,
                    saved_by: None,
                    session_id: None,
                    label: None,
                    saved_at: project.scanned_at.unwrap_or_default(),
                    deleted: 0,
                });
            }
            let items: Vec<_> = list
                .iter()
                .map(|v| {
                    json!({"version": v.version, "kind": v.kind, "parent_version": v.parent_version,
                    "content_sha": v.content_sha, "saved_by": v.saved_by, "session_id": v.session_id,
                    "label": v.label, "saved_at": v.saved_at_text(), "deleted": v.is_deleted()})
                })
                .collect();
            Ok(Json(items).into_response())
        }
        Target::Version(file, n) | Target::Preview(file, n) => {
            let content = match versions::content_of(&mut conn, &project.id, &file, n).await? {
                Some(c) => c,
                None if n == 1 => git.ok_or(AppError::NotFound)?,
                None => return Err(AppError::NotFound),
            };
            drop(conn);
            if preview {
                let problems = problems(&content);
                let (spec_file, text) = (file.clone(), content.clone());
                let html = tokio::task::spawn_blocking(move || {
                    let spec = SpecFile::parse(text.as_str());
                    let component = crate::specs::Component::from_spec(&spec, &spec_file);
                    crate::specs::render::preview_html(&spec.prose(), &component)
                })
                .await
                .map_err(|e| AppError::Internal(e.into()))?
                .map_err(|e| AppError::Internal(e.into()))?;
                return Ok(
                    Json(json!({"path": file, "version": n, "html": html, "problems": problems})).into_response()
                );
            }
            Ok(Json(
                json!({"path": file, "version": n, "content_sha": versions::sha256_hex(&content), "content": content}),
            )
            .into_response())
        }
        Target::Restore(..) | Target::Backups(_) | Target::Impact(_) => Err(AppError::NotFound),
    }
}

#[derive(Deserialize, ToSchema, Clone)]
#[serde(deny_unknown_fields)]
pub struct SaveSpec {
    pub content: String,
    /// The version the text was edited from (0 to create a file git does not have).
    pub base_version: i64,
    /// The editor tab's session; saves of one session fast-forward over each other.
    pub session_id: String,
    /// The person saw the impact analysis of this text and confirmed it (recorded in the audit).
    #[serde(default)]
    pub confirmed_impact: bool,
}

fn problems(content: &str) -> Vec<serde_json::Value> {
    let spec = SpecFile::parse(content);
    spec.diagnostics
        .iter()
        .filter(|d| d.severity == crate::specs::Severity::Error)
        .map(|d| json!({"line": d.line, "message": d.message}))
        .collect()
}

pub(crate) async fn editable(
    state: &AppState,
    auth: &Authenticated,
    ctx: &RequestContext,
    id: &str,
    action: &str,
) -> AppResult<super::Granted<EditSpecs>> {
    super::authorize_on::<EditSpecs>(&state.db, auth, &Origin::from(ctx), id, action).await
}

/// `PUT /api/v1/projects/{id}/specs/{*path}`: save (see docs/api.md for the contract).
#[utoipa::path(put, path = "/api/v1/projects/{id}/specs/{*path}", tag = "specs",
    security(("token" = []), ("session" = [])),
    params(("id" = String, Path, description = "Project id or slug"), ("path" = String, Path, description = "Spec path")),
    request_body = SaveSpec,
    responses((status = 200, description = "`{\"version\",\"content_sha\",\"fast_forward\",\"problems\"}`"),
        (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody, description = "details: current_version, current_content, yours"),
        (status = 413, body = ErrorBody)))]
pub async fn save_spec(
    State(state): State<AppState>,
    ApiUser(auth): ApiUser,
    ctx: RequestContext,
    Path((id, path)): Path<(String, String)>,
    ApiJson(body): ApiJson<SaveSpec>,
) -> AppResult<Response> {
    let Target::File(file) = target(&path)? else { return Err(AppError::field("path", "save to the spec's own path")) };
    let on = editable(&state, &auth, &ctx, &id, "spec.save").await?;
    let outcome = save_as(&state, &auth, &Origin::from(&ctx), &on, &file, &body).await?;
    match outcome {
        Saved::Saved { version, content_sha, fast_forward } => Ok(Json(json!({
            "version": version, "content_sha": content_sha, "fast_forward": fast_forward,
            "problems": problems(&body.content),
        }))
        .into_response()),
        Saved::Conflict { current } => Ok(conflict(&current, &body.content)),
    }
}

/// A save by an editor who holds the EditSpecs capability on `project` (checked by the caller):
/// the contract, its audit record, metrics and the live event. Shared by the API and the page.
pub(crate) async fn save_as(
    state: &AppState,
    auth: &Authenticated,
    origin: &Origin,
    on: &super::Granted<EditSpecs>,
    file: &str,
    body: &SaveSpec,
) -> AppResult<Saved> {
    let project = on.project();
    let started = std::time::Instant::now();
    let (is_spec, git) = scanned(state, project, file).await?;
    if !is_spec {
        return Err(AppError::field("path", "is not under the project's spec folder (componentsMd)"));
    }
    if body.session_id.len() > 100 {
        return Err(AppError::field("session_id", "at most 100 characters"));
    }
    super::ensure_room(&state.config, project, body.content.len())?;
    let impact = impact_of(state, project, file, git.as_deref(), &body.content, false).await?;
    let save = Save {
        project_id: &project.id,
        path: file,
        content: &body.content,
        base_version: body.base_version,
        session_id: &body.session_id,
        user_id: &auth.user.id,
    };
    let mut tx = state.db.begin().await?;
    let outcome = versions::save(&mut tx, state.db.backend(), &save, git.as_deref()).await?;
    let result = match &outcome {
        Saved::Saved { version, fast_forward, content_sha } => {
            let event = Event::new("spec.save", Outcome::Allowed, Actor::of(auth), origin)
                .project(&project.id)
                .target("spec", file)
                .intent(save_intent(*version, body, *fast_forward, impact.as_ref()));
            audit::record(&mut tx, event).await?;
            let schedule = super::writeback::Schedule::of(&state.config);
            let user = &auth.user;
            super::writeback::note_save(
                &mut tx,
                schedule,
                &project.id,
                &user.id,
                &user.handle,
                file,
                *version,
                Some(&body.content),
            )
            .await?;
            let live = saved_event(auth, &project.id, file, *version, content_sha);
            state.events.within(&mut tx, state.db.backend(), &live).await?;
            tx.commit().await?;
            state.events.after_commit(state.db.backend(), live);
            if *fast_forward { "fast_forward" } else { "saved" }
        }
        Saved::Conflict { current } => {
            tx.rollback().await?;
            let event = Event::new("spec.save", Outcome::Denied, Actor::of(auth), origin)
                .project(&project.id)
                .target("spec", file)
                .intent(json!({"reason": "conflict", "base_version": body.base_version, "current_version": current.version}));
            audit::record_alone(&state.db, event).await?;
            "conflict"
        }
    };
    SAVE_TOTAL.with_label_values(&[result]).inc();
    SAVE_DURATION.with_label_values(&[result]).observe(started.elapsed().as_secs_f64());
    Ok(outcome)
}

fn save_intent(version: i64, body: &SaveSpec, fast_forward: bool, impact: Option<&Impact>) -> serde_json::Value {
    let mut intent = json!({"version": version, "base_version": body.base_version, "fast_forward": fast_forward});
    // What the save removed or retyped that the workflow uses, and whether the person saw it first.
    if let Some(i) = impact.filter(|i| !i.changes.is_empty()) {
        intent["impact"] = json!({
            "confirmed": body.confirmed_impact, "changes": i.changes.len(), "screens": i.counts.screens,
            "instances": i.counts.instances, "values": i.counts.values, "edges": i.counts.edges,
        });
    }
    intent
}

/// What replacing the current text of `file` by `proposed` does to the project's screens; `None`
/// for a file Arno has no text of. Unless `always`, the workflow is only read when the text removes
/// or retypes a prop or removes an event (the usage counts are then empty).
pub(crate) async fn impact_of(
    state: &AppState,
    project: &Project,
    file: &str,
    git: Option<&str>,
    proposed: &str,
    always: bool,
) -> AppResult<Option<Impact>> {
    let current = {
        let mut conn = state.db.pool().acquire().await?;
        versions::current(&mut conn, &project.id, file, git).await?
    };
    let Some(current) = current else { return Ok(None) };
    let proposed = proposed.to_owned();
    let file = file.to_owned();
    let parse = move || {
        let read = |text: &str| crate::specs::Component::from_spec(&SpecFile::parse(text), &file);
        (read(&current.content), read(&proposed))
    };
    let (before, after) = tokio::task::spawn_blocking(parse).await.map_err(|e| AppError::Internal(e.into()))?;
    if !always && !impact::may_break(&before, &after) {
        return Ok(Some(impact::analyze(&before, &after, &serde_json::Value::Null)));
    }
    let room = state.rooms.open(&project.id).await?;
    let workflow = room.content().await?;
    let analysis = tokio::task::spawn_blocking(move || impact::analyze(&before, &after, &workflow))
        .await
        .map_err(|e| AppError::Internal(e.into()))?;
    Ok(Some(analysis))
}

/// The current text of a spec for a reader (the saved version, or the file from git).
pub(crate) async fn current_of(state: &AppState, project: &Project, file: &str) -> AppResult<Option<Current>> {
    let (_, git) = scanned(state, project, file).await?;
    let mut conn = state.db.pool().acquire().await?;
    versions::current(&mut conn, &project.id, file, git.as_deref()).await
}

/// Keep `content` as a backup version of `file` (the editor's "discard mine").
pub(crate) async fn backup_as(
    state: &AppState,
    auth: &Authenticated,
    origin: &Origin,
    on: &super::Granted<EditSpecs>,
    file: &str,
    content: &str,
    session_id: &str,
) -> AppResult<i64> {
    let project = on.project();
    let (_, git) = scanned(state, project, file).await?;
    super::ensure_room(&state.config, project, content.len())?;
    let save =
        Save { project_id: &project.id, path: file, content, base_version: 0, session_id, user_id: &auth.user.id };
    let label = "kept from a conflict";
    let mut tx = state.db.begin().await?;
    let v =
        versions::backup(&mut tx, state.db.backend(), &save, label, git.as_deref()).await?.ok_or(AppError::NotFound)?;
    let event = Event::new("spec.backup", Outcome::Allowed, Actor::of(auth), origin)
        .project(&project.id)
        .target("spec", file)
        .intent(json!({"version": v, "label": label}));
    audit::record(&mut tx, event).await?;
    tx.commit().await?;
    Ok(v)
}

pub(crate) fn saved_event(
    auth: &Authenticated,
    project_id: &str,
    path: &str,
    version: i64,
    sha: &str,
) -> super::events::ProjectEvent {
    super::events::ProjectEvent {
        project_id: project_id.to_owned(),
        kind: "spec_saved".into(),
        path: path.to_owned(),
        version,
        content_sha: sha.to_owned(),
        by_name: auth.user.name.clone(),
        by_handle: auth.user.handle.clone(),
        state: None,
    }
}

pub(crate) fn conflict(current: &Current, yours: &str) -> Response {
    let body = json!({
        "code": "conflict",
        "message": format!("the spec changed since version you edited; it is at version {} now", current.version),
        "details": {"current_version": current.version, "current_content": current.content, "yours": yours,
                    "deleted": current.deleted},
        "trace_id": crate::http::context::current().map(|c| c.trace_id),
    });
    (StatusCode::CONFLICT, Json(body)).into_response()
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SpecAction {
    /// For `/backups`: the text to keep; for `/impact`: the proposed text.
    pub content: Option<String>,
    /// For `/backups` and `/versions/{n}/restore`: the editor tab's session.
    pub session_id: Option<String>,
    /// For `/backups`: a name for the backup.
    pub label: Option<String>,
}

/// `POST /api/v1/projects/{id}/specs/{*path}` with `/backups` (keep text as a backup version,
/// "discard mine"), `/versions/{n}/restore` (make version n current again, as a new version) or
/// `/impact` (what saving a proposed text would break; nothing is saved).
#[utoipa::path(post, path = "/api/v1/projects/{id}/specs/{*path}", tag = "specs",
    security(("token" = []), ("session" = [])),
    params(("id" = String, Path, description = "Project id or slug"),
        ("path" = String, Path, description = "Spec path followed by /backups, /versions/{n}/restore or /impact")),
    request_body = SpecAction,
    responses((status = 201, description = "`{\"version\"}`"),
        (status = 200, body = Impact, description = "For `/impact`: the changes that reach the workflow and the usage of each prop and event"),
        (status = 400, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn spec_action(
    State(state): State<AppState>,
    ApiUser(auth): ApiUser,
    ctx: RequestContext,
    Path((id, path)): Path<(String, String)>,
    ApiJson(body): ApiJson<SpecAction>,
) -> AppResult<Response> {
    let t = target(&path)?;
    let action = match &t {
        Target::Backups(_) => "spec.backup",
        Target::Restore(..) => "spec.restore",
        Target::Impact(file) => return impact_api(&state, &auth, &ctx, &id, file, body).await,
        _ => return Err(AppError::field("path", "POST to …/backups, …/versions/{n}/restore or …/impact")),
    };
    let session_id = body.session_id.as_deref().ok_or_else(|| AppError::field("session_id", "is required"))?;
    let on = editable(&state, &auth, &ctx, &id, action).await?;
    let project = on.project();
    let (_, git) = scanned(&state, project, file_of(&t)).await?;
    let origin = Origin::from(&ctx);
    let mut tx = state.db.begin().await?;
    let mut live = None;
    let (version, intent) = match &t {
        Target::Backups(file) => {
            let content =
                body.content.as_deref().ok_or_else(|| AppError::field("content", "is required for a backup"))?;
            super::ensure_room(&state.config, project, content.len())?;
            let label = body.label.as_deref().unwrap_or("kept from a conflict");
            let save = Save {
                project_id: &project.id,
                path: file,
                content,
                base_version: 0,
                session_id,
                user_id: &auth.user.id,
            };
            let v = versions::backup(&mut tx, state.db.backend(), &save, label, git.as_deref())
                .await?
                .ok_or(AppError::NotFound)?;
            (v, json!({"version": v, "label": label}))
        }
        Target::Restore(file, n) => {
            let (v, event) = restore_in(&state, &mut tx, &auth, project, file, git.as_deref(), *n, session_id).await?;
            live = Some(event);
            (v, json!({"version": v, "restored": n}))
        }
        _ => unreachable!("checked above"),
    };
    let event = Event::new(action, Outcome::Allowed, Actor::of(&auth), &origin)
        .project(&project.id)
        .target("spec", file_of(&t))
        .intent(intent);
    audit::record(&mut tx, event).await?;
    tx.commit().await?;
    if let Some(event) = live {
        state.events.after_commit(state.db.backend(), event);
    }
    Ok((StatusCode::CREATED, Json(json!({"version": version}))).into_response())
}

/// Make version `n` current again as a new version, in `tx` (audited by the caller): written back
/// like a save; returns the new version and the live event to send after commit.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn restore_in(
    state: &AppState,
    tx: &mut crate::db::Tx,
    auth: &Authenticated,
    project: &Project,
    file: &str,
    git: Option<&str>,
    n: i64,
    session_id: &str,
) -> AppResult<(i64, super::events::ProjectEvent)> {
    // Version 1 (the file from git) gets its row first if nobody saved yet.
    versions::materialize(tx, state.db.backend(), &project.id, file, git).await?;
    let (v, sha) = versions::restore(tx, state.db.backend(), &project.id, file, n, &auth.user.id, session_id)
        .await?
        .ok_or(AppError::NotFound)?;
    let restored = versions::content_of(tx, &project.id, file, v).await?.unwrap_or_default();
    let schedule = super::writeback::Schedule::of(&state.config);
    let user = &auth.user;
    super::writeback::note_save(tx, schedule, &project.id, &user.id, &user.handle, file, v, Some(&restored)).await?;
    let event = saved_event(auth, &project.id, file, v, &sha);
    state.events.within(tx, state.db.backend(), &event).await?;
    Ok((v, event))
}

/// Restore version `n` of `file` for an editor holding EditSpecs (the editor page's Restore).
pub(crate) async fn restore_as(
    state: &AppState,
    auth: &Authenticated,
    origin: &Origin,
    on: &super::Granted<EditSpecs>,
    file: &str,
    n: i64,
    session_id: &str,
) -> AppResult<i64> {
    let project = on.project();
    let (_, git) = scanned(state, project, file).await?;
    let mut tx = state.db.begin().await?;
    let (v, live) = restore_in(state, &mut tx, auth, project, file, git.as_deref(), n, session_id).await?;
    let event = Event::new("spec.restore", Outcome::Allowed, Actor::of(auth), origin)
        .project(&project.id)
        .target("spec", file)
        .intent(json!({"version": v, "restored": n}));
    audit::record(&mut tx, event).await?;
    tx.commit().await?;
    state.events.after_commit(state.db.backend(), live);
    Ok(v)
}

/// `POST …/specs/{*path}/impact` `{"content"}`: what saving this text would break (read-only, for
/// anyone who may view the project; the spec must exist).
async fn impact_api(
    state: &AppState,
    auth: &Authenticated,
    ctx: &RequestContext,
    id: &str,
    file: &str,
    body: SpecAction,
) -> AppResult<Response> {
    let (project, _) = super::authorize::<View>(&state.db, auth, &Origin::from(ctx), id, "project.view").await?;
    let content = body.content.ok_or_else(|| AppError::field("content", "is required: the proposed text"))?;
    if body.session_id.is_some() || body.label.is_some() {
        return Err(AppError::field("content", "an impact request takes only `content`"));
    }
    super::ensure_room(&state.config, &project, content.len())?;
    let (_, git) = scanned(state, &project, file).await?;
    let impact = impact_of(state, &project, file, git.as_deref(), &content, true).await?.ok_or(AppError::NotFound)?;
    Ok(Json(impact).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_and_suffixes() {
        assert!(matches!(target("Design_system/Button.md"), Ok(Target::File(f)) if f == "Design_system/Button.md"));
        assert!(
            matches!(target("Design_system/Button.md/versions"), Ok(Target::Versions(f)) if f == "Design_system/Button.md")
        );
        assert!(matches!(target("D/B.md/versions/7"), Ok(Target::Version(f, 7)) if f == "D/B.md"));
        assert!(matches!(target("D/B.md/versions/7/restore"), Ok(Target::Restore(f, 7)) if f == "D/B.md"));
        assert!(matches!(target("D/B.md/backups"), Ok(Target::Backups(f)) if f == "D/B.md"));
        assert!(matches!(target("D/B.md/versions/3/preview"), Ok(Target::Preview(f, 3)) if f == "D/B.md"));
        assert!(matches!(target("D/B.md/impact"), Ok(Target::Impact(f)) if f == "D/B.md"));
        for bad in ["D/B.txt", "../x.md", "D/B.md/versions/x", "D/B.md/versions/1/delete", ".git/x.md"] {
            assert!(target(bad).is_err(), "{bad}");
        }
    }
}
