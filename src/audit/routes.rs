//! `GET /api/v1/audit/export` and `GET /api/v1/audit/public-key`.

use axum::Json;
use axum::body::Body;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::routes;

use super::export::{self, Filter, Format};
use super::{Actor, Event, Origin, Outcome};
use crate::app::AppState;
use crate::auth::{ApiUser, Authenticated};
use crate::error::{AppError, AppResult, ErrorBody};
use crate::http::RequestContext;
use crate::http::api::ApiRouter;

pub fn api() -> ApiRouter {
    ApiRouter::new().routes(routes!(export_log)).routes(routes!(public_key))
}

/// Only auditors and admins read the audit log; a refusal is itself audited.
pub async fn require_auditor(state: &AppState, auth: &Authenticated, origin: &Origin, action: &str) -> AppResult<()> {
    if crate::auth::access::holds_org::<crate::auth::access::ReadAudit>(&auth.user) {
        return Ok(());
    }
    let event = Event::new(action, Outcome::Denied, Actor::of(auth), origin)
        .intent(json!({"reason": "requires the auditor or admin role"}));
    super::record_alone(&state.db, event).await?;
    Err(AppError::forbidden("reading the audit log requires the Auditor or Admin role"))
}

/// Parse `2026-11-22`, `2026-11-22T10:00:00Z` or any RFC 3339 time into ms since the epoch.
pub fn parse_time(field: &str, raw: &str) -> AppResult<i64> {
    let full = if raw.len() == 10 { format!("{raw}T00:00:00Z") } else { raw.to_owned() };
    let t = humantime::parse_rfc3339_weak(&full)
        .map_err(|_| AppError::field(field, "expected an RFC 3339 time such as 2026-11-22T00:00:00Z, or a date"))?;
    let ms = t.duration_since(std::time::UNIX_EPOCH).map_err(|_| AppError::field(field, "before 1970"))?.as_millis();
    i64::try_from(ms).map_err(|_| AppError::field(field, "too far in the future"))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ExportQuery {
    /// Start (inclusive), RFC 3339 or a date; default: the beginning.
    pub from: Option<String>,
    /// End (exclusive), RFC 3339 or a date; default: now.
    pub to: Option<String>,
    /// `jsonl` (default, verifiable with `arno audit verify`), `csv`, `ocsf` or `cef`.
    pub format: Option<String>,
    /// Only this actor's records in full (a user id).
    pub actor: Option<String>,
    /// Only this action, e.g. `auth.login`.
    pub action: Option<String>,
    pub project: Option<String>,
    /// A target id, or `type:id`.
    pub target: Option<String>,
    /// `allowed` or `denied`.
    pub outcome: Option<String>,
}

impl ExportQuery {
    pub fn into_request(self) -> AppResult<export::Request> {
        let from = self.from.as_deref().map(|f| parse_time("from", f)).transpose()?.unwrap_or(0);
        let to = self.to.as_deref().map(|t| parse_time("to", t)).transpose()?;
        if to.is_some_and(|to| from >= to) {
            return Err(AppError::field("to", "must be after `from`"));
        }
        let format = match self.format.as_deref() {
            None => Format::Jsonl,
            Some(f) => Format::parse(f).ok_or_else(|| AppError::field("format", "must be jsonl, csv, ocsf or cef"))?,
        };
        if let Some(o) = self.outcome.as_deref().filter(|o| !matches!(*o, "allowed" | "denied")) {
            return Err(AppError::field("outcome", format!("`{o}` is not allowed or denied")));
        }
        let filter = Filter {
            actor: self.actor,
            action: self.action,
            project: self.project,
            target: self.target,
            outcome: self.outcome,
        };
        Ok(export::Request { from, to, filter, format })
    }
}

/// `GET /api/v1/audit/export`: stream a verifiable export of a time range.
#[utoipa::path(get, path = "/api/v1/audit/export", tag = "audit",
    security(("token" = []), ("session" = [])),
    params(ExportQuery),
    responses(
        (status = 200, description = "The export, streamed: JSON Lines (header, records, stubs, checkpoints, signed trailer) or CSV", content_type = "application/x-ndjson"),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn export_log(
    State(state): State<AppState>,
    ApiUser(auth): ApiUser,
    ctx: RequestContext,
    query: Result<Query<ExportQuery>, QueryRejection>,
) -> AppResult<Response> {
    let origin = Origin::from(&ctx);
    require_auditor(&state, &auth, &origin, "audit.export").await?;
    let Query(query) = query.map_err(|e| AppError::validation(e.body_text()))?;
    let req = query.into_request()?;
    super::record_alone(
        &state.db,
        Event::new("audit.export", Outcome::Allowed, Actor::of(&auth), &origin).intent(json!({"from": crate::db::rfc3339(req.from), "to": req.to.map(crate::db::rfc3339), "format": req.format, "filter": req.filter})),
    )
    .await?;
    // Sign the head first, so the export ends on a checkpoint whenever it reaches the present.
    super::checkpoint(&state.db, &state.keys.audit).await?;

    // A small bounded channel: the export runs at the pace the client reads.
    let (mut tx, mut rx) = tokio::sync::mpsc::channel::<Result<bytes::Bytes, std::io::Error>>(16);
    let (db, keys, format) = (state.db.clone(), state.keys.clone(), req.format);
    tokio::spawn(async move {
        if let Err(e) = export::run(&db, &keys.audit, &req, &mut tx).await {
            tracing::warn!(event_type = "audit_export_failed", error = %e, "audit export stopped");
            // Abort the body: the client sees a broken transfer, and the file has no trailer.
            let _ = tx.send(Err(std::io::Error::other("export failed"))).await;
        }
    });
    let stream = futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx));
    let mut response = Body::from_stream(stream).into_response();
    let h = response.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(format.content_type()));
    let name = format!("attachment; filename=\"arno-audit.{}\"", format.extension());
    h.insert(header::CONTENT_DISPOSITION, HeaderValue::from_str(&name).expect("ASCII"));
    Ok(response)
}

#[derive(Serialize, ToSchema)]
pub struct PublicKey {
    /// `ed25519:` + base64url; pass it to `arno audit verify --public-key`.
    pub public_key: String,
    pub key_id: String,
}

/// `GET /api/v1/audit/public-key`: the key that signs checkpoints and exports.
#[utoipa::path(get, path = "/api/v1/audit/public-key", tag = "audit",
    security(("token" = []), ("session" = [])),
    responses((status = 200, body = PublicKey), (status = 401, body = ErrorBody)))]
pub async fn public_key(State(state): State<AppState>, ApiUser(_caller): ApiUser) -> Json<PublicKey> {
    Json(PublicKey { public_key: state.keys.audit.public_key_text(), key_id: state.keys.audit.key_id() })
}
