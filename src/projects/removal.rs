//! Deleting a component (docs/projects.md, "Deleting components"): a new version of its spec
//! that has no text and marks the file deleted, under the save contract, audited, written back as
//! the file's removal from the author's session branch. What the deletion leaves without a
//! component on the screens is listed first and confirmed. Restoring the version before it
//! undoes it.
//!
//! The page (`/projects/{slug}/delete/{*path}`) asks, deletes and undoes; the API is
//! `DELETE /api/v1/projects/{id}/specs/{*path}`.

use askama::Template;
use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;
use utoipa::{IntoParams, ToSchema};

use super::impact::{self, Impact};
use super::model::Project;
use super::specs_api::{conflict, current_of, saved_event, scanned};
use crate::app::AppState;
use crate::audit::{self, Actor, Event, Origin, Outcome};
use crate::auth::access::EditSpecs;
use crate::auth::{ApiUser, Authenticated, PageUser};
use crate::error::{AppError, AppResult, ErrorBody};
use crate::http::RequestContext;
use crate::http::api::{ApiJson, PageForm};
use crate::specs::SpecFile;
use crate::specs::versions::{self, Current, Save, Saved};
use crate::ui::{PageContext, render};

/// How a deletion went.
pub enum Removal {
    Deleted {
        version: i64,
        impact: Impact,
    },
    /// The deletion would leave instances without a component and was not confirmed.
    Unconfirmed(Impact),
    /// Someone saved since the version the deletion was based on (or deleted it already).
    Conflict(Current),
}

/// What deleting the current text of `file` leaves without a component on the screens.
async fn impact_of(state: &AppState, project: &Project, file: &str, text: &str) -> AppResult<Impact> {
    let (text, file) = (text.to_owned(), file.to_owned());
    let current =
        tokio::task::spawn_blocking(move || crate::specs::Component::from_spec(&SpecFile::parse(&text), &file))
            .await
            .map_err(|e| AppError::Internal(e.into()))?;
    let room = state.rooms.open(&project.id).await?;
    let workflow = room.content().await?;
    tokio::task::spawn_blocking(move || impact::removal(&current, &workflow))
        .await
        .map_err(|e| AppError::Internal(e.into()))
}

/// Delete `file` for an editor holding EditSpecs on the project: based on `base_version`, in one
/// transaction with its audit record, the write-back and the live event.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn delete_as(
    state: &AppState,
    auth: &Authenticated,
    origin: &Origin,
    on: &super::Granted<EditSpecs>,
    file: &str,
    base_version: i64,
    session_id: &str,
    confirmed: bool,
) -> AppResult<Removal> {
    let project = on.project();
    let (is_spec, git) = scanned(state, project, file).await?;
    if !is_spec {
        return Err(AppError::field("path", "is not under the project's spec folder (componentsMd)"));
    }
    if session_id.is_empty() || session_id.len() > 100 {
        return Err(AppError::field("session_id", "is required, at most 100 characters"));
    }
    // A spec deleted already is a conflict, decided under the row lock (versions::delete).
    let current = current_of(state, project, file).await?.ok_or(AppError::NotFound)?;
    let impact = impact_of(state, project, file, &current.content).await?;
    if impact.needs_confirmation && !confirmed {
        return Ok(Removal::Unconfirmed(impact));
    }
    let save =
        Save { project_id: &project.id, path: file, content: "", base_version, session_id, user_id: &auth.user.id };
    let mut tx = state.db.begin().await?;
    match versions::delete(&mut tx, state.db.backend(), &save, git.as_deref()).await? {
        Saved::Saved { version, content_sha, .. } => {
            let c = impact.counts;
            let event = Event::new("spec.delete", Outcome::Allowed, Actor::of(auth), origin)
                .project(&project.id)
                .target("spec", file)
                .intent(json!({
                    "version": version, "base_version": base_version,
                    "impact": {"confirmed": confirmed, "screens": c.screens, "instances": c.instances,
                               "values": c.values, "edges": c.edges},
                }));
            audit::record(&mut tx, event).await?;
            let user = &auth.user;
            let schedule = super::writeback::Schedule::of(&state.config);
            super::writeback::note_save(&mut tx, schedule, &project.id, &user.id, &user.handle, file, version, None)
                .await?;
            let live = saved_event(auth, &project.id, file, version, &content_sha);
            state.events.within(&mut tx, state.db.backend(), &live).await?;
            tx.commit().await?;
            state.events.after_commit(state.db.backend(), live);
            Ok(Removal::Deleted { version, impact })
        }
        Saved::Conflict { current } => {
            tx.rollback().await?;
            let event = Event::new("spec.delete", Outcome::Denied, Actor::of(auth), origin)
                .project(&project.id)
                .target("spec", file)
                .intent(
                    json!({"reason": "conflict", "base_version": base_version, "current_version": current.version}),
                );
            audit::record_alone(&state.db, event).await?;
            Ok(Removal::Conflict(current))
        }
    }
}

