//! `/api/v1/admin/git/connections`: Admins list, create, change (rotate) and delete connections
//! to remote git providers (docs/github.md, docs/api.md). Secrets go in and never come out;
//! every change and every refusal is audited, with the names of the fields changed, never their
//! values.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Deserializer};
use serde_json::json;
use utoipa::ToSchema;

use super::connections::{self, Connection, ConnectionChange, ConnectionError, NewConnection};
use crate::admin::require_admin;
use crate::app::AppState;
use crate::audit::{self, Actor, Event, Origin, Outcome};
use crate::auth::ApiUser;
use crate::error::{AppError, AppResult, ErrorBody};
use crate::http::RequestContext;
use crate::http::api::ApiJson;

pub fn api() -> crate::http::api::ApiRouter {
    crate::http::api::ApiRouter::new()
        .routes(utoipa_axum::routes!(list, create))
        .routes(utoipa_axum::routes!(update, delete))
}

/// `GET /api/v1/admin/git/connections`
#[utoipa::path(get, path = "/api/v1/admin/git/connections", tag = "git",
    security(("token" = []), ("session" = [])),
    responses((status = 200, body = Vec<Connection>), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn list(
    State(state): State<AppState>,
    ApiUser(auth): ApiUser,
    ctx: RequestContext,
) -> AppResult<Json<Vec<Connection>>> {
    require_admin(&state, &auth, &ctx, "git.connection.read").await?;
    let mut conn = state.db.pool().acquire().await?;
    Ok(Json(connections::list(&mut conn).await?))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateConnection {
    /// Lower-case letters, digits and dashes (`github-corp`); part of the webhook URL.
    pub name: String,
    /// `github`.
    pub provider: String,
    /// `https://api.github.com`, or `https://HOST/api/v3` for Enterprise Server.
    pub api_url: String,
    /// The App's numeric id.
    pub app_id: String,
    /// The App's client id (`Iv23li…`): signs the App's tokens when set.
    #[serde(default)]
    pub client_id: Option<String>,
    /// The App's private key, PEM (the file GitHub generates).
    pub private_key: String,
    /// The App's webhook secret (16 characters or more).
    pub webhook_secret: String,
    /// PEM certificates to trust for this host besides the system's (internal CAs).
    #[serde(default)]
    pub ca_bundle: Option<String>,
}

/// `POST /api/v1/admin/git/connections`
#[utoipa::path(post, path = "/api/v1/admin/git/connections", tag = "git",
    security(("token" = []), ("session" = [])),
    request_body = CreateConnection,
    responses((status = 201, body = Connection), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 409, body = ErrorBody, description = "The name is taken")))]
pub async fn create(
    State(state): State<AppState>,
    ApiUser(auth): ApiUser,
    ctx: RequestContext,
    body: Result<ApiJson<CreateConnection>, AppError>,
) -> AppResult<Response> {
    let origin = Origin::from(&ctx);
    // Who asks first: a refusal is audited whatever the body.
    let grant = require_admin(&state, &auth, &ctx, "git.connection.create").await?;
    let ApiJson(body) = body?;
    let new = NewConnection {
        name: body.name,
        provider: body.provider,
        api_url: body.api_url,
        app_id: body.app_id,
        client_id: body.client_id,
        private_key: body.private_key,
        webhook_secret: body.webhook_secret,
        ca_bundle: body.ca_bundle,
    };
    let created = create_connection(&state, &auth, &origin, &grant, new).await?;
    Ok((StatusCode::CREATED, Json(created)).into_response())
}

/// Create a connection, audited (the API and the console).
pub(crate) async fn create_connection(
    state: &AppState,
    auth: &crate::auth::Authenticated,
    origin: &Origin,
    grant: &crate::auth::access::OrgGrant<crate::auth::access::Administer>,
    new: NewConnection,
) -> AppResult<Connection> {
    let mut tx = state.db.begin().await?;
    let created = connections::create(&mut tx, &state.keys, grant, new).await?;
    let event = Event::new("git.connection.create", Outcome::Allowed, Actor::of(auth), origin)
        .target("git_connection", &created.name)
        .intent(json!({"provider": created.provider, "api_url": created.api_url, "app_id": created.app_id,
                       "client_id": created.client_id, "ca_bundle": created.ca_bundle}));
    audit::record(&mut tx, event).await?;
    tx.commit().await?;
    Ok(created)
}

/// `null` and absent are different in a change: absent keeps, `null` removes.
fn nullable<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(d).map(Some)
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChangeConnection {
    #[serde(default)]
    pub api_url: Option<String>,
    #[serde(default)]
    pub app_id: Option<String>,
    /// `null` removes it.
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<String>)]
    pub client_id: Option<Option<String>>,
    /// A new private key: a rotation.
    #[serde(default)]
    pub private_key: Option<String>,
    /// A new webhook secret: a rotation.
    #[serde(default)]
    pub webhook_secret: Option<String>,
    /// `null` removes it.
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<String>)]
    pub ca_bundle: Option<Option<String>>,
}

