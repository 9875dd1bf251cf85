//! The admin console (users, SCIM token) and the profile page (own API tokens).

use arno::auth::OrgRole;
use reqwest::{Method, StatusCode};

use crate::support::{ADMIN_EMAIL, ADMIN_PASSWORD, Browser, TestApp, api, client, read};

async fn audit_count(app: &TestApp, action: &str, outcome: &str) -> i64 {
    let (n,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM audit_events WHERE action = $1 AND outcome = $2")
        .bind(action)
        .bind(outcome)
        .fetch_one(app.state.db.pool())
        .await
        .unwrap();
    n
}

#[tokio::test]
async fn only_admins_reach_the_console() {
    let app = TestApp::start().await;
    app.create_user("mia@example.com", "a long enough password", OrgRole::Member).await;
    let mut b = Browser::new(&app.base);
    b.login("mia@example.com", "a long enough password").await;
    for path in ["/admin", "/admin/users", "/admin/users/x"] {
        assert_eq!(b.get(path).await.status, StatusCode::FORBIDDEN, "{path}");
    }
    assert_eq!(app.refusals("action = 'admin.read'").await, 3);
    let csrf = b.session_csrf().await;
    let r = b.post_form("/admin/scim-token", &[("csrf_token", &csrf)]).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(audit_count(&app, "scim.token", "denied").await, 1);
    assert!(b.get("/").await.select_text("a[href='/admin']").is_none(), "no Admin link for members");
}

#[tokio::test]
async fn users_roles_deactivation_sessions_and_tokens() {
    let app = TestApp::start().await;
    let mut admin = app.admin_browser().await;
    let (mia, mia_token) = app.user_with_token("mia@example.com", OrgRole::Member).await;
    let mut mia_browser = Browser::new(&app.base);
    mia_browser.login("mia@example.com", "a long enough password").await;
    let csrf = admin.session_csrf().await;

    let list = admin.get("/admin/users?q=MIA").await;
    assert_eq!(list.status, StatusCode::OK);
    assert_eq!(list.select_text("#users caption").as_deref(), Some("1 user(s)"));
    let detail = admin.get(&format!("/admin/users/{}", mia.id)).await;
    assert_eq!(detail.select_text("#sessions caption").as_deref(), Some("1 session(s)"));
    assert_eq!(detail.select_text("#tokens caption").as_deref(), Some("1 token(s)"));

    // Roles: change, but never demote the last admin.
    let r = admin
        .post_form(&format!("/admin/users/{}/role", mia.id), &[("csrf_token", &csrf), ("org_role", "auditor")])
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(api(Method::GET, &app.url("/api/v1/me"), Some(&mia_token), None).await.json()["org_role"], "auditor");
    let (ada,): (String,) = sqlx::query_as("SELECT id FROM users WHERE email = $1")
        .bind(ADMIN_EMAIL)
        .fetch_one(app.state.db.pool())
        .await
        .unwrap();
    let r =
        admin.post_form(&format!("/admin/users/{ada}/role"), &[("csrf_token", &csrf), ("org_role", "member")]).await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    assert!(r.select_text("#user-error").unwrap().contains("last administrator"));
    // An IdP-managed role is changed at the IdP, not here.
    app.exec(&format!("UPDATE users SET role_source = 'oidc:corp' WHERE id = '{}'", mia.id)).await;
    let r = admin
        .post_form(&format!("/admin/users/{}/role", mia.id), &[("csrf_token", &csrf), ("org_role", "member")])
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    app.exec(&format!("UPDATE users SET role_source = NULL WHERE id = '{}'", mia.id)).await;

    // Sign out everywhere ends the browser session; the token still works.
    let r = admin.post_form(&format!("/admin/users/{}/sessions/revoke", mia.id), &[("csrf_token", &csrf)]).await;
    assert!(r.select_text("#user-message").unwrap().contains("1 session(s) ended"));
    assert_eq!(mia_browser.get("/").await.status, StatusCode::SEE_OTHER, "sent to sign in");
    assert_eq!(api(Method::GET, &app.url("/api/v1/me"), Some(&mia_token), None).await.status, StatusCode::OK);

    // Deactivation: token dead, sign-in refused; reactivation lets her sign in again.
    let r = admin.post_form(&format!("/admin/users/{}/deactivate", mia.id), &[("csrf_token", &csrf)]).await;
    assert!(r.select_text("#user-message").unwrap().contains("1 API token(s) revoked"), "{}", r.text);
    assert_eq!(api(Method::GET, &app.url("/api/v1/me"), Some(&mia_token), None).await.status, StatusCode::UNAUTHORIZED);
    let mut again = Browser::new(&app.base);
    assert_eq!(again.login("mia@example.com", "a long enough password").await.status, StatusCode::UNAUTHORIZED);
    admin.post_form(&format!("/admin/users/{}/reactivate", mia.id), &[("csrf_token", &csrf)]).await;
    assert_eq!(again.login("mia@example.com", "a long enough password").await.status, StatusCode::SEE_OTHER);
    let r = admin.post_form(&format!("/admin/users/{ada}/deactivate"), &[("csrf_token", &csrf)]).await;
    assert_eq!(r.status, StatusCode::CONFLICT, "no self-deactivation");
    for action in ["user.role", "session.revoke", "user.deactivate", "user.reactivate"] {
        assert!(audit_count(&app, action, "allowed").await >= 1, "{action}");
    }

    // Revoke one token from the console.
    let mut conn = app.state.db.pool().acquire().await.unwrap();
    let (info, token) = arno::auth::tokens::create(&mut conn, &mia.id, "ci", None).await.unwrap();
    drop(conn);
    let r =
        admin.post_form(&format!("/admin/users/{}/tokens/{}/revoke", mia.id, info.id), &[("csrf_token", &csrf)]).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(api(Method::GET, &app.url("/api/v1/me"), Some(&token), None).await.status, StatusCode::UNAUTHORIZED);

    // The SCIM token from the console works against /scim/v2.
    let page = admin.post_form("/admin/scim-token", &[("csrf_token", &csrf)]).await;
    let scim = page.select_text("#scim-token").unwrap();
    let r = read(client().get(app.url("/scim/v2/Users")).bearer_auth(scim.trim()).send().await.unwrap()).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    // SCIM sees only the accounts it provisioned: none of these local ones.
    assert_eq!(r.json()["totalResults"], 0);
    // Rotating it is audited, with who did it and how.
    let mut conn = app.state.db.pool().acquire().await.unwrap();
    let (actor, intent): (Option<String>, String) =
        sqlx::query_as("SELECT actor_id, intent FROM audit_events WHERE action = 'scim.token' AND outcome = 'allowed'")
            .fetch_one(&mut *conn)
            .await
            .unwrap();
    assert!(actor.is_some_and(|a| !a.is_empty()), "the Admin is the actor");
    assert!(intent.contains("console"), "{intent}");
}

#[tokio::test]
async fn profile_tokens() {
    let app = TestApp::start().await;
    app.create_admin().await;
    let mut b = Browser::new(&app.base);
    b.login(ADMIN_EMAIL, ADMIN_PASSWORD).await;
    let csrf = b.session_csrf().await;
    let r = b.post_form("/profile/tokens", &[("csrf_token", &csrf), ("name", "laptop"), ("expires_days", "30")]).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let token = r.select_text("#new-token").unwrap();
    assert_eq!(api(Method::GET, &app.url("/api/v1/me"), Some(token.trim()), None).await.status, StatusCode::OK);
    assert_eq!(r.select_text("#tokens caption").as_deref(), Some("1 token(s)"));
    let bad = b.post_form("/profile/tokens", &[("csrf_token", &csrf), ("name", "x"), ("expires_days", "9999")]).await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert!(bad.select_text("#profile-error").unwrap().contains("expires_days"));
    let id = api(Method::GET, &app.url("/api/v1/tokens"), Some(token.trim()), None).await.json()[0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let r = b.post_form(&format!("/profile/tokens/{id}/revoke"), &[("csrf_token", &csrf)]).await;
    assert_eq!(r.select_text("#profile-message").as_deref(), Some("Token revoked."));
    assert_eq!(
        api(Method::GET, &app.url("/api/v1/me"), Some(token.trim()), None).await.status,
        StatusCode::UNAUTHORIZED
    );
    let r = b.post_form(&format!("/profile/tokens/{id}/revoke"), &[("csrf_token", &csrf)]).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
}
