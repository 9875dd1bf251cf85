//! Connections to remote git providers (docs/github.md): only Admins manage them and every
//! refusal is audited; malformed input is refused field by field and writes nothing; secrets go
//! in sealed (bound to the connection and the field), never come out of the API, the audit log
//! or the database in the clear; a rotation is recorded as one; a connection that projects use
//! cannot be deleted.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::support::{TestApp, api};
use arno::auth::OrgRole;

const KEY: &str = include_str!("../fixtures/github-app-key.pem");
const SHORT_KEY: &str = include_str!("../fixtures/rsa-1024-too-short.pem");
const CA: &str = include_str!("../fixtures/internal-ca.pem");
const SECRET: &str = "a webhook secret of some length";

/// A valid creation body for a GitHub Enterprise Server App.
pub fn new_connection(name: &str) -> Value {
    json!({
        "name": name, "provider": "github", "api_url": "https://ghe.corp.example/api/v3",
        "app_id": "123456", "client_id": "Iv23liExample", "private_key": KEY, "webhook_secret": SECRET,
    })
}

fn with(mut body: Value, field: &str, value: Value) -> Value {
    body[field] = value;
    body
}

async fn count(app: &TestApp) -> i64 {
    sqlx::query_as::<_, (i64,)>("SELECT COUNT(*) FROM git_connections").fetch_one(app.state.db.pool()).await.unwrap().0
}

#[tokio::test]
async fn only_admins_manage_connections_and_bad_input_writes_nothing() {
    let app = TestApp::start().await;
    let (_, admin) = app.user_with_token("admin@example.com", OrgRole::Admin).await;
    let (member, member_token) = app.user_with_token("m@example.com", OrgRole::Member).await;
    let (_, auditor) = app.user_with_token("a@example.com", OrgRole::Auditor).await;
    let url = app.url("/api/v1/admin/git/connections");
    let one = app.url("/api/v1/admin/git/connections/ghes");

    // Weaker roles and no one: refused, audited, nothing written.
    for token in [&member_token, &auditor] {
        for (method, u, body) in [
            (Method::GET, &url, None),
            (Method::POST, &url, Some(new_connection("ghes"))),
            (Method::PATCH, &one, Some(json!({"app_id": "1"}))),
            (Method::DELETE, &one, None),
        ] {
            let r = api(method.clone(), u, Some(token), body).await;
            assert_eq!(r.status, StatusCode::FORBIDDEN, "{method} {u}: {}", r.text);
        }
    }
    assert_eq!(api(Method::POST, &url, None, Some(new_connection("ghes"))).await.status, StatusCode::UNAUTHORIZED);
    // A malformed body from someone who may not is a refusal (audited), not a validation error.
    let before = app.refusals(&format!("actor_id = '{}'", member.id)).await;
    let r = api(Method::POST, &url, Some(&member_token), Some(json!({"junk": true}))).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.text);
    assert_eq!(app.refusals(&format!("actor_id = '{}'", member.id)).await, before + 1);
    assert!(app.refusals(&format!("actor_id = '{}' AND action LIKE 'git.connection.%'", member.id)).await >= 4);
    assert_eq!(count(&app).await, 0);

    // Malformed: each field refused by name, nothing written.
    let cases = [
        (with(new_connection("ghes"), "name", json!("GHES corp")), "name"),
        (with(new_connection("ghes"), "provider", json!("bitbucket")), "provider"),
        (with(new_connection("ghes"), "api_url", json!("http://ghe.corp.example/api/v3")), "api_url"),
        (with(new_connection("ghes"), "api_url", json!("https://github.com")), "api_url"),
        (with(new_connection("ghes"), "api_url", json!("https://ghe.corp.example/api/v3?token=x")), "api_url"),
        (with(new_connection("ghes"), "app_id", json!("12a")), "app_id"),
        (with(new_connection("ghes"), "client_id", json!("Iv1 bad")), "client_id"),
        (with(new_connection("ghes"), "private_key", json!("not a key")), "private_key"),
        (with(new_connection("ghes"), "private_key", json!(SHORT_KEY)), "private_key"),
        (with(new_connection("ghes"), "webhook_secret", json!("short")), "webhook_secret"),
        (with(new_connection("ghes"), "ca_bundle", json!("-----BEGIN CERTIFICATE-----\nAAAA\n")), "ca_bundle"),
        (with(new_connection("ghes"), "ca_bundle", json!(format!("{CA}{KEY}"))), "ca_bundle"),
        (with(new_connection("ghes"), "ca_bundle", json!(format!("{CA}junk\u{0}\n"))), "ca_bundle"),
    ];
    for (body, field) in cases {
        let r = api(Method::POST, &url, Some(&admin), Some(body)).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{field}: {}", r.text);
        assert_eq!(r.json()["code"], "validation");
        assert!(r.text.contains(field), "{field}: {}", r.text);
        assert!(!r.text.contains("BEGIN RSA"), "an error never echoes the key: {}", r.text);
    }
    for body in [with(new_connection("ghes"), "extra", json!(1)), json!({"name": "ghes"}), json!([])] {
        let r = api(Method::POST, &url, Some(&admin), Some(body.clone())).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{body}: {}", r.text);
    }
    let huge = with(new_connection("ghes"), "ca_bundle", json!("x".repeat(11 << 20)));
    assert_eq!(api(Method::POST, &url, Some(&admin), Some(huge)).await.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(count(&app).await, 0);
}

