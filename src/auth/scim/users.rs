//! SCIM Users (RFC 7643 §4.1): create, read, filter, replace, patch, deprovision.
//!
//! SCIM sees only the accounts it provisioned (`users.scim_id` set by POST): the bootstrap admin
//! and other local accounts are `404` to it, whatever it asks, and a POST with their address is a
//! `409 uniqueness` that changes nothing. Attempts on them are audited. Nor does SCIM deactivate
//! (or delete) Arno's last active Admin: `409`, audited.

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::IntoResponse;
use serde_json::{Value, json};
use sqlx::AnyConnection;

use super::user_model::ScimUser;
use super::{
    ListQuery, ScimBody, ScimError, ScimResult, audited, authorize, base, fetch_page, list, paging, parse_filter,
    scim_json,
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
    scim_id: Option<String>,
    scim_external_id: Option<String>,
    scim_user_name: Option<String>,
    scim_email: Option<String>,
    scim_display_name: Option<String>,
    scim_name_formatted: Option<String>,
    scim_given_name: Option<String>,
    scim_family_name: Option<String>,
    created_at: i64,
    updated_at: i64,
}

impl ScimUserRow {
    fn attributes(&self) -> ScimUser {
        ScimUser {
            user_name: self.scim_user_name.clone().unwrap_or_else(|| self.email.clone()),
            email: self.scim_email.clone(),
            display_name: self.scim_display_name.clone(),
            formatted: self.scim_name_formatted.clone(),
            given_name: self.scim_given_name.clone(),
            family_name: self.scim_family_name.clone(),
            external_id: self.scim_external_id.clone(),
            active: self.disabled_at.is_none(),
        }
    }
}

/// Users SCIM sees: the ones it provisioned (even deactivated); never erased ones.
const VISIBLE: &str = "scim_id IS NOT NULL AND email NOT LIKE '%@erased.invalid'";

const USER_COLUMNS: &str = "id, email, name, disabled_at, scim_id, scim_external_id, scim_user_name, scim_email, \
                            scim_display_name, scim_name_formatted, scim_given_name, scim_family_name, created_at, updated_at";

/// The resource: exactly the attributes the IdP set (RFC 7643 §4.1), plus `id`, `active`, `meta`.
fn user_resource(state: &AppState, u: &ScimUserRow) -> Value {
    let a = u.attributes();
    let mut doc = json!({
        "schemas": [USER_SCHEMA],
        "id": u.id,
        "userName": a.user_name,
        "active": a.active,
        "meta": {"resourceType": "User", "created": rfc3339(u.created_at), "lastModified": rfc3339(u.updated_at),
                 "location": format!("{}/Users/{}", base(state), u.id)},
    });
    let mut name = serde_json::Map::new();
    for (key, value) in [("formatted", &a.formatted), ("givenName", &a.given_name), ("familyName", &a.family_name)] {
        if let Some(v) = value {
            name.insert(key.into(), json!(v));
        }
    }
    if !name.is_empty() {
        doc["name"] = Value::Object(name);
    }
    if let Some(v) = &a.display_name {
        doc["displayName"] = json!(v);
    }
    if let Some(v) = &a.email {
        doc["emails"] = json!([{"value": v, "type": "work", "primary": true}]);
    }
    if let Some(v) = &a.external_id {
        doc["externalId"] = json!(v);
    }
    doc
}

/// A user SCIM provisioned. An account it did not provision is `404`, like one that does not
/// exist; when `attempt` names the change that was tried (`user.update`…), that is audited.
async fn find_user(
    conn: &mut AnyConnection,
    id: &str,
    attempt: Option<&'static str>,
) -> Result<ScimUserRow, ScimError> {
    // Users deprovisioned with DELETE are gone for SCIM (scim_id cleared) but kept, deactivated, for the audit trail.
    let row: Option<ScimUserRow> =
        sqlx::query_as(&format!("SELECT {USER_COLUMNS} FROM users WHERE id = $1 AND {}", super::NOT_ERASED))
            .bind(id)
            .fetch_optional(conn)
            .await?;
    match row {
        Some(row) if row.scim_id.is_some() => Ok(row),
        Some(row) => Err(match attempt {
            Some(action) => ScimError::not_found().refused(action, &row.id, "not_provisioned"),
            None => ScimError::not_found(),
        }),
        None => Err(ScimError::not_found()),
    }
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
            let (column, lower) = match attr.as_str() {
                "username" => ("scim_user_name", true),
                "emails.value" | "emails" => ("LOWER(scim_email)", true),
                "externalid" => ("scim_external_id", false),
                "id" => ("id", false),
                "displayname" => ("scim_display_name", false),
                _ => return Err(ScimError::bad("invalidFilter", format!("cannot filter users by {attr}"))),
            };
            // userName and e-mails are case-insensitive (RFC 7643 §4.1.1, §2.4).
            let v = if lower { value.trim().to_lowercase() } else { value };
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
    let u = find_user(&mut conn, &id, None).await?;
    Ok(scim_json(StatusCode::OK, user_resource(&state, &u)))
}

