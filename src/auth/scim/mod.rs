//! SCIM 2.0 provisioning (RFC 7643 schemas, RFC 7644 protocol) under `/scim/v2/`: IT creates,
//! updates and deactivates users and groups before anyone signs in.
//!
//! Shapes follow what Microsoft Entra ID and Okta send: `PatchOp` operations with or without a
//! `path`, `op` in any case, booleans as strings (`"False"`), `emails[type eq "work"].value`
//! paths, and `filter=userName eq "…"` lookups before creating. Attributes Arno has no use for
//! (titles, addresses…) are accepted and ignored. `active: false` deactivates the user at once:
//! sessions and API tokens are deleted in the same transaction. Group membership maps to roles
//! through the `[scim] provider`'s `org_roles` / `project_roles` tables.
//!
//! Authentication: `Authorization: Bearer <SCIM token>`, a token an Admin generates (console or
//! `arno admin scim-token`); Arno stores it encrypted with the instance key.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

#[cfg(test)]
mod fuzz;
mod groups;
mod user_model;
mod users;

pub use groups::groups_of;
use groups::{create_group, delete_group, get_group, list_groups, patch_group, replace_group};
use users::{create_user, delete_user, get_user, list_users, patch_user, replace_user};

use crate::app::AppState;
use crate::audit::{self, Actor, Event, Origin, Outcome};
use crate::db::now_ms;
use crate::error::AppError;
use crate::http::RequestContext;

pub(super) const USER_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
pub(super) const GROUP_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";
const LIST_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:ListResponse";
const ERROR_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:Error";
pub(super) const PATCH_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";
/// `instance_settings` key of the sealed token, and the sealing purpose.
pub const TOKEN_SETTING: &str = "scim_token";
pub(super) const MAX_PAGE: i64 = 200;

/// A SCIM error response (RFC 7644 §3.12).
#[derive(Debug)]
pub struct ScimError {
    status: StatusCode,
    scim_type: Option<&'static str>,
    detail: String,
    /// A refusal to audit once the transaction it happened in has been rolled back.
    refusal: Option<Refusal>,
}

/// A change SCIM was not allowed to make: the attempted action, on which user, and why
/// (`not_provisioned`, `last_admin`).
#[derive(Debug)]
struct Refusal {
    action: &'static str,
    user_id: String,
    reason: &'static str,
}

impl ScimError {
    pub(super) fn new(status: StatusCode, scim_type: Option<&'static str>, detail: impl Into<String>) -> Self {
        ScimError { status, scim_type, detail: detail.into(), refusal: None }
    }
    /// Mark the error as a refused `action` on a user, to be audited by [`audited`].
    pub(super) fn refused(mut self, action: &'static str, user_id: &str, reason: &'static str) -> Self {
        self.refusal = Some(Refusal { action, user_id: user_id.to_owned(), reason });
        self
    }
    pub(super) fn bad(scim_type: &'static str, detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, Some(scim_type), detail)
    }
    pub(super) fn not_found() -> Self {
        Self::new(StatusCode::NOT_FOUND, None, "resource not found")
    }
}

impl From<AppError> for ScimError {
    fn from(e: AppError) -> Self {
        match e {
            AppError::Conflict(m) => ScimError::new(StatusCode::CONFLICT, Some("uniqueness"), m),
            AppError::Validation { message, .. } => ScimError::bad("invalidValue", message),
            AppError::NotFound => ScimError::not_found(),
            other => {
                if let AppError::Internal(e) = &other {
                    tracing::error!(event_type = "internal_error", error = format!("{e:#}"), "SCIM request failed");
                }
                ScimError::new(other.status(), None, "internal error")
            }
        }
    }
}

impl From<sqlx::Error> for ScimError {
    fn from(e: sqlx::Error) -> Self {
        AppError::from(e).into()
    }
}

impl IntoResponse for ScimError {
    fn into_response(self) -> Response {
        let mut body =
            json!({"schemas": [ERROR_SCHEMA], "status": self.status.as_u16().to_string(), "detail": self.detail});
        if let Some(t) = self.scim_type {
            body["scimType"] = json!(t);
        }
        scim_json(self.status, body)
    }
}

pub(super) fn scim_json(status: StatusCode, body: Value) -> Response {
    let mut r = (status, Json(body)).into_response();
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/scim+json"));
    r
}

pub(super) type ScimResult = Result<Response, ScimError>;

