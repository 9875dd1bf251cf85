//! Sign-in, sign-out and first-run setup pages; the `/api/v1/me` and `/api/v1/tokens` API.

use askama::Template;
use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::routes;

use super::model::OrgRole;
use super::setup::{self, SetupState};
use super::tokens::{self, TokenInfo};
use super::{ApiUser, MaybeUser, password, sessions, throttle, users};
use crate::app::AppState;
use crate::audit::{self, Actor, Event, Origin, Outcome};
use crate::error::{AppError, AppResult, ErrorBody};
use crate::http::api::{ApiJson, ApiRouter, PageForm};
use crate::http::{RequestContext, cookies, csrf};
use crate::ui::{PageContext, render};

pub fn api() -> ApiRouter {
    ApiRouter::new().routes(routes!(me)).routes(routes!(list_tokens, create_token)).routes(routes!(revoke_token))
}

/// The pre-session cookie that anchors the CSRF token of forms shown before sign-in; creates
/// one (and the `Set-Cookie` for it) if the browser has none.
fn pre_session(state: &AppState, headers: &HeaderMap) -> (String, Option<HeaderValue>) {
    match cookies::get(headers, &cookies::name(&state.config, cookies::PRE_SESSION)) {
        Some(v) if v.len() <= 64 => (v, None),
        _ => {
            let v = crate::keys::random_token(16);
            let set = cookies::set(&state.config, cookies::PRE_SESSION, &v, None);
            (v, Some(set))
        }
    }
}

pub(crate) fn with_cookies(mut response: Response, set: impl IntoIterator<Item = HeaderValue>) -> Response {
    for c in set {
        response.headers_mut().append(header::SET_COOKIE, c);
    }
    response
}

/// Only same-site relative paths may be redirect targets (no open redirects).
pub(crate) fn safe_next(next: &str) -> &str {
    let ok =
        next.starts_with('/') && !next.starts_with("//") && !next.contains('\\') && !next.chars().any(char::is_control);
    if ok { next } else { "/" }
}

pub struct SsoButton {
    pub href: String,
    pub label: String,
}

fn url_encode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

#[derive(Template)]
#[template(path = "login.html")]
struct LoginPage {
    local_login: bool,
    providers: Vec<SsoButton>,
    page: PageContext,
    error: Option<String>,
    email: String,
    next: String,
    setup_pending: bool,
}

#[derive(Deserialize)]
pub struct NextQuery {
    next: Option<String>,
}

async fn login_page(
    state: &AppState,
    headers: &HeaderMap,
    status: StatusCode,
    error: Option<String>,
    email: String,
    next: String,
) -> AppResult<Response> {
    let (pre, set) = pre_session(state, headers);
    let setup_pending = {
        let mut conn = state.db.pool().acquire().await?;
        users::count(&mut conn).await? == 0
    };
    let page = LoginPage {
        page: PageContext::with_csrf(csrf::token_for(&state.keys.csrf, &pre)),
        error,
        email,
        next: safe_next(&next).to_owned(),
        setup_pending,
        local_login: state.config.local_login,
        providers: state
            .oidc
            .providers
            .iter()
            .map(|p| SsoButton {
                href: format!("/auth/oidc/{}/login?next={}", p.config.id, url_encode(safe_next(&next))),
                label: format!("Sign in with {}", p.config.name),
            })
            .collect(),
    };
    Ok(with_cookies((status, render(&page)?).into_response(), set))
}

/// `GET /login`
pub async fn login_form(
    State(state): State<AppState>,
    MaybeUser(user): MaybeUser,
    Query(q): Query<NextQuery>,
    headers: HeaderMap,
) -> AppResult<Response> {
    let next = q.next.unwrap_or_else(|| "/".into());
    if user.is_some() {
        return Ok(Redirect::to(safe_next(&next)).into_response());
    }
    login_page(&state, &headers, StatusCode::OK, None, String::new(), next).await
}

#[derive(Deserialize)]
pub struct LoginForm {
    email: String,
    password: String,
    #[serde(default)]
    next: String,
}

