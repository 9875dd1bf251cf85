//! Permissions from GitHub, end to end against the fake GitHub: users link their GitHub
//! accounts through the App's device flow (GitHub's word only: someone else's account, an
//! unstarted or hurried check are refused), a Maker maps repository permissions to roles, and
//! syncs grant, change and remove only the memberships they granted — never one given by hand.

use std::time::Duration;

use arno::auth::OrgRole;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::github_projects::{GitHubWorld, github_project, github_world};
use crate::support::api;

/// `token` links the GitHub account `login`/`id` on `corp`, approving on the fake GitHub.
async fn link(w: &GitHubWorld, token: &str, login: &str, id: i64) -> Value {
    let (status, body) = try_link(w, token, login, id).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body
}

async fn try_link(w: &GitHubWorld, token: &str, login: &str, id: i64) -> (StatusCode, Value) {
    let r = api(Method::POST, &w.app.url("/api/v1/me/git-logins/corp"), Some(token), None).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let pending = r.json();
    assert!(pending["verification_uri"].as_str().unwrap().ends_with("/login/device"), "{pending}");
    // Checked at once: not approved, and GitHub is not asked sooner than it allows.
    let r = api(Method::POST, &w.app.url("/api/v1/me/git-logins/corp/check"), Some(token), None).await;
    assert_eq!((r.status, r.json()["status"].as_str()), (StatusCode::OK, Some("pending")), "{}", r.text);
    w.fake.control(Method::POST, "device", json!({"user_code": pending["user_code"], "login": login, "id": id})).await;
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    let r = api(Method::POST, &w.app.url("/api/v1/me/git-logins/corp/check"), Some(token), None).await;
    (r.status, r.json())
}

async fn members(w: &GitHubWorld) -> Vec<(String, String)> {
    let r = api(Method::GET, &w.app.url("/api/v1/projects/ds/members"), Some(&w.maker), None).await;
    let mut list: Vec<(String, String)> = r.json()["members"]
        .as_array()
        .or(r.json().as_array())
        .unwrap()
        .iter()
        .map(|m| (m["handle"].as_str().unwrap().to_owned(), m["role"].as_str().unwrap().to_owned()))
        .collect();
    list.sort();
    list
}

/// Wait until the project's members are `wanted` (the sync runs in the background).
async fn members_become(w: &GitHubWorld, wanted: &[(&str, &str)]) {
    let wanted: Vec<(String, String)> = wanted.iter().map(|(h, r)| ((*h).to_owned(), (*r).to_owned())).collect();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let now = members(w).await;
        if now == wanted {
            return;
        }
        assert!(tokio::time::Instant::now() < deadline, "members are {now:?}, not {wanted:?}");
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
}

async fn collaborators(w: &GitHubWorld, list: Value) {
    w.fake.control(Method::PUT, "repos/acme/design-system/collaborators", list).await;
}

