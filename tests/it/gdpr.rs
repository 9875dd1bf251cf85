//! GDPR: a user's data export, and erasure that keeps the audit chain verifiable.

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::support::{Browser, TestApp, api};

async fn token_of(app: &TestApp, user_id: &str) -> String {
    let mut conn = app.state.db.pool().acquire().await.unwrap();
    arno::auth::tokens::create(&mut conn, user_id, "t", None).await.unwrap().1
}

#[tokio::test]
async fn a_user_downloads_their_data() {
    let app = TestApp::start().await;
    app.create_admin().await;
    let bob = app.create_user("bob@example.com", "bobs long password", arno::auth::OrgRole::Member).await;
    let mut b = Browser::new(&app.base);
    assert_eq!(b.login("bob@example.com", "bobs long password").await.status, StatusCode::SEE_OTHER);
    let token = token_of(&app, &bob.id).await;
    let r = api(Method::GET, &app.url("/api/v1/me/export"), Some(&token), None).await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.header("content-disposition").unwrap().contains("attachment"));
    let data = r.json();
    assert_eq!(data["profile"]["email"], "bob@example.com");
    assert_eq!(data["profile"]["handle"], "bob");
    assert_eq!(data["sessions"].as_array().unwrap().len(), 1);
    assert!(data["sessions"][0]["ip"].is_string());
    assert_eq!(data["api_tokens"].as_array().unwrap().len(), 1);
    assert!(!r.text.contains(&token), "never a token secret");
    for key in ["memberships", "spec_versions", "comments"] {
        assert!(data[key].is_array(), "{key}");
    }
    // Their audit records: the sign-in at least, with its details.
    let records = data["audit_records"].as_array().unwrap();
    assert!(records.iter().any(|r| r["action"] == "auth.login" && r["outcome"] == "allowed"), "{records:?}");
    assert!(records.iter().all(|r| r["actor_id"] == bob.id.as_str()));
    // The export itself is audited.
    let (action,): (String,) = sqlx::query_as("SELECT action FROM audit_events ORDER BY seq DESC LIMIT 1")
        .fetch_one(app.state.db.pool())
        .await
        .unwrap();
    assert_eq!(action, "user.export");
}

