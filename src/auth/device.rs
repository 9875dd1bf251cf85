//! OAuth 2.0 Device Authorization Grant (RFC 8628) for `arno login`: the CLI asks for a code,
//! the person approves it on `/device` in a signed-in browser, and the CLI's polling returns a
//! personal API token.
//!
//! The two endpoints speak OAuth's error format (`{"error": "authorization_pending"}`, RFC 8628
//! §3.5) and also carry Arno's `code`/`message`, so both kinds of client understand them.

use askama::Template;
use axum::Form;
use axum::extract::rejection::FormRejection;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::ToSchema;
use utoipa_axum::routes;

use super::{PageUser, tokens};
use crate::app::AppState;
use crate::audit::{self, Actor, Event, Origin, Outcome};
use crate::db::now_ms;
use crate::error::{AppError, AppResult};
use crate::http::RequestContext;
use crate::http::api::{ApiRouter, PageForm};
use crate::keys::sha256_hex;
use crate::ui::{PageContext, render};

/// The only client: the `arno` command line.
pub const CLIENT_ID: &str = "arno-cli";
const GRANT_TYPE: &str = "urn:ietf:params:oauth:grant-type:device_code";
const LIFETIME_MS: i64 = 10 * 60 * 1000;
const INTERVAL_MS: i64 = 5_000;
/// RFC 8628 §3.5: on `slow_down` the interval grows by 5 seconds.
const SLOW_DOWN_STEP_MS: i64 = 5_000;
/// Token lifetime for CLI logins.
const TOKEN_DAYS: i64 = 90;
/// Letters that cannot be confused with each other or spell words (RFC 8628 §6.1).
const ALPHABET: &[u8] = b"BCDFGHJKLMNPQRSTVWXZ";

pub fn api() -> ApiRouter {
    ApiRouter::new().routes(routes!(device_code)).routes(routes!(device_token))
}

#[derive(Deserialize, ToSchema)]
pub struct CodeRequest {
    pub client_id: String,
    /// Ignored: a CLI login gets a personal API token.
    pub scope: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct CodeResponse {
    pub device_code: String,
    pub user_code: String,
    pub verification_uri: String,
    pub verification_uri_complete: String,
    pub expires_in: i64,
    pub interval: i64,
}

/// An OAuth error answer that also follows Arno's error contract.
fn oauth_error(status: StatusCode, error: &str, description: &str) -> Response {
    let code = match status {
        StatusCode::UNAUTHORIZED => "unauthorized",
        StatusCode::TOO_MANY_REQUESTS => "rate_limited",
        _ => "validation",
    };
    let body = json!({"error": error, "error_description": description, "code": code, "message": description});
    let mut r = (status, axum::Json(body)).into_response();
    r.headers_mut().insert(axum::http::header::CACHE_CONTROL, axum::http::HeaderValue::from_static("no-store"));
    r
}

fn user_code() -> String {
    let mut bytes = [0u8; 8];
    getrandom::fill(&mut bytes).expect("the OS random source works");
    let letters: String = bytes.iter().map(|b| ALPHABET[(*b as usize) % ALPHABET.len()] as char).collect();
    format!("{}-{}", &letters[..4], &letters[4..])
}

/// `XXXX-XXXX` in any case, with or without the dash or spaces.
fn normalize_user_code(raw: &str) -> String {
    let letters: String = raw.chars().filter(|c| c.is_ascii_alphabetic()).map(|c| c.to_ascii_uppercase()).collect();
    if letters.len() == 8 { format!("{}-{}", &letters[..4], &letters[4..]) } else { letters }
}

/// `POST /api/v1/auth/device/code` (RFC 8628 §3.1–3.2)
#[utoipa::path(post, path = "/api/v1/auth/device/code", tag = "auth",
    request_body(content = CodeRequest, content_type = "application/x-www-form-urlencoded"),
    responses((status = 200, body = CodeResponse), (status = 400, description = "`invalid_client`")))]
