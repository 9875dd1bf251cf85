//! The API of permissions from GitHub: a user links their GitHub account
//! (`/api/v1/me/git-logins/…`), a project's member managers map repository permissions to roles
//! (`/api/v1/projects/{id}/github-roles`). See docs/github.md.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::Serialize;
use utoipa::ToSchema;

use super::github_roles::{self, RoleMap, RoleSync};
use crate::app::AppState;
use crate::audit::Origin;
use crate::auth::ApiUser;
use crate::auth::access::{ManageMembers, View};
use crate::error::{AppError, AppResult, ErrorBody};
use crate::git::logins::{self, GitLogin, LinkOutcome, PendingLink};
use crate::http::RequestContext;
use crate::http::api::ApiJson;

pub fn api() -> crate::http::api::ApiRouter {
    crate::http::api::ApiRouter::new()
        .routes(utoipa_axum::routes!(list_logins))
        .routes(utoipa_axum::routes!(start_link, unlink))
        .routes(utoipa_axum::routes!(check_link))
        .routes(utoipa_axum::routes!(get_roles, put_roles, delete_roles))
        .routes(utoipa_axum::routes!(sync_roles))
}

#[derive(Serialize, ToSchema)]
pub struct MyGitLogins {
    pub logins: Vec<GitLogin>,
    /// Linking started and waiting for approval on GitHub.
    pub pending: Vec<PendingLink>,
}

fn hosted(state: &AppState) -> AppResult<&crate::git::hosted::HostedClients> {
    state.repos.hosted().map(|h| h.as_ref()).ok_or_else(|| AppError::Internal(anyhow::anyhow!("no hosted clients")))
}

/// `GET /api/v1/me/git-logins`: the caller's linked accounts.
#[utoipa::path(get, path = "/api/v1/me/git-logins", tag = "git",
    security(("token" = []), ("session" = [])),
    responses((status = 200, body = MyGitLogins), (status = 401, body = ErrorBody)))]
pub async fn list_logins(State(state): State<AppState>, ApiUser(auth): ApiUser) -> AppResult<Json<MyGitLogins>> {
    let mut conn = state.db.pool().acquire().await?;
    let logins = logins::list(&mut conn, &auth.user.id).await?;
    let pending = logins::pending(&mut conn, &auth.user.id).await?;
    Ok(Json(MyGitLogins { logins, pending }))
}

/// `POST /api/v1/me/git-logins/{connection}`: start linking the caller's GitHub account: the
/// code to enter on GitHub.
#[utoipa::path(post, path = "/api/v1/me/git-logins/{connection}", tag = "git",
    security(("token" = []), ("session" = [])),
    params(("connection" = String, Path, description = "Connection name")),
    responses((status = 201, body = PendingLink), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 429, body = ErrorBody), (status = 502, body = ErrorBody)))]
pub async fn start_link(
    State(state): State<AppState>,
    ApiUser(auth): ApiUser,
    ctx: RequestContext,
    Path(connection): Path<String>,
) -> AppResult<(StatusCode, Json<PendingLink>)> {
    let origin = Origin::from(&ctx);
    let pending = logins::start(&state.db, &state.keys, hosted(&state)?, &auth, &origin, &connection).await?;
    Ok((StatusCode::CREATED, Json(pending)))
}

/// `POST /api/v1/me/git-logins/{connection}/check`: whether the caller approved on GitHub;
/// linked when they did (their projects' roles are synced at once).
#[utoipa::path(post, path = "/api/v1/me/git-logins/{connection}/check", tag = "git",
    security(("token" = []), ("session" = [])),
    params(("connection" = String, Path, description = "Connection name")),
    responses((status = 200, body = LinkOutcome), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody, description = "Not started, expired, declined, or the account is linked to someone else"),
        (status = 502, body = ErrorBody)))]
pub async fn check_link(
    State(state): State<AppState>,
    ApiUser(auth): ApiUser,
    ctx: RequestContext,
    Path(connection): Path<String>,
) -> AppResult<Json<LinkOutcome>> {
    let origin = Origin::from(&ctx);
    let outcome = check_and_sync(&state, &auth, &origin, &connection).await?;
    Ok(Json(outcome))
}

/// Check a link; once linked, the user's mapped projects sync.
pub async fn check_and_sync(
    state: &AppState,
    auth: &crate::auth::model::Authenticated,
    origin: &Origin,
    connection: &str,
) -> AppResult<LinkOutcome> {
    let outcome = logins::check(&state.db, &state.keys, hosted(state)?, auth, origin, connection).await?;
    if matches!(outcome, LinkOutcome::Linked { .. }) {
        let mut conn = state.db.pool().acquire().await?;
        github_roles::schedule_for_user(&mut conn, &auth.user.id, 0).await?;
    }
    Ok(outcome)
}

/// `DELETE /api/v1/me/git-logins/{connection}`: unlink; roles it gave go at the next sync.
#[utoipa::path(delete, path = "/api/v1/me/git-logins/{connection}", tag = "git",
    security(("token" = []), ("session" = [])),
    params(("connection" = String, Path, description = "Connection name")),
    responses((status = 204), (status = 404, body = ErrorBody)))]