/// Store the SCIM attributes of a provisioned user (Arno's address and name are set apart).
async fn store_attributes(conn: &mut AnyConnection, id: &str, a: &ScimUser) -> Result<(), ScimError> {
    sqlx::query(
        "UPDATE users SET scim_id = id, scim_user_name = $2, scim_email = $3, scim_display_name = $4, \
         scim_name_formatted = $5, scim_given_name = $6, scim_family_name = $7, scim_external_id = $8 WHERE id = $1",
    )
    .bind(id)
    .bind(&a.user_name)
    .bind(&a.email)
    .bind(&a.display_name)
    .bind(&a.formatted)
    .bind(&a.given_name)
    .bind(&a.family_name)
    .bind(&a.external_id)
    .execute(conn)
    .await
    .map_err(|e| {
        if crate::db::is_unique_violation(&e) {
            ScimError::new(StatusCode::CONFLICT, Some("uniqueness"), "another user has this userName")
        } else {
            e.into()
        }
    })?;
    Ok(())
}

/// Whether another account has `email` as its address, or `user_name` as its address or userName:
/// a `409 uniqueness`. When it is one SCIM did not provision, the refused `action` is audited with
/// it as the target (nothing about it changes).
async fn taken(
    conn: &mut AnyConnection,
    action: &'static str,
    (email, user_name): (&str, &str),
    except: &str,
) -> Result<(), ScimError> {
    let holder: Option<(String, Option<String>)> = sqlx::query_as(
        "SELECT id, scim_id FROM users WHERE (email = $1 OR email = $2 OR scim_user_name = $2) AND id <> $3 \
         ORDER BY id LIMIT 1",
    )
    .bind(email)
    .bind(user_name)
    .bind(except)
    .fetch_optional(conn)
    .await?;
    match holder {
        None => Ok(()),
        Some((id, scim_id)) => {
            let e = ScimError::new(
                StatusCode::CONFLICT,
                Some("uniqueness"),
                "an Arno account already has this userName or e-mail address",
            );
            Err(if scim_id.is_none() { e.refused(action, &id, "not_provisioned") } else { e })
        }
    }
}

pub(super) async fn create_user(
    State(state): State<AppState>,
    headers: HeaderMap,
    ctx: RequestContext,
    ScimBody(body): ScimBody,
) -> ScimResult {
    authorize(&state, &headers, &ctx).await?;
    let origin = Origin::from(&ctx);
    let result = create(&state, &origin, &body).await;
    let u = audited(&state, &origin, result).await?;
    let mut response = scim_json(StatusCode::CREATED, user_resource(&state, &u));
    if let Ok(location) = HeaderValue::from_str(&format!("{}/Users/{}", base(&state), u.id)) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    Ok(response)
}

async fn create(state: &AppState, origin: &Origin, body: &Value) -> Result<ScimUserRow, ScimError> {
    let attrs = ScimUser::from_resource(body, None)?;
    let email = attrs.address()?;
    let name = attrs.name().unwrap_or_else(|| local_part(&email));
    let mut tx = state.db.begin().await?;
    taken(&mut tx, "user.create", (&email, &attrs.user_name), "").await?;
    let user = users::create(
        &mut tx,
        users::NewUser { email: &email, name: &name, org_role: OrgRole::Member, handle_source: None },
    )
    .await?;
    store_attributes(&mut tx, &user.id, &attrs).await?;
    if !attrs.active {
        users::set_active(&mut tx, &user.id, false).await?;
    }
    let event = Event::new("user.create", Outcome::Allowed, Actor::System, origin)
        .target("user", &user.id)
        .intent(json!({"via": "scim", "active": attrs.active}));
    audit::record(&mut tx, event).await?;
    let created = find_user(&mut tx, &user.id, None).await?;
    tx.commit().await?;
    state.rooms.access_changed("*").await;
    Ok(created)
}

/// Deactivating the only active Admin would leave nobody who can administer Arno
/// ([`users::is_last_admin`], the guard the console and erasure use too): refused, audited.
async fn keep_last_admin(state: &AppState, conn: &mut AnyConnection, id: &str) -> Result<(), ScimError> {
    if users::is_last_admin(conn, state.db.backend(), id).await? {
        return Err(ScimError::new(
            StatusCode::CONFLICT,
            None,
            "this user is Arno's last active administrator and cannot be deactivated; make someone else an \
             administrator first",
        )
        .refused("user.deactivate", id, "last_admin"));
    }
    Ok(())
}

fn local_part(email: &str) -> String {
    email.split('@').next().filter(|s| !s.is_empty()).unwrap_or("user").to_owned()
}