/// `POST /login`
pub async fn login(
    State(state): State<AppState>,
    ctx: RequestContext,
    headers: HeaderMap,
    PageForm(form): PageForm<LoginForm>,
) -> AppResult<Response> {
    let config = &state.config;
    if !config.local_login {
        let origin = Origin::from(&ctx);
        let event = Event::new("auth.login", Outcome::Denied, Actor::Anonymous, &origin)
            .intent(serde_json::json!({"method": "password", "reason": "local_login_disabled"}));
        audit::record_alone(&state.db, event).await?;
        return Err(AppError::forbidden("password sign-in is turned off on this server; use single sign-on"));
    }
    let email = users::normalize_email(&form.email).unwrap_or_else(|_| form.email.trim().to_lowercase());
    let limits = throttle::SignInLimits::from_config(config);
    let keys = throttle::SignInKeys::new(&state.keys.throttle, &email, ctx.client_ip, limits);
    let origin = Origin::from(&ctx);
    let denied = |intent: serde_json::Value, target: Option<String>| {
        let origin = &origin;
        let db = &state.db;
        async move {
            let mut event = Event::new("auth.login", Outcome::Denied, Actor::Anonymous, origin).intent(intent);
            if let Some(id) = target.as_deref() {
                event = event.target("user", id);
            }
            audit::record_alone(db, event).await
        }
    };
    // Checked before the account is looked up, and alike for e-mail addresses without one, so a
    // refusal says nothing about which accounts exist. A refused attempt is not counted.
    if let Some(blocked) = throttle::sign_in_blocked(&state.db, &keys).await? {
        let scope = blocked.scope.as_str();
        state.metrics.login_failures_total.with_label_values(&["throttled"]).inc();
        tracing::warn!(event_type = "login_throttled", limit = scope, "sign-in attempt refused while throttled");
        denied(serde_json::json!({"method": "password", "reason": "throttled", "limit": scope}), None).await?;
        if ctx.wants_json {
            return Err(AppError::RateLimited { retry_after_ms: blocked.retry_after_ms });
        }
        let message = throttled_message(blocked);
        let page = login_page(&state, &headers, StatusCode::TOO_MANY_REQUESTS, Some(message), form.email, form.next);
        let mut response = page.await?;
        response.headers_mut().insert(header::RETRY_AFTER, crate::error::retry_after(blocked.retry_after_ms));
        return Ok(response);
    }

    let found = {
        let mut conn = state.db.pool().acquire().await?;
        users::find_credentials(&mut conn, &email).await?
    };
    let (user, stored) = match found {
        Some((user, hash)) => (Some(user), Some(hash)),
        None => (None, None),
    };
    let verified = password::verify(form.password, stored).await;
    let known_id = user.as_ref().map(|u| u.id.clone());
    let Some(user) = user.filter(|_| verified) else {
        throttle::record_failure(&state.db, keys.keys()).await?;
        denied(serde_json::json!({"method": "password", "reason": "bad_credentials"}), known_id).await?;
        state.metrics.login_failures_total.with_label_values(&["bad_credentials"]).inc();
        tracing::info!(event_type = "login_failed", "sign-in failed");
        // One message whether the account exists or not.
        let message = "Incorrect e-mail address or password.".to_owned();
        return login_page(&state, &headers, StatusCode::UNAUTHORIZED, Some(message), form.email, form.next).await;
    };
    throttle::record_success(&state.db, keys.pair()).await?;
    let cookie = start_session(&state, &ctx, &headers, &user.id, "password").await?;
    tracing::Span::current().record("user_id", user.id.as_str());
    tracing::info!(event_type = "login_succeeded", "signed in");
    let response = Redirect::to(safe_next(&form.next)).into_response();
    Ok(with_cookies(response, session_cookies(&state, &cookie)))
}

/// What the sign-in form says while a limit holds. The same for accounts that do not exist.
fn throttled_message(blocked: throttle::Blocked) -> String {
    let wait = wait_text(blocked.retry_after_ms);
    match blocked.scope {
        throttle::Scope::AccountAddress => format!(
            "Too many failed sign-in attempts for this e-mail address from your network. \
             Please wait {wait} before trying again."
        ),
        throttle::Scope::Address => {
            format!("Too many failed sign-in attempts from your network. Please wait {wait} before trying again.")
        }
        throttle::Scope::Account => format!(
            "Too many failed sign-in attempts for this e-mail address, from many places. Sign-in for it \
             is paused for {wait} to protect it; if this keeps happening, tell your administrator."
        ),
    }
}

