//! Sign-in, throttling, sign-out, session expiry, CSRF and bearer tokens.

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::support::{ADMIN_EMAIL, ADMIN_PASSWORD, Browser, TestApp, api};

#[tokio::test]
async fn login_succeeds_with_a_fresh_session_and_fails_generically() {
    let app = TestApp::start().await;
    app.create_admin().await;
    let mut b = Browser::new(&app.base);

    let wrong_password = b.login(ADMIN_EMAIL, "not the password").await;
    assert_eq!(wrong_password.status, StatusCode::UNAUTHORIZED);
    let unknown_user = b.login("nobody@example.com", "not the password").await;
    assert_eq!(unknown_user.status, StatusCode::UNAUTHORIZED);
    // One message either way: no user enumeration.
    let m1 = wrong_password.select_text("[role=alert]").unwrap();
    let m2 = unknown_user.select_text("[role=alert]").unwrap();
    assert_eq!(m1, m2);
    assert_eq!(m1, "Incorrect e-mail address or password.");

    let ok = b.login(ADMIN_EMAIL, ADMIN_PASSWORD).await;
    assert_eq!(ok.status, StatusCode::SEE_OTHER);
    let set = ok.set_cookies().into_iter().find(|c| c.starts_with("arno_session=")).unwrap();
    assert!(set.contains("HttpOnly") && set.contains("SameSite=Lax") && set.contains("Path=/"), "{set}");
    assert!(!set.contains("Secure"), "plain http must not mark cookies Secure: {set}");
    let first = b.session_cookie().unwrap();
    assert_eq!(first.len(), 22, "128-bit id, base64url");
    // Stored hashed, never in clear.
    let (n,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM sessions WHERE id_hash = $1")
        .bind(&first)
        .fetch_one(app.state.db.pool())
        .await
        .unwrap();
    assert_eq!(n, 0);

    // Signing in again issues a new id and retires the old one.
    let mut other = Browser::new(&app.base);
    other.cookies.insert("arno_session".into(), first.clone());
    let form = other.get("/login?next=/").await;
    assert_eq!(form.status, StatusCode::SEE_OTHER, "a live session skips the form");
    let mut fresh = Browser::new(&app.base);
    fresh.cookies.insert("arno_session".into(), first.clone());
    fresh.cookies.insert("arno_csrf".into(), "pre".into());
    let csrf = arno::http::csrf::token_for(&app.state.keys.csrf, &first);
    let relogin =
        fresh.post_form("/login", &[("csrf_token", &csrf), ("email", ADMIN_EMAIL), ("password", ADMIN_PASSWORD)]).await;
    assert_eq!(relogin.status, StatusCode::SEE_OTHER);
    let second = fresh.session_cookie().unwrap();
    assert_ne!(first, second);
    let mut stale = Browser::new(&app.base);
    stale.cookies.insert("arno_session".into(), first);
    assert_eq!(stale.get("/api/v1/me").await.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn login_redirects_only_to_local_paths() {
    let app = TestApp::start().await;
    app.create_admin().await;
    for (next, expect) in [("/api/v1/me", "/api/v1/me"), ("//evil.example/x", "/"), ("https://evil.example", "/")] {
        let mut b = Browser::new(&app.base);
        let csrf = b.get("/login").await.csrf();
        let r = b
            .post_form(
                "/login",
                &[("csrf_token", &csrf), ("email", ADMIN_EMAIL), ("password", ADMIN_PASSWORD), ("next", next)],
            )
            .await;
        assert_eq!(r.header("location").as_deref(), Some(expect), "next={next}");
    }
    // Pages send anonymous visitors to sign in, remembering where they were going.
    let r = api(Method::GET, &app.url("/"), None, None).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert_eq!(r.header("location").as_deref(), Some("/login"));
}

#[tokio::test]
async fn repeated_failures_are_throttled_per_account_and_address() {
    // Behind a trusted proxy on 127.0.0.1, so a request can also come from elsewhere; requests
    // without `X-Forwarded-For` come from 127.0.0.1 itself.
    let app =
        TestApp::start_with(&[("ARNO_LOGIN_MAX_FAILURES_PER_ACCOUNT", "3"), ("ARNO_TRUSTED_PROXIES", "127.0.0.1")])
            .await;
    app.create_admin().await;
    let mut b = Browser::new(&app.base);
    for _ in 0..3 {
        assert_eq!(b.login(ADMIN_EMAIL, "wrong password!").await.status, StatusCode::UNAUTHORIZED);
    }
    // Now even the right password waits from here: 429 with Retry-After, and the form says so …
    let blocked = b.login(ADMIN_EMAIL, ADMIN_PASSWORD).await;
    assert_eq!(blocked.status, StatusCode::TOO_MANY_REQUESTS);
    let retry: u64 = blocked.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=30).contains(&retry), "{retry}");
    let message = blocked.select_text("#login-error").expect("the form explains the wait");
    assert!(message.starts_with("Too many failed sign-in attempts") && message.contains("seconds"), "{message}");
    assert!(blocked.select_attr("input[name=email]", "value").as_deref() == Some(ADMIN_EMAIL));
    // … and as the JSON error contract for clients that ask for it.
    let csrf = b.get("/login").await.csrf();
    let json = b
        .post_form_with(
            "/login",
            &[("csrf_token", &csrf), ("email", ADMIN_EMAIL), ("password", ADMIN_PASSWORD)],
            &[("accept", "application/json")],
        )
        .await;
    assert_eq!(json.status, StatusCode::TOO_MANY_REQUESTS);
    let body = json.json();
    assert_eq!(body["code"], "rate_limited");
    let ms = body["retry_after_ms"].as_u64().unwrap();
    assert!(ms > 0 && ms <= 30_000, "{ms}");
    // An unknown account is throttled exactly alike: the wait reveals nothing.
    for _ in 0..3 {
        assert_eq!(b.login("nobody@example.com", "wrong password!").await.status, StatusCode::UNAUTHORIZED);
    }
    let unknown = b.login("nobody@example.com", ADMIN_PASSWORD).await;
    assert_eq!(unknown.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(unknown.select_text("#login-error"), Some(message));
    // Another account from the same address is not blocked by this account's failures …
    app.create_user("bob@example.com", "bobs long password", arno::auth::OrgRole::Member).await;
    let mut other = Browser::new(&app.base);
    assert_eq!(other.login("bob@example.com", "bobs long password").await.status, StatusCode::SEE_OTHER);
    // … nor is this account from another address.
    let mut elsewhere = Browser::new(&app.base);
    let csrf =
        elsewhere.request(Method::GET, "/login", &[("x-forwarded-for", "198.51.100.7")], None, None).await.csrf();
    let r = elsewhere
        .post_form_with(
            "/login",
            &[("csrf_token", &csrf), ("email", ADMIN_EMAIL), ("password", ADMIN_PASSWORD)],
            &[("x-forwarded-for", "198.51.100.7")],
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.text);
    // Temporary, not a lockout: once the block has passed, the right password works …
    app.exec("UPDATE login_throttle SET blocked_until = 0").await;
    assert_eq!(b.login(ADMIN_EMAIL, ADMIN_PASSWORD).await.status, StatusCode::SEE_OTHER);
    // … and clears that pair only: the address and account-wide counts stay until they expire.
    let keys: Vec<(String, i64)> = sqlx::query_as("SELECT key, failures FROM login_throttle ORDER BY key")
        .fetch_all(app.state.db.pool())
        .await
        .unwrap();
    let kinds: Vec<(&str, i64)> = keys.iter().map(|(k, n)| (k.split(':').next().unwrap(), *n)).collect();
    assert_eq!(kinds, [("account", 3), ("account", 3), ("ip", 6), ("pair", 3)], "{keys:?}");
}

#[tokio::test]
async fn repeated_failures_are_throttled_per_address() {
    let app = TestApp::start_with(&[("ARNO_LOGIN_MAX_FAILURES_PER_IP", "4")]).await;
    app.create_admin().await;
    let mut b = Browser::new(&app.base);
    for i in 0..4 {
        let r = b.login(&format!("guess{i}@example.com"), "whatever password").await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    }
    // The address has used up its failures, whatever the accounts: even the admin waits from here.
    let blocked = b.login(ADMIN_EMAIL, ADMIN_PASSWORD).await;
    assert_eq!(blocked.status, StatusCode::TOO_MANY_REQUESTS);
    let message = blocked.select_text("#login-error").unwrap();
    assert!(message.starts_with("Too many failed sign-in attempts from your network"), "{message}");
    // The throttle table holds no e-mail addresses.
    let keys: Vec<(String,)> =
        sqlx::query_as("SELECT key FROM login_throttle").fetch_all(app.state.db.pool()).await.unwrap();
    assert!(keys.iter().all(|(k,)| !k.contains('@')), "{keys:?}");
}

#[tokio::test]
async fn logout_ends_the_session() {
    let app = TestApp::start().await;
    let mut b = app.admin_browser().await;
    let cookie = b.session_cookie().unwrap();
    let csrf = b.session_csrf().await;
    let out = b.post_form("/logout", &[("csrf_token", &csrf)]).await;
    assert_eq!(out.status, StatusCode::SEE_OTHER);
    assert_eq!(out.header("location").as_deref(), Some("/login"));
    assert!(b.session_cookie().is_none(), "cookie cleared");
    // The row is gone: replaying the old cookie fails.
    let (n,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM sessions").fetch_one(app.state.db.pool()).await.unwrap();
    assert_eq!(n, 0);
    let mut replay = Browser::new(&app.base);
    replay.cookies.insert("arno_session".into(), cookie);
    assert_eq!(replay.get("/api/v1/me").await.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn sessions_expire_when_idle_and_absolutely() {
    let app = TestApp::start().await;
    let mut b = app.admin_browser().await;
    assert_eq!(b.get("/api/v1/me").await.status, StatusCode::OK);
    let idle_ms = app.state.config.session_idle_timeout.as_millis() as i64;
    // Idle for longer than the idle timeout.
    app.exec(&format!("UPDATE sessions SET last_seen_at = last_seen_at - {}", idle_ms + 1000)).await;
    assert_eq!(b.get("/api/v1/me").await.status, StatusCode::UNAUTHORIZED);

    let mut b = Browser::new(&app.base);
    assert_eq!(b.login(ADMIN_EMAIL, ADMIN_PASSWORD).await.status, StatusCode::SEE_OTHER);
    assert_eq!(b.get("/api/v1/me").await.status, StatusCode::OK);
    // Active, but past the absolute lifetime.
    app.exec(&format!("UPDATE sessions SET expires_at = {}", arno::db::now_ms() - 1)).await;
    assert_eq!(b.get("/api/v1/me").await.status, StatusCode::UNAUTHORIZED);
    assert_eq!(b.get("/").await.status, StatusCode::SEE_OTHER);
}

#[tokio::test]
async fn state_changes_without_a_valid_csrf_token_are_refused() {
    let app = TestApp::start().await;
    let mut b = app.admin_browser().await;
    let csrf = b.session_csrf().await;

    let missing = b.post_form("/logout", &[]).await;
    assert_eq!(missing.status, StatusCode::FORBIDDEN);
    let wrong = b.post_form("/logout", &[("csrf_token", "AAAA")]).await;
    assert_eq!(wrong.status, StatusCode::FORBIDDEN);
    // A valid token does not help a cross-site request.
    let cross = b.post_form_with("/logout", &[("csrf_token", &csrf)], &[("origin", "http://evil.example")]).await;
    assert_eq!(cross.status, StatusCode::FORBIDDEN);
    let fetch_meta = b.post_form_with("/logout", &[("csrf_token", &csrf)], &[("sec-fetch-site", "cross-site")]).await;
    assert_eq!(fetch_meta.status, StatusCode::FORBIDDEN);
    // Still signed in after all that.
    assert_eq!(b.get("/api/v1/me").await.status, StatusCode::OK);

    // Cookie-authenticated API writes need the header; bearer ones don't (below).
    let body = json!({"name": "ci"});
    let no_header = b.json(Method::POST, "/api/v1/tokens", &body, &[]).await;
    assert_eq!(no_header.status, StatusCode::FORBIDDEN);
    assert_eq!(no_header.json()["code"], "forbidden");
    let with_header = b.json(Method::POST, "/api/v1/tokens", &body, &[("x-csrf-token", &csrf)]).await;
    assert_eq!(with_header.status, StatusCode::CREATED, "{}", with_header.text);
    let same_origin = b
        .post_form_with(
            "/logout",
            &[("csrf_token", &csrf)],
            &[("origin", &app.base), ("sec-fetch-site", "same-origin")],
        )
        .await;
    assert_eq!(same_origin.status, StatusCode::SEE_OTHER);

    // Login itself is protected by the pre-session token.
    let mut anon = Browser::new(&app.base);
    anon.get("/login").await;
    let forged = anon.post_form("/login", &[("email", ADMIN_EMAIL), ("password", ADMIN_PASSWORD)]).await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN);
    let mut cookieless = Browser::new(&app.base);
    let forged = cookieless.post_form("/login", &[("email", ADMIN_EMAIL), ("password", ADMIN_PASSWORD)]).await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn bearer_tokens_authenticate_until_revoked_or_expired() {
    let app = TestApp::start().await;
    let mut b = app.admin_browser().await;
    let csrf = b.session_csrf().await;
    let me_url = app.url("/api/v1/me");

    assert_eq!(api(Method::GET, &me_url, None, None).await.json()["code"], "unauthorized");

    let created = b
        .json(
            Method::POST,
            "/api/v1/tokens",
            &json!({"name": "laptop", "expires_days": 30}),
            &[("x-csrf-token", &csrf)],
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED);
    let created = created.json();
    let token = created["token"].as_str().unwrap().to_owned();
    assert!(token.starts_with("arno_"));
    let id = created["id"].as_str().unwrap().to_owned();

    let me = api(Method::GET, &me_url, Some(&token), None).await;
    assert_eq!(me.status, StatusCode::OK);
    let me = me.json();
    assert_eq!(me["email"], ADMIN_EMAIL);
    for key in ["id", "email", "name", "handle", "org_role"] {
        assert!(me.get(key).is_some(), "missing {key}");
    }

    // Listing never shows a secret, and the table stores only a hash.
    let list = api(Method::GET, &app.url("/api/v1/tokens"), Some(&token), None).await;
    assert_eq!(list.status, StatusCode::OK);
    assert!(!list.text.contains(&token));
    assert_eq!(list.json()[0]["name"], "laptop");
    assert!(list.json()[0]["last_used_at"].is_string(), "use is recorded");
    let (n,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM api_tokens WHERE token_hash = $1")
        .bind(&token)
        .fetch_one(app.state.db.pool())
        .await
        .unwrap();
    assert_eq!(n, 0);

    // Bearer writes need no CSRF token.
    let second = api(Method::POST, &app.url("/api/v1/tokens"), Some(&token), Some(json!({"name": "ci"}))).await;
    assert_eq!(second.status, StatusCode::CREATED, "{}", second.text);
    let second = second.json();
    let second_token = second["token"].as_str().unwrap().to_owned();
    assert!(second["expires_at"].is_string(), "tokens expire by default");

    // Bad input: validation errors name the field.
    let bad =
        api(Method::POST, &app.url("/api/v1/tokens"), Some(&token), Some(json!({"name": "x", "expires_days": 9999})))
            .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert_eq!(bad.json()["code"], "validation");
    assert_eq!(bad.json()["details"]["field"], "expires_days");

    // Revoke the first: it stops working at once; the second still works.
    let del = api(Method::DELETE, &app.url(&format!("/api/v1/tokens/{id}")), Some(&second_token), None).await;
    assert_eq!(del.status, StatusCode::NO_CONTENT);
    assert_eq!(api(Method::GET, &me_url, Some(&token), None).await.status, StatusCode::UNAUTHORIZED);
    assert_eq!(api(Method::GET, &me_url, Some(&second_token), None).await.status, StatusCode::OK);
    let again = api(Method::DELETE, &app.url(&format!("/api/v1/tokens/{id}")), Some(&second_token), None).await;
    assert_eq!(again.status, StatusCode::NOT_FOUND);
    assert_eq!(again.json()["code"], "not_found");

    // Expired tokens are refused.
    app.exec(&format!("UPDATE api_tokens SET expires_at = {}", arno::db::now_ms() - 1)).await;
    assert_eq!(api(Method::GET, &me_url, Some(&second_token), None).await.status, StatusCode::UNAUTHORIZED);

    // Malformed credentials are 401, never a fallback to something else.
    for header in ["Bearer", "Bearer nope", "Basic YTpi", "Bearer arno_\u{0}"] {
        let r = support_raw_auth(&me_url, header).await;
        assert_eq!(r, StatusCode::UNAUTHORIZED, "{header:?}");
    }
}

async fn support_raw_auth(url: &str, header: &str) -> StatusCode {
    let mut req = crate::support::client().get(url);
    if let Ok(v) = reqwest::header::HeaderValue::from_str(header) {
        req = req.header("authorization", v);
    }
    req.send().await.unwrap().status()
}

#[tokio::test]
async fn one_users_tokens_are_invisible_to_another() {
    let app = TestApp::start().await;
    app.create_admin().await;
    app.create_user("bob@example.com", "bobs long password", arno::auth::OrgRole::Member).await;
    let mut conn = app.state.db.pool().acquire().await.unwrap();
    let ada = arno::auth::users::find_by_email(&mut conn, ADMIN_EMAIL).await.unwrap().unwrap();
    let bob = arno::auth::users::find_by_email(&mut conn, "bob@example.com").await.unwrap().unwrap();
    let (ada_info, _) = arno::auth::tokens::create(&mut conn, &ada.id, "ada", None).await.unwrap();
    let (_, bob_token) = arno::auth::tokens::create(&mut conn, &bob.id, "bob", None).await.unwrap();
    drop(conn);
    let list = api(Method::GET, &app.url("/api/v1/tokens"), Some(&bob_token), None).await.json();
    assert_eq!(list.as_array().unwrap().len(), 1);
    let del = api(Method::DELETE, &app.url(&format!("/api/v1/tokens/{}", ada_info.id)), Some(&bob_token), None).await;
    assert_eq!(del.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn invalid_bearer_tokens_are_throttled_per_address_without_flooding_the_audit_log() {
    let app = TestApp::start_with(&[("ARNO_LOGIN_MAX_FAILURES_PER_IP", "3")]).await;
    let admin = app.create_admin().await;
    let mut conn = app.state.db.pool().acquire().await.unwrap();
    let good = arno::auth::tokens::create(&mut conn, &admin.id, "good", None).await.unwrap().1;
    drop(conn);
    let audit_count = || async {
        let (n,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM audit_events WHERE action = 'auth.token'")
            .fetch_one(app.state.db.pool())
            .await
            .unwrap();
        n
    };
    let me = app.url("/api/v1/me");
    for _ in 0..3 {
        assert_eq!(api(Method::GET, &me, Some("arno_guess"), None).await.status, StatusCode::UNAUTHORIZED);
    }
    for _ in 0..5 {
        let r = api(Method::GET, &me, Some("arno_guess"), None).await;
        assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(r.json()["code"], "rate_limited");
    }
    assert!(audit_count().await <= 3);
    assert_eq!(app.refusals("action = 'auth.token'").await, 3, "blocked attempts add no records");
    assert_eq!(audit_count().await, 2, "the first refusal, then one for its repeats");
    // A valid token from the same address still works.
    assert_eq!(api(Method::GET, &me, Some(&good), None).await.status, StatusCode::OK);
}
