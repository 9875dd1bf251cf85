//! Git connections declared in the configuration file (`[[git.connections]]`, secrets from
//! files): written at start, read-only in the API and the console, rewritten when the file
//! changes, removed when it no longer declares them, and never taking over one made by hand.

use hmac::{Hmac, Mac};
use reqwest::{Method, StatusCode};
use serde_json::json;
use sha2::Sha256;

use crate::fake_github::{APP_ID, FakeGitHub, KEY_PEM};
use crate::support::{TestApp, api, client};

fn signature(secret: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

async fn delivered(app: &TestApp, secret: &str, guid: &str) -> StatusCode {
    let body = br#"{"zen":"Keep it logically awesome.","hook_id":1}"#.to_vec();
    client()
        .post(app.url("/api/v1/webhooks/github/corp"))
        .header("x-github-event", "meta")
        .header("x-github-delivery", guid)
        .header("x-hub-signature-256", signature(secret, &body))
        .body(body)
        .send()
        .await
        .unwrap()
        .status()
}

fn write_config(dir: &std::path::Path, origin: &str, declare: bool) -> std::path::PathBuf {
    let key = dir.join("app.pem");
    std::fs::write(&key, KEY_PEM).unwrap();
    let file = dir.join("arno.toml");
    let body = if declare {
        format!(
            "[git]\nonboarding_archive_after = \"30days\"\n\n[[git.connections]]\nname = \"corp\"\n\
             api_url = \"{origin}/api/v3\"\napp_id = \"{APP_ID}\"\nprivate_key_file = \"{}\"\n\
             webhook_secret_file = \"{}\"\n",
            key.display(),
            dir.join("webhook-secret").display()
        )
    } else {
        "[git]\nonboarding_archive_after = \"30days\"\n".to_owned()
    };
    std::fs::write(&file, body).unwrap();
    file
}

#[tokio::test]
async fn connections_from_the_configuration_file_are_read_only_and_follow_the_file() {
    let Some(fake) = FakeGitHub::start() else { return };
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("webhook-secret"), "first secret from a file\n").unwrap();
    let file = write_config(dir.path(), &fake.origin, true);
    let mut app = TestApp::start_with(&[("ARNO_CONFIG", file.to_str().unwrap())]).await;
    let (_, admin) = app.user_with_token("root@example.com", arno::auth::OrgRole::Admin).await;

    let list = api(Method::GET, &app.url("/api/v1/admin/git/connections"), Some(&admin), None).await;
    assert_eq!(list.status, StatusCode::OK, "{}", list.text);
    let corp = &list.json()[0];
    assert_eq!((corp["name"].as_str(), corp["from_config"].as_bool()), (Some("corp"), Some(true)), "{corp}");
    assert!(!list.text.contains("first secret") && !list.text.contains("BEGIN"), "secrets never come out");
    // The secret read from its file (newline trimmed) checks deliveries.
    assert_eq!(delivered(&app, "first secret from a file", "cfg-1").await, StatusCode::ACCEPTED);

    // Read-only here: changing or deleting it is refused, naming the file.
    let url = app.url("/api/v1/admin/git/connections/corp");
    let r =
        api(Method::PATCH, &url, Some(&admin), Some(json!({"webhook_secret": "another secret, long enough"}))).await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.text);
    assert!(r.text.contains("configuration file"), "{}", r.text);
    let r = api(Method::DELETE, &url, Some(&admin), None).await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.text);
    // The console shows it without forms to change or delete it, and says where it is managed.
    let mut browser = crate::support::Browser::new(&app.base);
    browser.login("root@example.com", "a long enough password").await;
    let page = browser.get("/admin/git").await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.text);
    assert!(page.select_text("#conn-corp-managed").is_some_and(|t| t.contains("configuration file")), "{}", page.text);
    assert!(!page.text.contains("/admin/git/connections/corp/delete"), "no delete form: {}", page.text);
    assert!(!page.text.contains("action=\"/admin/git/connections/corp\""), "no change form: {}", page.text);

    // The file's secret rotated: the next start writes it, audited as the system's change.
    std::fs::write(dir.path().join("webhook-secret"), "second secret from a file").unwrap();
    app.restart().await;
    assert_eq!(delivered(&app, "first secret from a file", "cfg-2").await, StatusCode::UNAUTHORIZED);
    assert_eq!(delivered(&app, "second secret from a file", "cfg-3").await, StatusCode::ACCEPTED);
    let changes: Vec<(String,)> = sqlx::query_as(
        "SELECT intent FROM audit_events WHERE action = 'git.connection.update' AND actor_kind = 'system' ORDER BY seq",
    )
    .fetch_all(app.state.db.pool())
    .await
    .unwrap();
    assert_eq!(changes.len(), 1, "{changes:?}");
    assert!(changes[0].0.contains("webhook_secret") && changes[0].0.contains("config"), "{changes:?}");
    // An unchanged file writes nothing.
    app.restart().await;
    let again: (i64,) = sqlx::query_as("SELECT COUNT(*) FROM audit_events WHERE action = 'git.connection.update'")
        .fetch_one(app.state.db.pool())
        .await
        .unwrap();
    assert_eq!(again.0, 1);

    // No longer declared (and no project uses it): removed at the next start.
    write_config(dir.path(), &fake.origin, false);
    app.restart().await;
    let list = api(Method::GET, &app.url("/api/v1/admin/git/connections"), Some(&admin), None).await;
    assert_eq!(list.json().as_array().map(Vec::len), Some(0), "{}", list.text);

    // One made by hand is never taken over by the file: the start says which and why.
    let made = json!({
        "name": "corp", "provider": "github", "api_url": format!("{}/api/v3", fake.origin),
        "app_id": APP_ID, "private_key": KEY_PEM, "webhook_secret": "made in the console, long",
    });
    let r = api(Method::POST, &app.url("/api/v1/admin/git/connections"), Some(&admin), Some(made)).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    write_config(dir.path(), &fake.origin, true);
    let mut env = std::collections::BTreeMap::new();
    env.insert("ARNO_CONFIG".to_owned(), file.display().to_string());
    let declared = arno::config::Config::load(&env).unwrap().config.git_connections;
    let refused = arno::git::connections_config::apply(&app.state.db, &app.state.keys, &declared).await.unwrap_err();
    assert!(refused.to_string().contains("made in the console"), "{refused}");
    fake.assert_clean().await;
}

