//! SCIM 2.0 with the request shapes Microsoft Entra ID and Okta send.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::oidc::{Agent, TestOp, arno_with};
use crate::support::{TestApp, api, client, read};

pub async fn scim(app: &TestApp, token: &str, method: Method, path: &str, body: Option<Value>) -> crate::support::Page {
    let mut req = client().request(method, app.url(&format!("/scim/v2{path}"))).bearer_auth(token);
    if let Some(b) = body {
        req = req.header("content-type", "application/scim+json").body(b.to_string());
    }
    read(req.send().await.unwrap()).await
}

async fn setup() -> (TestOp, TestApp, tempfile::TempDir, String) {
    let op = TestOp::start().await;
    let (app, dir) = arno_with(&[("corp", &op.base, "")], &[]).await;
    let token = app.scim_token().await.unwrap();
    (op, app, dir, token)
}

pub const ENTRA_USER: &str = r#"{
  "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User", "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"],
  "externalId": "8d4c1f1e-entra-object-id",
  "userName": "ann@corp.example",
  "active": true,
  "displayName": "Ann Lee",
  "emails": [{"primary": true, "type": "work", "value": "ann@corp.example"}],
  "meta": {"resourceType": "User"},
  "name": {"formatted": "Ann Lee", "familyName": "Lee", "givenName": "Ann"},
  "title": "Designer",
  "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {"department": "Design"}
}"#;

pub const OKTA_USER: &str = r#"{
  "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
  "userName": "bob@corp.example",
  "name": {"givenName": "Bob", "familyName": "Ray"},
  "emails": [{"primary": true, "value": "bob@corp.example", "type": "work"}],
  "displayName": "Bob Ray",
  "locale": "en-US",
  "externalId": "00u1okta",
  "groups": [],
  "password": "ignored-by-arno",
  "active": true
}"#;