#[tokio::test]
async fn erasure_removes_the_person_and_keeps_the_chain_verifiable() {
    let app = TestApp::start().await;
    let admin = app.create_admin().await;
    let admin_token = token_of(&app, &admin.id).await;
    let bob = app.create_user("bob@example.com", "bobs long password", arno::auth::OrgRole::Member).await;
    let mut b = Browser::new(&app.base);
    assert_eq!(b.login("bob@example.com", "bobs long password").await.status, StatusCode::SEE_OTHER);
    let bob_token = token_of(&app, &bob.id).await;
    let r = crate::support::client()
        .get(app.url("/api/v1/me"))
        .bearer_auth(&bob_token)
        .header("user-agent", "Bobs-Laptop/1.0")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let csrf = b.session_csrf().await;
    b.json(Method::POST, "/api/v1/tokens", &json!({"name": "bobs"}), &[("x-csrf-token", &csrf)]).await;
    let (bob_records,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM audit_events WHERE actor_id = $1")
        .bind(&bob.id)
        .fetch_one(app.state.db.pool())
        .await
        .unwrap();
    assert!(bob_records >= 2);

    let r = api(Method::DELETE, &app.url(&format!("/api/v1/users/{}", bob.id)), Some(&admin_token), None).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text);

    // Sessions and tokens die at once.
    assert_eq!(b.get("/api/v1/me").await.status, StatusCode::UNAUTHORIZED);
    assert_eq!(api(Method::GET, &app.url("/api/v1/me"), Some(&bob_token), None).await.status, StatusCode::UNAUTHORIZED);
    let mut fresh = Browser::new(&app.base);
    assert_eq!(fresh.login("bob@example.com", "bobs long password").await.status, StatusCode::UNAUTHORIZED);

    // Nothing personal remains: not in the user row, not in the audit log.
    let pseudonym = arno::audit::pseudonym(&app.state.keys.erasure_pepper, &bob.id);
    assert!(pseudonym.starts_with("deleted_user_") && pseudonym.len() == "deleted_user_".len() + 64);
    let (email, name, handle): (String, String, String) =
        sqlx::query_as("SELECT email, name, handle FROM users WHERE id = $1")
            .bind(&bob.id)
            .fetch_one(app.state.db.pool())
            .await
            .unwrap();
    assert!(!email.contains("bob") && !name.contains("Ada") && !handle.contains("bob"), "{email} {name} {handle}");
    let (left,): (i64,) = sqlx::query_as(
        "SELECT COUNT(*) FROM audit_events WHERE actor_id = $1 OR ip IS NOT NULL AND actor_id = $2 OR user_agent LIKE '%Bobs-Laptop%'",
    )
    .bind(&bob.id)
    .bind(&pseudonym)
    .fetch_one(app.state.db.pool())
    .await
    .unwrap();
    assert_eq!(left, 0);
    let (renamed,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM audit_events WHERE actor_id = $1")
        .bind(&pseudonym)
        .fetch_one(app.state.db.pool())
        .await
        .unwrap();
    assert!(renamed >= bob_records, "{renamed} < {bob_records}");
    for table in ["sessions", "api_tokens", "local_credentials"] {
        let (n,): (i64,) = sqlx::query_as(&format!("SELECT COUNT(*) FROM {table} WHERE user_id = $1"))
            .bind(&bob.id)
            .fetch_one(app.state.db.pool())
            .await
            .unwrap();
        assert_eq!(n, 0, "{table}");
    }

    // The erasure is audited, by the admin, and the whole log still verifies.
    let text = api(Method::GET, &app.url("/api/v1/audit/export"), Some(&admin_token), None).await.text;
    assert!(text.contains("\"action\":\"user.erase\""));
    assert!(!text.contains("bob@example.com") && !text.contains("Bobs-Laptop"));
    let report =
        arno::audit::verify::verify(std::io::Cursor::new(text.as_bytes()), Some(&app.state.keys.audit.public_key()))
            .expect("erasure keeps the chain verifiable");
    assert!(report.records > 5);

    // Erased users are gone for the API too.
    let again = api(Method::DELETE, &app.url(&format!("/api/v1/users/{}", bob.id)), Some(&admin_token), None).await;
    assert_eq!(again.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn self_erasure_needs_confirmation_and_the_last_admin_stays() {
    let app = TestApp::start().await;
    let admin = app.create_admin().await;
    let admin_token = token_of(&app, &admin.id).await;
    let bob = app.create_user("bob@example.com", "bobs long password", arno::auth::OrgRole::Member).await;
    let bob_token = token_of(&app, &bob.id).await;
    let url = app.url("/api/v1/me");

    let wrong =
        api(Method::DELETE, &url, Some(&bob_token), Some(json!({"confirm_email": "someone@example.com"}))).await;
    assert_eq!(wrong.status, StatusCode::BAD_REQUEST);
    assert_eq!(wrong.json()["details"]["field"], "confirm_email");
    assert_eq!(api(Method::GET, &url, Some(&bob_token), None).await.status, StatusCode::OK, "nothing happened");

    let ok = api(Method::DELETE, &url, Some(&bob_token), Some(json!({"confirm_email": " Bob@Example.com "}))).await;
    assert_eq!(ok.status, StatusCode::NO_CONTENT);
    assert_eq!(api(Method::GET, &url, Some(&bob_token), None).await.status, StatusCode::UNAUTHORIZED);
    let (actor, intent): (Option<String>, String) =
        sqlx::query_as("SELECT actor_id, intent FROM audit_events WHERE action = 'user.erase'")
            .fetch_one(app.state.db.pool())
            .await
            .unwrap();
    assert_eq!(actor.as_deref(), Some(arno::audit::pseudonym(&app.state.keys.erasure_pepper, &bob.id).as_str()));
    assert!(intent.contains("\"self\""));

    // The only admin cannot erase themself, and nothing changes.
    let last = api(Method::DELETE, &url, Some(&admin_token), Some(json!({"confirm_email": admin.email}))).await;
    assert_eq!(last.status, StatusCode::CONFLICT);
    assert_eq!(api(Method::GET, &url, Some(&admin_token), None).await.status, StatusCode::OK);
}

/// Erasure says on whose authority it runs: "own account" erases only the caller, and an
/// administrator's grant only serves that administrator.
#[tokio::test]
async fn erasure_on_ones_own_authority_reaches_no_one_else() {
    use arno::auth::gdpr::{Erasure, erase};
    let app = TestApp::start().await;
    let admin = app.create_admin().await;
    let (mallory, secret) = app.user_with_token("mallory@example.com", arno::auth::OrgRole::Member).await;
    let victim = app.create_user("victim@example.com", "a long enough password", arno::auth::OrgRole::Member).await;
    let caller = arno::auth::extract::bearer_user(&app.state.db, &secret).await.unwrap().unwrap();
    let origin = arno::audit::Origin::system();
    let r = erase(&app.state.db, &app.state.keys, &victim.id, &caller, Erasure::OwnAccount, &origin).await;
    assert!(matches!(r, Err(arno::error::AppError::Forbidden(_))), "{r:?}");
    let admin_secret = token_of(&app, &admin.id).await;
    let admin_caller = arno::auth::extract::bearer_user(&app.state.db, &admin_secret).await.unwrap().unwrap();
    let grant = arno::auth::access::decide_org::<arno::auth::access::Administer>(&admin_caller.user).unwrap();
    let r = erase(&app.state.db, &app.state.keys, &victim.id, &caller, Erasure::ByAdmin(&grant), &origin).await;
    assert!(matches!(r, Err(arno::error::AppError::Forbidden(_))), "another's grant: {r:?}");
    let (left,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM users WHERE id IN ($1, $2)")
        .bind(&victim.id)
        .bind(&mallory.id)
        .fetch_one(app.state.db.pool())
        .await
        .unwrap();
    assert_eq!(left, 2, "nobody was erased");
    erase(&app.state.db, &app.state.keys, &victim.id, &admin_caller, Erasure::ByAdmin(&grant), &origin).await.unwrap();
}