/// `30 seconds`, `1 minute`, `15 minutes`: rounded up.
fn wait_text(ms: u64) -> String {
    let secs = ms.div_ceil(1000).max(1);
    match secs {
        1 => "1 second".to_owned(),
        2..60 => format!("{secs} seconds"),
        _ => match secs.div_ceil(60) {
            1 => "1 minute".to_owned(),
            m => format!("{m} minutes"),
        },
    }
}

/// Replace any session the browser had with a new one (a fresh id on every sign-in), and audit
/// the sign-in in the same transaction.
async fn start_session(
    state: &AppState,
    ctx: &RequestContext,
    headers: &HeaderMap,
    user_id: &str,
    method: &str,
) -> AppResult<String> {
    let mut tx = state.db.begin().await?;
    let intent = serde_json::json!({"method": method});
    let cookie = open_session(&mut tx, state, ctx, headers, user_id, intent, None).await?;
    tx.commit().await?;
    Ok(cookie)
}

/// Inside the caller's transaction: drop the browser's old session, create a new one, record
/// the sign-in (`auth.login`, allowed, with `intent`). Returns the cookie value.
pub(crate) async fn open_session(
    tx: &mut crate::db::Tx,
    state: &AppState,
    ctx: &RequestContext,
    headers: &HeaderMap,
    user_id: &str,
    intent: serde_json::Value,
    oidc: Option<(&str, &str)>,
) -> AppResult<String> {
    if let Some(old) = cookies::get(headers, &cookies::name(&state.config, cookies::SESSION)) {
        sessions::delete(tx, &old).await?;
    }
    let origin = Origin::from(ctx);
    let cookie = sessions::create(
        tx,
        sessions::NewSession {
            user_id,
            ip: origin.ip.clone(),
            user_agent: origin.user_agent.clone(),
            absolute_timeout: state.config.session_absolute_timeout,
            oidc,
        },
    )
    .await?;
    let event = Event::new("auth.login", Outcome::Allowed, Actor::User(user_id), &origin)
        .target("user", user_id)
        .intent(intent);
    audit::record(tx, event).await?;
    // Roles that come from GitHub are brought up to date as they sign in.
    crate::projects::github_roles::schedule_for_user(tx, user_id, crate::projects::github_roles::SIGN_IN_SYNC_AFTER_MS)
        .await?;
    Ok(cookie)
}

pub(crate) fn session_cookies(state: &AppState, cookie: &str) -> [HeaderValue; 2] {
    let max_age = state.config.session_absolute_timeout.as_secs();
    [
        cookies::set(&state.config, cookies::SESSION, cookie, Some(max_age)),
        cookies::clear(&state.config, cookies::PRE_SESSION),
    ]
}

/// `POST /logout`
pub async fn logout(
    State(state): State<AppState>,
    ctx: RequestContext,
    MaybeUser(auth): MaybeUser,
) -> AppResult<Response> {
    let mut end_session = None;
    if let Some(auth) = auth {
        let cookie = auth.session_cookie.as_deref().unwrap_or_default();
        let mut tx = state.db.begin().await?;
        // Signed in through an IdP: after ending our session, end theirs too (RP-initiated logout).
        if let Some((provider_id, id_token)) = sessions::oidc_of(&mut tx, cookie).await?
            && let Some(provider) = state.oidc.provider(&provider_id).cloned()
        {
            let back = format!("{}/login", state.config.public_base());
            end_session = state.oidc.end_session_url(&provider, id_token.as_deref(), &back).await;
        }
        sessions::delete(&mut tx, cookie).await?;
        let origin = Origin::from(&ctx);
        let event =
            Event::new("auth.logout", Outcome::Allowed, Actor::of(&auth), &origin).target("user", &auth.user.id);
        audit::record(&mut tx, event).await?;
        tx.commit().await?;
        // Open live connections (workflow socket, event stream) look at their credential again.
        state.rooms.access_changed("*").await;
        tracing::info!(event_type = "logout", "signed out");
    }
    let response = Redirect::to(end_session.as_deref().unwrap_or("/login")).into_response();
    Ok(with_cookies(response, [cookies::clear(&state.config, cookies::SESSION)]))
}

#[derive(Template)]
#[template(path = "setup.html")]
struct SetupPage {
    page: PageContext,
    error: Option<String>,
    token: String,
    email: String,
    name: String,
    min_password: usize,
}

