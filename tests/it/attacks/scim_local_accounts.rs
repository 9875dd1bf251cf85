//! Hole 12: SCIM could see, change, deactivate and adopt accounts it never provisioned — the
//! bootstrap admin, people with passwords — by id or after finding them with `userName eq`:
//! whoever holds the SCIM token (or a mistyped IdP mapping) could lock the administrator out or
//! rename them. SCIM now sees only what it provisioned: those accounts are `404` to it (and the
//! attempt is audited), a POST with their address is a `409 uniqueness` that changes nothing, and
//! a SCIM group cannot take them in (and hand them a role).

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::oidc::{TestOp, arno_with};
use crate::scim::scim;
use crate::support::{ADMIN_EMAIL, TestApp};

#[derive(sqlx::FromRow, Debug, PartialEq)]
struct Row {
    email: String,
    name: String,
    org_role: String,
    disabled_at: Option<i64>,
    scim_id: Option<String>,
}

async fn row(app: &TestApp, id: &str) -> Row {
    sqlx::query_as("SELECT email, name, org_role, disabled_at, scim_id FROM users WHERE id = $1")
        .bind(id)
        .fetch_one(app.state.db.pool())
        .await
        .unwrap()
}

async fn count(app: &TestApp, sql: &str) -> i64 {
    let (n,): (i64,) = sqlx::query_as(sql).fetch_one(app.state.db.pool()).await.unwrap();
    n
}

fn patch(ops: Value) -> Value {
    json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"], "Operations": ops})
}

#[tokio::test]
async fn scim_cannot_see_change_deactivate_or_adopt_local_accounts() {
    let op = TestOp::start().await;
    let (app, _dir) = arno_with(&[("corp", &op.base, "")], &[]).await;
    let token = app.scim_token().await.unwrap();
    let mut admin_browser = app.admin_browser().await;
    let (admin_id,): (String,) = sqlx::query_as("SELECT id FROM users WHERE email = $1")
        .bind(ADMIN_EMAIL)
        .fetch_one(app.state.db.pool())
        .await
        .unwrap();
    let member = app.create_user("lin@example.com", "a long enough password", arno::auth::OrgRole::Member).await;
    let before = (row(&app, &admin_id).await, row(&app, &member.id).await);

    // The IdP's lookups do not find them.
    let q = format!("/Users?filter=userName+eq+%22{}%22", ADMIN_EMAIL.replace('@', "%40"));
    assert_eq!(scim(&app, &token, Method::GET, &q, None).await.json()["totalResults"], 0);
    assert_eq!(scim(&app, &token, Method::GET, "/Users", None).await.json()["totalResults"], 0);

    let mut refused = 0;
    for id in [&admin_id, &member.id] {
        let path = format!("/Users/{id}");
        assert_eq!(scim(&app, &token, Method::GET, &path, None).await.status, StatusCode::NOT_FOUND);
        for (method, body) in [
            (Method::PATCH, Some(patch(json!([{"op": "Replace", "path": "active", "value": "False"}])))),
            (Method::PATCH, Some(patch(json!([{"op": "replace", "value": {"displayName": "Mallory"}}])))),
            (
                Method::PUT,
                Some(json!({"userName": "mallory@evil.example", "emails": [{"value": "mallory@evil.example"}],
                            "active": false})),
            ),
            (Method::DELETE, None),
        ] {
            let r = scim(&app, &token, method.clone(), &path, body).await;
            assert_eq!(r.status, StatusCode::NOT_FOUND, "{method} {path}: {}", r.text);
            assert_eq!(r.json()["schemas"][0], "urn:ietf:params:scim:api:messages:2.0:Error");
            refused += 1;
        }
    }
    assert_eq!((row(&app, &admin_id).await, row(&app, &member.id).await), before, "nothing changed");
    assert_eq!(admin_browser.get("/admin").await.status, StatusCode::OK, "the admin is still signed in");

    // Creating a user with a local account's address does not adopt it.
    let r = scim(
        &app,
        &token,
        Method::POST,
        "/Users",
        Some(json!({"userName": "lin@example.com", "name": {"formatted": "Mallory"}, "active": false})),
    )
    .await;
    assert_eq!((r.status, r.json()["scimType"].as_str()), (StatusCode::CONFLICT, Some("uniqueness")), "{}", r.text);
    assert_eq!(row(&app, &member.id).await, before.1);
    // …nor does a userName that is its address beside another work e-mail (Entra: UPN and mail).
    let r = scim(
        &app,
        &token,
        Method::POST,
        "/Users",
        Some(json!({"userName": ADMIN_EMAIL, "emails": [{"value": "other@corp.example", "type": "work"}]})),
    )
    .await;
    assert_eq!((r.status, r.json()["scimType"].as_str()), (StatusCode::CONFLICT, Some("uniqueness")), "{}", r.text);
    assert_eq!(count(&app, "SELECT COUNT(*) FROM users WHERE scim_id IS NOT NULL").await, 0);

    // A SCIM group cannot take a local account in (its role would follow the group's mapping).
    let r = scim(
        &app,
        &token,
        Method::POST,
        "/Groups",
        Some(json!({"displayName": "arno-admins",
                                                                        "members": [{"value": member.id}]})),
    )
    .await;
    assert_eq!(
        (r.status, r.json()["scimType"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalidValue")),
        "{}",
        r.text
    );
    let group = scim(&app, &token, Method::POST, "/Groups", Some(json!({"displayName": "staff"}))).await;
    assert_eq!(group.status, StatusCode::CREATED, "{}", group.text);
    let gid = group.json()["id"].as_str().unwrap().to_owned();
    let r = scim(
        &app,
        &token,
        Method::PATCH,
        &format!("/Groups/{gid}"),
        Some(patch(json!([{"op": "add", "path": "members", "value": [{"value": admin_id}]}]))),
    )
    .await;
    assert_eq!(
        (r.status, r.json()["scimType"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalidValue")),
        "{}",
        r.text
    );
    assert_eq!(count(&app, "SELECT COUNT(*) FROM scim_group_members").await, 0);
    assert_eq!((row(&app, &admin_id).await, row(&app, &member.id).await), before, "roles unchanged");

    // Every attempt on a local account is audited (denied), naming the account.
    // Repeated refusals of one kind fold into one record with a count (docs/audit.md).
    let audited = app
        .refusals(&format!("target_id IN ('{admin_id}', '{}') AND intent LIKE '%not_provisioned%'", member.id))
        .await;
    assert_eq!(audited, refused + 4, "PATCH, PUT, DELETE, the two POSTs and the two group additions");
}
