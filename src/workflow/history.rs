//! Workflow history: named snapshots (a Maker's "save a version"), periodic ones (while the
//! document changes, every `workflow.snapshot_interval`), what changed between two, and restoring
//! one — as a new change on top of the current document, so it can itself be undone by restoring
//! another.

use std::collections::BTreeSet;
use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use utoipa::ToSchema;
use yrs::updates::decoder::Decode;
use yrs::{Any, Array, ArrayPrelim, In, Map, MapPrelim, ReadTxn, StateVector, Transact, Update};

use super::{Room, filter};
use crate::app::AppState;
use crate::audit::{self, Actor, Event, Origin, Outcome};
use crate::auth::access::{EditWorkflow, View};
use crate::auth::{ApiUser, Authenticated};
use crate::db::{now_ms, rfc3339};
use crate::error::{AppError, AppResult, ErrorBody};
use crate::http::RequestContext;
use crate::http::api::{ApiJson, ApiRouter};
use crate::projects::Granted;

/// `(id, kind, label, creator's name, created_at, state)`
type SnapshotRow = (String, String, Option<String>, Option<String>, i64, Vec<u8>);

/// Periodic snapshots kept per project (older ones are removed).
const KEEP_PERIODIC: i64 = 48;

pub fn api() -> ApiRouter {
    ApiRouter::new()
        .routes(utoipa_axum::routes!(list, create))
        .routes(utoipa_axum::routes!(diff))
        .routes(utoipa_axum::routes!(restore))
}

/// One snapshot, as listed.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct SnapshotInfo {
    pub id: String,
    /// `named` or `periodic`.
    pub kind: String,
    pub label: Option<String>,
    pub created_by: Option<String>,
    pub created_at: String,
    pub screens: usize,
    pub edges: usize,
}

