//! The device flow (RFC 8628) behind `arno login`: the HTTP endpoints, the approval page, and the
//! CLI end to end.

use std::io::BufRead as _;
use std::os::unix::fs::PermissionsExt as _;

use reqwest::{Method, StatusCode};
use serde_json::Value;

use crate::support::{ADMIN_EMAIL, ADMIN_PASSWORD, Browser, TestApp, api, client, read};

async fn post_form(app: &TestApp, path: &str, fields: &[(&str, &str)]) -> crate::support::Page {
    read(client().post(app.url(path)).form(fields).send().await.unwrap()).await
}

async fn poll(app: &TestApp, device_code: &str) -> crate::support::Page {
    post_form(
        app,
        "/api/v1/auth/device/token",
        &[
            ("grant_type", "urn:ietf:params:oauth:grant-type:device_code"),
            ("device_code", device_code),
            ("client_id", "arno-cli"),
        ],
    )
    .await
}

async fn signed_in_admin(app: &TestApp) -> Browser {
    app.create_admin().await;
    let mut b = Browser::new(&app.base);
    b.login(ADMIN_EMAIL, ADMIN_PASSWORD).await;
    b
}

#[tokio::test]
async fn codes_polling_approval_and_single_use() {
    let app = TestApp::start().await;
    let r = post_form(&app, "/api/v1/auth/device/code", &[("client_id", "someone")]).await;
    assert_eq!((r.status, r.json()["error"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_client")));
    let r = post_form(&app, "/api/v1/auth/device/code", &[("client_id", "arno-cli")]).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let code = r.json();
    let (device_code, user_code) = (code["device_code"].as_str().unwrap(), code["user_code"].as_str().unwrap());
    assert_eq!(code["verification_uri"], app.url("/device"));
    assert_eq!(code["interval"], 5);
    assert_eq!(code["expires_in"], 600);

    let r = poll(&app, device_code).await;
    assert_eq!(r.json()["error"], "authorization_pending");
    assert_eq!(r.json()["code"], "validation", "Arno's error contract too");
    assert_eq!(r.header("cache-control").as_deref(), Some("no-store"));
    let r = poll(&app, device_code).await;
    assert_eq!(r.json()["error"], "slow_down", "polled within the interval");
    let (interval,): (i64,) =
        sqlx::query_as("SELECT interval_ms FROM device_grants").fetch_one(app.state.db.pool()).await.unwrap();
    assert_eq!(interval, 10_000, "slow_down adds five seconds");

    // The signed-in user confirms the code (typed in lower case, without the dash).
    let mut b = signed_in_admin(&app).await;
    let typed = user_code.replace('-', "").to_lowercase();
    let page = b.get(&format!("/device?user_code={typed}")).await;
    assert_eq!(page.select_text("#confirm-code").as_deref(), Some(user_code));
    let csrf = page.csrf();
    let done =
        b.post_form("/device", &[("csrf_token", &csrf), ("user_code", user_code), ("decision", "approve")]).await;
    assert_eq!(done.status, StatusCode::OK, "{}", done.text);
    assert!(done.select_text("#device-message").unwrap().contains("signed in as you"));

    app.exec("UPDATE device_grants SET last_poll_at = 0").await;
    let r = poll(&app, device_code).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let token = r.json()["access_token"].as_str().unwrap().to_owned();
    assert!(token.starts_with("arno_"));
    let me = api(Method::GET, &app.url("/api/v1/me"), Some(&token), None).await.json();
    assert_eq!(me["email"], ADMIN_EMAIL);
    app.exec("UPDATE device_grants SET last_poll_at = 0").await;
    assert_eq!(poll(&app, device_code).await.json()["error"], "invalid_grant", "single use");

    // The same code cannot be approved twice; unknown codes get a clear message.
    let page =
        b.post_form("/device", &[("csrf_token", &csrf), ("user_code", user_code), ("decision", "approve")]).await;
    assert_eq!(page.status, StatusCode::BAD_REQUEST);
    assert!(page.select_text("#device-error").unwrap().contains("not valid or has expired"));
    let (approvals,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM audit_events WHERE action = 'auth.device'")
        .fetch_one(app.state.db.pool())
        .await
        .unwrap();
    assert_eq!(approvals, 1);
}

#[tokio::test]
async fn denied_and_expired_codes() {
    let app = TestApp::start().await;
    let mut b = signed_in_admin(&app).await;
    let csrf = b.session_csrf().await;
    let new_code = || async { post_form(&app, "/api/v1/auth/device/code", &[("client_id", "arno-cli")]).await.json() };

    let denied = new_code().await;
    b.post_form(
        "/device",
        &[("csrf_token", &csrf), ("user_code", denied["user_code"].as_str().unwrap()), ("decision", "deny")],
    )
    .await;
    assert_eq!(poll(&app, denied["device_code"].as_str().unwrap()).await.json()["error"], "access_denied");

    let expired = new_code().await;
    app.exec("UPDATE device_grants SET expires_at = 1 WHERE denied = 0").await;
    assert_eq!(poll(&app, expired["device_code"].as_str().unwrap()).await.json()["error"], "expired_token");
    let page = b
        .post_form(
            "/device",
            &[("csrf_token", &csrf), ("user_code", expired["user_code"].as_str().unwrap()), ("decision", "approve")],
        )
        .await;
    assert_eq!(page.status, StatusCode::BAD_REQUEST);
    let r = post_form(
        &app,
        "/api/v1/auth/device/token",
        &[("grant_type", "password"), ("device_code", "x"), ("client_id", "arno-cli")],
    )
    .await;
    assert_eq!(r.json()["error"], "unsupported_grant_type");
}

#[tokio::test]
async fn arno_login_end_to_end() {
    let app = TestApp::start().await;
    let mut b = signed_in_admin(&app).await;
    let config = tempfile::tempdir().unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_arno"))
        .args(["login", "--server", &app.base])
        .env("XDG_CONFIG_HOME", config.path())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (first, lines) = tokio::task::spawn_blocking(move || {
        let mut lines = std::io::BufReader::new(stdout).lines();
        (lines.next().unwrap().unwrap(), lines)
    })
    .await
    .unwrap();
    // Keep reading so the CLI never blocks on a full pipe.
    let rest = tokio::task::spawn_blocking(move || lines.map(|l| l.unwrap()).collect::<Vec<_>>());
    let (url, user_code) = first.strip_prefix("To sign in, open ").unwrap().split_once(" and enter the code ").unwrap();
    assert_eq!(url, app.url("/device"));
    let user_code = user_code.trim().to_owned();
    let csrf = b.session_csrf().await;
    let done =
        b.post_form("/device", &[("csrf_token", &csrf), ("user_code", &user_code), ("decision", "approve")]).await;
    assert_eq!(done.status, StatusCode::OK, "{}", done.text);
    let status = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap()).await.unwrap();
    assert!(status.status.success(), "{}", String::from_utf8_lossy(&status.stderr));
    let rest = rest.await.unwrap();
    assert!(rest.iter().any(|l| l.starts_with("Signed in to")), "{rest:?}");

    let path = config.path().join("arno/credentials.json");
    assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
    let saved: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    let token = saved["servers"][&app.base]["token"].as_str().unwrap();
    let me = api(Method::GET, &app.url("/api/v1/me"), Some(token), None).await.json();
    assert_eq!(me["email"], ADMIN_EMAIL);
}