pub async fn device_code(
    State(state): State<AppState>,
    ctx: RequestContext,
    form: Result<Form<CodeRequest>, FormRejection>,
) -> AppResult<Response> {
    let req = match form {
        Ok(Form(req)) => req,
        Err(e) => return Ok(oauth_error(StatusCode::BAD_REQUEST, "invalid_request", &e.body_text())),
    };
    if req.client_id != CLIENT_ID {
        return Ok(oauth_error(StatusCode::BAD_REQUEST, "invalid_client", "unknown client_id (use arno-cli)"));
    }
    if let Err(retry_after_ms) = super::throttle::start_allowed(&state.db, "device", ctx.client_ip).await? {
        let origin = Origin::from(&ctx);
        let event = Event::new("auth.device", Outcome::Denied, Actor::Anonymous, &origin)
            .intent(json!({"reason": "throttled", "limit": "starts_per_address"}));
        crate::audit::record_alone(&state.db, event).await?;
        let mut response = oauth_error(
            StatusCode::TOO_MANY_REQUESTS,
            "slow_down",
            "too many device sign-ins were started from this address; wait and try again",
        );
        response.headers_mut().insert(axum::http::header::RETRY_AFTER, crate::error::retry_after(retry_after_ms));
        return Ok(response);
    }
    let device_code = crate::keys::random_token(32);
    let now = now_ms();
    let mut conn = state.db.pool().acquire().await?;
    let mut code = user_code();
    for attempt in 0.. {
        let inserted = sqlx::query(
            "INSERT INTO device_grants (device_code_hash, user_code, client_id, created_at, expires_at, interval_ms, denied, redeemed) \
             VALUES ($1, $2, $3, $4, $5, $6, 0, 0)",
        )
        .bind(sha256_hex(&device_code))
        .bind(&code)
        .bind(CLIENT_ID)
        .bind(now)
        .bind(now + LIFETIME_MS)
        .bind(INTERVAL_MS)
        .execute(&mut *conn)
        .await;
        match inserted {
            Ok(_) => break,
            Err(e) if crate::db::is_unique_violation(&e) && attempt < 5 => code = user_code(),
            Err(e) => return Err(e.into()),
        }
    }
    let base = state.config.public_base();
    Ok(axum::Json(CodeResponse {
        verification_uri: format!("{base}/device"),
        verification_uri_complete: format!("{base}/device?user_code={code}"),
        device_code,
        user_code: code,
        expires_in: LIFETIME_MS / 1000,
        interval: INTERVAL_MS / 1000,
    })
    .into_response())
}

#[derive(Deserialize, ToSchema)]
pub struct TokenRequest {
    pub grant_type: String,
    pub device_code: String,
    pub client_id: String,
}

#[derive(Serialize, ToSchema)]
pub struct TokenResponse {
    /// A personal API token (`arno_…`).
    pub access_token: String,
    pub token_type: &'static str,
    pub expires_in: i64,
}

#[derive(sqlx::FromRow)]
struct Grant {
    expires_at: i64,
    interval_ms: i64,
    last_poll_at: Option<i64>,
    approved_by: Option<String>,
    denied: i64,
    redeemed: i64,
}

/// `POST /api/v1/auth/device/token` (RFC 8628 §3.4–3.5)
#[utoipa::path(post, path = "/api/v1/auth/device/token", tag = "auth",
    request_body(content = TokenRequest, content_type = "application/x-www-form-urlencoded"),
    responses((status = 200, body = TokenResponse),
        (status = 400, description = "`authorization_pending`, `slow_down`, `expired_token`, `access_denied`, `invalid_grant`")))]