/// Undo the deletion of `file` (the version before it becomes current again, as a new version),
/// checked and done in one transaction with its audit record and the write-back. Returns the new
/// version and the one restored; `None` when the file is not deleted (any more).
pub(crate) async fn undo_as(
    state: &AppState,
    auth: &Authenticated,
    origin: &Origin,
    on: &super::Granted<EditSpecs>,
    file: &str,
    session_id: &str,
) -> AppResult<Option<(i64, i64)>> {
    let project = on.project();
    let mut tx = state.db.begin().await?;
    let Some(restored) = versions::deleted_from(&mut tx, state.db.backend(), &project.id, file).await? else {
        tx.rollback().await?;
        return Ok(None);
    };
    // A deleted file has its row: nothing from git is needed to restore.
    let (version, live) =
        super::specs_api::restore_in(state, &mut tx, auth, project, file, None, restored, session_id).await?;
    let event = Event::new("spec.restore", Outcome::Allowed, Actor::of(auth), origin)
        .project(&project.id)
        .target("spec", file)
        .intent(json!({"version": version, "restored": restored, "undo": "delete"}));
    audit::record(&mut tx, event).await?;
    tx.commit().await?;
    state.events.after_commit(state.db.backend(), live);
    Ok(Some((version, restored)))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DeleteSpec {
    /// The version the deletion is based on (the current one).
    pub base_version: i64,
    /// The client's editing session (as for saves).
    pub session_id: String,
    /// The caller saw the impact (`…/impact` or a 409 `impact`) and deletes anyway.
    #[serde(default)]
    pub confirmed_impact: bool,
}

/// The same fields in the query, for clients that send no body with `DELETE`.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DeleteQuery {
    /// As `base_version` in the body.
    base_version: Option<String>,
    /// As `session_id` in the body.
    session_id: Option<String>,
    /// As `confirmed_impact` in the body: `true` or `false`.
    confirmed_impact: Option<String>,
}

impl DeleteQuery {
    fn is_empty(&self) -> bool {
        self.base_version.is_none() && self.session_id.is_none() && self.confirmed_impact.is_none()
    }

    /// The deletion the request asks for: from its body or from its query, never from both.
    fn with_body(self, body: Option<DeleteSpec>) -> AppResult<DeleteSpec> {
        match body {
            Some(_) if !self.is_empty() => {
                Err(AppError::validation("send the deletion's fields in the JSON body or in the query, not both"))
            }
            Some(body) => Ok(body),
            None => {
                let Some(base) = self.base_version else {
                    return Err(AppError::field("base_version", "is required (in a JSON body or as ?base_version=)"));
                };
                let base_version = base.parse().map_err(|_| AppError::field("base_version", "is a version number"))?;
                let confirmed_impact = match self.confirmed_impact.as_deref() {
                    None | Some("false") => false,
                    Some("true") => true,
                    Some(_) => return Err(AppError::field("confirmed_impact", "is true or false")),
                };
                Ok(DeleteSpec { base_version, session_id: self.session_id.unwrap_or_default(), confirmed_impact })
            }
        }
    }
}