pub async fn unlink(
    State(state): State<AppState>,
    ApiUser(auth): ApiUser,
    ctx: RequestContext,
    Path(connection): Path<String>,
) -> AppResult<StatusCode> {
    let origin = Origin::from(&ctx);
    unlink_and_sync(&state, &auth, &origin, &connection).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Unlink (404 when nothing was linked) and sync the projects the account counted in.
pub async fn unlink_and_sync(
    state: &AppState,
    auth: &crate::auth::model::Authenticated,
    origin: &Origin,
    connection: &str,
) -> AppResult<()> {
    let mut conn = state.db.pool().acquire().await?;
    // The projects to sync are those the account counted in before it goes.
    let projects: Vec<(String,)> = sqlx::query_as(
        "SELECT s.project_id FROM project_role_sync s JOIN projects p ON p.id = s.project_id \
         WHERE p.git_connection = $1",
    )
    .bind(connection)
    .fetch_all(&mut *conn)
    .await?;
    drop(conn);
    if !logins::unlink(&state.db, auth, origin, connection).await? {
        return Err(AppError::NotFound);
    }
    let mut conn = state.db.pool().acquire().await?;
    for (id,) in &projects {
        github_roles::schedule(&mut conn, id).await?;
    }
    Ok(())
}

/// `GET /api/v1/projects/{id}/github-roles`: the mapping and its last sync (404 without one).
#[utoipa::path(get, path = "/api/v1/projects/{id}/github-roles", tag = "projects",
    security(("token" = []), ("session" = [])),
    params(("id" = String, Path, description = "Project id or slug")),
    responses((status = 200, body = RoleSync), (status = 404, body = ErrorBody)))]
pub async fn get_roles(
    State(state): State<AppState>,
    ApiUser(auth): ApiUser,
    ctx: RequestContext,
    Path(id): Path<String>,
) -> AppResult<Json<RoleSync>> {
    let on = super::authorize_on::<View>(&state.db, &auth, &Origin::from(&ctx), &id, "project.view").await?;
    let mut conn = state.db.pool().acquire().await?;
    Ok(Json(github_roles::get(&mut conn, on.project()).await?.ok_or(AppError::NotFound)?))
}

/// `PUT /api/v1/projects/{id}/github-roles`: take roles from GitHub with this mapping (fields
/// left out keep their defaults: admin, maintain, write, triage → maker; read → viewer;
/// `null` gives no role).
#[utoipa::path(put, path = "/api/v1/projects/{id}/github-roles", tag = "projects",
    security(("token" = []), ("session" = [])),
    params(("id" = String, Path, description = "Project id or slug")),
    request_body = RoleMap,
    responses((status = 200, body = RoleSync), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody, description = "Not a GitHub project")))]
pub async fn put_roles(
    State(state): State<AppState>,
    ApiUser(auth): ApiUser,
    ctx: RequestContext,
    Path(id): Path<String>,
    ApiJson(roles): ApiJson<RoleMap>,
) -> AppResult<Json<RoleSync>> {
    let origin = Origin::from(&ctx);
    let on = super::authorize_on::<ManageMembers>(&state.db, &auth, &origin, &id, "project.role_sync.set").await?;
    let sync = github_roles::set(&state.db, &auth, &origin, on.grant(), on.project(), roles).await?;
    Ok(Json(sync))
}

/// `DELETE /api/v1/projects/{id}/github-roles`: stop; the memberships it gave stay, as manual ones.
#[utoipa::path(delete, path = "/api/v1/projects/{id}/github-roles", tag = "projects",
    security(("token" = []), ("session" = [])),
    params(("id" = String, Path, description = "Project id or slug")),
    responses((status = 204), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody)))]
pub async fn delete_roles(
    State(state): State<AppState>,
    ApiUser(auth): ApiUser,
    ctx: RequestContext,
    Path(id): Path<String>,
) -> AppResult<StatusCode> {
    let origin = Origin::from(&ctx);
    let on = super::authorize_on::<ManageMembers>(&state.db, &auth, &origin, &id, "project.role_sync.remove").await?;
    if !github_roles::disable(&state.db, &auth, &origin, on.grant(), on.project()).await? {
        return Err(AppError::NotFound);
    }
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /api/v1/projects/{id}/github-roles/sync`: sync now (in the background).
#[utoipa::path(post, path = "/api/v1/projects/{id}/github-roles/sync", tag = "projects",
    security(("token" = []), ("session" = [])),
    params(("id" = String, Path, description = "Project id or slug")),
    responses((status = 202), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn sync_roles(
    State(state): State<AppState>,
    ApiUser(auth): ApiUser,
    ctx: RequestContext,
    Path(id): Path<String>,
) -> AppResult<StatusCode> {
    let origin = Origin::from(&ctx);
    let on = super::authorize_on::<ManageMembers>(&state.db, &auth, &origin, &id, "project.role_sync.run").await?;
    let mut conn = state.db.pool().acquire().await?;
    if github_roles::get(&mut conn, on.project()).await?.is_none() {
        return Err(AppError::NotFound);
    }
    let mut tx = state.db.begin().await?;
    github_roles::schedule(&mut tx, &on.project().id).await?;
    let event = crate::audit::Event::new(
        "project.role_sync.run",
        crate::audit::Outcome::Allowed,
        crate::audit::Actor::of(&auth),
        &origin,
    )
    .project(&on.project().id)
    .target("project", &on.project().id);
    crate::audit::record(&mut tx, event).await?;
    tx.commit().await?;
    Ok(StatusCode::ACCEPTED)
}