/// Pass a result on, first recording a refused change as a denied audit record (in its own
/// transaction: the change's own transaction is gone with the error).
pub(super) async fn audited<T>(
    state: &AppState,
    origin: &Origin,
    result: Result<T, ScimError>,
) -> Result<T, ScimError> {
    if let Err(ScimError { refusal: Some(r), .. }) = &result {
        tracing::warn!(event_type = "scim_refused", action = r.action, reason = r.reason, "SCIM change refused");
        let event = Event::new(r.action, Outcome::Denied, Actor::System, origin)
            .target("user", &r.user_id)
            .intent(json!({"via": "scim", "reason": r.reason}));
        audit::record_alone(&state.db, event).await?;
    }
    result
}

pub fn routes() -> axum::Router<AppState> {
    use axum::routing::get;
    axum::Router::new()
        .route("/scim/v2/ServiceProviderConfig", get(service_provider_config))
        .route("/scim/v2/ResourceTypes", get(resource_types))
        .route("/scim/v2/ResourceTypes/{id}", get(resource_type))
        .route("/scim/v2/Schemas", get(schemas))
        .route("/scim/v2/Schemas/{id}", get(schema))
        .route("/scim/v2/Users", get(list_users).post(create_user))
        .route("/scim/v2/Users/{id}", get(get_user).put(replace_user).patch(patch_user).delete(delete_user))
        .route("/scim/v2/Groups", get(list_groups).post(create_group))
        .route("/scim/v2/Groups/{id}", get(get_group).put(replace_group).patch(patch_group).delete(delete_group))
}

/// Who replaces the SCIM token: an Admin in the console, or the operator on the host
/// (`arno admin scim-token`, which needs the data directory and the instance key).
pub enum TokenRotation<'a> {
    Admin(&'a crate::auth::access::OrgGrant<crate::auth::access::Administer>, &'a crate::auth::Authenticated),
    HostOperator(&'a crate::keys::HostOperator),
}

/// Generate a new SCIM token, replacing any previous one, and audit it in the same transaction;
/// returns it (shown once).
pub async fn rotate_token(
    db: &crate::db::Db,
    keys: &crate::keys::Keys,
    by: TokenRotation<'_>,
    origin: &Origin,
) -> Result<String, AppError> {
    let token = format!("scim_{}", crate::keys::random_token(32));
    let mut tx = db.begin().await?;
    sqlx::query(
        "INSERT INTO instance_settings (key, value, updated_at) VALUES ($1, $2, $3) \
         ON CONFLICT (key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
    )
    .bind(TOKEN_SETTING)
    .bind(keys.seal(TOKEN_SETTING, &token))
    .bind(now_ms())
    .execute(&mut *tx)
    .await?;
    let (actor, via) = match by {
        TokenRotation::Admin(_, auth) => (Actor::of(auth), "console"),
        TokenRotation::HostOperator(_) => (Actor::System, "cli"),
    };
    audit::record(&mut tx, Event::new("scim.token", Outcome::Allowed, actor, origin).intent(json!({"via": via})))
        .await?;
    tx.commit().await?;
    Ok(token)
}

/// Whether a SCIM token is configured.
pub async fn token_configured(db: &crate::db::Db) -> Result<bool, AppError> {
    let row: Option<(String,)> = sqlx::query_as("SELECT value FROM instance_settings WHERE key = $1")
        .bind(TOKEN_SETTING)
        .fetch_optional(db.pool())
        .await?;
    Ok(row.is_some())
}

pub(super) async fn authorize(state: &AppState, headers: &HeaderMap, ctx: &RequestContext) -> Result<(), ScimError> {
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, t)| t.trim().to_owned());
    let stored: Option<(String,)> = sqlx::query_as("SELECT value FROM instance_settings WHERE key = $1")
        .bind(TOKEN_SETTING)
        .fetch_optional(state.db.pool())
        .await?;
    let expected = stored.and_then(|(sealed,)| state.keys.open(TOKEN_SETTING, &sealed));
    let ok = matches!((&presented, &expected), (Some(p), Some(e)) if crate::keys::constant_time_eq(p, e));
    if ok {
        return Ok(());
    }
    if presented.is_some() {
        let origin = Origin::from(ctx);
        let event = Event::new("scim.request", Outcome::Denied, Actor::Anonymous, &origin)
            .intent(json!({"reason": if expected.is_none() { "no SCIM token configured" } else { "wrong token" }}));
        audit::record_alone(&state.db, event).await?;
    }
    Err(ScimError::new(StatusCode::UNAUTHORIZED, None, "a valid SCIM bearer token is required"))
}

// ---- discovery ----------------------------------------------------------------------------

pub(super) fn base(state: &AppState) -> String {
    format!("{}/scim/v2", state.config.public_base())
}