#[tokio::test]
async fn secrets_are_sealed_rotated_and_never_shown_and_used_connections_stay() {
    let app = TestApp::start().await;
    let (_, admin) = app.user_with_token("admin@example.com", OrgRole::Admin).await;
    let url = app.url("/api/v1/admin/git/connections");
    let one = |n: &str| app.url(&format!("/api/v1/admin/git/connections/{n}"));

    let r = api(Method::POST, &url, Some(&admin), Some(with(new_connection("ghes"), "ca_bundle", json!(CA)))).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let c = r.json();
    assert_eq!(
        (c["api_url"].as_str(), c["graphql_url"].as_str(), &c["ca_bundle"]),
        (Some("https://ghe.corp.example/api/v3"), Some("https://ghe.corp.example/api/graphql"), &json!(true))
    );
    let dotcom = json!({"name": "dotcom", "provider": "github", "api_url": "https://api.github.com/", "app_id": "9",
                        "private_key": KEY, "webhook_secret": SECRET});
    let r = api(Method::POST, &url, Some(&admin), Some(dotcom.clone())).await;
    assert_eq!(r.json()["graphql_url"], "https://api.github.com/graphql", "{}", r.text);
    // A name is taken once.
    assert_eq!(api(Method::POST, &url, Some(&admin), Some(dotcom)).await.status, StatusCode::CONFLICT);

    // Nothing secret comes back, sits in the clear in the database, or reaches the audit log.
    let listed = api(Method::GET, &url, Some(&admin), None).await;
    assert_eq!(listed.json().as_array().unwrap().len(), 2);
    for text in [&listed.text, &c.to_string()] {
        assert!(!text.contains("PRIVATE KEY") && !text.contains(SECRET), "{text}");
    }
    let (key_sealed, secret_sealed): (String, String) =
        sqlx::query_as("SELECT private_key_sealed, webhook_secret_sealed FROM git_connections WHERE name = 'ghes'")
            .fetch_one(app.state.db.pool())
            .await
            .unwrap();
    assert!(key_sealed.starts_with("v1:") && !key_sealed.contains("PRIVATE"));
    assert!(secret_sealed.starts_with("v1:") && !secret_sealed.contains(SECRET));
    let audit: Vec<(String,)> = sqlx::query_as("SELECT intent FROM audit_events WHERE action LIKE 'git.connection.%'")
        .fetch_all(app.state.db.pool())
        .await
        .unwrap();
    assert!(audit.iter().all(|(i,)| !i.contains("PRIVATE KEY") && !i.contains(SECRET)), "{audit:?}");
    let mut conn = app.state.db.pool().acquire().await.unwrap();
    let opened = arno::git::connections::secrets(&mut conn, &app.state.keys, "ghes").await.unwrap();
    assert_eq!((opened.private_key_pem.as_str(), opened.webhook_secret.as_str()), (KEY.trim(), SECRET));
    // A sealed value moved to another connection's row does not open there.
    sqlx::query("UPDATE git_connections SET webhook_secret_sealed = $1 WHERE name = 'dotcom'")
        .bind(&secret_sealed)
        .execute(&mut *conn)
        .await
        .unwrap();
    assert!(arno::git::connections::secrets(&mut conn, &app.state.keys, "dotcom").await.is_err());
    drop(conn);

    // A rotation: the new secret opens, the time says so, the audit names the field only.
    let before = c["secrets_rotated_at"].clone();
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    let rotated = "another webhook secret, longer";
    let r = api(Method::PATCH, &one("ghes"), Some(&admin), Some(json!({"webhook_secret": rotated}))).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_ne!(r.json()["secrets_rotated_at"], before);
    let mut conn = app.state.db.pool().acquire().await.unwrap();
    let opened = arno::git::connections::secrets(&mut conn, &app.state.keys, "ghes").await.unwrap();
    assert_eq!(opened.webhook_secret, rotated);
    drop(conn);
    let (intent,): (String,) = sqlx::query_as(
        "SELECT intent FROM audit_events WHERE action = 'git.connection.update' ORDER BY id DESC LIMIT 1",
    )
    .fetch_one(app.state.db.pool())
    .await
    .unwrap();
    assert_eq!(
        serde_json::from_str::<Value>(&intent).unwrap(),
        json!({"fields": ["webhook_secret"], "rotated": ["webhook_secret"]})
    );
    // Other changes are not rotations; null removes the CA bundle; an empty change is refused.
    // Where the key goes changes only with the key: no one redirects a key they do not hold.
    for change in [json!({"api_url": "https://elsewhere.example/api/v3"}), json!({"ca_bundle": CA})] {
        let r = api(Method::PATCH, &one("ghes"), Some(&admin), Some(change)).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text);
        assert!(r.text.contains("private_key"), "{}", r.text);
    }
    let change = json!({"ca_bundle": null, "app_id": "77", "private_key": KEY});
    let r = api(Method::PATCH, &one("ghes"), Some(&admin), Some(change)).await;
    assert_eq!((r.json()["ca_bundle"].as_bool(), r.json()["app_id"].as_str()), (Some(false), Some("77")), "{}", r.text);
    let rotated_at = r.json()["secrets_rotated_at"].clone();
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    let r = api(Method::PATCH, &one("ghes"), Some(&admin), Some(json!({"client_id": null}))).await;
    assert_eq!((&r.json()["client_id"], &r.json()["secrets_rotated_at"]), (&Value::Null, &rotated_at));
    assert_eq!(api(Method::PATCH, &one("ghes"), Some(&admin), Some(json!({}))).await.status, StatusCode::BAD_REQUEST);
    let bad = api(Method::PATCH, &one("ghes"), Some(&admin), Some(json!({"private_key": SHORT_KEY}))).await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        api(Method::PATCH, &one("nope"), Some(&admin), Some(json!({"app_id": "1"}))).await.status,
        StatusCode::NOT_FOUND
    );

    // In use: refused, naming the projects, audited; unused: deleted, then gone.
    let r = api(Method::POST, &app.url("/api/v1/projects"), Some(&admin), Some(json!({"name": "Shop"}))).await;
    let project = r.json()["id"].as_str().unwrap().to_owned();
    app.exec(&format!("UPDATE projects SET git_connection = 'ghes' WHERE id = '{project}'")).await;
    let r = api(Method::DELETE, &one("ghes"), Some(&admin), None).await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.text);
    assert_eq!(r.json()["details"]["projects"], json!(["shop"]));
    assert!(app.refusals("action = 'git.connection.delete'").await >= 1);
    assert_eq!(count(&app).await, 2);
    app.exec(&format!("UPDATE projects SET git_connection = NULL WHERE id = '{project}'")).await;
    assert_eq!(api(Method::DELETE, &one("ghes"), Some(&admin), None).await.status, StatusCode::NO_CONTENT);
    assert_eq!(api(Method::DELETE, &one("ghes"), Some(&admin), None).await.status, StatusCode::NOT_FOUND);
    assert_eq!(count(&app).await, 1);
}
