//! OpenID Connect Back-Channel Logout 1.0: the IdP POSTs a signed logout token and Arno ends
//! every session of that user. Validation (§2.6): signature by one of the IdP's keys, `iss`
//! exactly the issuer, `aud` contains our client id, fresh `iat`, the back-channel `events`
//! member, a `sub` (Arno keys users by issuer + `sub`), and no `nonce`.

use axum::Form;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use openidconnect::{JsonWebKey, JsonWebKeyId};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{OidcError, Provider};
use crate::app::AppState;
use crate::audit::{self, Actor, Event, Origin, Outcome};
use crate::error::AppResult;
use crate::http::RequestContext;

const EVENT: &str = "http://schemas.openid.net/event/backchannel-logout";
/// A logout token older than this (or from the future beyond the skew) is refused.
const MAX_AGE_SECS: i64 = 300;
const SKEW_SECS: i64 = 120;

#[derive(Deserialize)]
pub struct LogoutForm {
    logout_token: Option<String>,
}

/// The validated claims Arno needs from a logout token.
#[derive(Debug, PartialEq, Eq)]
pub struct LogoutClaims {
    pub issuer: String,
    pub subject: String,
}

fn b64(part: &str) -> Result<Vec<u8>, OidcError> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(part.trim_end_matches('='))
        .map_err(|_| OidcError::Rejected("logout token is not a JWT".into()))
}

/// Validate a logout token against the provider's keys (re-fetching them once on an unknown
/// `kid`, as for ID tokens).
pub async fn validate(state: &AppState, provider: &Provider, token: &str) -> Result<LogoutClaims, OidcError> {
    let parts: Vec<&str> = token.split('.').collect();
    let [head, body, signature] = parts[..] else {
        return Err(OidcError::Rejected("logout token is not a signed JWT".into()));
    };
    let header: Value =
        serde_json::from_slice(&b64(head)?).map_err(|_| OidcError::Rejected("bad JWT header".into()))?;
    let alg: openidconnect::core::CoreJwsSigningAlgorithm = serde_json::from_value(header["alg"].clone())
        .map_err(|_| OidcError::Rejected("unsupported signing algorithm".into()))?;
    if matches!(alg, openidconnect::core::CoreJwsSigningAlgorithm::None)
        || matches!(
            alg,
            openidconnect::core::CoreJwsSigningAlgorithm::HmacSha256
                | openidconnect::core::CoreJwsSigningAlgorithm::HmacSha384
                | openidconnect::core::CoreJwsSigningAlgorithm::HmacSha512
        )
    {
        return Err(OidcError::Rejected("logout tokens must be signed with the IdP's key".into()));
    }
    let kid = header["kid"].as_str().map(|k| JsonWebKeyId::new(k.to_owned()));
    let signature = b64(signature)?;
    let message = format!("{head}.{body}");
    let (metadata, mut jwks) = state.oidc.keys_for(provider).await?;
    let mut refreshed = false;
    loop {
        let candidates: Vec<_> = jwks
            .keys()
            .iter()
            .filter(|k| kid.is_none() || k.key_id() == kid.as_ref())
            .filter(|k| k.verify_signature(&alg, message.as_bytes(), &signature).is_ok())
            .collect();
        if !candidates.is_empty() {
            break;
        }
        let unknown_kid = kid.is_some() && !jwks.keys().iter().any(|k| k.key_id() == kid.as_ref());
        if unknown_kid && !refreshed {
            refreshed = true;
            if let Some(fresh) = state.oidc.rotated_keys(provider).await? {
                jwks = fresh;
                continue;
            }
        }
        return Err(OidcError::Rejected("logout token signature is not valid".into()));
    }
    let claims: Value =
        serde_json::from_slice(&b64(body)?).map_err(|_| OidcError::Rejected("bad JWT claims".into()))?;
    if claims["iss"].as_str() != Some(metadata.issuer().as_str()) {
        return Err(OidcError::Rejected("logout token issuer does not match".into()));
    }
    let client_id = &provider.config.client_id;
    let audience_ok = match &claims["aud"] {
        Value::String(a) => a == client_id,
        Value::Array(items) => items.iter().any(|a| a.as_str() == Some(client_id)),
        _ => false,
    };
    if !audience_ok {
        return Err(OidcError::Rejected("logout token is not for this client".into()));
    }
    let now = chrono::Utc::now().timestamp();
    match claims["iat"].as_i64() {
        Some(iat) if iat <= now + SKEW_SECS && now - iat <= MAX_AGE_SECS + SKEW_SECS => {}
        _ => return Err(OidcError::Rejected("logout token issue time is missing or not recent".into())),
    }
    if claims["exp"].as_i64().is_some_and(|exp| exp + SKEW_SECS < now) {
        return Err(OidcError::Rejected("logout token has expired".into()));
    }
    if claims["events"].get(EVENT).is_none_or(|v| !v.is_object()) {
        return Err(OidcError::Rejected("logout token lacks the back-channel logout event".into()));
    }
    if claims.get("nonce").is_some() {
        return Err(OidcError::Rejected("logout token must not carry a nonce".into()));
    }
    let subject = claims["sub"]
        .as_str()
        .filter(|s| !s.is_empty())
        .ok_or_else(|| OidcError::Rejected("logout token has no `sub` (Arno logs users out by subject)".into()))?;
    Ok(LogoutClaims { issuer: metadata.issuer().to_string(), subject: subject.to_owned() })
}