/// `PATCH /api/v1/admin/git/connections/{name}`: change what is sent; a new key or secret is a
/// rotation (audited as such).
#[utoipa::path(patch, path = "/api/v1/admin/git/connections/{name}", tag = "git",
    security(("token" = []), ("session" = [])),
    params(("name" = String, Path, description = "Connection name")),
    request_body = ChangeConnection,
    responses((status = 200, body = Connection), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn update(
    State(state): State<AppState>,
    ApiUser(auth): ApiUser,
    ctx: RequestContext,
    Path(name): Path<String>,
    body: Result<ApiJson<ChangeConnection>, AppError>,
) -> AppResult<Json<Connection>> {
    let origin = Origin::from(&ctx);
    let grant = require_admin(&state, &auth, &ctx, "git.connection.update").await?;
    let ApiJson(body) = body?;
    let change = ConnectionChange {
        api_url: body.api_url,
        app_id: body.app_id,
        client_id: body.client_id,
        private_key: body.private_key,
        webhook_secret: body.webhook_secret,
        ca_bundle: body.ca_bundle,
    };
    Ok(Json(update_connection(&state, &auth, &origin, &grant, &name, &change).await?))
}

/// Change (rotate) a connection, audited with the fields changed; its client is rebuilt.
pub(crate) async fn update_connection(
    state: &AppState,
    auth: &crate::auth::Authenticated,
    origin: &Origin,
    grant: &crate::auth::access::OrgGrant<crate::auth::access::Administer>,
    name: &str,
    change: &ConnectionChange,
) -> AppResult<Connection> {
    let fields = change.fields();
    if fields.is_empty() {
        return Err(AppError::validation("nothing to change: send at least one field"));
    }
    let mut tx = state.db.begin().await?;
    let changed = connections::update(&mut tx, &state.keys, grant, name, change).await?;
    let rotated: Vec<&str> =
        fields.iter().copied().filter(|f| matches!(*f, "private_key" | "webhook_secret")).collect();
    let event = Event::new("git.connection.update", Outcome::Allowed, Actor::of(auth), origin)
        .target("git_connection", &changed.name)
        .intent(json!({"fields": fields, "rotated": rotated}));
    audit::record(&mut tx, event).await?;
    tx.commit().await?;
    // Its client (key, host, CA bundle) is rebuilt on next use.
    state.repos.forget_connection(&changed.name);
    Ok(changed)
}

/// `DELETE /api/v1/admin/git/connections/{name}`: refused while projects use it, naming them.
#[utoipa::path(delete, path = "/api/v1/admin/git/connections/{name}", tag = "git",
    security(("token" = []), ("session" = [])),
    params(("name" = String, Path, description = "Connection name")),
    responses((status = 204, description = "Deleted"), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody, description = "Projects use it (details: projects, their slugs)")))]
pub async fn delete(
    State(state): State<AppState>,
    ApiUser(auth): ApiUser,
    ctx: RequestContext,
    Path(name): Path<String>,
) -> AppResult<Response> {
    let origin = Origin::from(&ctx);
    let grant = require_admin(&state, &auth, &ctx, "git.connection.delete").await?;
    match delete_connection(&state, &auth, &origin, &grant, &name).await? {
        None => Ok(StatusCode::NO_CONTENT.into_response()),
        Some(projects) => {
            let message = if projects.is_empty() {
                "a project was given this connection meanwhile; it is in use".to_owned()
            } else {
                format!("projects use this connection: {}", projects.join(", "))
            };
            let body = ErrorBody {
                code: "conflict",
                message,
                details: Some(json!({"projects": projects})),
                retry_after_ms: None,
                trace_id: crate::http::context::current().map(|c| c.trace_id),
            };
            Ok((StatusCode::CONFLICT, Json(body)).into_response())
        }
    }
}

/// Delete a connection, audited; `Some(projects)` (refused, audited too) while projects use it.
pub(crate) async fn delete_connection(
    state: &AppState,
    auth: &crate::auth::Authenticated,
    origin: &Origin,
    grant: &crate::auth::access::OrgGrant<crate::auth::access::Administer>,
    name: &str,
) -> AppResult<Option<Vec<String>>> {
    let mut tx = state.db.begin().await?;
    match connections::delete(&mut tx, grant, name).await {
        Ok(()) => {
            let event = Event::new("git.connection.delete", Outcome::Allowed, Actor::of(auth), origin)
                .target("git_connection", name);
            audit::record(&mut tx, event).await?;
            tx.commit().await?;
            state.repos.forget_connection(name);
            Ok(None)
        }
        Err(ConnectionError::InUse(projects)) => {
            tx.rollback().await?;
            let event = Event::new("git.connection.delete", Outcome::Denied, Actor::of(auth), origin)
                .target("git_connection", name)
                .intent(json!({"reason": "in_use", "projects": projects}));
            audit::record_alone(&state.db, event).await?;
            Ok(Some(projects))
        }
        Err(e) => Err(e.into()),
    }
}