#[test]
fn bad_declarations_are_refused_naming_the_key() {
    for (toml, key) in [
        (
            "[[git.connections]]\nname = \"Bad Name\"\napi_url = \"x\"\napp_id = \"1\"\nprivate_key = \"k\"\nwebhook_secret = \"s\"\n",
            "name",
        ),
        ("[[git.connections]]\nname = \"a\"\napi_url = \"x\"\napp_id = \"1\"\nwebhook_secret = \"s\"\n", "private_key"),
        (
            "[[git.connections]]\nname = \"a\"\napi_url = \"x\"\napp_id = \"1\"\nprivate_key = \"k\"\nprivate_key_file = \"/k\"\nwebhook_secret = \"s\"\n",
            "private_key",
        ),
        (
            "[[git.connections]]\nname = \"a\"\napi_url = \"x\"\napp_id = \"1\"\nprivate_key = \"k\"\nwebhook_secret_file = \"/does/not/exist\"\n",
            "webhook_secret_file",
        ),
        (
            "[[git.connections]]\nname = \"a\"\napi_url = \"x\"\napp_id = \"1\"\nprivate_key = \"k\"\nwebhook_secret = \"s\"\ncolour = \"red\"\n",
            "colour",
        ),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("arno.toml");
        std::fs::write(&file, toml).unwrap();
        let mut env = std::collections::BTreeMap::new();
        env.insert("ARNO_CONFIG".to_owned(), file.display().to_string());
        let e = arno::config::Config::load(&env).unwrap_err();
        assert!(e.key.starts_with("git.connections[0].") && e.key.ends_with(key), "{toml}: {} {}", e.key, e.message);
    }
}
