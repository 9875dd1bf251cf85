//! Webhooks from hosted providers: `POST /api/v1/webhooks/github/{connection}`.
//!
//! A delivery is believed only when its `X-Hub-Signature-256` is the HMAC-SHA256 of the raw body
//! under the connection's webhook secret (compared in constant time); anything else is 401 and
//! audited, once per source and minute (a flood of forgeries writes one record a minute). A
//! signed delivery is stored in the inbox under its `X-GitHub-Delivery` id — a repeat (GitHub's
//! redelivery keeps the id) is recognised and stored once — and answered `202` at once, well
//! within GitHub's ten seconds. The sync job of each project it concerns then handles the
//! project's deliveries in order, as hints: it re-reads the repository rather than trusting the
//! payload (whose commit list is capped).

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;

use crate::app::AppState;
use crate::audit::{self, Actor, Event, Origin, Outcome};
use crate::db::now_ms;
use crate::error::{AppError, AppResult};
use crate::http::RequestContext;

/// GitHub never delivers more than 25 MB.
pub const MAX_DELIVERY_BYTES: usize = 25 << 20;
/// Deliveries are kept this long to recognise redeliveries.
pub const KEEP_MS: i64 = 7 * 24 * 3600 * 1000;

/// Whether `signature` (`sha256=<hex>`) is the HMAC-SHA256 of `body` under `secret`, compared in
/// constant time.
pub fn signature_valid(secret: &[u8], body: &[u8], signature: &str) -> bool {
    let Some(hex_part) = signature.strip_prefix("sha256=") else { return false };
    let Ok(expected) = hex::decode(hex_part.trim()) else { return false };
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes keys of any length");
    mac.update(body);
    mac.verify_slice(&expected).is_ok()
}

/// What a delivery tells Arno to look at (the payload's own claims go no further than this).
pub fn hint_of(event: &str, payload: &Value) -> Value {
    let s = |v: &Value| v.as_str().map(str::to_owned);
    let repo = &payload["repository"];
    let full_name = s(&repo["full_name"]).map(|n| n.to_ascii_lowercase());
    // A renamed or transferred repository: its old name is what Arno knows it by.
    let previous = match (event, payload["action"].as_str()) {
        ("repository", Some("renamed")) => s(&payload["changes"]["repository"]["name"]["from"])
            .and_then(|old| s(&repo["owner"]["login"]).map(|owner| format!("{owner}/{old}").to_ascii_lowercase())),
        ("repository", Some("transferred")) => s(&payload["changes"]["owner"]["from"]["user"]["login"])
            .or_else(|| s(&payload["changes"]["owner"]["from"]["organization"]["login"]))
            .and_then(|owner| s(&repo["name"]).map(|name| format!("{owner}/{name}").to_ascii_lowercase())),
        _ => None,
    };
    let removed: Vec<String> = payload["repositories_removed"]
        .as_array()
        .map(|l| l.iter().filter_map(|r| s(&r["full_name"]).map(|n| n.to_ascii_lowercase())).collect())
        .unwrap_or_default();
    json!({
        "event": event,
        "action": payload["action"],
        "repository": full_name,
        "previous": previous,
        "new_full_name": s(&repo["full_name"]),
        "installation": payload["installation"]["id"],
        "ref": payload["ref"],
        "after": payload["after"],
        "pull": payload["pull_request"]["number"],
        "removed": removed,
    })
}

fn refused(reason: &'static str) -> Response {
    let message = match reason {
        "too_large" => "a delivery over 25 MB",
        "no_delivery_id" => "a delivery without X-GitHub-Delivery",
        "bad_json" => "a body that is not JSON",
        _ => "the signature does not match this connection's webhook secret",
    };
    let status = match reason {
        "too_large" => StatusCode::PAYLOAD_TOO_LARGE,
        "no_delivery_id" | "bad_json" => StatusCode::BAD_REQUEST,
        _ => StatusCode::UNAUTHORIZED,
    };
    (status, axum::Json(json!({"code": "webhook_refused", "message": message}))).into_response()
}

async fn audit_refusal(state: &AppState, origin: &Origin, connection: &str, reason: &'static str) -> AppResult<()> {
    let event = Event::new("webhook.refused", Outcome::Denied, Actor::Anonymous, origin)
        .target("git_connection", connection)
        .intent(json!({"reason": reason}));
    audit::record_alone(&state.db, event).await?;
    Ok(())
}

