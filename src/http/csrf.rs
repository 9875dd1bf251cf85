//! Cross-site request forgery protection for every state-changing request.
//!
//! Two independent defences (OWASP CSRF cheat sheet): (1) Fetch Metadata / `Origin`: a browser
//! tells us when a request comes from another site, and we refuse it; (2) a synchronizer token
//! derived with HMAC from the session cookie (or, before sign-in, from a random pre-session
//! cookie) that a page embeds in its forms (`csrf_token`) or scripts send as `X-CSRF-Token`.
//! Requests authenticated by `Authorization: Bearer` carry no ambient credentials and are exempt.

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::cookies;
use crate::app::AppState;
use crate::error::AppError;

pub const FORM_FIELD: &str = "csrf_token";
pub const HEADER: &str = "x-csrf-token";

/// The token for pages served with this cookie value.
pub fn token_for(key: &[u8; 32], cookie_value: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("any key length");
    mac.update(b"arno-csrf-v1:");
    mac.update(cookie_value.as_bytes());
    URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
}

fn verify(key: &[u8; 32], cookie_value: &str, token: &str) -> bool {
    let Ok(raw) = URL_SAFE_NO_PAD.decode(token) else { return false };
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("any key length");
    mac.update(b"arno-csrf-v1:");
    mac.update(cookie_value.as_bytes());
    mac.verify_slice(&raw).is_ok()
}

pub async fn guard(State(state): State<AppState>, req: Request, next: Next) -> Response {
    if matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE) {
        return next.run(req).await;
    }
    // Server-to-server endpoints: authenticated by what they carry (a signed logout token, a
    // SCIM bearer token, a webhook's signature), never by cookies, so there is nothing to forge.
    let path = req.uri().path();
    if (path.starts_with("/auth/oidc/") && path.ends_with("/backchannel-logout"))
        || path.starts_with("/scim/")
        || path.starts_with("/api/v1/webhooks/")
    {
        return next.run(req).await;
    }
    let headers = req.headers();
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.len() > 7 && v[..7].eq_ignore_ascii_case("bearer "));
    if bearer {
        return next.run(req).await;
    }
    if let Err(reason) = same_origin(&state, headers) {
        tracing::warn!(event_type = "csrf_rejected", reason, "cross-site request refused");
        return refuse(&state, &req, reason, AppError::forbidden("cross-site request refused")).await;
    }

    let config = &state.config;
    let cookies: Vec<String> = [cookies::SESSION, cookies::PRE_SESSION]
        .iter()
        .filter_map(|base| cookies::get(headers, &cookies::name(config, base)))
        .collect();
    if cookies.is_empty() {
        // No ambient credentials: nothing to forge. API calls go on to answer 401 themselves;
        // a form post without our cookie cannot have come from our own page.
        if req.uri().path().starts_with("/api/") {
            return next.run(req).await;
        }
        let e = AppError::forbidden("your session cookie is missing; reload the page and try again");
        return refuse(&state, &req, "no_cookie", e).await;
    }

    let header_token = headers.get(HEADER).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let is_form = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
    let (req, token) = match header_token {
        Some(t) => (req, Some(t)),
        None if is_form => {
            // Read the form to find the token, then hand the same bytes to the handler.
            let (parts, body) = req.into_parts();
            let bytes = match axum::body::to_bytes(body, config.max_body_bytes).await {
                Ok(b) => b,
                Err(_) => return AppError::TooLarge("request body too large".into()).into_response(),
            };
            let token = form_field(&bytes, FORM_FIELD);
            (Request::from_parts(parts, Body::from(bytes)), token)
        }
        None => (req, None),
    };
    let key = &state.keys.csrf;
    let ok = token.is_some_and(|t| cookies.iter().any(|c| verify(key, c, &t)));
    if !ok {
        tracing::warn!(event_type = "csrf_rejected", reason = "token", "missing or invalid CSRF token");
        let e = AppError::forbidden("the form expired or was not sent by this site; reload the page and try again");
        return refuse(&state, &req, "token", e).await;
    }
    next.run(req).await
}

/// Refuse, and audit the refusal: a forged or cross-site write is a denied decision.
/// (A request body is not `Sync`, so nothing borrowed from the request may live across the
/// await: the details are copied out first.)
fn refuse(state: &AppState, req: &Request, reason: &str, e: AppError) -> impl Future<Output = Response> + Send {
    let ctx = req.extensions().get::<crate::http::RequestContext>();
    let origin = ctx.map(crate::audit::Origin::from).unwrap_or_default();
    let route = req.extensions().get::<axum::extract::MatchedPath>().map(|m| m.as_str().to_owned());
    let intent =
        serde_json::json!({"reason": format!("csrf:{reason}"), "method": req.method().as_str(), "route": route});
    let db = state.db.clone();
    async move { refuse_audited(&db, origin, intent, e).await }
}

async fn refuse_audited(
    db: &crate::db::Db,
    origin: crate::audit::Origin,
    intent: serde_json::Value,
    e: AppError,
) -> Response {
    use crate::audit::{Actor, Event, Outcome};
    let event = Event::new("http.write", Outcome::Denied, Actor::Anonymous, &origin).intent(intent);
    if let Err(audit_error) = crate::audit::record_alone(db, event).await {
        return audit_error.into_response();
    }
    e.into_response()
}

fn form_field(body: &[u8], name: &str) -> Option<String> {
    url::form_urlencoded::parse(body).find(|(k, _)| k == name).map(|(_, v)| v.into_owned())
}

/// Fetch Metadata and `Origin` checks. Requests without either header (old browsers, scripts)
/// fall through to the token check.
fn same_origin(state: &AppState, headers: &axum::http::HeaderMap) -> Result<(), &'static str> {
    if let Some(site) = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok()) {
        if !matches!(site, "same-origin" | "none") {
            return Err("sec-fetch-site");
        }
    }
    let Some(origin) = headers.get(header::ORIGIN) else { return Ok(()) };
    let origin = origin.to_str().map_err(|_| "origin")?;
    let Ok(origin) = url::Url::parse(origin) else { return Err("origin") };
    let public = &state.config.public_url;
    let same_as_public = origin.scheme() == public.scheme()
        && origin.host_str() == public.host_str()
        && origin.port_or_known_default() == public.port_or_known_default();
    // Behind a proxy the public URL is authoritative; without one, the Host the browser used
    // is the origin it saw.
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok());
    let same_as_host = host.is_some_and(|h| {
        let authority = match origin.port() {
            Some(p) => format!("{}:{p}", origin.host_str().unwrap_or_default()),
            None => origin.host_str().unwrap_or_default().to_owned(),
        };
        h.eq_ignore_ascii_case(&authority)
    });
    if same_as_public || same_as_host { Ok(()) } else { Err("origin") }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_bound_to_the_cookie() {
        let key = [7u8; 32];
        let t = token_for(&key, "cookie-a");
        assert!(verify(&key, "cookie-a", &t));
        assert!(!verify(&key, "cookie-b", &t));
        assert!(!verify(&[8u8; 32], "cookie-a", &t));
        assert!(!verify(&key, "cookie-a", "not base64!"));
    }

    #[test]
    fn form_fields_are_found() {
        assert_eq!(form_field(b"a=1&csrf_token=x%2By&b=2", "csrf_token").as_deref(), Some("x+y"));
        assert_eq!(form_field(b"a=1", "csrf_token"), None);
    }
}