/// `DELETE /api/v1/projects/{id}/specs/{*path}`: delete the component (see docs/api.md). The
/// fields come in a JSON body or, for clients that send none with `DELETE`, in the query.
#[utoipa::path(delete, path = "/api/v1/projects/{id}/specs/{*path}", tag = "specs",
    security(("token" = []), ("session" = [])),
    params(("id" = String, Path, description = "Project id or slug"), ("path" = String, Path, description = "Spec path"),
        DeleteQuery),
    request_body(content = Option<DeleteSpec>, description = "Or the same fields in the query"),
    responses((status = 200, description = "`{\"version\",\"deleted\":true,\"impact\"}`"),
        (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody, description = "`conflict` (details: current_version) or `impact` (details: the impact, to confirm)")))]
pub async fn delete_spec(
    State(state): State<AppState>,
    ApiUser(auth): ApiUser,
    ctx: RequestContext,
    Path((id, path)): Path<(String, String)>,
    query: Result<Query<DeleteQuery>, QueryRejection>,
    body: Option<ApiJson<DeleteSpec>>,
) -> AppResult<Response> {
    let file = super::specs_api::spec_file(&path)?;
    let Query(query) = query.map_err(|e| AppError::validation(e.body_text()))?;
    let body = query.with_body(body.map(|ApiJson(b)| b))?;
    let on = super::specs_api::editable(&state, &auth, &ctx, &id, "spec.delete").await?;
    let origin = Origin::from(&ctx);
    let outcome =
        delete_as(&state, &auth, &origin, &on, &file, body.base_version, &body.session_id, body.confirmed_impact)
            .await?;
    Ok(match outcome {
        Removal::Deleted { version, impact } => {
            Json(json!({"version": version, "deleted": true, "impact": impact.counts})).into_response()
        }
        Removal::Conflict(current) => conflict(&current, ""),
        Removal::Unconfirmed(impact) => {
            let body = json!({
                "code": "impact",
                "message": format!(
                    "deleting it leaves {} instance(s) on {} screen(s) without a component; send confirmed_impact to delete anyway",
                    impact.counts.instances, impact.counts.screens
                ),
                "details": {"impact": impact},
                "trace_id": crate::http::context::current().map(|c| c.trace_id),
            });
            (StatusCode::CONFLICT, Json(body)).into_response()
        }
    })
}

#[derive(Template)]
#[template(path = "spec_delete.html")]
struct DeletePage {
    page: PageContext,
    project: Project,
    path: String,
    name: String,
    base_version: i64,
    session_id: String,
    impact: Impact,
    /// Shown again because the impact changed (or the text did) since the page was opened.
    notice: Option<String>,
    /// Others with unmerged changes of the spec (deleted with it).
    others: Vec<String>,
    delete_href: String,
    edit_href: String,
}

async fn delete_page(
    state: &AppState,
    auth: &Authenticated,
    project: &Project,
    path: &str,
    current: Current,
    impact: Impact,
    notice: Option<String>,
) -> AppResult<Response> {
    let (file, text) = (path.to_owned(), current.content.clone());
    let name =
        tokio::task::spawn_blocking(move || crate::specs::Component::from_spec(&SpecFile::parse(&text), &file).name)
            .await
            .map_err(|e| AppError::Internal(e.into()))?;
    let status = if notice.is_some() { StatusCode::CONFLICT } else { StatusCode::OK };
    let others = {
        let mut conn = state.db.pool().acquire().await?;
        let catalog = super::catalog::catalog(&mut conn, &project.id, &auth.user.id).await?;
        catalog
            .entries
            .iter()
            .find(|e| e.file_path == path)
            .map(|e| e.others.iter().map(|a| a.name.clone()).collect())
            .unwrap_or_default()
    };
    let html = render(&DeletePage {
        others,
        delete_href: super::authoring::delete_url(&project.slug, path),
        edit_href: super::authoring::edit_url(&project.slug, path),
        page: PageContext::for_user(auth, &state.keys.csrf),
        project: project.clone(),
        path: path.to_owned(),
        name,
        base_version: current.version,
        session_id: uuid::Uuid::new_v4().to_string(),
        impact,
        notice,
    })?;
    Ok((status, html).into_response())
}

