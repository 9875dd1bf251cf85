//! Comments on specs: threads with replies, resolved and reopened. Makers, Frontends and Editors
//! (and Admins) comment; everyone who can see the project reads them.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::json;
use sqlx::AnyConnection;
use utoipa::ToSchema;
use utoipa_axum::routes;

use crate::app::AppState;
use crate::audit::{self, Actor, Event, Origin, Outcome};
use crate::auth::ApiUser;
use crate::auth::access::{Comment as CommentCap, View};
use crate::db::{now_ms, rfc3339};
use crate::error::{AppError, AppResult, ErrorBody};
use crate::http::RequestContext;
use crate::http::api::{ApiJson, ApiRouter};

const MAX_BODY_CHARS: usize = 10_000;

pub fn api() -> ApiRouter {
    ApiRouter::new()
        .routes(routes!(list_comments, create_thread))
        .routes(routes!(reply))
        .routes(routes!(resolve))
        .routes(routes!(reopen))
}

#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct Author {
    pub id: Option<String>,
    pub name: String,
    pub handle: Option<String>,
}

#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct CommentView {
    pub id: String,
    pub author: Author,
    pub body: String,
    /// The spec version it was written against.
    pub version: Option<i64>,
    pub created_at: String,
}

#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct Thread {
    #[serde(flatten)]
    pub comment: CommentView,
    pub path: String,
    pub resolved: bool,
    pub resolved_by: Option<String>,
    pub resolved_at: Option<String>,
    pub replies: Vec<CommentView>,
}

#[derive(sqlx::FromRow)]
struct Row {
    id: String,
    path: String,
    thread_id: String,
    author_id: Option<String>,
    author_name: Option<String>,
    author_handle: Option<String>,
    body: String,
    version: Option<i64>,
    created_at: i64,
    resolved_at: Option<i64>,
    resolved_by: Option<String>,
}

fn view(r: &Row) -> CommentView {
    CommentView {
        id: r.id.clone(),
        author: Author {
            id: r.author_id.clone(),
            name: r.author_name.clone().unwrap_or_else(|| "Deleted user".into()),
            handle: r.author_handle.clone(),
        },
        body: r.body.clone(),
        version: r.version,
        created_at: rfc3339(r.created_at),
    }
}

async fn threads(conn: &mut AnyConnection, project_id: &str, path: Option<&str>) -> AppResult<Vec<Thread>> {
    let filter = if path.is_some() { "AND c.path = $2" } else { "" };
    let sql = format!(
        "SELECT c.id, c.path, c.thread_id, c.author_id, u.name AS author_name, u.handle AS author_handle, c.body, \
         c.version, c.created_at, c.resolved_at, c.resolved_by FROM spec_comments c LEFT JOIN users u ON u.id = c.author_id \
         WHERE c.project_id = $1 {filter} ORDER BY c.created_at, c.id"
    );
    let mut q = sqlx::query_as::<_, Row>(&sql).bind(project_id.to_owned());
    if let Some(p) = path {
        q = q.bind(p.to_owned());
    }
    let rows = q.fetch_all(conn).await?;
    let mut out: Vec<Thread> = vec![];
    for r in &rows {
        if r.id == r.thread_id {
            out.push(Thread {
                comment: view(r),
                path: r.path.clone(),
                resolved: r.resolved_at.is_some(),
                resolved_by: r.resolved_by.clone(),
                resolved_at: r.resolved_at.map(rfc3339),
                replies: vec![],
            });
        } else if let Some(t) = out.iter_mut().find(|t| t.comment.id == r.thread_id) {
            t.replies.push(view(r));
        }
    }
    Ok(out)
}

fn validate_body(raw: &str) -> AppResult<String> {
    let body = raw.trim();
    if body.is_empty() || body.chars().count() > MAX_BODY_CHARS {
        return Err(AppError::field("body", format!("must be 1–{MAX_BODY_CHARS} characters")));
    }
    Ok(body.to_owned())
}

#[derive(Deserialize, utoipa::IntoParams)]
pub struct CommentsQuery {
    /// Only the threads on this spec path.
    pub path: Option<String>,
}

/// `GET /api/v1/projects/{id}/comments`
#[utoipa::path(get, path = "/api/v1/projects/{id}/comments", tag = "specs",
    security(("token" = []), ("session" = [])),
    params(("id" = String, Path, description = "Project id or slug"), CommentsQuery),
    responses((status = 200, body = [Thread]), (status = 404, body = ErrorBody)))]