#[derive(Deserialize)]
pub struct SetupQuery {
    token: Option<String>,
}

/// Audit a refused setup attempt.
async fn setup_denied(state: &AppState, origin: &Origin, setup: &SetupState) -> AppResult<()> {
    let reason = match setup {
        SetupState::Complete => "already_complete",
        _ => "invalid_token",
    };
    let event = Event::new("setup.complete", Outcome::Denied, Actor::Anonymous, origin)
        .intent(serde_json::json!({"reason": reason}));
    audit::record_alone(&state.db, event).await.map(|_| ())
}

fn setup_refusal(state: SetupState) -> AppError {
    match state {
        SetupState::Complete => AppError::forbidden("Setup is already complete. Sign in instead."),
        _ => AppError::forbidden(
            "This setup link is invalid or has expired. Use the link from the latest server log, \
             restart Arno for a new one, or run `arno admin create-user --admin`.",
        ),
    }
}

fn setup_page(state: &AppState, headers: &HeaderMap, status: StatusCode, page: SetupPage) -> AppResult<Response> {
    let (pre, set) = pre_session(state, headers);
    let page = SetupPage { page: PageContext::with_csrf(csrf::token_for(&state.keys.csrf, &pre)), ..page };
    Ok(with_cookies((status, render(&page)?).into_response(), set))
}

/// `GET /setup?token=…`
pub async fn setup_form(
    State(state): State<AppState>,
    Query(q): Query<SetupQuery>,
    headers: HeaderMap,
) -> AppResult<Response> {
    match setup::state(&state.db, q.token.as_deref()).await? {
        SetupState::Open => {}
        other => return Err(setup_refusal(other)),
    }
    let page = SetupPage {
        page: PageContext::anonymous(),
        error: None,
        token: q.token.unwrap_or_default(),
        email: String::new(),
        name: String::new(),
        min_password: password::MIN_LEN,
    };
    setup_page(&state, &headers, StatusCode::OK, page)
}

#[derive(Deserialize)]
pub struct SetupForm {
    token: String,
    email: String,
    name: String,
    password: String,
}

/// `POST /setup`
pub async fn setup_submit(
    State(state): State<AppState>,
    ctx: RequestContext,
    headers: HeaderMap,
    PageForm(form): PageForm<SetupForm>,
) -> AppResult<Response> {
    let origin = Origin::from(&ctx);
    match setup::state(&state.db, Some(&form.token)).await? {
        SetupState::Open => {}
        other => {
            setup_denied(&state, &origin, &other).await?;
            return Err(setup_refusal(other));
        }
    }
    let admin = setup::FirstAdmin { token: &form.token, email: &form.email, name: &form.name, password: form.password };
    match setup::complete(&state.db, &state.config.data_dir, admin, &origin).await {
        Ok(user) => {
            let cookie = start_session(&state, &ctx, &headers, &user.id, "setup").await?;
            Ok(with_cookies(Redirect::to("/").into_response(), session_cookies(&state, &cookie)))
        }
        Err(AppError::Validation { message, .. }) => {
            let page = SetupPage {
                page: PageContext::anonymous(),
                error: Some(message),
                token: form.token,
                email: form.email,
                name: form.name,
                min_password: password::MIN_LEN,
            };
            setup_page(&state, &headers, StatusCode::BAD_REQUEST, page)
        }
        Err(e) => Err(e),
    }
}

/// The signed-in user.
#[derive(Serialize, ToSchema)]
pub struct Me {
    pub id: String,
    pub email: String,
    pub name: String,
    /// Unique, safe in git branch names (`arno/{handle}`).
    pub handle: String,
    pub org_role: OrgRole,
}

/// `GET /api/v1/me`
#[utoipa::path(get, path = "/api/v1/me", tag = "account",
    security(("token" = []), ("session" = [])),
    responses((status = 200, body = Me), (status = 401, body = ErrorBody)))]
