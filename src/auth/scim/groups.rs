//! SCIM Groups (RFC 7643 §4.2): membership, and the roles it maps to.

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use serde_json::{Value, json};
use sqlx::AnyConnection;

use super::users::operations;
use super::{
    ListQuery, ScimBody, ScimError, ScimResult, audited, authorize, base, fetch_page, list, paging, parse_filter,
    scim_json,
};
use crate::app::AppState;
use crate::audit::{self, Actor, Event, Origin, Outcome};
use crate::auth::model::OrgRole;
use crate::auth::users;
use crate::db::{Tx, now_ms, rfc3339};
use crate::error::AppError;
use crate::http::RequestContext;

const GROUP_SCHEMA: &str = super::GROUP_SCHEMA;

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

/// The group as a SCIM resource, freshly read (after a change).
async fn respond(state: &AppState, id: &str, status: StatusCode) -> ScimResult {
    let mut conn = state.db.pool().acquire().await?;
    let g = find_group(&mut conn, id).await?;
    Ok(scim_json(status, group_resource(state, &mut conn, &g).await?))
}

async fn rename(tx: &mut Tx, id: &str, name: &str) -> Result<(), ScimError> {
    sqlx::query("UPDATE scim_groups SET display_name = $2, updated_at = $3 WHERE id = $1")
        .bind(id)
        .bind(name)
        .bind(now_ms())
        .execute(&mut **tx)
        .await
        .map_err(|e| {
            if crate::db::is_unique_violation(&e) {
                ScimError::new(StatusCode::CONFLICT, Some("uniqueness"), "a group with this displayName exists")
            } else {
                e.into()
            }
        })?;
    Ok(())
}

async fn find_group(conn: &mut AnyConnection, id: &str) -> Result<GroupRow, ScimError> {
    let row: Option<GroupRow> =
        sqlx::query_as("SELECT id, display_name, external_id, created_at, updated_at FROM scim_groups WHERE id = $1")
            .bind(id)
            .fetch_optional(conn)
            .await?;
    row.ok_or_else(ScimError::not_found)
}

pub(super) async fn list_groups(
    State(state): State<AppState>,
    headers: HeaderMap,
    ctx: RequestContext,
    Query(q): Query<ListQuery>,
) -> ScimResult {
    authorize(&state, &headers, &ctx).await?;
    let (start, count) = paging(&q);
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
    let from_where = format!("scim_groups WHERE {condition}");
    let columns = "id, display_name, external_id, created_at, updated_at";
    let (total, rows): (i64, Vec<GroupRow>) =
        fetch_page(&mut conn, columns, &from_where, "display_name", value.as_deref(), (start, count)).await?;
    // Okta and Entra often ask with excludedAttributes=members; members are cheap enough to include.
    let mut resources = vec![];
    for g in &rows {
        resources.push(group_resource(&state, &mut conn, g).await?);
    }
    Ok(scim_json(StatusCode::OK, list(resources, total, start)))
}

pub(super) async fn get_group(
    State(state): State<AppState>,
    headers: HeaderMap,
    ctx: RequestContext,
    Path(id): Path<String>,
) -> ScimResult {
    authorize(&state, &headers, &ctx).await?;
    respond(&state, &id, StatusCode::OK).await
}

fn display_name(value: &Value) -> Result<&str, ScimError> {
    value
        .as_str()
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .ok_or_else(|| ScimError::bad("invalidValue", "displayName must be a non-empty string"))
}

/// `externalId`: a string, or `null` (or `""`) to remove it.
fn external_id(value: &Value) -> Result<Option<&str>, ScimError> {
    match value {
        Value::Null => Ok(None),
        Value::String(s) => Ok(Some(s.as_str()).filter(|s| !s.is_empty())),
        _ => Err(ScimError::bad("invalidValue", "externalId must be a string")),
    }
}