pub async fn list_comments(
    State(state): State<AppState>,
    ApiUser(auth): ApiUser,
    ctx: RequestContext,
    Path(id): Path<String>,
    Query(q): Query<CommentsQuery>,
) -> AppResult<Json<Vec<Thread>>> {
    let (project, _) = super::authorize::<View>(&state.db, &auth, &Origin::from(&ctx), &id, "project.view").await?;
    let mut conn = state.db.pool().acquire().await?;
    Ok(Json(threads(&mut conn, &project.id, q.path.as_deref()).await?))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewThread {
    pub path: String,
    pub body: String,
    pub version: Option<i64>,
}

async fn insert(
    conn: &mut AnyConnection,
    project_id: &str,
    path: &str,
    thread_id: Option<&str>,
    author_id: &str,
    body: &str,
    version: Option<i64>,
) -> AppResult<String> {
    let id = uuid::Uuid::now_v7().to_string();
    sqlx::query(
        "INSERT INTO spec_comments (id, project_id, path, thread_id, author_id, body, version, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(&id)
    .bind(project_id)
    .bind(path)
    .bind(thread_id.unwrap_or(&id))
    .bind(author_id)
    .bind(body)
    .bind(version)
    .bind(now_ms())
    .execute(conn)
    .await?;
    Ok(id)
}

async fn thread_of(conn: &mut AnyConnection, project_id: &str, comment_id: &str) -> AppResult<(String, String)> {
    let row: Option<(String, String)> =
        sqlx::query_as("SELECT thread_id, path FROM spec_comments WHERE id = $1 AND project_id = $2")
            .bind(comment_id)
            .bind(project_id)
            .fetch_optional(conn)
            .await?;
    row.ok_or(AppError::NotFound)
}

async fn one_thread(state: &AppState, project_id: &str, thread_id: &str) -> AppResult<Thread> {
    let mut conn = state.db.pool().acquire().await?;
    threads(&mut conn, project_id, None)
        .await?
        .into_iter()
        .find(|t| t.comment.id == thread_id)
        .ok_or(AppError::NotFound)
}

/// `POST /api/v1/projects/{id}/comments`: start a thread on a spec.
#[utoipa::path(post, path = "/api/v1/projects/{id}/comments", tag = "specs",
    security(("token" = []), ("session" = [])),
    params(("id" = String, Path, description = "Project id or slug")),
    request_body = NewThread,
    responses((status = 201, body = Thread), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn create_thread(
    State(state): State<AppState>,
    ApiUser(auth): ApiUser,
    ctx: RequestContext,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<NewThread>,
) -> AppResult<(StatusCode, Json<Thread>)> {
    let origin = Origin::from(&ctx);
    let (project, grant) = super::authorize::<CommentCap>(&state.db, &auth, &origin, &id, "comment.create").await?;
    let text = validate_body(&body.body)?;
    if let Some(problem) = crate::git::path_limit_problem(&body.path) {
        return Err(AppError::field("path", problem));
    }
    if !body.path.ends_with(".md") || !crate::git::valid_path(&body.path) {
        return Err(AppError::field("path", "must be a spec path ending in .md"));
    }
    let mut tx = state.db.begin().await?;
    let cid = insert(&mut tx, grant.project_id(), &body.path, None, &auth.user.id, &text, body.version).await?;
    let event = Event::new("comment.create", Outcome::Allowed, Actor::of(&auth), &origin)
        .project(&project.id)
        .target("comment", &cid)
        .intent(json!({"path": body.path, "chars": text.chars().count()}));
    audit::record(&mut tx, event).await?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(one_thread(&state, &project.id, &cid).await?)))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewReply {
    pub body: String,
}

/// `POST /api/v1/projects/{id}/comments/{comment_id}/replies`
#[utoipa::path(post, path = "/api/v1/projects/{id}/comments/{comment_id}/replies", tag = "specs",
    security(("token" = []), ("session" = [])),
    params(("id" = String, Path, description = "Project id or slug"), ("comment_id" = String, Path, description = "Any comment of the thread")),
    request_body = NewReply,
    responses((status = 201, body = Thread), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn reply(
    State(state): State<AppState>,
    ApiUser(auth): ApiUser,
    ctx: RequestContext,
    Path((id, comment_id)): Path<(String, String)>,
    ApiJson(body): ApiJson<NewReply>,
) -> AppResult<(StatusCode, Json<Thread>)> {
    let origin = Origin::from(&ctx);
    let (project, grant) = super::authorize::<CommentCap>(&state.db, &auth, &origin, &id, "comment.reply").await?;
    let text = validate_body(&body.body)?;
    let mut tx = state.db.begin().await?;
    let (thread_id, path) = thread_of(&mut tx, grant.project_id(), &comment_id).await?;
    let cid = insert(&mut tx, grant.project_id(), &path, Some(&thread_id), &auth.user.id, &text, None).await?;
    let event = Event::new("comment.reply", Outcome::Allowed, Actor::of(&auth), &origin)
        .project(&project.id)
        .target("comment", &cid)
        .intent(json!({"thread": thread_id, "chars": text.chars().count()}));
    audit::record(&mut tx, event).await?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(one_thread(&state, &project.id, &thread_id).await?)))
}

async fn set_resolved(
    state: &AppState,
    auth: &crate::auth::Authenticated,
    ctx: &RequestContext,
    id: &str,
    comment_id: &str,
    resolved: bool,
) -> AppResult<Json<Thread>> {
    let action = if resolved { "comment.resolve" } else { "comment.reopen" };
    let origin = Origin::from(ctx);
    let (project, grant) = super::authorize::<CommentCap>(&state.db, auth, &origin, id, action).await?;
    let mut tx = state.db.begin().await?;
    let (thread_id, _) = thread_of(&mut tx, grant.project_id(), comment_id).await?;
    let (at, by) = if resolved { (Some(now_ms()), Some(auth.user.id.as_str())) } else { (None, None) };
    sqlx::query("UPDATE spec_comments SET resolved_at = $2, resolved_by = $3 WHERE id = $1")
        .bind(&thread_id)
        .bind(at)
        .bind(by)
        .execute(&mut *tx)
        .await?;
    let event = Event::new(action, Outcome::Allowed, Actor::of(auth), &origin)
        .project(&project.id)
        .target("comment", &thread_id);
    audit::record(&mut tx, event).await?;
    tx.commit().await?;
    Ok(Json(one_thread(state, &project.id, &thread_id).await?))
}

/// `POST /api/v1/projects/{id}/comments/{comment_id}/resolve`
#[utoipa::path(post, path = "/api/v1/projects/{id}/comments/{comment_id}/resolve", tag = "specs",
    security(("token" = []), ("session" = [])),
    params(("id" = String, Path, description = "Project id or slug"), ("comment_id" = String, Path, description = "Any comment of the thread")),
    responses((status = 200, body = Thread), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn resolve(
    State(state): State<AppState>,
    ApiUser(auth): ApiUser,
    ctx: RequestContext,
    Path((id, comment_id)): Path<(String, String)>,
) -> AppResult<Json<Thread>> {
    set_resolved(&state, &auth, &ctx, &id, &comment_id, true).await
}

/// `POST /api/v1/projects/{id}/comments/{comment_id}/reopen`
#[utoipa::path(post, path = "/api/v1/projects/{id}/comments/{comment_id}/reopen", tag = "specs",
    security(("token" = []), ("session" = [])),
    params(("id" = String, Path, description = "Project id or slug"), ("comment_id" = String, Path, description = "Any comment of the thread")),
    responses((status = 200, body = Thread), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn reopen(
    State(state): State<AppState>,
    ApiUser(auth): ApiUser,
    ctx: RequestContext,
    Path((id, comment_id)): Path<(String, String)>,
) -> AppResult<Json<Thread>> {
    set_resolved(&state, &auth, &ctx, &id, &comment_id, false).await
}

/// For the GDPR export: the user's comments.
pub async fn of_user(conn: &mut AnyConnection, user_id: &str) -> AppResult<Vec<serde_json::Value>> {
    let rows: Vec<(String, String, String, i64)> = sqlx::query_as(
        "SELECT project_id, path, body, created_at FROM spec_comments WHERE author_id = $1 ORDER BY created_at",
    )
    .bind(user_id)
    .fetch_all(conn)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(project_id, path, body, at)| json!({"project_id": project_id, "path": path, "body": body, "created_at": rfc3339(at)}))
        .collect())
}

/// For erasure, inside its transaction: the user's comments lose their text and their author.
pub async fn erase_user(conn: &mut AnyConnection, user_id: &str) -> AppResult<u64> {
    let done = sqlx::query("UPDATE spec_comments SET body = '(removed)', author_id = NULL WHERE author_id = $1")
        .bind(user_id)
        .execute(&mut *conn)
        .await?;
    sqlx::query("UPDATE spec_comments SET resolved_by = NULL WHERE resolved_by = $1")
        .bind(user_id)
        .execute(conn)
        .await?;
    Ok(done.rows_affected())
}