pub async fn me(ApiUser(auth): ApiUser) -> Json<Me> {
    let u = auth.user;
    Json(Me { id: u.id, email: u.email, name: u.name, handle: u.handle, org_role: u.org_role })
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateToken {
    /// What the token is for, 1–100 characters.
    pub name: String,
    /// Lifetime in days, 1–365; default 90.
    pub expires_days: Option<i64>,
}

#[derive(Serialize, ToSchema)]
pub struct CreatedToken {
    #[serde(flatten)]
    pub info: TokenInfo,
    /// The secret. Shown only in this response; store it now.
    pub token: String,
}

/// `GET /api/v1/tokens`
#[utoipa::path(get, path = "/api/v1/tokens", tag = "account",
    security(("token" = []), ("session" = [])),
    responses((status = 200, body = [TokenInfo]), (status = 401, body = ErrorBody)))]
pub async fn list_tokens(State(state): State<AppState>, ApiUser(auth): ApiUser) -> AppResult<Json<Vec<TokenInfo>>> {
    let mut conn = state.db.pool().acquire().await?;
    Ok(Json(tokens::list(&mut conn, &auth.user.id).await?))
}

/// `POST /api/v1/tokens`
#[utoipa::path(post, path = "/api/v1/tokens", tag = "account",
    security(("token" = []), ("session" = [])),
    request_body = CreateToken,
    responses((status = 201, body = CreatedToken), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)))]
pub async fn create_token(
    State(state): State<AppState>,
    ApiUser(auth): ApiUser,
    ctx: RequestContext,
    ApiJson(body): ApiJson<CreateToken>,
) -> AppResult<(StatusCode, Json<CreatedToken>)> {
    let mut tx = state.db.begin().await?;
    let (info, token) = tokens::create(&mut tx, &auth.user.id, &body.name, body.expires_days).await?;
    let origin = Origin::from(&ctx);
    let event = Event::new("token.create", Outcome::Allowed, Actor::of(&auth), &origin)
        .target("api_token", &info.id)
        .intent(serde_json::json!({"expires_at": info.expires_at}));
    audit::record(&mut tx, event).await?;
    tx.commit().await?;
    tracing::info!(event_type = "token_created", token_id = %info.id, "API token created");
    Ok((StatusCode::CREATED, Json(CreatedToken { info, token })))
}

/// `DELETE /api/v1/tokens/{id}`
#[utoipa::path(delete, path = "/api/v1/tokens/{id}", tag = "account",
    security(("token" = []), ("session" = [])),
    params(("id" = String, Path, description = "Token id")),
    responses((status = 204, description = "Revoked"), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn revoke_token(
    State(state): State<AppState>,
    ApiUser(auth): ApiUser,
    ctx: RequestContext,
    Path(id): Path<String>,
) -> AppResult<StatusCode> {
    let origin = Origin::from(&ctx);
    let mut tx = state.db.begin().await?;
    let revoked = tokens::revoke(&mut tx, &auth.user.id, &id).await?;
    let event =
        Event::new("token.revoke", if revoked { Outcome::Allowed } else { Outcome::Denied }, Actor::of(&auth), &origin)
            .target("api_token", &id)
            .intent(if revoked {
                serde_json::json!({})
            } else {
                serde_json::json!({"reason": "not the caller's live token"})
            });
    audit::record(&mut tx, event).await?;
    tx.commit().await?;
    // Open live connections (workflow socket, event stream) look at their credential again.
    state.rooms.access_changed("*").await;
    if !revoked {
        return Err(AppError::NotFound);
    }
    tracing::info!(event_type = "token_revoked", token_id = %id, "API token revoked");
    Ok(StatusCode::NO_CONTENT)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_are_told_in_rounded_up_seconds_or_minutes() {
        assert_eq!(wait_text(0), "1 second");
        assert_eq!(wait_text(1_001), "2 seconds");
        assert_eq!(wait_text(30_000), "30 seconds");
        assert_eq!(wait_text(60_000), "1 minute");
        assert_eq!(wait_text(60_001), "2 minutes");
        assert_eq!(wait_text(15 * 60 * 1000), "15 minutes");
    }

    #[test]
    fn throttled_messages_name_the_wait_and_never_an_account() {
        for scope in [throttle::Scope::AccountAddress, throttle::Scope::Address, throttle::Scope::Account] {
            let m = throttled_message(throttle::Blocked { scope, retry_after_ms: 120_000 });
            assert!(m.starts_with("Too many failed sign-in attempts") && m.contains("2 minutes"), "{m}");
            assert!(!m.to_lowercase().contains("account"), "{m}");
        }
    }
}
