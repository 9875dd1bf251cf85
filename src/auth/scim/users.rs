//! SCIM Users (RFC 7643 §4.1): create, read, filter, replace, patch, deprovision.

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::IntoResponse;
use serde_json::{Value, json};
use sqlx::AnyConnection;

use super::{
    ListQuery, ScimBody, ScimError, ScimResult, authorize, base, fetch_page, list, paging, parse_filter, scim_json,
};
use crate::app::AppState;
use crate::audit::{self, Actor, Event, Origin, Outcome};
use crate::auth::model::OrgRole;
use crate::auth::users;
use crate::db::{now_ms, rfc3339};
use crate::http::RequestContext;

const USER_SCHEMA: &str = super::USER_SCHEMA;

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

/// Users SCIM sees: provisioned ones (even deactivated), and active ones it may adopt; never erased ones.
const VISIBLE: &str = "(scim_id IS NOT NULL OR disabled_at IS NULL) AND email NOT LIKE '%@erased.invalid'";

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
    let row: Option<ScimUserRow> =
        sqlx::query_as(&format!("SELECT {USER_COLUMNS} FROM users WHERE id = $1 AND {VISIBLE}"))
            .bind(id)
            .fetch_optional(conn)
            .await?;
    row.ok_or_else(ScimError::not_found)
}

pub(super) async fn list_users(
    State(state): State<AppState>,
    headers: HeaderMap,
    ctx: RequestContext,
    Query(q): Query<ListQuery>,
) -> ScimResult {
    authorize(&state, &headers, &ctx).await?;
    let (start, count) = paging(&q);
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
    let from_where = format!("users WHERE {condition} AND {VISIBLE}");
    let mut conn = state.db.pool().acquire().await?;
    let (total, rows): (i64, Vec<ScimUserRow>) =
        fetch_page(&mut conn, USER_COLUMNS, &from_where, "created_at, id", value.as_deref(), (start, count)).await?;
    let resources = rows.iter().map(|u| user_resource(&state, u)).collect();
    Ok(scim_json(StatusCode::OK, list(resources, total, start)))
}

pub(super) async fn get_user(
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

pub(super) async fn create_user(
    State(state): State<AppState>,
    headers: HeaderMap,
    ctx: RequestContext,
    ScimBody(body): ScimBody,
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
        users::set_active(&mut tx, &user.id, false).await?;
    }
    let event = Event::new("user.create", Outcome::Allowed, Actor::System, &origin)
        .target("user", &user.id)
        .intent(json!({"via": "scim", "active": f.active.unwrap_or(true)}));
    audit::record(&mut tx, event).await?;
    tx.commit().await?;
    state.rooms.access_changed("*").await;
    let mut conn = state.db.pool().acquire().await?;
    let u = find_user(&mut conn, &user.id).await?;
    let mut response = scim_json(StatusCode::CREATED, user_resource(&state, &u));
    if let Ok(location) = HeaderValue::from_str(&format!("{}/Users/{}", base(&state), u.id)) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    Ok(response)
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
        let (ended, revoked) = users::set_active(&mut tx, id, active).await?;
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
    state.rooms.access_changed("*").await;
    Ok(updated)
}

pub(super) async fn replace_user(
    State(state): State<AppState>,
    headers: HeaderMap,
    ctx: RequestContext,
    Path(id): Path<String>,
    ScimBody(body): ScimBody,
) -> ScimResult {
    authorize(&state, &headers, &ctx).await?;
    let mut f = UserFields::default();
    f.read(&body);
    let u = update_user(&state, &Origin::from(&ctx), &id, f).await?;
    Ok(scim_json(StatusCode::OK, user_resource(&state, &u)))
}

/// The operations of a PatchOp request, with `op` normalised to lower case.
pub(super) fn operations(body: &Value) -> Result<Vec<(String, Option<String>, Value)>, ScimError> {
    let ops = body.get("Operations").or_else(|| body.get("operations")).and_then(Value::as_array).ok_or_else(|| {
        ScimError::bad("invalidSyntax", format!("a PatchOp ({}) needs Operations", super::PATCH_SCHEMA))
    })?;
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

pub(super) async fn patch_user(
    State(state): State<AppState>,
    headers: HeaderMap,
    ctx: RequestContext,
    Path(id): Path<String>,
    ScimBody(body): ScimBody,
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
pub(super) async fn delete_user(
    State(state): State<AppState>,
    headers: HeaderMap,
    ctx: RequestContext,
    Path(id): Path<String>,
) -> ScimResult {
    authorize(&state, &headers, &ctx).await?;
    let origin = Origin::from(&ctx);
    let mut tx = state.db.begin().await?;
    find_user(&mut tx, &id).await?;
    let (ended, revoked) = users::set_active(&mut tx, &id, false).await?;
    sqlx::query("UPDATE users SET scim_id = NULL WHERE id = $1").bind(&id).execute(&mut *tx).await?;
    sqlx::query("DELETE FROM scim_group_members WHERE user_id = $1").bind(&id).execute(&mut *tx).await?;
    let event = Event::new("user.deactivate", Outcome::Allowed, Actor::System, &origin)
        .target("user", &id)
        .intent(json!({"via": "scim_delete", "sessions_ended": ended, "tokens_revoked": revoked}));
    audit::record(&mut tx, event).await?;
    tx.commit().await?;
    state.rooms.access_changed("*").await;
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entra_and_okta_shapes() {
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