pub async fn device_token(
    State(state): State<AppState>,
    ctx: RequestContext,
    form: Result<Form<TokenRequest>, FormRejection>,
) -> AppResult<Response> {
    let req = match form {
        Ok(Form(req)) => req,
        Err(e) => return Ok(oauth_error(StatusCode::BAD_REQUEST, "invalid_request", &e.body_text())),
    };
    if req.grant_type != GRANT_TYPE {
        return Ok(oauth_error(StatusCode::BAD_REQUEST, "unsupported_grant_type", "use the device_code grant"));
    }
    if req.client_id != CLIENT_ID {
        return Ok(oauth_error(StatusCode::BAD_REQUEST, "invalid_client", "unknown client_id"));
    }
    let hash = sha256_hex(&req.device_code);
    let now = now_ms();
    let mut tx = state.db.begin().await?;
    let grant: Option<Grant> = sqlx::query_as(
        "SELECT expires_at, interval_ms, last_poll_at, approved_by, denied, redeemed FROM device_grants WHERE device_code_hash = $1",
    )
    .bind(&hash)
    .fetch_optional(&mut *tx)
    .await?;
    let Some(grant) = grant.filter(|g| g.redeemed == 0) else {
        return Ok(oauth_error(StatusCode::BAD_REQUEST, "invalid_grant", "unknown or already used device code"));
    };
    if grant.expires_at < now {
        return Ok(oauth_error(StatusCode::BAD_REQUEST, "expired_token", "the code expired; run `arno login` again"));
    }
    if grant.denied != 0 {
        return Ok(oauth_error(StatusCode::BAD_REQUEST, "access_denied", "the sign-in was refused in the browser"));
    }
    // Polling faster than the interval: slow down, and the interval grows.
    if grant.last_poll_at.is_some_and(|last| now - last < grant.interval_ms) {
        sqlx::query(
            "UPDATE device_grants SET interval_ms = interval_ms + $2, last_poll_at = $3 WHERE device_code_hash = $1",
        )
        .bind(&hash)
        .bind(SLOW_DOWN_STEP_MS)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        return Ok(oauth_error(StatusCode::BAD_REQUEST, "slow_down", "polling too fast; wait 5 more seconds"));
    }
    sqlx::query("UPDATE device_grants SET last_poll_at = $2 WHERE device_code_hash = $1")
        .bind(&hash)
        .bind(now)
        .execute(&mut *tx)
        .await?;
    let Some(user_id) = grant.approved_by else {
        tx.commit().await?;
        return Ok(oauth_error(
            StatusCode::BAD_REQUEST,
            "authorization_pending",
            "waiting for approval in the browser",
        ));
    };
    sqlx::query("UPDATE device_grants SET redeemed = 1 WHERE device_code_hash = $1")
        .bind(&hash)
        .execute(&mut *tx)
        .await?;
    let (info, token) = tokens::create(&mut tx, &user_id, "arno login (device)", Some(TOKEN_DAYS)).await?;
    let origin = Origin::from(&ctx);
    let event = Event::new("token.create", Outcome::Allowed, Actor::User(&user_id), &origin)
        .target("api_token", &info.id)
        .intent(json!({"via": "device_flow", "expires_at": info.expires_at}));
    audit::record(&mut tx, event).await?;
    tx.commit().await?;
    let mut response =
        axum::Json(TokenResponse { access_token: token, token_type: "Bearer", expires_in: TOKEN_DAYS * 86_400 })
            .into_response();
    response.headers_mut().insert(axum::http::header::CACHE_CONTROL, axum::http::HeaderValue::from_static("no-store"));
    Ok(response)
}

#[derive(Template)]
#[template(path = "device.html")]
struct DevicePage {
    page: PageContext,
    user_code: String,
    /// A code was entered and is waiting for a decision.
    confirm: bool,
    message: Option<String>,
    error: Option<String>,
}

#[derive(Deserialize)]
pub struct DeviceQuery {
    user_code: Option<String>,
}

/// `GET /device`: enter (or confirm) the code shown by `arno login`.
pub async fn page(
    State(state): State<AppState>,
    PageUser(auth): PageUser,
    Query(q): Query<DeviceQuery>,
) -> AppResult<Html<String>> {
    let code = q.user_code.as_deref().map(normalize_user_code).unwrap_or_default();
    render(&DevicePage {
        page: PageContext::for_user(&auth, &state.keys.csrf),
        confirm: !code.is_empty(),
        user_code: code,
        message: None,
        error: None,
    })
}

