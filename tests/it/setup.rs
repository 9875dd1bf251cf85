//! First-run setup: the one-time token, the form, and refusal once an admin exists.

use reqwest::StatusCode;

use crate::support::{Browser, TestApp, api};

#[tokio::test]
async fn setup_token_creates_the_first_admin_once() {
    let app = TestApp::start().await;
    let token = app.setup_token.clone().expect("a fresh install issues a setup token");
    let file = app.state.config.data_dir.join("setup-token");
    assert_eq!(std::fs::read_to_string(&file).unwrap().trim(), token);

    let mut b = Browser::new(&app.base);
    // Without a token, or with a wrong one, the page refuses.
    assert_eq!(b.get("/setup").await.status, StatusCode::FORBIDDEN);
    let wrong = b.get("/setup?token=not-the-token").await;
    assert_eq!(wrong.status, StatusCode::FORBIDDEN);
    assert!(wrong.text.contains("invalid or has expired"));

    let form = b.get(&format!("/setup?token={token}")).await;
    assert_eq!(form.status, StatusCode::OK);
    for field in ["token", "email", "name", "password", "csrf_token"] {
        assert!(form.select_attr(&format!("form input[name={field}]"), "name").is_some(), "missing field {field}");
    }
    // Every input has a label.
    for id in ["email", "name", "password"] {
        assert!(form.select_attr(&format!("label[for={id}]"), "for").is_some());
    }
    let csrf = form.csrf();

    // A posted form without the CSRF token is refused and changes nothing.
    let no_csrf = b
        .post_form(
            "/setup",
            &[("token", &token), ("email", "ada@example.com"), ("name", "Ada"), ("password", "long enough password")],
        )
        .await;
    assert_eq!(no_csrf.status, StatusCode::FORBIDDEN);

    // A weak password re-renders the form with the error, keeping what was typed.
    let weak = b
        .post_form(
            "/setup",
            &[
                ("csrf_token", &csrf),
                ("token", &token),
                ("email", "ada@example.com"),
                ("name", "Ada"),
                ("password", "short"),
            ],
        )
        .await;
    assert_eq!(weak.status, StatusCode::BAD_REQUEST);
    assert!(weak.select_text("[role=alert]").unwrap().contains("at least 12"));
    assert_eq!(weak.select_attr("input[name=email]", "value").as_deref(), Some("ada@example.com"));

    let done = b
        .post_form(
            "/setup",
            &[
                ("csrf_token", &csrf),
                ("token", &token),
                ("email", "Ada@Example.com"),
                ("name", "Ada Lovelace"),
                ("password", "long enough password"),
            ],
        )
        .await;
    assert_eq!(done.status, StatusCode::SEE_OTHER, "{}", done.text);
    assert_eq!(done.header("location").as_deref(), Some("/"));
    let home = b.get("/").await;
    assert_eq!(home.status, StatusCode::OK);
    assert_eq!(home.select_text("h1").as_deref(), Some("Welcome, Ada Lovelace"));
    let csrf = home.csrf();
    let me = b.request(reqwest::Method::GET, "/api/v1/me", &[], None, None).await.json();
    assert_eq!(me["org_role"], "admin");
    assert_eq!(me["email"], "ada@example.com");
    assert_eq!(me["handle"], "ada");

    // The token is consumed: neither the page nor a replayed post works, and the file is gone.
    assert_eq!(b.get(&format!("/setup?token={token}")).await.status, StatusCode::FORBIDDEN);
    let replay = b
        .post_form(
            "/setup",
            &[
                ("csrf_token", &csrf),
                ("token", &token),
                ("email", "eve@example.com"),
                ("name", "Eve"),
                ("password", "long enough password"),
            ],
        )
        .await;
    assert_eq!(replay.status, StatusCode::FORBIDDEN);
    assert!(!file.exists());
    let (n,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM users").fetch_one(app.state.db.pool()).await.unwrap();
    assert_eq!(n, 1);
}

#[tokio::test]
async fn setup_refuses_once_an_admin_exists() {
    let app = TestApp::start().await;
    let token = app.setup_token.clone().unwrap();
    app.create_admin().await;
    let mut b = Browser::new(&app.base);
    let page = b.get(&format!("/setup?token={token}")).await;
    assert_eq!(page.status, StatusCode::FORBIDDEN);
    assert!(page.text.contains("already complete"));
    // A restart with an admin issues no token.
    let again = arno::auth::setup::issue_if_needed(&app.state.db, &app.state.config.data_dir).await.unwrap();
    assert!(again.is_none());
}

#[tokio::test]
async fn login_page_points_to_setup_while_no_user_exists() {
    let app = TestApp::start().await;
    let page = api(reqwest::Method::GET, &app.url("/login"), None, None).await;
    assert!(page.select_text(".notice").unwrap().contains("setup"));
    app.create_admin().await;
    let page = api(reqwest::Method::GET, &app.url("/login"), None, None).await;
    assert!(page.select_text(".notice").is_none());
}