#[tokio::test]
async fn tokens_discovery_and_errors() {
    let (_op, app, _dir, token) = setup().await;
    let r = read(client().get(app.url("/scim/v2/Users")).send().await.unwrap()).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(r.header("content-type").as_deref(), Some("application/scim+json"));
    assert_eq!(r.json()["schemas"][0], "urn:ietf:params:scim:api:messages:2.0:Error");
    assert_eq!(scim(&app, "scim_wrong", Method::GET, "/Users", None).await.status, StatusCode::UNAUTHORIZED);
    let (denied,): (i64,) =
        sqlx::query_as("SELECT COUNT(*) FROM audit_events WHERE action = 'scim.request' AND outcome = 'denied'")
            .fetch_one(app.state.db.pool())
            .await
            .unwrap();
    assert_eq!(denied, 1, "a wrong token is audited");

    let spc = scim(&app, &token, Method::GET, "/ServiceProviderConfig", None).await.json();
    assert_eq!(spc["patch"]["supported"], true);
    let types = scim(&app, &token, Method::GET, "/ResourceTypes", None).await.json();
    assert_eq!(types["totalResults"], 2);
    let user_schema =
        scim(&app, &token, Method::GET, "/Schemas/urn:ietf:params:scim:schemas:core:2.0:User", None).await;
    assert_eq!(user_schema.status, StatusCode::OK);
    let r = scim(&app, &token, Method::GET, "/Users?filter=userName%20sw%20%22a%22", None).await;
    assert_eq!((r.status, r.json()["scimType"].as_str()), (StatusCode::BAD_REQUEST, Some("invalidFilter")));
    assert_eq!(scim(&app, &token, Method::GET, "/Users/nope", None).await.status, StatusCode::NOT_FOUND);
    let r = read(
        client()
            .post(app.url("/scim/v2/Users"))
            .bearer_auth(&token)
            .header("content-type", "application/scim+json")
            .body("{not json")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((r.status, r.json()["scimType"].as_str()), (StatusCode::BAD_REQUEST, Some("invalidSyntax")));

    // The stored token is encrypted: the database never holds it in the clear.
    let (stored,): (String,) = sqlx::query_as("SELECT value FROM instance_settings WHERE key = 'scim_token'")
        .fetch_one(app.state.db.pool())
        .await
        .unwrap();
    assert!(stored.starts_with("v1:") && !stored.contains(&token[5..]));
    // Rotating it makes the old one stop working.
    let new = app.scim_token().await.unwrap();
    assert_eq!(scim(&app, &token, Method::GET, "/Users", None).await.status, StatusCode::UNAUTHORIZED);
    assert_eq!(scim(&app, &new, Method::GET, "/Users", None).await.status, StatusCode::OK);
}

#[tokio::test]
async fn entra_provisioning_and_deactivation_end_sessions_and_tokens() {
    let (op, app, _dir, token) = setup().await;
    let found =
        scim(&app, &token, Method::GET, "/Users?filter=userName+eq+%22ann%40corp.example%22", None).await.json();
    assert_eq!(found["totalResults"], 0);
    let created = scim(&app, &token, Method::POST, "/Users", Some(serde_json::from_str(ENTRA_USER).unwrap())).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
    let ann = created.json();
    let id = ann["id"].as_str().unwrap().to_owned();
    assert_eq!(
        (ann["userName"].as_str(), ann["active"].as_bool(), ann["externalId"].as_str()),
        (Some("ann@corp.example"), Some(true), Some("8d4c1f1e-entra-object-id"))
    );
    assert_eq!(created.header("location").unwrap(), app.url(&format!("/scim/v2/Users/{id}")));
    let dup = scim(&app, &token, Method::POST, "/Users", Some(serde_json::from_str(ENTRA_USER).unwrap())).await;
    assert_eq!((dup.status, dup.json()["scimType"].as_str()), (StatusCode::CONFLICT, Some("uniqueness")));
    let found =
        scim(&app, &token, Method::GET, "/Users?filter=userName+eq+%22ann%40corp.example%22", None).await.json();
    assert_eq!(found["Resources"][0]["id"], id);
    let by_ext = scim(&app, &token, Method::GET, "/Users?filter=externalId+eq+%228d4c1f1e-entra-object-id%22", None)
        .await
        .json();
    assert_eq!(by_ext["totalResults"], 1);

    // Entra's PATCH: capitalised ops, paths, string booleans.
    let patch = json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"], "Operations": [
        {"op": "Replace", "path": "displayName", "value": "Ann B. Lee"},
        {"op": "Replace", "path": "name.formatted", "value": "Ann B. Lee"},
        {"op": "Add", "path": "emails[type eq \"work\"].value", "value": "ann.lee@corp.example"},
        {"op": "Replace", "path": "title", "value": "Lead designer"}]});
    let r = scim(&app, &token, Method::PATCH, &format!("/Users/{id}"), Some(patch)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    // userName and the work e-mail are separate attributes; Arno's address follows the e-mail.
    assert_eq!(
        (r.json()["userName"].as_str(), r.json()["emails"][0]["value"].as_str(), r.json()["displayName"].as_str()),
        (Some("ann@corp.example"), Some("ann.lee@corp.example"), Some("Ann B. Lee"))
    );

    // First SSO sign-in links to the provisioned account (same e-mail, no identity yet).
    op.set(|s| {
        s.sub = "ann-sub".into();
        s.email = "ann.lee@corp.example".into();
        s.groups = vec![];
    });
    let mut browser = Agent::new();
    assert_eq!(browser.sign_in(&app, "corp").await.status, StatusCode::SEE_OTHER);
    let me = read(
        client()
            .get(app.url("/api/v1/me"))
            .header("cookie", format!("arno_session={}", browser.cookies["arno_session"]))
            .send()
            .await
            .unwrap(),
    )
    .await
    .json();
    assert_eq!(me["id"], id);
    let mut conn = app.state.db.pool().acquire().await.unwrap();
    let api_token = arno::auth::tokens::create(&mut conn, &id, "ann's script", None).await.unwrap().1;
    drop(conn);
    assert_eq!(api(Method::GET, &app.url("/api/v1/me"), Some(&api_token), None).await.status, StatusCode::OK);

    // Deactivation takes effect at once: session and token stop working.
    let off = json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"], "Operations": [{"op": "Replace", "path": "active", "value": "False"}]});
    let r = scim(&app, &token, Method::PATCH, &format!("/Users/{id}"), Some(off)).await;
    assert_eq!((r.status, r.json()["active"].as_bool()), (StatusCode::OK, Some(false)), "{}", r.text);
    assert_eq!(api(Method::GET, &app.url("/api/v1/me"), Some(&api_token), None).await.status, StatusCode::UNAUTHORIZED);
    let r = read(
        client()
            .get(app.url("/api/v1/me"))
            .header("cookie", format!("arno_session={}", browser.cookies["arno_session"]))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    // …and a deactivated user cannot sign in through SSO.
    let r = Agent::new().sign_in(&app, "corp").await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert!(r.text.contains("deactivated"));
    let (deactivations,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM audit_events WHERE action = 'user.deactivate'")
        .fetch_one(app.state.db.pool())
        .await
        .unwrap();
    assert_eq!(deactivations, 1);

    // Okta-style reactivation (no path, value object), then DELETE: gone for SCIM, kept inactive.
    let on = json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"], "Operations": [{"op": "replace", "value": {"active": true}}]});
    assert_eq!(scim(&app, &token, Method::PATCH, &format!("/Users/{id}"), Some(on)).await.json()["active"], true);
    assert_eq!(scim(&app, &token, Method::DELETE, &format!("/Users/{id}"), None).await.status, StatusCode::NO_CONTENT);
    assert_eq!(scim(&app, &token, Method::GET, &format!("/Users/{id}"), None).await.status, StatusCode::NOT_FOUND);
    let (disabled,): (Option<i64>,) = sqlx::query_as("SELECT disabled_at FROM users WHERE id = $1")
        .bind(&id)
        .fetch_one(app.state.db.pool())
        .await
        .unwrap();
    assert!(disabled.is_some());
}

#[tokio::test]
async fn okta_users_and_groups_map_to_roles() {
    let (_op, app, _dir, token) = setup().await;
    // Someone else administers Arno, so Bob's groups may take the Admin role away again.
    app.create_admin().await;
    let created = scim(&app, &token, Method::POST, "/Users", Some(serde_json::from_str(OKTA_USER).unwrap())).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
    let bob = created.json()["id"].as_str().unwrap().to_owned();
    // The resource holds what Okta sent (no name.formatted); Arno's name is derived from it.
    assert_eq!(
        (created.json()["name"]["givenName"].as_str(), created.json()["name"].get("formatted")),
        (Some("Bob"), None)
    );
    assert_eq!(created.json()["displayName"], "Bob Ray");

    // A group that the [[oidc]] mapping makes admins.
    let group = scim(&app, &token, Method::POST, "/Groups", Some(json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"], "displayName": "arno-admins", "members": []}))).await;
    assert_eq!(group.status, StatusCode::CREATED, "{}", group.text);
    let gid = group.json()["id"].as_str().unwrap().to_owned();
    let add = json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"], "Operations": [{"op": "add", "path": "members", "value": [{"value": bob, "display": "bob@corp.example"}]}]});
    let r = scim(&app, &token, Method::PATCH, &format!("/Groups/{gid}"), Some(add)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.json()["members"][0]["value"], bob);
    let role = || async {
        let (r,): (String,) = sqlx::query_as("SELECT org_role FROM users WHERE id = $1")
            .bind(&bob)
            .fetch_one(app.state.db.pool())
            .await
            .unwrap();
        r
    };
    assert_eq!(role().await, "admin");
    let found = scim(&app, &token, Method::GET, "/Groups?filter=displayName+eq+%22arno-admins%22", None).await.json();
    assert_eq!(found["totalResults"], 1);

    // Okta removes a member with a filtered path.
    let remove = json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"], "Operations": [{"op": "remove", "path": format!("members[value eq \"{bob}\"]")}]});
    let r = scim(&app, &token, Method::PATCH, &format!("/Groups/{gid}"), Some(remove)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(role().await, "member");

    // PUT replaces a user (Okta deactivates this way).
    let mut replaced: Value = serde_json::from_str(OKTA_USER).unwrap();
    replaced["active"] = json!(false);
    let r = scim(&app, &token, Method::PUT, &format!("/Users/{bob}"), Some(replaced)).await;
    assert_eq!((r.status, r.json()["active"].as_bool()), (StatusCode::OK, Some(false)));
    // PUT replaces the member list (and the roles follow).
    let put = json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"], "displayName": "arno-admins", "members": [{"value": bob}]});
    let r = scim(&app, &token, Method::PUT, &format!("/Groups/{gid}"), Some(put)).await;
    assert_eq!((r.status, r.json()["members"].as_array().map(Vec::len)), (StatusCode::OK, Some(1)), "{}", r.text);
    assert_eq!(role().await, "admin");
    let put = json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"], "displayName": "arno-admins", "members": []});
    scim(&app, &token, Method::PUT, &format!("/Groups/{gid}"), Some(put)).await;
    assert_eq!(role().await, "member");
    // Renaming onto another group's name is a uniqueness error.
    let other = scim(&app, &token, Method::POST, "/Groups", Some(json!({"displayName": "designers"}))).await.json();
    let rename = json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"], "Operations": [{"op": "replace", "path": "displayName", "value": "arno-admins"}]});
    let r =
        scim(&app, &token, Method::PATCH, &format!("/Groups/{}", other["id"].as_str().unwrap()), Some(rename)).await;
    assert_eq!((r.status, r.json()["scimType"].as_str()), (StatusCode::CONFLICT, Some("uniqueness")));
    assert_eq!(
        scim(&app, &token, Method::DELETE, &format!("/Groups/{gid}"), None).await.status,
        StatusCode::NO_CONTENT
    );
    let bad = scim(&app, &token, Method::PATCH, &format!("/Groups/{gid}"), Some(json!({"Operations": []}))).await;
    assert_eq!(bad.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn only_the_provisioning_idp_may_claim_a_provisioned_account() {
    let corp = TestOp::start().await;
    let partner = TestOp::start().await;
    let (app, _dir) =
        arno_with(&[("corp", &corp.base, ""), ("partner", &partner.base, "")], &[("ARNO_SCIM_PROVIDER", "corp")]).await;
    let token = app.scim_token().await.unwrap();
    let created = scim(&app, &token, Method::POST, "/Users", Some(serde_json::from_str(ENTRA_USER).unwrap())).await;
    assert_eq!(created.status, StatusCode::CREATED);
    // A partner IdP asserting the same address does not get the account.
    partner.set(|s| {
        s.sub = "partner-sub".into();
        s.email = "ann@corp.example".into();
    });
    let r = Agent::new().sign_in(&app, "partner").await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.text);
    // The provisioning IdP does.
    corp.set(|s| {
        s.sub = "ann-sub".into();
        s.email = "ann@corp.example".into();
    });
    let mut ann = Agent::new();
    assert_eq!(ann.sign_in(&app, "corp").await.status, StatusCode::SEE_OTHER);
    let (links,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM user_identities WHERE user_id = $1")
        .bind(created.json()["id"].as_str().unwrap())
        .fetch_one(app.state.db.pool())
        .await
        .unwrap();
    assert_eq!(links, 1);
}

fn patch_op(ops: Value) -> Value {
    json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"], "Operations": ops})
}

#[tokio::test]
async fn scim_patch_removes_attributes_and_refuses_unknown_paths() {
    let (_op, app, _dir, token) = setup().await;
    // Entra sends the UPN as userName and the mail attribute as the work e-mail: two attributes.
    let mut entra: Value = serde_json::from_str(ENTRA_USER).unwrap();
    entra["userName"] = json!("ann@corp.onmicrosoft.example");
    let created = scim(&app, &token, Method::POST, "/Users", Some(entra)).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
    let id = created.json()["id"].as_str().unwrap().to_owned();
    let path = format!("/Users/{id}");
    let ann = created.json();
    assert_eq!(
        (ann["userName"].as_str(), ann["emails"][0]["value"].as_str(), ann["name"]["givenName"].as_str()),
        (Some("ann@corp.onmicrosoft.example"), Some("ann@corp.example"), Some("Ann"))
    );
    let found = scim(&app, &token, Method::GET, "/Users?filter=userName+eq+%22ann%40corp.onmicrosoft.example%22", None)
        .await
        .json();
    assert_eq!(found["totalResults"], 1, "the IdP finds the user by its own userName");
    let arno_user = || async {
        let (email, name): (String, String) = sqlx::query_as("SELECT email, name FROM users WHERE id = $1")
            .bind(&id)
            .fetch_one(app.state.db.pool())
            .await
            .unwrap();
        (email, name)
    };
    assert_eq!(arno_user().await, ("ann@corp.example".into(), "Ann Lee".into()));

    // Entra changes the given name alone: the other name parts stay.
    let r = scim(
        &app,
        &token,
        Method::PATCH,
        &path,
        Some(patch_op(json!([{"op": "Replace", "path": "name.givenName", "value": "Anna"}]))),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(
        (r.json()["name"]["givenName"].as_str(), r.json()["name"]["familyName"].as_str()),
        (Some("Anna"), Some("Lee"))
    );

    // remove really removes, one attribute at a time (RFC 7644 §3.5.2.2).
    let r = scim(
        &app,
        &token,
        Method::PATCH,
        &path,
        Some(patch_op(json!([
            {"op": "Remove", "path": "externalId"},
            {"op": "Remove", "path": "name.formatted"},
            {"op": "Remove", "path": "displayName"},
            {"op": "remove", "path": "emails[type eq \"work\"].value"},
        ]))),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let doc = r.json();
    assert!(
        doc.get("externalId").is_none() && doc.get("displayName").is_none() && doc.get("emails").is_none(),
        "{doc}"
    );
    assert!(doc["name"].get("formatted").is_none(), "{doc}");
    // What is left decides Arno's name and address: "given family", and the userName (an address).
    assert_eq!(arno_user().await, ("ann@corp.onmicrosoft.example".into(), "Anna Lee".into()));
    let by_ext = scim(&app, &token, Method::GET, "/Users?filter=externalId+eq+%228d4c1f1e-entra-object-id%22", None)
        .await
        .json();
    assert_eq!(by_ext["totalResults"], 0);
    let r = scim(
        &app,
        &token,
        Method::PATCH,
        &path,
        Some(patch_op(json!([
        {"op": "remove", "path": "name.givenName"}, {"op": "remove", "path": "name.familyName"}]))),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert!(r.json().get("name").is_none(), "{}", r.text);
    assert_eq!(arno_user().await.1, "ann", "no name left: the address's local part");
    // A work e-mail again (filtered path with an object value), then removed with the filter alone.
    let r = scim(
        &app,
        &token,
        Method::PATCH,
        &path,
        Some(patch_op(json!([
        {"op": "add", "path": "emails[type eq \"work\"]", "value": {"value": "ann.lee@corp.example", "type": "work"}},
        {"op": "add", "path": "displayName", "value": "Ann Lee"}]))),
    )
    .await;
    assert_eq!(r.json()["emails"][0]["value"], "ann.lee@corp.example", "{}", r.text);
    assert_eq!(arno_user().await, ("ann.lee@corp.example".into(), "Ann Lee".into()));
    let r = scim(
        &app,
        &token,
        Method::PATCH,
        &path,
        Some(patch_op(json!([{"op": "remove", "path": "emails[type eq \"work\"]"}]))),
    )
    .await;
    assert!(r.json().get("emails").is_none(), "{}", r.text);

    // Errors: each names the problem and the whole request changes nothing.
    let before = scim(&app, &token, Method::GET, &path, None).await.json();
    let stored_before = arno_user().await;
    for (ops, status, scim_type) in [
        (
            json!([{"op": "replace", "path": "displayName", "value": "Changed"}, {"op": "replace", "path": "nickname2", "value": "x"}]),
            StatusCode::BAD_REQUEST,
            "invalidPath",
        ),
        (
            json!([{"op": "replace", "path": "displayName", "value": "Changed"}, {"op": "add", "path": "emails[type eq \"work\"].colour", "value": "x"}]),
            StatusCode::BAD_REQUEST,
            "invalidPath",
        ),
        (
            json!([{"op": "replace", "path": "displayName", "value": "Changed"}, {"op": "remove", "path": "userName"}]),
            StatusCode::BAD_REQUEST,
            "mutability",
        ),
        (
            json!([{"op": "replace", "path": "displayName", "value": "Changed"}, {"op": "remove"}]),
            StatusCode::BAD_REQUEST,
            "noTarget",
        ),
        (
            json!([{"op": "replace", "path": "displayName", "value": "Changed"}, {"op": "replace", "path": "id", "value": "x"}]),
            StatusCode::BAD_REQUEST,
            "mutability",
        ),
        (
            json!([{"op": "replace", "path": "displayName", "value": "Changed"}, {"op": "replace", "path": "displayName", "value": 7}]),
            StatusCode::BAD_REQUEST,
            "invalidValue",
        ),
        (
            json!([{"op": "replace", "path": "displayName", "value": "Changed"}, {"op": "replace", "value": {"nickName2": "x"}}]),
            StatusCode::BAD_REQUEST,
            "invalidPath",
        ),
        // The userName is no address and the work e-mail would be gone: Arno needs an address.
        (
            json!([{"op": "replace", "path": "displayName", "value": "Changed"}, {"op": "replace", "path": "userName", "value": "ann"}]),
            StatusCode::BAD_REQUEST,
            "invalidValue",
        ),
    ] {
        let r = scim(&app, &token, Method::PATCH, &path, Some(patch_op(ops.clone()))).await;
        assert_eq!((r.status, r.json()["scimType"].as_str()), (status, Some(scim_type)), "{ops}: {}", r.text);
        let after = scim(&app, &token, Method::GET, &path, None).await.json();
        assert_eq!(after, before, "{ops} changed something");
        assert_eq!(arno_user().await, stored_before);
    }

    // Attributes of the User schema that Arno does not keep are accepted and ignored, as documented.
    let r = scim(&app, &token, Method::PATCH, &path, Some(patch_op(json!([
        {"op": "Replace", "path": "title", "value": "Lead designer"},
        {"op": "Add", "path": "phoneNumbers[type eq \"work\"].value", "value": "+1 555 0100"},
        {"op": "Replace", "path": "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department", "value": "Design"},
        {"op": "Replace", "path": "urn:ietf:params:scim:schemas:core:2.0:User:displayName", "value": "Ann B. Lee"},
        {"op": "remove", "path": "addresses[type eq \"work\"].locality"}])))).await;
    assert_eq!((r.status, r.json()["displayName"].as_str()), (StatusCode::OK, Some("Ann B. Lee")), "{}", r.text);
}

#[tokio::test]
async fn group_patch_refuses_what_it_cannot_apply() {
    let (_op, app, _dir, token) = setup().await;
    let g = scim(&app, &token, Method::POST, "/Groups", Some(json!({"displayName": "designers", "externalId": "g-1"})))
        .await;
    assert_eq!(g.status, StatusCode::CREATED, "{}", g.text);
    let gid = g.json()["id"].as_str().unwrap().to_owned();
    let path = format!("/Groups/{gid}");
    let before = scim(&app, &token, Method::GET, &path, None).await.json();
    for (ops, scim_type) in [
        (json!([{"op": "remove", "path": "displayName"}]), "mutability"),
        (json!([{"op": "replace", "path": "displayName", "value": 7}]), "invalidValue"),
        (json!([{"op": "replace", "value": {"displayName": "design", "colour": "red"}}]), "invalidPath"),
        (json!([{"op": "remove", "path": "members[display eq \"x\"]"}]), "invalidFilter"),
        (json!([{"op": "remove"}]), "noTarget"),
        (json!([{"op": "replace", "path": "owner", "value": "x"}]), "invalidPath"),
        // All or nothing: the rename before the bad operation does not stay.
        (
            json!([{"op": "replace", "path": "displayName", "value": "renamed"}, {"op": "replace", "path": "externalId", "value": 5}]),
            "invalidValue",
        ),
    ] {
        let r = scim(&app, &token, Method::PATCH, &path, Some(patch_op(ops.clone()))).await;
        assert_eq!(
            (r.status, r.json()["scimType"].as_str()),
            (StatusCode::BAD_REQUEST, Some(scim_type)),
            "{ops}: {}",
            r.text
        );
        assert_eq!(scim(&app, &token, Method::GET, &path, None).await.json(), before, "{ops} changed something");
    }
    // A path-less replace (with the echoed id) and removing externalId.
    let ops = json!([{"op": "replace", "value": {"id": gid, "displayName": "design"}}, {"op": "remove", "path": "externalId"}]);
    let r = scim(&app, &token, Method::PATCH, &path, Some(patch_op(ops))).await;
    assert_eq!((r.status, r.json()["displayName"].as_str()), (StatusCode::OK, Some("design")), "{}", r.text);
    assert!(r.json().get("externalId").is_none(), "{}", r.text);
}
