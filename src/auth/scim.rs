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
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};
use sqlx::AnyConnection;

use super::model::OrgRole;
use super::{sessions, tokens, users};
use crate::app::AppState;
use crate::audit::{self, Actor, Event, Origin, Outcome};
use crate::db::{Tx, now_ms, rfc3339};
use crate::error::AppError;
use crate::http::RequestContext;

const USER_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
const GROUP_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";
const LIST_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:ListResponse";
const ERROR_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:Error";
const PATCH_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";
/// `instance_settings` key of the sealed token, and the sealing purpose.
pub const TOKEN_SETTING: &str = "scim_token";
const MAX_PAGE: i64 = 200;

/// A SCIM error response (RFC 7644 §3.12).
pub struct ScimError {
    status: StatusCode,
    scim_type: Option<&'static str>,
    detail: String,
}

impl ScimError {
    fn new(status: StatusCode, scim_type: Option<&'static str>, detail: impl Into<String>) -> Self {
        ScimError { status, scim_type, detail: detail.into() }
    }
    fn bad(scim_type: &'static str, detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, Some(scim_type), detail)
    }
    fn not_found() -> Self {
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

fn scim_json(status: StatusCode, body: Value) -> Response {
    let mut r = (status, Json(body)).into_response();
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/scim+json"));
    r
}

type ScimResult = Result<Response, ScimError>;

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

/// Generate a new SCIM token, replacing any previous one; returns it (shown once).
pub async fn rotate_token(db: &crate::db::Db, keys: &crate::keys::Keys) -> Result<String, AppError> {
    let token = format!("scim_{}", crate::keys::random_token(32));
    sqlx::query(
        "INSERT INTO instance_settings (key, value, updated_at) VALUES ($1, $2, $3) \
         ON CONFLICT (key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
    )
    .bind(TOKEN_SETTING)
    .bind(keys.seal(TOKEN_SETTING, &token))
    .bind(now_ms())
    .execute(db.pool())
    .await?;
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

async fn authorize(state: &AppState, headers: &HeaderMap, ctx: &RequestContext) -> Result<(), ScimError> {
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

fn base(state: &AppState) -> String {
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

fn list(resources: Vec<Value>, total: i64, start: i64) -> Value {
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

/// `attribute eq "value"` — the filter form identity providers use to look resources up.
fn parse_filter(filter: &str) -> Result<(String, String), ScimError> {
    let invalid =
        || ScimError::bad("invalidFilter", format!("unsupported filter {filter:?}; use `attribute eq \"value\"`"));
    let (attr, rest) = filter.trim().split_once(char::is_whitespace).ok_or_else(invalid)?;
    let (op, value) = rest.trim().split_once(char::is_whitespace).ok_or_else(invalid)?;
    if !op.eq_ignore_ascii_case("eq") {
        return Err(invalid());
    }
    let value = value.trim();
    let value = value.strip_prefix('"').and_then(|v| v.strip_suffix('"')).ok_or_else(invalid)?;
    Ok((attr.to_ascii_lowercase(), value.replace("\\\"", "\"")))
}

#[derive(Deserialize)]
pub struct ListQuery {
    filter: Option<String>,
    #[serde(rename = "startIndex")]
    start_index: Option<i64>,
    count: Option<i64>,
}

// ---- users ----------------------------------------------------------------------------------

#[derive(sqlx::FromRow)]
struct ScimUserRow {
    id: String,
    email: String,
    name: String,
    disabled_at: Option<i64>,
    scim_external_id: Option<String>,
    created_at: i64,
    updated_at: i64,
}

const USER_COLUMNS: &str = "id, email, name, disabled_at, scim_external_id, created_at, updated_at";

fn user_resource(state: &AppState, u: &ScimUserRow) -> Value {
    let mut doc = json!({
        "schemas": [USER_SCHEMA],
        "id": u.id,
        "userName": u.email,
        "name": {"formatted": u.name},
        "displayName": u.name,
        "emails": [{"value": u.email, "type": "work", "primary": true}],
        "active": u.disabled_at.is_none(),
        "meta": {"resourceType": "User", "created": rfc3339(u.created_at), "lastModified": rfc3339(u.updated_at),
                 "location": format!("{}/Users/{}", base(state), u.id)},
    });
    if let Some(ext) = &u.scim_external_id {
        doc["externalId"] = json!(ext);
    }
    doc
}

async fn find_user(conn: &mut AnyConnection, id: &str) -> Result<ScimUserRow, ScimError> {
    // Users deprovisioned with DELETE are gone for SCIM (scim_id cleared) but kept, deactivated, for the audit trail.
    let row: Option<ScimUserRow> = sqlx::query_as(&format!(
        "SELECT {USER_COLUMNS} FROM users WHERE id = $1 AND (scim_id IS NOT NULL OR disabled_at IS NULL) AND email NOT LIKE 'erased-%'"
    ))
    .bind(id)
    .fetch_optional(conn)
    .await?;
    row.ok_or_else(ScimError::not_found)
}

async fn list_users(
    State(state): State<AppState>,
    headers: HeaderMap,
    ctx: RequestContext,
    Query(q): Query<ListQuery>,
) -> ScimResult {
    authorize(&state, &headers, &ctx).await?;
    let start = q.start_index.unwrap_or(1).max(1);
    let count = q.count.unwrap_or(100).clamp(0, MAX_PAGE);
    let (condition, value) = match q.filter.as_deref().map(parse_filter).transpose()? {
        None => ("1 = 1".to_owned(), None),
        Some((attr, value)) => {
            let column = match attr.as_str() {
                "username" | "emails.value" | "emails" => "email",
                "externalid" => "scim_external_id",
                "id" => "id",
                "displayname" => "name",
                _ => return Err(ScimError::bad("invalidFilter", format!("cannot filter users by {attr}"))),
            };
            let v = if column == "email" { value.to_lowercase() } else { value };
            (format!("{column} = $1"), Some(v))
        }
    };
    let visible = "(scim_id IS NOT NULL OR disabled_at IS NULL) AND email NOT LIKE 'erased-%'";
    let mut conn = state.db.pool().acquire().await?;
    let total_sql = format!("SELECT COUNT(*) FROM users WHERE {condition} AND {visible}");
    let page_sql = format!(
        "SELECT {USER_COLUMNS} FROM users WHERE {condition} AND {visible} ORDER BY created_at, id LIMIT {count} OFFSET {}",
        start - 1
    );
    let (total, rows): ((i64,), Vec<ScimUserRow>) = match &value {
        Some(v) => (
            sqlx::query_as(&total_sql).bind(v).fetch_one(&mut *conn).await?,
            sqlx::query_as(&page_sql).bind(v).fetch_all(&mut *conn).await?,
        ),
        None => (
            sqlx::query_as(&total_sql).fetch_one(&mut *conn).await?,
            sqlx::query_as(&page_sql).fetch_all(&mut *conn).await?,
        ),
    };
    let resources = rows.iter().map(|u| user_resource(&state, u)).collect();
    Ok(scim_json(StatusCode::OK, list(resources, total.0, start)))
}

async fn get_user(
    State(state): State<AppState>,
    headers: HeaderMap,
    ctx: RequestContext,
    Path(id): Path<String>,
) -> ScimResult {
    authorize(&state, &headers, &ctx).await?;
    let mut conn = state.db.pool().acquire().await?;
    let u = find_user(&mut conn, &id).await?;
    Ok(scim_json(StatusCode::OK, user_resource(&state, &u)))
}

/// What a SCIM request says about a user, after reading Entra's and Okta's spellings.
#[derive(Default, Debug)]
struct UserFields {
    user_name: Option<String>,
    email: Option<String>,
    display_name: Option<String>,
    formatted: Option<String>,
    given_name: Option<String>,
    family_name: Option<String>,
    external_id: Option<String>,
    active: Option<bool>,
}

/// Booleans arrive as `false` or as `"False"` (Entra).
fn boolean(v: &Value) -> Option<bool> {
    match v {
        Value::Bool(b) => Some(*b),
        Value::String(s) if s.eq_ignore_ascii_case("true") => Some(true),
        Value::String(s) if s.eq_ignore_ascii_case("false") => Some(false),
        _ => None,
    }
}

impl UserFields {
    /// Read a whole resource (POST, PUT, or a path-less PATCH value).
    fn read(&mut self, doc: &Value) {
        if let Some(v) = doc.get("userName").and_then(Value::as_str) {
            self.user_name = Some(v.to_owned());
        }
        if let Some(v) = doc.get("displayName").and_then(Value::as_str) {
            self.display_name = Some(v.to_owned());
        }
        if let Some(v) = doc.get("externalId").and_then(Value::as_str) {
            self.external_id = Some(v.to_owned());
        }
        if let Some(v) = doc.get("active").and_then(boolean) {
            self.active = Some(v);
        }
        if let Some(name) = doc.get("name") {
            self.set("name.formatted", &name["formatted"]);
            self.set("name.givenName", &name["givenName"]);
            self.set("name.familyName", &name["familyName"]);
        }
        if let Some(Value::Array(emails)) = doc.get("emails") {
            let pick = emails
                .iter()
                .find(|e| e.get("primary").and_then(boolean) == Some(true))
                .or_else(|| emails.iter().find(|e| e["type"] == "work"))
                .or_else(|| emails.first());
            if let Some(v) = pick.and_then(|e| e["value"].as_str()) {
                self.email = Some(v.to_owned());
            }
        }
        // Flattened keys (`"name.givenName": …`) as Entra sends in path-less PATCH values.
        if let Some(obj) = doc.as_object() {
            for (k, v) in obj.iter().filter(|(k, _)| k.contains('.') || k.contains('[')) {
                self.set(k, v);
            }
        }
    }

    /// Set one attribute by its path; unknown paths are ignored.
    fn set(&mut self, path: &str, value: &Value) {
        let text = || value.as_str().map(str::to_owned);
        match path.to_ascii_lowercase().as_str() {
            "username" => self.user_name = text(),
            "displayname" => self.display_name = text(),
            "externalid" => self.external_id = text(),
            "active" => self.active = boolean(value),
            "name.formatted" => self.formatted = text().or(self.formatted.take()),
            "name.givenname" => self.given_name = text().or(self.given_name.take()),
            "name.familyname" => self.family_name = text().or(self.family_name.take()),
            "name" => self.read(&json!({"name": value})),
            "emails" => self.read(&json!({"emails": value})),
            p if p.starts_with("emails[") && p.ends_with("].value") => self.email = text(),
            _ => {}
        }
    }

    fn name(&self) -> Option<String> {
        self.formatted
            .clone()
            .filter(|s| !s.trim().is_empty())
            .or_else(|| self.display_name.clone().filter(|s| !s.trim().is_empty()))
            .or_else(|| {
                let joined = [self.given_name.as_deref(), self.family_name.as_deref()]
                    .into_iter()
                    .flatten()
                    .collect::<Vec<_>>()
                    .join(" ");
                (!joined.trim().is_empty()).then_some(joined)
            })
    }

    /// The address Arno keys the account by: a work e-mail, else a userName that is one.
    fn address(&self) -> Option<String> {
        self.email.clone().or_else(|| self.user_name.clone().filter(|u| u.contains('@')))
    }
}

async fn create_user(
    State(state): State<AppState>,
    headers: HeaderMap,
    ctx: RequestContext,
    Json(body): Json<Value>,
) -> ScimResult {
    authorize(&state, &headers, &ctx).await?;
    let mut f = UserFields::default();
    f.read(&body);
    let email =
        f.address().ok_or_else(|| ScimError::bad("invalidValue", "userName or emails must hold an e-mail address"))?;
    let name = f.name().unwrap_or_else(|| email.split('@').next().unwrap_or("user").to_owned());
    let origin = Origin::from(&ctx);
    let mut tx = state.db.begin().await?;
    let user = users::create(
        &mut tx,
        users::NewUser { email: &email, name: &name, org_role: OrgRole::Member, handle_source: None },
    )
    .await?;
    sqlx::query("UPDATE users SET scim_id = id, scim_external_id = $2 WHERE id = $1")
        .bind(&user.id)
        .bind(&f.external_id)
        .execute(&mut *tx)
        .await?;
    if f.active == Some(false) {
        set_active(&mut tx, &user.id, false).await?;
    }
    let event = Event::new("user.create", Outcome::Allowed, Actor::System, &origin)
        .target("user", &user.id)
        .intent(json!({"via": "scim", "active": f.active.unwrap_or(true)}));
    audit::record(&mut tx, event).await?;
    tx.commit().await?;
    let mut conn = state.db.pool().acquire().await?;
    let u = find_user(&mut conn, &user.id).await?;
    let mut response = scim_json(StatusCode::CREATED, user_resource(&state, &u));
    if let Ok(location) = HeaderValue::from_str(&format!("{}/Users/{}", base(&state), u.id)) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    Ok(response)
}

/// Deactivate (ending every session and API token in the same transaction) or reactivate.
async fn set_active(tx: &mut Tx, user_id: &str, active: bool) -> Result<(u64, u64), AppError> {
    let now = now_ms();
    if active {
        sqlx::query("UPDATE users SET disabled_at = NULL, updated_at = $2 WHERE id = $1")
            .bind(user_id)
            .bind(now)
            .execute(&mut **tx)
            .await?;
        return Ok((0, 0));
    }
    sqlx::query("UPDATE users SET disabled_at = COALESCE(disabled_at, $2), updated_at = $2 WHERE id = $1")
        .bind(user_id)
        .bind(now)
        .execute(&mut **tx)
        .await?;
    let ended = sessions::delete_for_user(tx, user_id).await?;
    let revoked = tokens::delete_for_user(tx, user_id).await?;
    Ok((ended, revoked))
}

/// Apply `f` to a user: one transaction, one audit record per kind of change.
async fn update_user(state: &AppState, origin: &Origin, id: &str, f: UserFields) -> Result<ScimUserRow, ScimError> {
    let mut tx = state.db.begin().await?;
    let current = find_user(&mut tx, id).await?;
    let mut changes = serde_json::Map::new();
    if let Some(email) = f.address() {
        let email = users::normalize_email(&email)?;
        if email != current.email {
            let clash: Option<(String,)> = sqlx::query_as("SELECT id FROM users WHERE email = $1 AND id <> $2")
                .bind(&email)
                .bind(id)
                .fetch_optional(&mut *tx)
                .await?;
            if clash.is_some() {
                return Err(ScimError::new(StatusCode::CONFLICT, Some("uniqueness"), "another user has this userName"));
            }
            sqlx::query("UPDATE users SET email = $2 WHERE id = $1").bind(id).bind(&email).execute(&mut *tx).await?;
            changes.insert("email".into(), json!(true));
        }
    }
    if let Some(name) = f.name() {
        let name = users::validate_name(&name)?;
        if name != current.name {
            sqlx::query("UPDATE users SET name = $2 WHERE id = $1").bind(id).bind(&name).execute(&mut *tx).await?;
            changes.insert("name".into(), json!(true));
        }
    }
    if let Some(ext) = &f.external_id
        && current.scim_external_id.as_ref() != Some(ext)
    {
        sqlx::query("UPDATE users SET scim_external_id = $2 WHERE id = $1")
            .bind(id)
            .bind(ext)
            .execute(&mut *tx)
            .await?;
        changes.insert("external_id".into(), json!(true));
    }
    // An account IT manages from now on.
    sqlx::query("UPDATE users SET scim_id = id, updated_at = $2 WHERE id = $1")
        .bind(id)
        .bind(now_ms())
        .execute(&mut *tx)
        .await?;
    if !changes.is_empty() {
        let event = Event::new("user.update", Outcome::Allowed, Actor::System, origin)
            .target("user", id)
            .intent(json!({"via": "scim", "changed": Value::Object(changes)}));
        audit::record(&mut tx, event).await?;
    }
    if let Some(active) = f.active
        && active != current.disabled_at.is_none()
    {
        let (ended, revoked) = set_active(&mut tx, id, active).await?;
        let event = Event::new(
            if active { "user.reactivate" } else { "user.deactivate" },
            Outcome::Allowed,
            Actor::System,
            origin,
        )
        .target("user", id)
        .intent(json!({"via": "scim", "sessions_ended": ended, "tokens_revoked": revoked}));
        audit::record(&mut tx, event).await?;
    }
    let updated = find_user(&mut tx, id).await?;
    tx.commit().await?;
    Ok(updated)
}

async fn replace_user(
    State(state): State<AppState>,
    headers: HeaderMap,
    ctx: RequestContext,
    Path(id): Path<String>,
    Json(body): Json<Value>,
) -> ScimResult {
    authorize(&state, &headers, &ctx).await?;
    let mut f = UserFields::default();
    f.read(&body);
    let u = update_user(&state, &Origin::from(&ctx), &id, f).await?;
    Ok(scim_json(StatusCode::OK, user_resource(&state, &u)))
}

/// The operations of a PatchOp request, with `op` normalised to lower case.
fn operations(body: &Value) -> Result<Vec<(String, Option<String>, Value)>, ScimError> {
    let ops = body
        .get("Operations")
        .or_else(|| body.get("operations"))
        .and_then(Value::as_array)
        .ok_or_else(|| ScimError::bad("invalidSyntax", format!("a PatchOp ({PATCH_SCHEMA}) needs Operations")))?;
    ops.iter()
        .map(|op| {
            let kind = op["op"].as_str().map(str::to_ascii_lowercase).unwrap_or_default();
            if !matches!(kind.as_str(), "add" | "replace" | "remove") {
                return Err(ScimError::bad("invalidSyntax", format!("unknown op {:?}", op["op"])));
            }
            Ok((kind, op["path"].as_str().map(str::to_owned), op.get("value").cloned().unwrap_or(Value::Null)))
        })
        .collect()
}

async fn patch_user(
    State(state): State<AppState>,
    headers: HeaderMap,
    ctx: RequestContext,
    Path(id): Path<String>,
    Json(body): Json<Value>,
) -> ScimResult {
    authorize(&state, &headers, &ctx).await?;
    let mut f = UserFields::default();
    for (kind, path, value) in operations(&body)? {
        match (kind.as_str(), path) {
            ("remove", _) => {} // Arno keeps required attributes; removing optional ones is a no-op.
            (_, Some(path)) => f.set(&path, &value),
            (_, None) => f.read(&value),
        }
    }
    let u = update_user(&state, &Origin::from(&ctx), &id, f).await?;
    Ok(scim_json(StatusCode::OK, user_resource(&state, &u)))
}

/// Deprovisioning: the account is deactivated (sessions and tokens end) and disappears from SCIM;
/// it stays in Arno, inactive, so the audit trail keeps its subject. Admins can erase it.
async fn delete_user(
    State(state): State<AppState>,
    headers: HeaderMap,
    ctx: RequestContext,
    Path(id): Path<String>,
) -> ScimResult {
    authorize(&state, &headers, &ctx).await?;
    let origin = Origin::from(&ctx);
    let mut tx = state.db.begin().await?;
    find_user(&mut tx, &id).await?;
    let (ended, revoked) = set_active(&mut tx, &id, false).await?;
    sqlx::query("UPDATE users SET scim_id = NULL WHERE id = $1").bind(&id).execute(&mut *tx).await?;
    sqlx::query("DELETE FROM scim_group_members WHERE user_id = $1").bind(&id).execute(&mut *tx).await?;
    let event = Event::new("user.deactivate", Outcome::Allowed, Actor::System, &origin)
        .target("user", &id)
        .intent(json!({"via": "scim_delete", "sessions_ended": ended, "tokens_revoked": revoked}));
    audit::record(&mut tx, event).await?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

// ---- groups ---------------------------------------------------------------------------------

#[derive(sqlx::FromRow)]
struct GroupRow {
    id: String,
    display_name: String,
    external_id: Option<String>,
    created_at: i64,
    updated_at: i64,
}

async fn group_resource(state: &AppState, conn: &mut AnyConnection, g: &GroupRow) -> Result<Value, ScimError> {
    let members: Vec<(String, String)> = sqlx::query_as(
        "SELECT u.id, u.name FROM scim_group_members m JOIN users u ON u.id = m.user_id WHERE m.group_id = $1 ORDER BY u.name",
    )
    .bind(&g.id)
    .fetch_all(conn)
    .await?;
    let mut doc = json!({
        "schemas": [GROUP_SCHEMA], "id": g.id, "displayName": g.display_name,
        "members": members.iter().map(|(id, name)| json!({"value": id, "display": name, "$ref": format!("{}/Users/{id}", base(state))})).collect::<Vec<_>>(),
        "meta": {"resourceType": "Group", "created": rfc3339(g.created_at), "lastModified": rfc3339(g.updated_at),
                 "location": format!("{}/Groups/{}", base(state), g.id)},
    });
    if let Some(ext) = &g.external_id {
        doc["externalId"] = json!(ext);
    }
    Ok(doc)
}

async fn find_group(conn: &mut AnyConnection, id: &str) -> Result<GroupRow, ScimError> {
    let row: Option<GroupRow> =
        sqlx::query_as("SELECT id, display_name, external_id, created_at, updated_at FROM scim_groups WHERE id = $1")
            .bind(id)
            .fetch_optional(conn)
            .await?;
    row.ok_or_else(ScimError::not_found)
}

async fn list_groups(
    State(state): State<AppState>,
    headers: HeaderMap,
    ctx: RequestContext,
    Query(q): Query<ListQuery>,
) -> ScimResult {
    authorize(&state, &headers, &ctx).await?;
    let start = q.start_index.unwrap_or(1).max(1);
    let count = q.count.unwrap_or(100).clamp(0, MAX_PAGE);
    let filter = q.filter.as_deref().map(parse_filter).transpose()?;
    let (condition, value) = match &filter {
        None => ("1 = 1", None),
        Some((attr, v)) => match attr.as_str() {
            "displayname" => ("display_name = $1", Some(v.clone())),
            "externalid" => ("external_id = $1", Some(v.clone())),
            "id" => ("id = $1", Some(v.clone())),
            _ => return Err(ScimError::bad("invalidFilter", format!("cannot filter groups by {attr}"))),
        },
    };
    let mut conn = state.db.pool().acquire().await?;
    let sql = format!(
        "SELECT id, display_name, external_id, created_at, updated_at FROM scim_groups WHERE {condition} ORDER BY display_name LIMIT {count} OFFSET {}",
        start - 1
    );
    let count_sql = format!("SELECT COUNT(*) FROM scim_groups WHERE {condition}");
    let (total, rows): ((i64,), Vec<GroupRow>) = match &value {
        Some(v) => (
            sqlx::query_as(&count_sql).bind(v).fetch_one(&mut *conn).await?,
            sqlx::query_as(&sql).bind(v).fetch_all(&mut *conn).await?,
        ),
        None => {
            (sqlx::query_as(&count_sql).fetch_one(&mut *conn).await?, sqlx::query_as(&sql).fetch_all(&mut *conn).await?)
        }
    };
    // Okta and Entra often ask with excludedAttributes=members; members are cheap enough to include.
    let mut resources = vec![];
    for g in &rows {
        resources.push(group_resource(&state, &mut conn, g).await?);
    }
    Ok(scim_json(StatusCode::OK, list(resources, total.0, start)))
}

async fn get_group(
    State(state): State<AppState>,
    headers: HeaderMap,
    ctx: RequestContext,
    Path(id): Path<String>,
) -> ScimResult {
    authorize(&state, &headers, &ctx).await?;
    let mut conn = state.db.pool().acquire().await?;
    let g = find_group(&mut conn, &id).await?;
    Ok(scim_json(StatusCode::OK, group_resource(&state, &mut conn, &g).await?))
}

fn member_ids(value: &Value) -> Vec<String> {
    match value {
        Value::Array(items) => items.iter().filter_map(|m| m["value"].as_str().map(str::to_owned)).collect(),
        Value::Object(_) => value["value"].as_str().map(|v| vec![v.to_owned()]).unwrap_or_default(),
        _ => vec![],
    }
}

/// Add or remove members, then re-derive the roles of everyone whose groups changed.
async fn change_members(
    state: &AppState,
    tx: &mut Tx,
    origin: &Origin,
    group_id: &str,
    add: &[String],
    remove: &[String],
    replace: Option<&[String]>,
) -> Result<(), ScimError> {
    let mut touched: Vec<String> = vec![];
    if let Some(all) = replace {
        let current: Vec<(String,)> = sqlx::query_as("SELECT user_id FROM scim_group_members WHERE group_id = $1")
            .bind(group_id)
            .fetch_all(&mut **tx)
            .await?;
        touched.extend(current.into_iter().map(|(u,)| u));
        sqlx::query("DELETE FROM scim_group_members WHERE group_id = $1").bind(group_id).execute(&mut **tx).await?;
        for user in all {
            insert_member(tx, group_id, user).await?;
            touched.push(user.clone());
        }
    }
    for user in add {
        insert_member(tx, group_id, user).await?;
        touched.push(user.clone());
    }
    for user in remove {
        sqlx::query("DELETE FROM scim_group_members WHERE group_id = $1 AND user_id = $2")
            .bind(group_id)
            .bind(user)
            .execute(&mut **tx)
            .await?;
        touched.push(user.clone());
    }
    touched.sort();
    touched.dedup();
    for user in touched {
        apply_group_roles(state, tx, origin, &user).await?;
    }
    Ok(())
}

async fn insert_member(tx: &mut Tx, group_id: &str, user_id: &str) -> Result<(), ScimError> {
    let exists: Option<(String,)> =
        sqlx::query_as("SELECT id FROM users WHERE id = $1").bind(user_id).fetch_optional(&mut **tx).await?;
    if exists.is_none() {
        return Err(ScimError::bad("invalidValue", format!("member {user_id} is not a user")));
    }
    sqlx::query(
        "INSERT INTO scim_group_members (group_id, user_id) VALUES ($1, $2) ON CONFLICT (group_id, user_id) DO NOTHING",
    )
    .bind(group_id)
    .bind(user_id)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// The provider whose group → role tables apply to SCIM groups: `[scim] provider`, or the only one.
fn mapping_provider(state: &AppState) -> Option<&crate::auth::oidc::OidcProviderConfig> {
    let providers = &state.config.oidc;
    match &state.config.scim_provider {
        Some(id) => providers.iter().find(|p| &p.id == id),
        None if providers.len() == 1 => providers.first(),
        None => None,
    }
}

/// Re-derive a user's org role and project grants from their SCIM groups.
async fn apply_group_roles(state: &AppState, tx: &mut Tx, origin: &Origin, user_id: &str) -> Result<(), ScimError> {
    let Some(config) = mapping_provider(state) else { return Ok(()) };
    let groups: Vec<(String,)> = sqlx::query_as(
        "SELECT g.display_name FROM scim_group_members m JOIN scim_groups g ON g.id = m.group_id WHERE m.user_id = $1",
    )
    .bind(user_id)
    .fetch_all(&mut **tx)
    .await?;
    let groups: Vec<String> = groups.into_iter().map(|(g,)| g).collect();
    let mut lenient = config.clone();
    lenient.strict = false;
    let Ok(roles) = super::oidc::routes::map_roles(&lenient, &groups) else { return Ok(()) };
    let Some((user, _)) = users::find_any(tx, user_id).await? else { return Ok(()) };
    let source = "scim";
    if let Some(role) = roles.org_role
        && role != user.org_role
    {
        users::set_org_role(tx, user_id, role, Some(source)).await?;
        let event = Event::new("user.role", Outcome::Allowed, Actor::System, origin)
            .target("user", user_id)
            .intent(json!({"role": role.as_str(), "previous_role": user.org_role.as_str(), "source": source}));
        audit::record(tx, event).await?;
    }
    crate::projects::apply_idp_grants(tx, user_id, source, &roles.projects, origin).await?;
    Ok(())
}

async fn create_group(
    State(state): State<AppState>,
    headers: HeaderMap,
    ctx: RequestContext,
    Json(body): Json<Value>,
) -> ScimResult {
    authorize(&state, &headers, &ctx).await?;
    let name = body["displayName"]
        .as_str()
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .ok_or_else(|| ScimError::bad("invalidValue", "displayName is required"))?;
    let origin = Origin::from(&ctx);
    let id = uuid::Uuid::now_v7().to_string();
    let now = now_ms();
    let mut tx = state.db.begin().await?;
    let inserted = sqlx::query(
        "INSERT INTO scim_groups (id, display_name, external_id, created_at, updated_at) VALUES ($1, $2, $3, $4, $4)",
    )
    .bind(&id)
    .bind(name)
    .bind(body["externalId"].as_str())
    .bind(now)
    .execute(&mut *tx)
    .await;
    match inserted {
        Err(e) if crate::db::is_unique_violation(&e) => {
            return Err(ScimError::new(
                StatusCode::CONFLICT,
                Some("uniqueness"),
                "a group with this displayName exists",
            ));
        }
        other => {
            other?;
        }
    }
    let members = member_ids(&body["members"]);
    change_members(&state, &mut tx, &origin, &id, &members, &[], None).await?;
    let event = Event::new("group.create", Outcome::Allowed, Actor::System, &origin)
        .target("group", &id)
        .intent(json!({"via": "scim", "members": members.len()}));
    audit::record(&mut tx, event).await?;
    tx.commit().await?;
    let mut conn = state.db.pool().acquire().await?;
    let g = find_group(&mut conn, &id).await?;
    Ok(scim_json(StatusCode::CREATED, group_resource(&state, &mut conn, &g).await?))
}

async fn replace_group(
    State(state): State<AppState>,
    headers: HeaderMap,
    ctx: RequestContext,
    Path(id): Path<String>,
    Json(body): Json<Value>,
) -> ScimResult {
    authorize(&state, &headers, &ctx).await?;
    let origin = Origin::from(&ctx);
    let mut tx = state.db.begin().await?;
    find_group(&mut tx, &id).await?;
    if let Some(name) = body["displayName"].as_str() {
        sqlx::query("UPDATE scim_groups SET display_name = $2, updated_at = $3 WHERE id = $1")
            .bind(&id)
            .bind(name)
            .bind(now_ms())
            .execute(&mut *tx)
            .await?;
    }
    let members = member_ids(&body["members"]);
    change_members(&state, &mut tx, &origin, &id, &[], &[], Some(&members)).await?;
    let event = Event::new("group.update", Outcome::Allowed, Actor::System, &origin)
        .target("group", &id)
        .intent(json!({"via": "scim", "members": members.len()}));
    audit::record(&mut tx, event).await?;
    tx.commit().await?;
    let mut conn = state.db.pool().acquire().await?;
    let g = find_group(&mut conn, &id).await?;
    Ok(scim_json(StatusCode::OK, group_resource(&state, &mut conn, &g).await?))
}

async fn patch_group(
    State(state): State<AppState>,
    headers: HeaderMap,
    ctx: RequestContext,
    Path(id): Path<String>,
    Json(body): Json<Value>,
) -> ScimResult {
    authorize(&state, &headers, &ctx).await?;
    let origin = Origin::from(&ctx);
    let ops = operations(&body)?;
    let mut tx = state.db.begin().await?;
    find_group(&mut tx, &id).await?;
    let (mut add, mut remove, mut replace): (Vec<String>, Vec<String>, Option<Vec<String>>) = (vec![], vec![], None);
    for (kind, path, value) in ops {
        let path = path.unwrap_or_default();
        let lower = path.to_ascii_lowercase();
        match (kind.as_str(), lower.as_str()) {
            ("add", "members") => add.extend(member_ids(&value)),
            ("replace", "members") => replace = Some(member_ids(&value)),
            ("remove", "members") => {
                let ids = member_ids(&value);
                if ids.is_empty() {
                    replace = Some(vec![]);
                } else {
                    remove.extend(ids);
                }
            }
            // Okta: `members[value eq "id"]`.
            ("remove", p) if p.starts_with("members[value eq ") => {
                if let Some(idv) = path.split('"').nth(1) {
                    remove.push(idv.to_owned());
                }
            }
            (_, "displayname") => {
                if let Some(name) = value.as_str() {
                    sqlx::query("UPDATE scim_groups SET display_name = $2 WHERE id = $1")
                        .bind(&id)
                        .bind(name)
                        .execute(&mut *tx)
                        .await?;
                }
            }
            (_, "externalid") => {
                sqlx::query("UPDATE scim_groups SET external_id = $2 WHERE id = $1")
                    .bind(&id)
                    .bind(value.as_str())
                    .execute(&mut *tx)
                    .await?;
            }
            ("replace" | "add", "") => {
                if let Some(name) = value["displayName"].as_str() {
                    sqlx::query("UPDATE scim_groups SET display_name = $2 WHERE id = $1")
                        .bind(&id)
                        .bind(name)
                        .execute(&mut *tx)
                        .await?;
                }
                if value.get("members").is_some() {
                    let ids = member_ids(&value["members"]);
                    if kind == "add" { add.extend(ids) } else { replace = Some(ids) }
                }
            }
            _ => return Err(ScimError::bad("invalidPath", format!("unsupported path {path:?} for groups"))),
        }
    }
    change_members(&state, &mut tx, &origin, &id, &add, &remove, replace.as_deref()).await?;
    sqlx::query("UPDATE scim_groups SET updated_at = $2 WHERE id = $1")
        .bind(&id)
        .bind(now_ms())
        .execute(&mut *tx)
        .await?;
    let event = Event::new("group.update", Outcome::Allowed, Actor::System, &origin)
        .target("group", &id)
        .intent(json!({"via": "scim", "added": add.len(), "removed": remove.len(), "replaced": replace.is_some()}));
    audit::record(&mut tx, event).await?;
    tx.commit().await?;
    let mut conn = state.db.pool().acquire().await?;
    let g = find_group(&mut conn, &id).await?;
    Ok(scim_json(StatusCode::OK, group_resource(&state, &mut conn, &g).await?))
}

async fn delete_group(
    State(state): State<AppState>,
    headers: HeaderMap,
    ctx: RequestContext,
    Path(id): Path<String>,
) -> ScimResult {
    authorize(&state, &headers, &ctx).await?;
    let origin = Origin::from(&ctx);
    let mut tx = state.db.begin().await?;
    find_group(&mut tx, &id).await?;
    change_members(&state, &mut tx, &origin, &id, &[], &[], Some(&[])).await?;
    sqlx::query("DELETE FROM scim_groups WHERE id = $1").bind(&id).execute(&mut *tx).await?;
    let event = Event::new("group.delete", Outcome::Allowed, Actor::System, &origin)
        .target("group", &id)
        .intent(json!({"via": "scim"}));
    audit::record(&mut tx, event).await?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// For pages: a user's SCIM groups.
pub async fn groups_of(conn: &mut AnyConnection, user_id: &str) -> Result<Vec<String>, AppError> {
    let rows: Vec<(String,)> = sqlx::query_as(
        "SELECT g.display_name FROM scim_group_members m JOIN scim_groups g ON g.id = m.group_id WHERE m.user_id = $1 ORDER BY 1",
    )
    .bind(user_id)
    .fetch_all(conn)
    .await?;
    Ok(rows.into_iter().map(|(g,)| g).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_and_entra_okta_shapes() {
        assert_eq!(parse_filter("userName eq \"a@b.c\"").unwrap(), ("username".into(), "a@b.c".into()));
        assert_eq!(parse_filter("displayName eq \"Design \\\"Team\\\"\"").unwrap().1, "Design \"Team\"");
        assert!(parse_filter("userName sw \"a\"").is_err());
        assert!(parse_filter("garbage").is_err());

        let mut f = UserFields::default();
        f.read(&json!({"userName": "ANN@corp.example", "name": {"givenName": "Ann", "familyName": "Lee"}, "active": "False",
                       "emails": [{"value": "ann@corp.example", "type": "work", "primary": true}]}));
        assert_eq!(
            (f.address().as_deref(), f.name().as_deref(), f.active),
            (Some("ann@corp.example"), Some("Ann Lee"), Some(false))
        );
        let mut f = UserFields::default();
        f.set("emails[type eq \"work\"].value", &json!("new@corp.example"));
        f.read(&json!({"name.givenName": "Ann", "active": true}));
        assert_eq!(
            (f.email.as_deref(), f.given_name.as_deref(), f.active),
            (Some("new@corp.example"), Some("Ann"), Some(true))
        );
    }
}
