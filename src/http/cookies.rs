//! Reading and writing the few cookies Arno sets. On https the names carry the `__Host-`
//! prefix, which browsers only accept with `Secure`, `Path=/` and no `Domain`.

use axum::http::{HeaderMap, HeaderValue, header};

use crate::config::Config;

pub const SESSION: &str = "arno_session";
/// Pre-session cookie that anchors the CSRF token of the login and setup forms.
pub const PRE_SESSION: &str = "arno_csrf";
/// Binds an OpenID Connect sign-in in flight to the browser that started it.
pub const OIDC: &str = "arno_oidc";

pub fn name(config: &Config, base: &str) -> String {
    if config.is_https() { format!("__Host-{base}") } else { base.to_owned() }
}

/// The value of cookie `name` in the request, if present.
pub fn get(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim_matches('"').to_owned())
        .filter(|v| !v.is_empty())
}

/// A `Set-Cookie` value; `max_age` `None` makes a browser-session cookie, `Some(0)` deletes.
pub fn set(config: &Config, base: &str, value: &str, max_age: Option<u64>) -> HeaderValue {
    let mut s = format!("{}={value}; Path=/; HttpOnly; SameSite=Lax", name(config, base));
    if config.is_https() {
        s.push_str("; Secure");
    }
    if let Some(age) = max_age {
        s.push_str(&format!("; Max-Age={age}"));
    }
    HeaderValue::from_str(&s).expect("cookie values are base64url")
}

pub fn clear(config: &Config, base: &str) -> HeaderValue {
    set(config, base, "", Some(0))
}