/// `POST /api/v1/webhooks/github/{connection}`
pub async fn receive_github(
    State(state): State<AppState>,
    ctx: RequestContext,
    Path(connection): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> AppResult<Response> {
    let origin = Origin::from(&ctx);
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::trim);
    let Ok(raw) = axum::body::to_bytes(body, MAX_DELIVERY_BYTES).await else {
        audit_refusal(&state, &origin, &connection, "too_large").await?;
        return Ok(refused("too_large"));
    };
    // The connection's secret; an unknown connection is refused exactly as a bad signature.
    let secret = if super::connections::valid_name(&connection) {
        let mut conn = state.db.pool().acquire().await?;
        super::connections::secrets(&mut conn, &state.keys, &connection).await.ok().map(|s| s.webhook_secret)
    } else {
        None
    };
    let signed = match (&secret, header("x-hub-signature-256")) {
        (Some(secret), Some(signature)) => signature_valid(secret.as_bytes(), &raw, signature),
        _ => false,
    };
    if !signed {
        let reason = if secret.is_none() { "unknown_connection" } else { "bad_signature" };
        audit_refusal(&state, &origin, &connection, reason).await?;
        return Ok(refused(reason));
    }
    let delivery = header("x-github-delivery")
        .filter(|d| !d.is_empty() && d.len() <= 100 && d.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'));
    let Some(delivery) = delivery else { return Ok(refused("no_delivery_id")) };
    let event = header("x-github-event").unwrap_or("unknown");
    let event =
        if event.len() <= 64 && event.bytes().all(|b| b.is_ascii_lowercase() || b == b'_') { event } else { "unknown" };
    if event == "ping" {
        return Ok((StatusCode::ACCEPTED, axum::Json(json!({"accepted": true, "event": "ping"}))).into_response());
    }
    let payload: Value = match serde_json::from_slice(&raw) {
        Ok(v) => v,
        Err(_) => return Ok(refused("bad_json")),
    };
    let hint = hint_of(event, &payload);
    let stored = store(&state, &connection, delivery, event, &hint).await?;
    Ok((StatusCode::ACCEPTED, axum::Json(json!({"accepted": true, "duplicate": !stored}))).into_response())
}

/// Put a delivery in the inbox and schedule the sync of every project it concerns; `false` for
/// a delivery already there.
async fn store(state: &AppState, connection: &str, delivery: &str, event: &str, hint: &Value) -> AppResult<bool> {
    let repository = hint["previous"].as_str().or(hint["repository"].as_str()).map(str::to_owned);
    let mut tx = state.db.begin().await?;
    let inserted = sqlx::query(
        "INSERT INTO webhook_deliveries (delivery_id, connection, event, action, repository, hint, received_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (delivery_id) DO NOTHING",
    )
    .bind(delivery)
    .bind(connection)
    .bind(event)
    .bind(hint["action"].as_str())
    .bind(&repository)
    .bind(hint.to_string())
    .bind(now_ms())
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if inserted == 0 {
        tx.rollback().await?;
        return Ok(false);
    }
    // Installation events concern every project of the connection; the others, one repository.
    let projects: Vec<(String,)> =
        match repository.as_deref() {
            Some(repo) if !matches!(event, "installation" | "installation_repositories") => sqlx::query_as(
                "SELECT id FROM projects WHERE git_connection = $1 AND lower(repo_path) = $2 AND state <> 'archived'",
            )
            .bind(connection)
            .bind(repo)
            .fetch_all(&mut *tx)
            .await?,
            _ => {
                sqlx::query_as("SELECT id FROM projects WHERE git_connection = $1 AND state <> 'archived'")
                    .bind(connection)
                    .fetch_all(&mut *tx)
                    .await?
            }
        };
    for (project_id,) in &projects {
        sqlx::query("INSERT INTO webhook_work (project_id, delivery_id) VALUES ($1, $2)")
            .bind(project_id)
            .bind(delivery)
            .execute(&mut *tx)
            .await?;
        crate::projects::sync::schedule(&mut tx, project_id, false).await?;
    }
    if projects.is_empty() {
        // About nothing Arno follows: kept only to recognise a redelivery.
        sqlx::query("UPDATE webhook_deliveries SET handled_at = $2 WHERE delivery_id = $1")
            .bind(delivery)
            .bind(now_ms())
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    tracing::info!(event_type = "webhook_received", connection, event, projects = projects.len(), "webhook stored");
    Ok(true)
}

/// Forget deliveries older than [`KEEP_MS`] (run by the maintenance loop).
pub async fn prune(conn: &mut sqlx::AnyConnection, now: i64) -> Result<u64, AppError> {
    Ok(sqlx::query("DELETE FROM webhook_deliveries WHERE received_at < $1")
        .bind(now - KEEP_MS)
        .execute(conn)
        .await?
        .rows_affected())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn githubs_documented_signature_test_vector() {
        // docs.github.com, "Validating webhook deliveries": this secret and payload give this
        // signature.
        let secret = b"It's a Secret to Everybody";
        let expected = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";
        assert!(signature_valid(secret, b"Hello, World!", expected));
        assert!(!signature_valid(secret, b"Hello, World?", expected));
        assert!(!signature_valid(b"another secret", b"Hello, World!", expected));
        assert!(!signature_valid(secret, b"Hello, World!", &expected.replace("sha256=", "sha1=")));
        assert!(!signature_valid(secret, b"Hello, World!", "sha256=zz"));
        assert!(!signature_valid(secret, b"Hello, World!", "sha256="));
    }

    #[test]
    fn a_rename_is_known_by_its_old_name() {
        let payload = json!({
            "action": "renamed",
            "changes": {"repository": {"name": {"from": "Old-DS"}}},
            "repository": {"full_name": "acme/new-ds", "name": "new-ds", "owner": {"login": "acme"}},
            "installation": {"id": 7},
        });
        let hint = hint_of("repository", &payload);
        assert_eq!(
            (hint["previous"].as_str(), hint["repository"].as_str()),
            (Some("acme/old-ds"), Some("acme/new-ds"))
        );
        assert_eq!(hint["new_full_name"], "acme/new-ds");
    }
}