async fn service_provider_config(State(state): State<AppState>, headers: HeaderMap, ctx: RequestContext) -> ScimResult {
    authorize(&state, &headers, &ctx).await?;
    Ok(scim_json(
        StatusCode::OK,
        json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig"],
            "documentationUri": format!("{}/docs/scim", state.config.public_base()),
            "patch": {"supported": true},
            "bulk": {"supported": false, "maxOperations": 0, "maxPayloadSize": 0},
            "filter": {"supported": true, "maxResults": MAX_PAGE},
            "changePassword": {"supported": false},
            "sort": {"supported": false},
            "etag": {"supported": false},
            "authenticationSchemes": [{"type": "oauthbearertoken", "name": "Bearer token",
                "description": "The SCIM token an Arno administrator generated", "primary": true}],
            "meta": {"resourceType": "ServiceProviderConfig", "location": format!("{}/ServiceProviderConfig", base(&state))},
        }),
    ))
}

fn resource_type_docs(state: &AppState) -> Vec<Value> {
    vec![
        json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:ResourceType"], "id": "User", "name": "User",
               "endpoint": "/Users", "schema": USER_SCHEMA, "meta": {"resourceType": "ResourceType", "location": format!("{}/ResourceTypes/User", base(state))}}),
        json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:ResourceType"], "id": "Group", "name": "Group",
               "endpoint": "/Groups", "schema": GROUP_SCHEMA, "meta": {"resourceType": "ResourceType", "location": format!("{}/ResourceTypes/Group", base(state))}}),
    ]
}

pub(super) fn list(resources: Vec<Value>, total: i64, start: i64) -> Value {
    json!({"schemas": [LIST_SCHEMA], "totalResults": total, "startIndex": start, "itemsPerPage": resources.len(), "Resources": resources})
}

async fn resource_types(State(state): State<AppState>, headers: HeaderMap, ctx: RequestContext) -> ScimResult {
    authorize(&state, &headers, &ctx).await?;
    let docs = resource_type_docs(&state);
    Ok(scim_json(StatusCode::OK, list(docs, 2, 1)))
}

async fn resource_type(
    State(state): State<AppState>,
    headers: HeaderMap,
    ctx: RequestContext,
    Path(id): Path<String>,
) -> ScimResult {
    authorize(&state, &headers, &ctx).await?;
    let doc = resource_type_docs(&state).into_iter().find(|d| d["id"] == id).ok_or_else(ScimError::not_found)?;
    Ok(scim_json(StatusCode::OK, doc))
}

fn attribute(name: &str, kind: &str, extra: Value) -> Value {
    let mut a = json!({"name": name, "type": kind, "multiValued": false, "required": false, "caseExact": false,
                       "mutability": "readWrite", "returned": "default", "uniqueness": "none"});
    if let (Some(obj), Value::Object(more)) = (a.as_object_mut(), extra) {
        obj.extend(more);
    }
    a
}

fn schema_docs() -> Vec<Value> {
    let name = attribute(
        "name",
        "complex",
        json!({"subAttributes": [
        attribute("formatted", "string", json!({})), attribute("givenName", "string", json!({})), attribute("familyName", "string", json!({}))]}),
    );
    let emails = attribute(
        "emails",
        "complex",
        json!({"multiValued": true, "subAttributes": [
        attribute("value", "string", json!({})), attribute("type", "string", json!({})), attribute("primary", "boolean", json!({}))]}),
    );
    vec![
        json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Schema"], "id": USER_SCHEMA, "name": "User", "description": "Arno user",
               "attributes": [attribute("userName", "string", json!({"required": true, "uniqueness": "server"})), name,
                              attribute("displayName", "string", json!({})), emails, attribute("active", "boolean", json!({})),
                              attribute("externalId", "string", json!({"caseExact": true}))],
               "meta": {"resourceType": "Schema"}}),
        json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Schema"], "id": GROUP_SCHEMA, "name": "Group", "description": "Group",
               "attributes": [attribute("displayName", "string", json!({"required": true, "uniqueness": "server"})),
                              attribute("members", "complex", json!({"multiValued": true, "subAttributes": [attribute("value", "string", json!({})), attribute("display", "string", json!({}))]})),
                              attribute("externalId", "string", json!({"caseExact": true}))],
               "meta": {"resourceType": "Schema"}}),
    ]
}

async fn schemas(State(state): State<AppState>, headers: HeaderMap, ctx: RequestContext) -> ScimResult {
    authorize(&state, &headers, &ctx).await?;
    Ok(scim_json(StatusCode::OK, list(schema_docs(), 2, 1)))
}