#[tokio::test]
async fn roles_come_from_github_permissions_for_linked_accounts_and_leave_manual_ones_alone() {
    let Some(w) = github_world(true).await else { return };
    let r =
        api(Method::POST, &w.app.url("/api/v1/projects"), Some(&w.maker), Some(github_project("acme/design-system")))
            .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    // Linking needs the App's client id on the connection.
    let (_, dev) = w.app.user_with_token("dev@example.com", OrgRole::Member).await;
    let r = api(Method::POST, &w.app.url("/api/v1/me/git-logins/corp"), Some(&dev), None).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text);
    assert!(r.text.contains("client id"), "{}", r.text);
    let r = api(
        Method::PATCH,
        &w.app.url("/api/v1/admin/git/connections/corp"),
        Some(&w.admin),
        Some(json!({"client_id": "Iv23liFake"})),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    w.fake.control(Method::POST, "settings", json!({"device_interval": 1})).await;

    // Checks that arrive together (tabs, a script) ask GitHub once: the fake flags a poll sooner
    // than the interval as a violation (checked at the end).
    let r = api(Method::POST, &w.app.url("/api/v1/me/git-logins/corp"), Some(&dev), None).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let code = r.json()["user_code"].clone();
    w.fake.control(Method::POST, "device", json!({"user_code": code, "login": "Dev-Octo", "id": 501})).await;
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    let check_url = w.app.url("/api/v1/me/git-logins/corp/check");
    let answers = futures_util::future::join_all((0..5).map(|_| api(Method::POST, &check_url, Some(&dev), None))).await;
    let linked: Vec<Value> = answers.iter().map(|r| r.json()).filter(|a| a["status"] == "linked").collect();
    assert_eq!(linked.len(), 1, "{:?}", answers.iter().map(|r| r.text.clone()).collect::<Vec<_>>());
    assert_eq!(linked[0]["login"]["login"], "Dev-Octo");
    let (_, reader) = w.app.user_with_token("reader@example.com", OrgRole::Member).await;
    link(&w, &reader, "reader", 502).await;
    let (manual_user, manual) = w.app.user_with_token("manual@example.com", OrgRole::Member).await;
    link(&w, &manual, "boss", 503).await;
    let mine = api(Method::GET, &w.app.url("/api/v1/me/git-logins"), Some(&dev), None).await.json();
    assert_eq!(mine["logins"][0]["provider_user_id"], 501, "{mine}");

    // Someone else's GitHub account cannot be linked: GitHub says whose it is.
    let (_, thief) = w.app.user_with_token("thief@example.com", OrgRole::Member).await;
    let r = api(Method::POST, &w.app.url("/api/v1/me/git-logins/corp/check"), Some(&thief), None).await;
    assert_eq!(r.status, StatusCode::CONFLICT, "nothing started: {}", r.text);
    let (status, stolen) = try_link(&w, &thief, "Dev-Octo", 501).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert!(stolen["message"].as_str().is_some_and(|m| m.contains("another Arno user")), "{stolen}");
    assert_eq!(w.app.refusals("action = 'user.git_login.link'").await, 1);
    let r = api(Method::POST, &w.app.url("/api/v1/me/git-logins/nope"), Some(&thief), None).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);

    // The manual user is a Viewer by hand; GitHub says they are an admin.
    let r = api(
        Method::PUT,
        &w.app.url(&format!("/api/v1/projects/ds/members/{}", manual_user.id)),
        Some(&w.maker),
        Some(json!({"role": "viewer"})),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    collaborators(
        &w,
        json!([{"login": "Dev-Octo", "id": 501, "role": "write"}, {"login": "reader", "id": 502, "role": "read"},
               {"login": "boss", "id": 503, "role": "admin"}, {"login": "stranger", "id": 999, "role": "admin"}]),
    )
    .await;

    // Only member managers map roles; bad mappings are refused and write nothing.
    let url = w.app.url("/api/v1/projects/ds/github-roles");
    let r = api(Method::PUT, &url, Some(&manual), Some(json!({}))).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.text);
    let r = api(Method::PUT, &url, Some(&w.maker), Some(json!({"admin": "owner"}))).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text);
    let r = api(Method::PUT, &url, Some(&w.maker), Some(json!({"push": "maker"}))).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text);
    assert_eq!(api(Method::GET, &url, Some(&w.maker), None).await.status, StatusCode::NOT_FOUND);

    let r = api(Method::PUT, &url, Some(&w.maker), Some(json!({}))).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(
        r.json()["roles"],
        json!({"admin": "maker", "maintain": "maker", "write": "maker", "triage": "maker",
                                         "read": "viewer"})
    );
    members_become(&w, &[("dev", "maker"), ("m1", "maker"), ("manual", "viewer"), ("reader", "viewer")]).await;
    let sync = api(Method::GET, &url, Some(&w.maker), None).await.json();
    assert_eq!(sync["synced_members"], 2, "{sync}");
    assert!(sync["synced_at"].is_string() && sync["last_error"].is_null(), "{sync}");

    // GitHub changes: dev loses access, reader is promoted. The sync follows; manual stays.
    collaborators(
        &w,
        json!([{"login": "reader", "id": 502, "role": "maintain"}, {"login": "boss", "id": 503, "role": "read"}]),
    )
    .await;
    let r = api(Method::POST, &w.app.url("/api/v1/projects/ds/github-roles/sync"), Some(&w.maker), None).await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text);
    members_become(&w, &[("m1", "maker"), ("manual", "viewer"), ("reader", "maker")]).await;

    // A mapping that gives read nothing; a custom GitHub role counts as its base permissions.
    let r = api(Method::PUT, &url, Some(&w.maker), Some(json!({"read": null, "write": "editor"}))).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    collaborators(&w, json!([{"login": "reader", "id": 502, "role": "design-reviewer"}, {"login": "Dev-Octo", "id": 501, "role": "read"}]))
        .await;
    api(Method::POST, &w.app.url("/api/v1/projects/ds/github-roles/sync"), Some(&w.maker), None).await;
    members_become(&w, &[("m1", "maker"), ("manual", "viewer"), ("reader", "editor")]).await;

    // Unlinking takes the role it gave away at the next sync.
    let r = api(Method::DELETE, &w.app.url("/api/v1/me/git-logins/corp"), Some(&reader), None).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text);
    members_become(&w, &[("m1", "maker"), ("manual", "viewer")]).await;

    // Stopping keeps what it gave, as manual memberships.
    link(&w, &reader, "reader", 502).await;
    members_become(&w, &[("m1", "maker"), ("manual", "viewer"), ("reader", "editor")]).await;
    let r = api(Method::DELETE, &url, Some(&w.maker), None).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text);
    let source: (String,) = sqlx::query_as(
        "SELECT m.source FROM project_members m JOIN users u ON u.id = m.user_id WHERE u.handle = 'reader'",
    )
    .fetch_one(w.app.state.db.pool())
    .await
    .unwrap();
    assert_eq!(source.0, "manual");
    let audit: (i64,) = sqlx::query_as(
        "SELECT COUNT(*) FROM audit_events WHERE action IN ('project.member.set', 'project.member.remove') \
         AND actor_kind = 'system'",
    )
    .fetch_one(w.app.state.db.pool())
    .await
    .unwrap();
    assert!(audit.0 >= 6, "every sync change is audited: {audit:?}");
    // Each code minted is one record (the one refused for want of a client id is none).
    let starts: (i64,) = sqlx::query_as("SELECT COUNT(*) FROM audit_events WHERE action = 'user.git_login.start'")
        .fetch_one(w.app.state.db.pool())
        .await
        .unwrap();
    assert_eq!(starts.0, 5);
    w.fake.assert_clean().await;
}

#[tokio::test]
async fn roles_from_github_are_for_github_projects_only() {
    let Some(w) = github_world(true).await else { return };
    let r = api(
        Method::POST,
        &w.app.url("/api/v1/projects"),
        Some(&w.maker),
        Some(json!({"name": "Local", "slug": "local"})),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let r = api(Method::PUT, &w.app.url("/api/v1/projects/local/github-roles"), Some(&w.maker), Some(json!({}))).await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.text);
}
