//! Extractors that turn a request into an [`Authenticated`] principal — the only way a
//! handler gets one.

use axum::extract::FromRequestParts;
use axum::http::header;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Redirect, Response};

use super::model::{AuthMethod, Authenticated, Credential};
use super::{sessions, tokens};
use crate::app::AppState;
use crate::error::AppError;
use crate::http::cookies;

/// API caller: a bearer token, or a browser session.
pub struct ApiUser(pub Authenticated);

/// Page visitor with a session; anyone else is sent to the sign-in page.
pub struct PageUser(pub Authenticated);

/// Page visitor who may or may not be signed in.
pub struct MaybeUser(pub Option<Authenticated>);

fn bearer(parts: &Parts) -> Option<Option<String>> {
    let value = parts.headers.get(header::AUTHORIZATION)?;
    let value = value.to_str().ok()?;
    // `Some(None)`: an Authorization header we cannot use, which must not fall back to cookies.
    Some(match value.split_once(' ') {
        Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") => Some(token.trim().to_owned()),
        _ => None,
    })
}

async fn from_session(parts: &Parts, state: &AppState) -> Result<Option<Authenticated>, AppError> {
    // A request that presents an Authorization header is exempt from the CSRF checks
    // (http/csrf.rs): it must then never be authenticated by the ambient cookie, or any header
    // would switch CSRF off for a browser's session.
    if parts.headers.contains_key(header::AUTHORIZATION) {
        return Ok(None);
    }
    let Some(cookie) = cookies::get(&parts.headers, &cookies::name(&state.config, cookies::SESSION)) else {
        return Ok(None);
    };
    if cookie.len() > 64 {
        return Ok(None);
    }
    let mut conn = state.db.pool().acquire().await?;
    let user = sessions::lookup(&mut conn, &cookie, state.config.session_idle_timeout).await?;
    Ok(user.map(|user| Authenticated {
        user,
        method: AuthMethod::Session,
        credential: Credential::Session { id_hash: sessions::id_hash(&cookie) },
        session_cookie: Some(cookie),
    }))
}

/// Whether what `auth` was proved with is still good: the session exists and is neither expired
/// nor idle (and is kept from going idle by this use), or the token is not revoked or expired;
/// and the account is active. Live connections (workflow socket, event stream) ask this again
/// whenever access changes anywhere and every few seconds, and end when it says no.
pub async fn still_valid(state: &AppState, auth: &Authenticated) -> Result<bool, AppError> {
    let mut conn = state.db.pool().acquire().await?;
    match &auth.credential {
        Credential::Session { id_hash } => {
            let user = sessions::lookup_hash(&mut conn, id_hash, state.config.session_idle_timeout).await?;
            Ok(user.is_some_and(|u| u.id == auth.user.id))
        }
        Credential::Token { id } => tokens::is_live(&mut conn, id).await,
    }
}

/// The caller of a workflow connection opened with a single-use ticket: the user it was issued
/// to, with the credential it was issued against (checked again like any other).
pub async fn from_ticket(
    state: &AppState,
    user_id: &str,
    credential: Option<&str>,
) -> Result<Option<Authenticated>, AppError> {
    let Some(credential) = credential.and_then(Credential::decode) else { return Ok(None) };
    let mut conn = state.db.pool().acquire().await?;
    let Some(user) = super::users::find_by_id(&mut conn, user_id).await? else { return Ok(None) };
    drop(conn);
    let auth = Authenticated { user, method: AuthMethod::Token, session_cookie: None, credential };
    Ok(still_valid(state, &auth).await?.then_some(auth))
}

/// The caller a bearer secret authenticates (what [`ApiUser`] does with an `Authorization`
/// header; also for programs that hold a token, such as the benchmarks).
pub async fn bearer_user(db: &crate::db::Db, secret: &str) -> Result<Option<Authenticated>, AppError> {
    let mut conn = db.pool().acquire().await?;
    Ok(tokens::authenticate_with_id(&mut conn, secret).await?.map(|(user, id)| Authenticated {
        user,
        method: AuthMethod::Token,
        session_cookie: None,
        credential: Credential::Token { id },
    }))
}

fn record(auth: &Authenticated) {
    tracing::Span::current().record("user_id", auth.user.id.as_str());
}

/// A presented credential that does not authenticate is a denied decision: audit it. Failures
/// are throttled per client address like sign-ins, so guessing is slow and a flood of bad tokens
/// cannot grow the audit log without bound (once blocked, requests get 429 and no new record).
/// Valid tokens are checked first and never slowed down.
async fn denied_token(parts: &Parts, state: &AppState) -> AppError {
    let ctx = parts.extensions.get::<crate::http::RequestContext>();
    let origin = ctx.map(crate::audit::Origin::from).unwrap_or_default();
    let ip = origin.ip.clone().unwrap_or_else(|| "unknown".into());
    let keys =
        [super::throttle::Key { key: format!("token-ip:{ip}"), max_failures: state.config.login_max_failures_per_ip }];
    let result = async {
        if let Some(retry_after_ms) = super::throttle::blocked_for(&state.db, &keys).await? {
            return Err(AppError::RateLimited { retry_after_ms });
        }
        super::throttle::record_failure(&state.db, &keys).await?;
        let event = crate::audit::Event::new(
            "auth.token",
            crate::audit::Outcome::Denied,
            crate::audit::Actor::Anonymous,
            &origin,
        )
        .intent(serde_json::json!({"reason": "invalid, expired or revoked token"}));
        crate::audit::record_alone(&state.db, event).await?;
        Ok(())
    }
    .await;
    match result {
        Ok(()) => AppError::Unauthorized,
        Err(e) => e,
    }
}

impl FromRequestParts<AppState> for ApiUser {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, AppError> {
        let auth = match bearer(parts) {
            Some(Some(secret)) => match bearer_user(&state.db, &secret).await? {
                Some(auth) => auth,
                None => return Err(denied_token(parts, state).await),
            },
            Some(None) => return Err(denied_token(parts, state).await),
            None => from_session(parts, state).await?.ok_or(AppError::Unauthorized)?,
        };
        record(&auth);
        Ok(ApiUser(auth))
    }
}

impl FromRequestParts<AppState> for PageUser {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Response> {
        match from_session(parts, state).await {
            Ok(Some(auth)) => {
                record(&auth);
                Ok(PageUser(auth))
            }
            Ok(None) => {
                let next = parts.uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
                let target = if next == "/" {
                    "/login".to_owned()
                } else {
                    format!("/login?next={}", url::form_urlencoded::byte_serialize(next.as_bytes()).collect::<String>())
                };
                Err(Redirect::to(&target).into_response())
            }
            Err(e) => Err(e.into_response()),
        }
    }
}

impl FromRequestParts<AppState> for MaybeUser {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, AppError> {
        let auth = from_session(parts, state).await?;
        if let Some(a) = &auth {
            record(a);
        }
        Ok(MaybeUser(auth))
    }
}