async fn schema(
    State(state): State<AppState>,
    headers: HeaderMap,
    ctx: RequestContext,
    Path(id): Path<String>,
) -> ScimResult {
    authorize(&state, &headers, &ctx).await?;
    let doc = schema_docs().into_iter().find(|d| d["id"] == id).ok_or_else(ScimError::not_found)?;
    Ok(scim_json(StatusCode::OK, doc))
}

// ---- filters --------------------------------------------------------------------------------

/// `attribute eq "value"` — the filter form identity providers use to look resources up. The
/// value is a JSON string (RFC 7644 §3.4.2.2): `"DOMAIN\\ann"` is `DOMAIN\ann`.
pub(super) fn parse_filter(filter: &str) -> Result<(String, String), ScimError> {
    let invalid =
        || ScimError::bad("invalidFilter", format!("unsupported filter {filter:?}; use `attribute eq \"value\"`"));
    let (attr, rest) = filter.trim().split_once(char::is_whitespace).ok_or_else(invalid)?;
    let (op, value) = rest.trim().split_once(char::is_whitespace).ok_or_else(invalid)?;
    if !op.eq_ignore_ascii_case("eq") {
        return Err(invalid());
    }
    let value = value.trim();
    if !value.starts_with('"') {
        return Err(invalid());
    }
    let value: String = serde_json::from_str(value).map_err(|_| invalid())?;
    Ok((attr.to_ascii_lowercase(), value))
}

/// A JSON request body whose rejection (malformed JSON, wrong content type) is a SCIM error.
pub struct ScimBody(pub Value);

impl<S: Send + Sync> axum::extract::FromRequest<S> for ScimBody {
    type Rejection = ScimError;

    async fn from_request(req: axum::extract::Request, state: &S) -> Result<Self, ScimError> {
        match Json::<Value>::from_request(req, state).await {
            Ok(Json(v)) => Ok(ScimBody(v)),
            Err(e) => Err(ScimError::bad("invalidSyntax", e.body_text())),
        }
    }
}

/// Erased (GDPR) accounts are never shown to SCIM or in the console.
pub(crate) const NOT_ERASED: &str = "email NOT LIKE '%@erased.invalid'";

/// One page of `SELECT {columns} FROM {from_where} ORDER BY {order}` and the total count, with at
/// most one bound value (`$1`) in `from_where`.
pub(super) async fn fetch_page<T>(
    conn: &mut sqlx::AnyConnection,
    columns: &str,
    from_where: &str,
    order: &str,
    value: Option<&str>,
    (start, count): (i64, i64),
) -> Result<(i64, Vec<T>), ScimError>
where
    T: for<'r> sqlx::FromRow<'r, sqlx::any::AnyRow> + Send + Unpin,
{
    let total_sql = format!("SELECT COUNT(*) FROM {from_where}");
    let page_sql = format!("SELECT {columns} FROM {from_where} ORDER BY {order} LIMIT {count} OFFSET {}", start - 1);
    let mut total = sqlx::query_as::<_, (i64,)>(&total_sql);
    let mut page = sqlx::query_as::<_, T>(&page_sql);
    if let Some(v) = value {
        total = total.bind(v.to_owned());
        page = page.bind(v.to_owned());
    }
    let (n,) = total.fetch_one(&mut *conn).await?;
    Ok((n, page.fetch_all(&mut *conn).await?))
}

/// `startIndex` (1-based) and `count`, clamped.
pub(super) fn paging(q: &ListQuery) -> (i64, i64) {
    (q.start_index.unwrap_or(1).max(1), q.count.unwrap_or(100).clamp(0, MAX_PAGE))
}

#[derive(Deserialize)]
pub struct ListQuery {
    pub(super) filter: Option<String>,
    #[serde(rename = "startIndex")]
    pub(super) start_index: Option<i64>,
    pub(super) count: Option<i64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters() {
        assert_eq!(parse_filter("userName eq \"a@b.c\"").unwrap(), ("username".into(), "a@b.c".into()));
        assert_eq!(parse_filter("displayName eq \"Design \\\"Team\\\"\"").unwrap().1, "Design \"Team\"");
        // JSON string escapes (Windows account names carry backslashes).
        assert_eq!(parse_filter(r#"userName eq "CORP\\ann""#).unwrap().1, "CORP\\ann");
        assert_eq!(parse_filter(r#"userName eq "\u00e9""#).unwrap().1, "é");
        assert!(parse_filter(r#"userName eq "a"b""#).is_err());
        assert!(parse_filter("userName sw \"a\"").is_err());
        assert!(parse_filter("garbage").is_err());
    }
}