/// Take a snapshot of a room's current (durable) document.
pub async fn take(
    state: &AppState,
    room: &Room,
    kind: &str,
    label: Option<&str>,
    by: Option<&str>,
) -> AppResult<String> {
    let bytes = {
        let awareness = room.awareness.lock().await;
        awareness.doc().transact().encode_state_as_update_v1(&StateVector::default())
    };
    let id = uuid::Uuid::now_v7().to_string();
    let mut tx = state.db.begin().await?;
    sqlx::query(
        "INSERT INTO workflow_snapshots (id, project_id, kind, upto_id, state, label, created_by, created_at) \
         VALUES ($1, $2, $3, 0, $4, $5, $6, $7)",
    )
    .bind(&id)
    .bind(&room.project_id)
    .bind(kind)
    .bind(&bytes)
    .bind(label)
    .bind(by)
    .bind(now_ms())
    .execute(&mut *tx)
    .await?;
    if kind == "periodic" {
        sqlx::query(&format!(
            "DELETE FROM workflow_snapshots WHERE project_id = $1 AND kind = 'periodic' AND id NOT IN \
             (SELECT id FROM workflow_snapshots WHERE project_id = $1 AND kind = 'periodic' \
              ORDER BY created_at DESC LIMIT {KEEP_PERIODIC})"
        ))
        .bind(&room.project_id)
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    Ok(id)
}

/// Periodic snapshots of loaded documents that changed since their last one.
pub async fn periodic(state: &AppState) {
    for room in state.rooms.due_for_snapshot(state.config.workflow_snapshot_interval) {
        match take(state, &room, "periodic", None, None).await {
            Ok(_) => room.snapshot_taken(),
            Err(e) => {
                tracing::warn!(event_type = "snapshot_failed", project_id = %room.project_id, error = %e, "periodic snapshot failed")
            }
        }
    }
}

/// A stored snapshot's document content.
async fn content_of(state: &AppState, project_id: &str, snapshot_id: &str) -> AppResult<Value> {
    let row: Option<(Vec<u8>,)> = sqlx::query_as(
        "SELECT state FROM workflow_snapshots WHERE project_id = $1 AND id = $2 AND kind IN ('named', 'periodic')",
    )
    .bind(project_id)
    .bind(snapshot_id)
    .fetch_optional(state.db.pool())
    .await?;
    let (bytes,) = row.ok_or(AppError::NotFound)?;
    tokio::task::spawn_blocking(move || {
        let doc = filter::new_doc();
        let update = Update::decode_v1(&bytes).map_err(|e| AppError::Internal(anyhow::anyhow!("snapshot: {e}")))?;
        doc.transact_mut().apply_update(update).map_err(|e| AppError::Internal(anyhow::anyhow!("snapshot: {e}")))?;
        Ok(filter::content(&doc))
    })
    .await
    .map_err(|e| AppError::Internal(anyhow::anyhow!("snapshot task: {e}")))?
}

pub(crate) async fn current_content(room: &Room) -> AppResult<Value> {
    Ok(Value::clone(&*room.content().await?))
}

/// What differs between two documents, by screen and edge id.
#[derive(Debug, Clone, Serialize, ToSchema, PartialEq, Eq)]
pub struct Changes {
    pub screens_added: Vec<String>,
    pub screens_removed: Vec<String>,
    pub screens_changed: Vec<String>,
    pub edges_added: Vec<String>,
    pub edges_removed: Vec<String>,
    pub edges_changed: Vec<String>,
}

pub fn changes(from: &Value, to: &Value) -> Changes {
    let keyed = |doc: &Value, root: &str| -> std::collections::BTreeMap<String, Value> {
        match &doc[root] {
            Value::Object(m) => m.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
            Value::Array(a) => a
                .iter()
                .enumerate()
                .map(|(i, e)| {
                    (e.get("id").and_then(Value::as_str).map_or_else(|| format!("#{i}"), str::to_owned), e.clone())
                })
                .collect(),
            _ => Default::default(),
        }
    };
    let compare = |root: &str| {
        let (a, b) = (keyed(from, root), keyed(to, root));
        let keys: BTreeSet<&String> = a.keys().chain(b.keys()).collect();
        let (mut added, mut removed, mut changed) = (vec![], vec![], vec![]);
        for k in keys {
            match (a.get(k), b.get(k)) {
                (None, Some(_)) => added.push(k.clone()),
                (Some(_), None) => removed.push(k.clone()),
                (Some(x), Some(y)) if x != y => changed.push(k.clone()),
                _ => {}
            }
        }
        (added, removed, changed)
    };
    let (screens_added, screens_removed, screens_changed) = compare("screens");
    let (edges_added, edges_removed, edges_changed) = compare("edges");
    Changes { screens_added, screens_removed, screens_changed, edges_added, edges_removed, edges_changed }
}

/// A JSON value as Yjs content (objects become maps, arrays become arrays).
fn prelim(v: &Value) -> In {
    match v {
        Value::Object(m) => In::Map(m.iter().map(|(k, v)| (k.clone(), prelim(v))).collect::<MapPrelim>()),
        Value::Array(a) => In::Array(a.iter().map(prelim).collect::<ArrayPrelim>()),
        other => In::Any(serde_json::from_value::<Any>(other.clone()).unwrap_or(Any::Null)),
    }
}

/// The update that turns the current document into `target` (computed on a copy).
fn restoring_update(current_state: &[u8], target: &Value) -> Result<Vec<u8>, String> {
    let doc = filter::new_doc();
    doc.transact_mut()
        .apply_update(Update::decode_v1(current_state).map_err(|e| e.to_string())?)
        .map_err(|e| e.to_string())?;
    let now = filter::content(&doc);
    let screens = doc.get_or_insert_map("screens");
    let edges = doc.get_or_insert_array("edges");
    let mut txn = doc.transact_mut();
    let empty = serde_json::Map::new();
    let (have, want) = (now["screens"].as_object().unwrap_or(&empty), target["screens"].as_object().unwrap_or(&empty));
    for key in have.keys().filter(|k| !want.contains_key(*k)) {
        screens.remove(&mut txn, key);
    }
    for (key, value) in want {
        if have.get(key) != Some(value) {
            screens.insert(&mut txn, key.as_str(), prelim(value));
        }
    }
    if now["edges"] != target["edges"] {
        let len = edges.len(&txn);
        edges.remove_range(&mut txn, 0, len);
        for e in target["edges"].as_array().into_iter().flatten() {
            edges.push_back(&mut txn, prelim(e));
        }
    }
    Ok(txn.encode_update_v1())
}

// ---------------------------------------------------------------------------------------------
// API

/// `GET /api/v1/projects/{id}/workflow/snapshots`: named and periodic snapshots, newest first.
#[utoipa::path(get, path = "/api/v1/projects/{id}/workflow/snapshots", tag = "workflow",
    security(("token" = []), ("session" = [])),
    params(("id" = String, Path, description = "Project id or slug")),
    responses((status = 200, body = [SnapshotInfo]), (status = 404, body = ErrorBody)))]