/// How a PUT or PATCH turns the stored attributes into the new ones.
enum Change<'a> {
    /// PUT: the resource replaces every attribute (RFC 7644 §3.5.1); `active` stays when absent.
    Replace(&'a Value),
    /// PATCH: the operations, in order (RFC 7644 §3.5.2).
    Patch(&'a [(String, Option<String>, Value)]),
}

/// Apply a change to a provisioned user: every operation is checked before anything is written,
/// and everything is written in one transaction with one audit record per kind of change.
async fn update_user(
    state: &AppState,
    origin: &Origin,
    id: &str,
    change: Change<'_>,
) -> Result<ScimUserRow, ScimError> {
    let mut tx = state.db.begin().await?;
    let current = find_user(&mut tx, id, Some("user.update")).await?;
    let old = current.attributes();
    let new = match change {
        Change::Replace(body) => ScimUser::from_resource(body, Some(old.active))?,
        Change::Patch(ops) => {
            let mut a = old.clone();
            a.patch(ops)?;
            a
        }
    };
    // The result must still be an account Arno can key: an address, whichever attributes changed.
    let email = new.address()?;
    if new == old {
        tx.commit().await?;
        return Ok(current);
    }
    if old.active && !new.active {
        keep_last_admin(state, &mut tx, id).await?;
    }
    // What changed, by name (never the values: they are personal data).
    let mut changed: Vec<&str> = vec![];
    for (attr, differs) in [
        ("userName", new.user_name != old.user_name),
        ("emails", new.email != old.email),
        ("displayName", new.display_name != old.display_name),
        (
            "name",
            (&new.formatted, &new.given_name, &new.family_name) != (&old.formatted, &old.given_name, &old.family_name),
        ),
        ("externalId", new.external_id != old.external_id),
    ] {
        if differs {
            changed.push(attr);
        }
    }
    let mut arno = serde_json::Map::new();
    if new.user_name != old.user_name || email != current.email {
        taken(&mut tx, "user.update", (&email, &new.user_name), id).await?;
    }
    if email != current.email {
        sqlx::query("UPDATE users SET email = $2 WHERE id = $1").bind(id).bind(&email).execute(&mut *tx).await?;
        arno.insert("email".into(), json!(true));
    }
    if new.name_differs(&old) {
        let name = users::validate_name(&new.name().unwrap_or_else(|| local_part(&email)))?;
        if name != current.name {
            sqlx::query("UPDATE users SET name = $2 WHERE id = $1").bind(id).bind(&name).execute(&mut *tx).await?;
            arno.insert("name".into(), json!(true));
        }
    }
    store_attributes(&mut tx, id, &new).await?;
    sqlx::query("UPDATE users SET updated_at = $2 WHERE id = $1").bind(id).bind(now_ms()).execute(&mut *tx).await?;
    if !changed.is_empty() {
        let event = Event::new("user.update", Outcome::Allowed, Actor::System, origin)
            .target("user", id)
            .intent(json!({"via": "scim", "attributes": changed, "changed": Value::Object(arno)}));
        audit::record(&mut tx, event).await?;
    }
    if new.active != old.active {
        let (ended, revoked) = users::set_active(&mut tx, id, new.active).await?;
        let event = Event::new(
            if new.active { "user.reactivate" } else { "user.deactivate" },
            Outcome::Allowed,
            Actor::System,
            origin,
        )
        .target("user", id)
        .intent(json!({"via": "scim", "sessions_ended": ended, "tokens_revoked": revoked}));
        audit::record(&mut tx, event).await?;
    }
    let updated = find_user(&mut tx, id, None).await?;
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
    let origin = Origin::from(&ctx);
    let result = update_user(&state, &origin, &id, Change::Replace(&body)).await;
    let u = audited(&state, &origin, result).await?;
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
    let origin = Origin::from(&ctx);
    let ops = operations(&body)?;
    let result = update_user(&state, &origin, &id, Change::Patch(&ops)).await;
    let u = audited(&state, &origin, result).await?;
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
    let result = deprovision(&state, &origin, &id).await;
    audited(&state, &origin, result).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn deprovision(state: &AppState, origin: &Origin, id: &str) -> Result<(), ScimError> {
    let mut tx = state.db.begin().await?;
    let user = find_user(&mut tx, id, Some("user.deactivate")).await?;
    if user.disabled_at.is_none() {
        keep_last_admin(state, &mut tx, id).await?;
    }
    let (ended, revoked) = users::set_active(&mut tx, id, false).await?;
    // The SCIM resource is gone (the IdP may reuse its userName); the account keeps its address and name.
    sqlx::query(
        "UPDATE users SET scim_id = NULL, scim_user_name = NULL, scim_email = NULL, scim_display_name = NULL, \
         scim_name_formatted = NULL, scim_given_name = NULL, scim_family_name = NULL, scim_external_id = NULL WHERE id = $1",
    )
    .bind(id)
    .execute(&mut *tx)
    .await?;
    sqlx::query("DELETE FROM scim_group_members WHERE user_id = $1").bind(id).execute(&mut *tx).await?;
    let event = Event::new("user.deactivate", Outcome::Allowed, Actor::System, origin)
        .target("user", id)
        .intent(json!({"via": "scim_delete", "sessions_ended": ended, "tokens_revoked": revoked}));
    audit::record(&mut tx, event).await?;
    tx.commit().await?;
    state.rooms.access_changed("*").await;
    Ok(())
}