async fn set_external_id(tx: &mut Tx, id: &str, external_id: Option<&str>) -> Result<(), ScimError> {
    sqlx::query("UPDATE scim_groups SET external_id = $2 WHERE id = $1")
        .bind(id)
        .bind(external_id)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// The member a `members[value eq "…"]` path names (RFC 7644 §3.5.2.2).
fn member_filter(path: &str) -> Result<String, ScimError> {
    let unsupported =
        || ScimError::bad("invalidFilter", format!("unsupported path {path:?}; use members[value eq \"id\"]"));
    let inner = path.get("members[".len()..).and_then(|p| p.strip_suffix(']')).ok_or_else(unsupported)?;
    match parse_filter(inner).map_err(|_| unsupported())? {
        (attr, value) if attr == "value" => Ok(value),
        _ => Err(unsupported()),
    }
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
    // Only users SCIM provisioned: a group must not hand a local account (the bootstrap admin…) a role.
    let found: Option<(Option<String>,)> =
        sqlx::query_as(&format!("SELECT scim_id FROM users WHERE id = $1 AND {}", super::NOT_ERASED))
            .bind(user_id)
            .fetch_optional(&mut **tx)
            .await?;
    let not_a_user = || ScimError::bad("invalidValue", format!("member {user_id} is not a user"));
    match found {
        None => return Err(not_a_user()),
        Some((None,)) => return Err(not_a_user().refused("group.update", user_id, "not_provisioned")),
        Some((Some(_),)) => {}
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

/// Re-derive a user's org role and project grants from their SCIM groups. Accounts SCIM did not
/// provision keep theirs (memberships from before Arno checked are left alone).
async fn apply_group_roles(state: &AppState, tx: &mut Tx, origin: &Origin, user_id: &str) -> Result<(), ScimError> {
    let Some(config) = mapping_provider(state) else { return Ok(()) };
    let provisioned: Option<(String,)> = sqlx::query_as("SELECT id FROM users WHERE id = $1 AND scim_id IS NOT NULL")
        .bind(user_id)
        .fetch_optional(&mut **tx)
        .await?;
    if provisioned.is_none() {
        return Ok(());
    }
    let groups: Vec<(String,)> = sqlx::query_as(
        "SELECT g.display_name FROM scim_group_members m JOIN scim_groups g ON g.id = m.group_id WHERE m.user_id = $1",
    )
    .bind(user_id)
    .fetch_all(&mut **tx)
    .await?;
    let groups: Vec<String> = groups.into_iter().map(|(g,)| g).collect();
    let mut lenient = config.clone();
    lenient.strict = false;
    let Ok(roles) = crate::auth::oidc::routes::map_roles(&lenient, &groups) else { return Ok(()) };
    let Some((user, _)) = users::find_any(tx, user_id).await? else { return Ok(()) };
    let source = "scim";
    if let Some(role) = roles.org_role
        && role != user.org_role
    {
        let intent = json!({"role": role.as_str(), "previous_role": user.org_role.as_str(), "source": source});
        // The last active Admin keeps the role (the rest of the change stands): a group mapping
        // must not leave nobody who can administer Arno. Refusing the whole request instead would
        // block every other membership change the IdP sends until someone fixes its groups.
        if role != OrgRole::Admin && users::is_last_admin(tx, state.db.backend(), user_id).await? {
            tracing::warn!(
                event_type = "scim_refused",
                action = "user.role",
                reason = "last_admin",
                "SCIM change refused"
            );
            let mut intent = intent;
            intent["reason"] = json!("last_admin");
            let event =
                Event::new("user.role", Outcome::Denied, Actor::System, origin).target("user", user_id).intent(intent);
            audit::record(tx, event).await?;
        } else {
            users::set_org_role(tx, user_id, role, Some(source)).await?;
            let event =
                Event::new("user.role", Outcome::Allowed, Actor::System, origin).target("user", user_id).intent(intent);
            audit::record(tx, event).await?;
        }
    }
    crate::projects::apply_idp_grants(tx, user_id, source, &roles.projects, origin).await?;
    Ok(())
}

pub(super) async fn create_group(
    State(state): State<AppState>,
    headers: HeaderMap,
    ctx: RequestContext,
    ScimBody(body): ScimBody,
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
    let result = async {
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
        done(&state, tx, &origin, "group.create", &id, json!({"via": "scim", "members": members.len()})).await
    }
    .await;
    audited(&state, &origin, result).await?;
    respond(&state, &id, StatusCode::CREATED).await
}

/// A group change is complete: its audit record in the same transaction, the commit, then open
/// connections look at their access again.
async fn done(
    state: &AppState,
    mut tx: Tx,
    origin: &Origin,
    action: &str,
    id: &str,
    intent: Value,
) -> Result<(), ScimError> {
    let event = Event::new(action, Outcome::Allowed, Actor::System, origin).target("group", id).intent(intent);
    audit::record(&mut tx, event).await?;
    tx.commit().await?;
    state.rooms.access_changed("*").await;
    Ok(())
}

pub(super) async fn replace_group(
    State(state): State<AppState>,
    headers: HeaderMap,
    ctx: RequestContext,
    Path(id): Path<String>,
    ScimBody(body): ScimBody,
) -> ScimResult {
    authorize(&state, &headers, &ctx).await?;
    let origin = Origin::from(&ctx);
    let result = async {
        let mut tx = state.db.begin().await?;
        find_group(&mut tx, &id).await?;
        if let Some(name) = body["displayName"].as_str() {
            rename(&mut tx, &id, name).await?;
        }
        let members = member_ids(&body["members"]);
        change_members(&state, &mut tx, &origin, &id, &[], &[], Some(&members)).await?;
        done(&state, tx, &origin, "group.update", &id, json!({"via": "scim", "members": members.len()})).await
    }
    .await;
    audited(&state, &origin, result).await?;
    respond(&state, &id, StatusCode::OK).await
}

/// What a Group PatchOp asks for, read whole before anything is stored: a bad operation
/// anywhere fails the request with nothing changed.
#[derive(Debug, Default, PartialEq)]
pub(super) struct GroupPatch {
    /// The last `displayName` set.
    pub rename: Option<String>,
    /// The last `externalId` set (`Some(None)`: removed).
    pub external_id: Option<Option<String>>,
    pub add: Vec<String>,
    pub remove: Vec<String>,
    /// The whole member list, when an operation replaces it.
    pub replace: Option<Vec<String>>,
}

pub(super) fn plan_patch(ops: &[(String, Option<String>, Value)]) -> Result<GroupPatch, ScimError> {
    let mut plan = GroupPatch::default();
    for (kind, path, value) in ops {
        let path = path.as_deref().unwrap_or_default();
        let lower = path.to_ascii_lowercase();
        match (kind.as_str(), lower.as_str()) {
            ("add", "members") => plan.add.extend(member_ids(value)),
            ("replace", "members") => plan.replace = Some(member_ids(value)),
            ("remove", "members") => {
                let ids = member_ids(value);
                if ids.is_empty() {
                    plan.replace = Some(vec![]);
                } else {
                    plan.remove.extend(ids);
                }
            }
            // Okta: `members[value eq "id"]`.
            ("remove", p) if p.starts_with("members[") => plan.remove.push(member_filter(path)?),
            ("remove", "displayname") => {
                return Err(ScimError::bad("mutability", "displayName is required and cannot be removed"));
            }
            (_, "displayname") => plan.rename = Some(display_name(value)?.to_owned()),
            ("remove", "externalid") => plan.external_id = Some(None),
            (_, "externalid") => plan.external_id = Some(external_id(value)?.map(str::to_owned)),
            ("remove", "") => {
                return Err(ScimError::bad("noTarget", "a remove operation needs a path (RFC 7644 §3.5.2.2)"));
            }
            ("replace" | "add", "") => {
                let Value::Object(attrs) = value else {
                    return Err(ScimError::bad(
                        "invalidValue",
                        "an add or replace without a path needs an object value",
                    ));
                };
                for (key, v) in attrs {
                    match key.to_ascii_lowercase().as_str() {
                        "displayname" => plan.rename = Some(display_name(v)?.to_owned()),
                        "externalid" => plan.external_id = Some(external_id(v)?.map(str::to_owned)),
                        "members" => {
                            let ids = member_ids(v);
                            if kind == "add" { plan.add.extend(ids) } else { plan.replace = Some(ids) }
                        }
                        // Echoed by clients; set by the server.
                        "schemas" | "id" | "meta" => {}
                        _ => {
                            return Err(ScimError::bad(
                                "invalidPath",
                                format!("{key:?} is not an attribute of a Group"),
                            ));
                        }
                    }
                }
            }
            _ => return Err(ScimError::bad("invalidPath", format!("unsupported path {path:?} for groups"))),
        }
    }
    Ok(plan)
}

pub(super) async fn patch_group(
    State(state): State<AppState>,
    headers: HeaderMap,
    ctx: RequestContext,
    Path(id): Path<String>,
    ScimBody(body): ScimBody,
) -> ScimResult {
    authorize(&state, &headers, &ctx).await?;
    let origin = Origin::from(&ctx);
    let ops = operations(&body)?;
    let result = async {
        let mut tx = state.db.begin().await?;
        find_group(&mut tx, &id).await?;
        let plan = plan_patch(&ops)?;
        if let Some(name) = &plan.rename {
            rename(&mut tx, &id, name).await?;
        }
        if let Some(external_id) = &plan.external_id {
            set_external_id(&mut tx, &id, external_id.as_deref()).await?;
        }
        let GroupPatch { add, remove, replace, .. } = plan;
        change_members(&state, &mut tx, &origin, &id, &add, &remove, replace.as_deref()).await?;
        sqlx::query("UPDATE scim_groups SET updated_at = $2 WHERE id = $1")
            .bind(&id)
            .bind(now_ms())
            .execute(&mut *tx)
            .await?;
        done(
            &state,
            tx,
            &origin,
            "group.update",
            &id,
            json!({"via": "scim", "added": add.len(), "removed": remove.len(), "replaced": replace.is_some()}),
        )
        .await
    }
    .await;
    audited(&state, &origin, result).await?;
    respond(&state, &id, StatusCode::OK).await
}

pub(super) async fn delete_group(
    State(state): State<AppState>,
    headers: HeaderMap,
    ctx: RequestContext,
    Path(id): Path<String>,
) -> ScimResult {
    authorize(&state, &headers, &ctx).await?;
    let origin = Origin::from(&ctx);
    let result = async {
        let mut tx = state.db.begin().await?;
        find_group(&mut tx, &id).await?;
        change_members(&state, &mut tx, &origin, &id, &[], &[], Some(&[])).await?;
        sqlx::query("DELETE FROM scim_groups WHERE id = $1").bind(&id).execute(&mut *tx).await?;
        done(&state, tx, &origin, "group.delete", &id, json!({"via": "scim"})).await
    }
    .await;
    audited(&state, &origin, result).await?;
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