pub async fn list(
    State(state): State<AppState>,
    ApiUser(auth): ApiUser,
    ctx: RequestContext,
    Path(id): Path<String>,
) -> AppResult<Json<Vec<SnapshotInfo>>> {
    let (project, _) =
        crate::projects::authorize::<View>(&state.db, &auth, &Origin::from(&ctx), &id, "project.view").await?;
    let rows: Vec<SnapshotRow> = sqlx::query_as(
        "SELECT s.id, s.kind, s.label, u.name, s.created_at, s.state FROM workflow_snapshots s \
         LEFT JOIN users u ON u.id = s.created_by \
         WHERE s.project_id = $1 AND s.kind IN ('named', 'periodic') ORDER BY s.created_at DESC, s.id DESC",
    )
    .bind(&project.id)
    .fetch_all(state.db.pool())
    .await?;
    let list = tokio::task::spawn_blocking(move || {
        rows.into_iter()
            .map(|(id, kind, label, by, at, bytes)| {
                let doc = filter::new_doc();
                if let Ok(u) = Update::decode_v1(&bytes) {
                    let _ = doc.transact_mut().apply_update(u);
                }
                let c = filter::content(&doc);
                SnapshotInfo {
                    id,
                    kind,
                    label,
                    created_by: by,
                    created_at: rfc3339(at),
                    screens: c["screens"].as_object().map_or(0, |m| m.len()),
                    edges: c["edges"].as_array().map_or(0, Vec::len),
                }
            })
            .collect()
    })
    .await
    .map_err(|e| AppError::Internal(anyhow::anyhow!("snapshot task: {e}")))?;
    Ok(Json(list))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewSnapshot {
    /// A name for the version, 1–200 characters.
    pub label: String,
}

/// `POST /api/v1/projects/{id}/workflow/snapshots` `{"label"}` (Makers): save a named version.
#[utoipa::path(post, path = "/api/v1/projects/{id}/workflow/snapshots", tag = "workflow",
    security(("token" = []), ("session" = [])),
    params(("id" = String, Path, description = "Project id or slug")),
    request_body = NewSnapshot,
    responses((status = 201, description = "`{\"id\"}`"), (status = 400, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn create(
    State(state): State<AppState>,
    ApiUser(auth): ApiUser,
    ctx: RequestContext,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<NewSnapshot>,
) -> AppResult<Response> {
    let origin = Origin::from(&ctx);
    let on = crate::projects::authorize_on::<EditWorkflow>(&state.db, &auth, &origin, &id, "workflow.snapshot").await?;
    let snapshot = snapshot_named(&state, &auth, &origin, &on, &body.label).await?;
    Ok((StatusCode::CREATED, Json(json!({"id": snapshot}))).into_response())
}

/// Save the project's workflow document as a named version, for a caller who may edit it.
pub async fn snapshot_named(
    state: &AppState,
    auth: &Authenticated,
    origin: &Origin,
    on: &Granted<EditWorkflow>,
    label: &str,
) -> AppResult<String> {
    let project = on.project();
    let label = label.trim();
    if label.is_empty() || label.chars().count() > 200 {
        return Err(AppError::field("label", "1 to 200 characters"));
    }
    let room = state.rooms.open(&project.id).await?;
    let snapshot = take(state, &room, "named", Some(label), Some(&auth.user.id)).await?;
    let event = Event::new("workflow.snapshot", Outcome::Allowed, Actor::of(auth), origin)
        .project(&project.id)
        .target("snapshot", &snapshot)
        .intent(json!({"label": label}));
    audit::record_alone(&state.db, event).await?;
    Ok(snapshot)
}

#[derive(Debug, Deserialize)]
pub struct DiffQuery {
    /// Another snapshot id, or `current` (the default).
    to: Option<String>,
}

/// `GET /api/v1/projects/{id}/workflow/snapshots/{snapshot_id}/diff?to=…`: the screens and
/// edges added, removed and changed from a snapshot to another one (or to the current document).
#[utoipa::path(get, path = "/api/v1/projects/{id}/workflow/snapshots/{snapshot_id}/diff", tag = "workflow",
    security(("token" = []), ("session" = [])),
    params(("id" = String, Path, description = "Project id or slug"), ("snapshot_id" = String, Path, description = "From"),
        ("to" = Option<String>, Query, description = "A snapshot id, or `current`")),
    responses((status = 200, body = Changes), (status = 404, body = ErrorBody)))]
pub async fn diff(
    State(state): State<AppState>,
    ApiUser(auth): ApiUser,
    ctx: RequestContext,
    Path((id, snapshot_id)): Path<(String, String)>,
    Query(q): Query<DiffQuery>,
) -> AppResult<Json<Changes>> {
    let (project, _) =
        crate::projects::authorize::<View>(&state.db, &auth, &Origin::from(&ctx), &id, "project.view").await?;
    let from = content_of(&state, &project.id, &snapshot_id).await?;
    let to = match q.to.as_deref() {
        None | Some("current") => current_content(&*state.rooms.open(&project.id).await?).await?,
        Some(other) => content_of(&state, &project.id, other).await?,
    };
    Ok(Json(changes(&from, &to)))
}

/// `POST /api/v1/projects/{id}/workflow/snapshots/{snapshot_id}/restore` (Makers): make the
/// document equal to the snapshot, as a new change everyone receives (undo by restoring another).
#[utoipa::path(post, path = "/api/v1/projects/{id}/workflow/snapshots/{snapshot_id}/restore", tag = "workflow",
    security(("token" = []), ("session" = [])),
    params(("id" = String, Path, description = "Project id or slug"), ("snapshot_id" = String, Path, description = "The snapshot")),
    responses((status = 200, body = Changes, description = "What the restore changed"), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody)))]