/// `GET /projects/{slug}/delete/{*path}`: what deleting the component does, and the button.
pub async fn confirm(
    State(state): State<AppState>,
    PageUser(auth): PageUser,
    ctx: RequestContext,
    Path((slug, path)): Path<(String, String)>,
) -> AppResult<Response> {
    let path = super::specs_api::spec_file(&path).map_err(|_| AppError::NotFound)?;
    let on = super::authorize_on::<EditSpecs>(&state.db, &auth, &Origin::from(&ctx), &slug, "spec.delete_page").await?;
    let project = on.project();
    let current = current_of(&state, project, &path).await?.ok_or(AppError::NotFound)?;
    if current.deleted {
        return Err(AppError::NotFound);
    }
    let impact = impact_of(&state, project, &path, &current.content).await?;
    delete_page(&state, &auth, project, &path, current, impact, None).await
}

#[derive(Deserialize)]
pub struct DeleteForm {
    #[serde(default)]
    action: String,
    #[serde(default)]
    base_version: i64,
    #[serde(default)]
    session_id: String,
    /// The page showed instances that would be left without a component.
    #[serde(default)]
    confirm_impact: bool,
}

/// `303 See Other` to the project page, which reports what became of `path`.
/// A path too long for a Location header that proxies pass (8 KiB buffers) is left out.
fn done(project: &Project, what: &str, path: &str) -> Response {
    let path: String = url::form_urlencoded::byte_serialize(path.as_bytes()).collect();
    let query = if path.len() <= 2048 { format!("?{what}={path}") } else { String::new() };
    axum::response::Redirect::to(&format!("/projects/{}{query}", project.slug)).into_response()
}

/// `POST /projects/{slug}/delete/{*path}`: `action=delete` (from the confirmation page) or
/// `action=undo` (restore the version before the deletion); the project page follows (by a
/// redirect when it went through).
pub async fn submit(
    State(state): State<AppState>,
    PageUser(auth): PageUser,
    ctx: RequestContext,
    Path((slug, path)): Path<(String, String)>,
    PageForm(form): PageForm<DeleteForm>,
) -> AppResult<Response> {
    let path = super::specs_api::spec_file(&path).map_err(|_| AppError::NotFound)?;
    let origin = Origin::from(&ctx);
    let on = super::authorize_on::<EditSpecs>(&state.db, &auth, &origin, &slug, "spec.delete").await?;
    let project = on.project();
    let role = on.grant().role();
    let session = if form.session_id.is_empty() { uuid::Uuid::new_v4().to_string() } else { form.session_id.clone() };
    match form.action.as_str() {
        "delete" => {
            let outcome =
                delete_as(&state, &auth, &origin, &on, &path, form.base_version, &session, form.confirm_impact).await?;
            match outcome {
                // Post/redirect/get: a reload shows the page again instead of deleting again.
                Removal::Deleted { .. } => Ok(done(project, "deleted", &path)),
                Removal::Unconfirmed(impact) => {
                    let current = current_of(&state, project, &path).await?.ok_or(AppError::NotFound)?;
                    let notice = "Since you opened this page the component was placed on screens: check the list.";
                    delete_page(&state, &auth, project, &path, current, impact, Some(notice.into())).await
                }
                Removal::Conflict(current) if current.deleted => {
                    let error = format!("{path} is deleted already (version {}).", current.version);
                    super::pages::project_page(&state, &auth, project, role, None, Some(error)).await
                }
                Removal::Conflict(current) => {
                    let impact = impact_of(&state, project, &path, &current.content).await?;
                    let notice = format!(
                        "Someone saved version {} since you opened this page: check what it is now, then delete.",
                        current.version
                    );
                    delete_page(&state, &auth, project, &path, current, impact, Some(notice)).await
                }
            }
        }
        "undo" => match undo_as(&state, &auth, &origin, &on, &path, &session).await? {
            Some(_) => Ok(done(project, "restored", &path)),
            None => {
                let error = format!("{path} is not deleted: nothing to undo.");
                super::pages::project_page(&state, &auth, project, role, None, Some(error)).await
            }
        },
        _ => Err(AppError::field("action", "delete or undo")),
    }
}
