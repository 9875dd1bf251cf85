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
        // The commit a check run, check suite or commit status is about.
        "sha": payload["check_run"]["head_sha"].as_str().or(payload["check_suite"]["head_sha"].as_str())
            .or(payload["sha"].as_str()),
        "removed": removed,
    })
}

fn refused(reason: &'static str) -> Response {
    let message = match reason {
        "too_large" => "a delivery over 25 MB",
        "no_delivery_id" => "a delivery without X-GitHub-Delivery",
        "bad_json" => "a body that is not JSON",
        "unreadable" => "the delivery's body could not be read in time",
        _ => "the signature does not match this connection's webhook secret",
    };
    let status = match reason {
        "too_large" => StatusCode::PAYLOAD_TOO_LARGE,
        "no_delivery_id" | "bad_json" | "unreadable" => StatusCode::BAD_REQUEST,
        _ => StatusCode::UNAUTHORIZED,
    };
    (status, axum::Json(json!({"code": "webhook_refused", "message": message}))).into_response()
}

/// Audited under the connection's name only when it exists (a caller cannot fill the log with
/// names of its choosing: unknown ones are one target, folded by the damper like the rest).
async fn audit_refusal(
    state: &AppState,
    origin: &Origin,
    connection: Option<&str>,
    reason: &'static str,
) -> AppResult<()> {
    let event = Event::new("webhook.refused", Outcome::Denied, Actor::Anonymous, origin)
        .target("git_connection", connection.unwrap_or("(unknown)"))
        .intent(json!({"reason": reason}));
    audit::record_alone(&state.db, event).await?;
    Ok(())
}

/// Bodies read at once (each up to 25 MB), and how long one may take to arrive.
const CONCURRENT_READS: usize = 8;
const READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

fn reads() -> &'static tokio::sync::Semaphore {
    static READS: std::sync::OnceLock<tokio::sync::Semaphore> = std::sync::OnceLock::new();
    READS.get_or_init(|| tokio::sync::Semaphore::new(CONCURRENT_READS))
}

/// A well-formed `sha256=<64 hex digits>` signature header.
fn well_formed(signature: &str) -> bool {
    signature.strip_prefix("sha256=").is_some_and(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// The body, up to `limit` bytes (`too_large` beyond; `unreadable` when the client fails).
async fn read_limited(body: Body, limit: usize) -> Result<Vec<u8>, &'static str> {
    use futures_util::StreamExt;
    let mut stream = body.into_data_stream();
    let mut raw = Vec::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|_| "unreadable")?;
        if raw.len() + chunk.len() > limit {
            return Err("too_large");
        }
        raw.extend_from_slice(&chunk);
    }
    Ok(raw)
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
    // Everything that can be decided without the body first: which connection, a signature of
    // the right shape, a declared length within GitHub's limit.
    let secret = if super::connections::valid_name(&connection) {
        let mut conn = state.db.pool().acquire().await?;
        super::connections::webhook_secret(&mut conn, &state.keys, &connection).await.map_err(|e| match e {
            super::connections::ConnectionError::Db(e) => AppError::from(e),
            other => AppError::Unavailable(format!("the connection's webhook secret cannot be read: {other}")),
        })?
    } else {
        None
    };
    let known = secret.is_some().then_some(connection.as_str());
    let signature = header("x-hub-signature-256").filter(|s| well_formed(s)).map(str::to_owned);
    if secret.is_none() || signature.is_none() {
        let reason = if secret.is_none() { "unknown_connection" } else { "bad_signature" };
        audit_refusal(&state, &origin, known, reason).await?;
        return Ok(refused(reason));
    }
    let declared = header("content-length").and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_DELIVERY_BYTES as u64) {
        audit_refusal(&state, &origin, known, "too_large").await?;
        return Ok(refused("too_large"));
    }
    let raw = {
        let _permit = reads().acquire().await.map_err(|e| AppError::Internal(e.into()))?;
        match tokio::time::timeout(READ_TIMEOUT, read_limited(body, MAX_DELIVERY_BYTES)).await {
            Ok(Ok(raw)) => raw,
            Ok(Err(reason)) => {
                audit_refusal(&state, &origin, known, reason).await?;
                return Ok(refused(reason));
            }
            Err(_) => {
                audit_refusal(&state, &origin, known, "unreadable").await?;
                return Ok(refused("unreadable"));
            }
        }
    };
    let secret = secret.unwrap_or_default();
    if !signature.as_deref().is_some_and(|sig| signature_valid(secret.as_bytes(), &raw, sig)) {
        audit_refusal(&state, &origin, known, "bad_signature").await?;
        return Ok(refused("bad_signature"));
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
    let renamed_to =
        hint["previous"].as_str().and(hint["repository"].as_str()).map(str::to_owned).filter(|_| event == "repository");
    let now = now_ms();
    let mut tx = state.db.begin().await?;
    // A delivery found missing at start (see `sync::missed_deliveries`) and delivered after all
    // replaces its placeholder.
    let inserted = sqlx::query(
        "INSERT INTO webhook_deliveries (delivery_id, connection, event, action, repository, renamed_to, hint, received_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
         ON CONFLICT (delivery_id) DO UPDATE SET connection = excluded.connection, event = excluded.event, \
           action = excluded.action, repository = excluded.repository, renamed_to = excluded.renamed_to, \
           hint = excluded.hint, received_at = excluded.received_at, handled_at = NULL \
         WHERE webhook_deliveries.event = 'missed'",
    )
    .bind(delivery)
    .bind(connection)
    .bind(event)
    .bind(hint["action"].as_str())
    .bind(&repository)
    .bind(&renamed_to)
    .bind(hint.to_string())
    .bind(now)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if inserted == 0 {
        tx.rollback().await?;
        return Ok(false);
    }
    // Installation events concern every project of the connection; the others the projects of
    // their repository — known by its name, or by the name a rename not yet applied gives it.
    let projects: Vec<(String,)> =
        match (event, repository.as_deref()) {
            ("installation" | "installation_repositories", _) => {
                sqlx::query_as("SELECT id FROM projects WHERE git_connection = $1 AND state <> 'archived'")
                    .bind(connection)
                    .fetch_all(&mut *tx)
                    .await?
            }
            (_, Some(repo)) => sqlx::query_as(
                "SELECT id FROM projects WHERE git_connection = $1 AND state <> 'archived' AND (lower(repo_path) = $2 \
                 OR id IN (SELECT w.project_id FROM webhook_work w \
                           JOIN webhook_deliveries d ON d.delivery_id = w.delivery_id \
                           WHERE d.connection = $1 AND d.renamed_to = $2))",
            )
            .bind(connection)
            .bind(repo)
            .fetch_all(&mut *tx)
            .await?,
            // About no repository (an organisation, the App's own settings…): nothing to do.
            (_, None) => vec![],
        };
    for (project_id,) in &projects {
        sqlx::query("INSERT INTO webhook_work (project_id, delivery_id) VALUES ($1, $2) ON CONFLICT DO NOTHING")
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
            .bind(now)
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