pub async fn restore(
    State(state): State<AppState>,
    ApiUser(auth): ApiUser,
    ctx: RequestContext,
    Path((id, snapshot_id)): Path<(String, String)>,
) -> AppResult<Json<Changes>> {
    let origin = Origin::from(&ctx);
    let on = crate::projects::authorize_on::<EditWorkflow>(&state.db, &auth, &origin, &id, "workflow.restore").await?;
    Ok(Json(restore_to(&state, &auth, &origin, &on, &snapshot_id).await?))
}

/// Make the project's workflow document equal to a snapshot, for a caller who may edit it.
pub async fn restore_to(
    state: &AppState,
    auth: &Authenticated,
    origin: &Origin,
    on: &Granted<EditWorkflow>,
    snapshot_id: &str,
) -> AppResult<Changes> {
    let project = on.project();
    let target = content_of(state, &project.id, snapshot_id).await?;
    let room: Arc<Room> = state.rooms.open(&project.id).await?;
    let current = current_content(&room).await?;
    let state_now = room.awareness.lock().await.doc().transact().encode_state_as_update_v1(&StateVector::default());
    let changed = changes(&current, &target);
    let target_for_task = target.clone();
    let update = tokio::task::spawn_blocking(move || restoring_update(&state_now, &target_for_task))
        .await
        .map_err(|e| AppError::Internal(anyhow::anyhow!("restore task: {e}")))?
        .map_err(|e| AppError::Internal(anyhow::anyhow!("restore: {e}")))?;
    // Stored, then applied and sent to everyone, like any accepted update.
    state.rooms.submit_server_update(&room, update, &auth.user.id).await?;
    let event = Event::new("workflow.restore", Outcome::Allowed, Actor::of(auth), origin)
        .project(&project.id)
        .target("snapshot", snapshot_id)
        .intent(json!({"screens_changed": changed.screens_added.len() + changed.screens_removed.len() + changed.screens_changed.len(),
                       "edges_changed": changed.edges_added.len() + changed.edges_removed.len() + changed.edges_changed.len()}));
    audit::record_alone(&state.db, event).await?;
    Ok(changed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restoring_makes_the_document_equal_to_the_snapshot() {
        let doc = filter::new_doc();
        {
            let screens = doc.get_or_insert_map("screens");
            let mut txn = doc.transact_mut();
            screens.insert(&mut txn, "a", MapPrelim::from([("name", In::from("A"))]));
            screens.insert(&mut txn, "b", MapPrelim::from([("name", In::from("B"))]));
        }
        let target = json!({"screens": {"a": {"name": "A2", "props": {"x": "1"}}, "c": {"name": "C"}},
                            "edges": [{"id": "e1", "to": {"screen_id": "c"}}]});
        let state = doc.transact().encode_state_as_update_v1(&StateVector::default());
        let update = restoring_update(&state, &target).unwrap();
        doc.transact_mut().apply_update(Update::decode_v1(&update).unwrap()).unwrap();
        assert_eq!(filter::content(&doc), target);
        let c = changes(&json!({"screens": {"a": {}, "b": {}}, "edges": []}), &target);
        assert_eq!(
            (c.screens_added, c.screens_removed, c.screens_changed, c.edges_added),
            (vec!["c".to_owned()], vec!["b".to_owned()], vec!["a".to_owned()], vec!["e1".to_owned()])
        );
    }
}