/// `POST /auth/oidc/{id}/backchannel-logout`
pub async fn backchannel(
    State(state): State<AppState>,
    Path(id): Path<String>,
    ctx: RequestContext,
    Form(form): Form<LogoutForm>,
) -> AppResult<Response> {
    let no_store = |status: StatusCode, body: Value| {
        let mut r = (status, axum::Json(body)).into_response();
        r.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        r
    };
    let Some(provider) = state.oidc.provider(&id).cloned() else {
        return Ok(no_store(StatusCode::NOT_FOUND, json!({"error": "invalid_request"})));
    };
    let origin = Origin::from(&ctx);
    let Some(token) = form.logout_token.filter(|t| !t.is_empty()) else {
        return Ok(no_store(
            StatusCode::BAD_REQUEST,
            json!({"error": "invalid_request", "error_description": "logout_token is required"}),
        ));
    };
    match validate(&state, &provider, &token).await {
        Ok(claims) => {
            let mut tx = state.db.begin().await?;
            let user: Option<(String,)> =
                sqlx::query_as("SELECT user_id FROM user_identities WHERE issuer = $1 AND subject = $2")
                    .bind(&claims.issuer)
                    .bind(&claims.subject)
                    .fetch_optional(&mut *tx)
                    .await?;
            if let Some((user_id,)) = user {
                let ended = crate::auth::sessions::delete_for_user(&mut tx, &user_id).await?;
                let event = Event::new("auth.logout", Outcome::Allowed, Actor::System, &origin)
                    .target("user", &user_id)
                    .intent(json!({"method": "oidc_backchannel", "provider": id, "sessions": ended}));
                audit::record(&mut tx, event).await?;
            }
            tx.commit().await?;
            // Open live connections (workflow socket, event stream) look at their credential again.
            state.rooms.access_changed("*").await;
            Ok(no_store(StatusCode::OK, json!({})))
        }
        Err(OidcError::Internal(e)) => Err(e),
        Err(e @ OidcError::Unavailable(_)) => {
            tracing::warn!(event_type = "backchannel_logout_failed", provider = %id, error = %e, "cannot check logout token");
            Ok(no_store(StatusCode::SERVICE_UNAVAILABLE, json!({"error": "temporarily_unavailable"})))
        }
        Err(e) => {
            let reason = e.to_string();
            tracing::warn!(event_type = "backchannel_logout_rejected", provider = %id, reason = %reason, "logout token rejected");
            let event = Event::new("auth.logout", Outcome::Denied, Actor::Anonymous, &origin)
                .intent(json!({"method": "oidc_backchannel", "provider": id, "reason": reason}));
            audit::record_alone(&state.db, event).await?;
            Ok(no_store(StatusCode::BAD_REQUEST, json!({"error": "invalid_request", "error_description": reason})))
        }
    }
}
