//! Hole 8 (role mappings): the console refused to demote the last active Admin, but the IdP's
//! groups did not ask. A SCIM group change (a member removed, the group deleted), a SCIM
//! deactivation (PATCH, PUT, DELETE) or an SSO sign-in whose groups no longer map to Admin took
//! the role or the account from the only person who could administer Arno — a mistyped group
//! rule, or whoever holds the SCIM token, locked every administrator out. Now the last active
//! Admin keeps the role (the rest of a group change stands) and cannot be deactivated by SCIM
//! (`409`); each refusal is audited. With another Admin present the same changes go through.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::oidc::{Agent, TestOp, arno_with, me};
use crate::scim::{OKTA_USER, scim};
use crate::support::TestApp;

async fn user_state(app: &TestApp, id: &str) -> (String, bool) {
    let (role, disabled_at): (String, Option<i64>) =
        sqlx::query_as("SELECT org_role, disabled_at FROM users WHERE id = $1")
            .bind(id)
            .fetch_one(app.state.db.pool())
            .await
            .unwrap();
    (role, disabled_at.is_none())
}

/// Denied audit records of `action` that name the last-admin rule.
async fn refusals(app: &TestApp, action: &str) -> i64 {
    // Repeated refusals of one kind fold into one record with a count (docs/audit.md).
    app.refusals(&format!("action = '{action}' AND intent LIKE '%last_admin%'")).await
}

fn patch(ops: Value) -> Value {
    json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"], "Operations": ops})
}

/// Bob, provisioned and made Admin by the arno-admins group; nobody else administers Arno.
/// Returns the app, the SCIM token, Bob's id and the group's id.
async fn bob_the_only_admin(op: &TestOp) -> (TestApp, tempfile::TempDir, String, String, String) {
    let (app, dir) = arno_with(&[("corp", &op.base, "")], &[]).await;
    let token = app.scim_token().await.unwrap();
    let created = scim(&app, &token, Method::POST, "/Users", Some(serde_json::from_str(OKTA_USER).unwrap())).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
    let bob = created.json()["id"].as_str().unwrap().to_owned();
    let group = json!({"displayName": "arno-admins", "members": [{"value": bob}]});
    let group = scim(&app, &token, Method::POST, "/Groups", Some(group)).await;
    assert_eq!(group.status, StatusCode::CREATED, "{}", group.text);
    let gid = group.json()["id"].as_str().unwrap().to_owned();
    assert_eq!(user_state(&app, &bob).await, ("admin".into(), true));
    (app, dir, token, bob, gid)
}

#[tokio::test]
async fn scim_groups_cannot_demote_the_last_admin() {
    let op = TestOp::start().await;
    let (app, _dir, token, bob, gid) = bob_the_only_admin(&op).await;

    // Removed from the group: the membership change stands, the role stays.
    let remove = patch(json!([{"op": "remove", "path": format!("members[value eq \"{bob}\"]")}]));
    let r = scim(&app, &token, Method::PATCH, &format!("/Groups/{gid}"), Some(remove)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.json()["members"].as_array().map(Vec::len), Some(0), "{}", r.text);
    assert_eq!(user_state(&app, &bob).await, ("admin".into(), true), "the last admin was demoted");
    // Back in, then the group deleted: still Admin.
    let put = json!({"displayName": "arno-admins", "members": [{"value": bob}]});
    assert_eq!(scim(&app, &token, Method::PUT, &format!("/Groups/{gid}"), Some(put)).await.status, StatusCode::OK);
    let r = scim(&app, &token, Method::DELETE, &format!("/Groups/{gid}"), None).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text);
    assert_eq!(user_state(&app, &bob).await, ("admin".into(), true), "the last admin was demoted");
    assert_eq!(refusals(&app, "user.role").await, 2);

    // With another active Admin, the IdP's groups decide again.
    app.create_admin().await;
    let staff = json!({"displayName": "staff", "members": [{"value": bob}]});
    assert_eq!(scim(&app, &token, Method::POST, "/Groups", Some(staff)).await.status, StatusCode::CREATED);
    assert_eq!(user_state(&app, &bob).await, ("member".into(), true));
    assert_eq!(refusals(&app, "user.role").await, 2);
}

#[tokio::test]
async fn scim_cannot_deactivate_the_last_admin() {
    let op = TestOp::start().await;
    let (app, _dir, token, bob, _gid) = bob_the_only_admin(&op).await;

    // Deactivation, in each of the IdPs' ways: refused, and nothing changes.
    let path = format!("/Users/{bob}");
    let before = scim(&app, &token, Method::GET, &path, None).await.json();
    let mut put: Value = serde_json::from_str(OKTA_USER).unwrap();
    put["active"] = json!(false);
    for (method, body) in [
        (Method::PATCH, Some(patch(json!([{"op": "Replace", "path": "active", "value": "False"}])))),
        (Method::PATCH, Some(patch(json!([{"op": "replace", "value": {"active": false, "displayName": "Bob R."}}])))),
        (Method::PUT, Some(put)),
        (Method::DELETE, None),
    ] {
        let r = scim(&app, &token, method.clone(), &path, body).await;
        assert_eq!(r.status, StatusCode::CONFLICT, "{method}: {}", r.text);
        assert_eq!(r.json()["schemas"][0], "urn:ietf:params:scim:api:messages:2.0:Error");
        assert!(r.json()["detail"].as_str().unwrap().contains("last active administrator"), "{}", r.text);
        assert_eq!(user_state(&app, &bob).await, ("admin".into(), true), "{method} deactivated the last admin");
        assert_eq!(scim(&app, &token, Method::GET, &path, None).await.json(), before, "{method} changed something");
    }
    assert_eq!(refusals(&app, "user.deactivate").await, 4);

    // With another active Admin, Bob can be deactivated.
    app.create_admin().await;
    let r = scim(
        &app,
        &token,
        Method::PATCH,
        &path,
        Some(patch(json!([{"op": "Replace", "path": "active", "value": "False"}]))),
    )
    .await;
    assert_eq!((r.status, r.json()["active"].as_bool()), (StatusCode::OK, Some(false)), "{}", r.text);
}

#[tokio::test]
async fn sso_groups_cannot_demote_the_last_admin() {
    let op = TestOp::start().await;
    let (app, _dir) = arno_with(&[("corp", &op.base, "")], &[]).await;
    // Grace signs in through the IdP's arno-admins group: the only Admin.
    let mut agent = Agent::new();
    assert_eq!(agent.sign_in(&app, "corp").await.status, StatusCode::SEE_OTHER);
    assert_eq!(me(&app, &agent).await["org_role"], "admin");

    // Her groups change at the IdP: she still signs in, and keeps the role.
    op.set(|s| s.groups = vec!["design-team".into()]);
    let mut again = Agent::new();
    let r = again.sign_in(&app, "corp").await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.text);
    assert_eq!(me(&app, &again).await["org_role"], "admin", "the last admin was demoted at sign-in");
    assert_eq!(refusals(&app, "user.role").await, 1);

    // Once someone else administers Arno, the next sign-in applies the mapping.
    app.create_admin().await;
    let mut third = Agent::new();
    assert_eq!(third.sign_in(&app, "corp").await.status, StatusCode::SEE_OTHER);
    assert_eq!(me(&app, &third).await["org_role"], "member");
    assert_eq!(refusals(&app, "user.role").await, 1);
}