#[derive(Deserialize)]
pub struct DeviceForm {
    #[serde(default)]
    user_code: String,
    /// `approve` or `deny`; absent: show the confirmation.
    #[serde(default)]
    decision: String,
}

/// `POST /device`
pub async fn decide(
    State(state): State<AppState>,
    PageUser(auth): PageUser,
    ctx: RequestContext,
    PageForm(form): PageForm<DeviceForm>,
) -> AppResult<Response> {
    let code = normalize_user_code(&form.user_code);
    let page =
        |confirm: bool, message: Option<String>, error: Option<String>, status: StatusCode| -> AppResult<Response> {
            let html = render(&DevicePage {
                page: PageContext::for_user(&auth, &state.keys.csrf),
                user_code: code.clone(),
                confirm,
                message,
                error,
            })?;
            Ok((status, html).into_response())
        };
    let now = now_ms();
    let live: Option<(String,)> = {
        let mut conn = state.db.pool().acquire().await?;
        sqlx::query_as(
            "SELECT device_code_hash FROM device_grants WHERE user_code = $1 AND expires_at > $2 AND approved_by IS NULL \
             AND denied = 0 AND redeemed = 0",
        )
        .bind(&code)
        .bind(now)
        .fetch_optional(&mut *conn)
        .await?
    };
    let Some((hash,)) = live else {
        let error = "That code is not valid or has expired. Run `arno login` again for a new one.".to_owned();
        return page(false, None, Some(error), StatusCode::BAD_REQUEST);
    };
    let approve = match form.decision.as_str() {
        "approve" => true,
        "deny" => false,
        _ => return page(true, None, None, StatusCode::OK),
    };
    let origin = Origin::from(&ctx);
    let mut tx = state.db.begin().await?;
    let updated = if approve {
        sqlx::query("UPDATE device_grants SET approved_by = $2 WHERE device_code_hash = $1 AND approved_by IS NULL AND denied = 0")
            .bind(&hash)
            .bind(&auth.user.id)
            .execute(&mut *tx)
            .await?
    } else {
        sqlx::query("UPDATE device_grants SET denied = 1 WHERE device_code_hash = $1 AND approved_by IS NULL")
            .bind(&hash)
            .execute(&mut *tx)
            .await?
    };
    if updated.rows_affected() == 0 {
        return Err(AppError::Conflict("this code was decided in the meantime".into()));
    }
    let event =
        Event::new("auth.device", if approve { Outcome::Allowed } else { Outcome::Denied }, Actor::of(&auth), &origin)
            .target("user", &auth.user.id)
            .intent(json!({"client_id": CLIENT_ID, "decision": if approve { "approve" } else { "deny" }}));
    audit::record(&mut tx, event).await?;
    tx.commit().await?;
    let message = if approve {
        "Done: the command line is signed in as you. You can close this page."
    } else {
        "The sign-in was refused; the command line gets no access."
    };
    page(false, Some(message.to_owned()), None, StatusCode::OK)
}

/// Drop expired grants (housekeeping).
pub async fn sweep(conn: &mut sqlx::AnyConnection) -> Result<u64, sqlx::Error> {
    let done = sqlx::query("DELETE FROM device_grants WHERE expires_at < $1")
        .bind(now_ms() - LIFETIME_MS)
        .execute(conn)
        .await?;
    Ok(done.rows_affected())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_codes_are_easy_to_type() {
        let code = user_code();
        assert_eq!(code.len(), 9);
        assert!(code.chars().all(|c| c == '-' || ALPHABET.contains(&(c as u8))));
        assert_eq!(normalize_user_code(" bcdf ghjk "), "BCDF-GHJK");
        assert_eq!(normalize_user_code("bcdf-ghjk"), "BCDF-GHJK");
    }
}
