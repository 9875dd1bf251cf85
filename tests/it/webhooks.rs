//! GitHub webhooks, end to end: GitHub's own example payloads signed and delivered; forgeries,
//! repeats, oversized and malformed deliveries refused or folded; an IDE push of more than the
//! 20 commits a payload carries reaching open editors through a rescan; deliveries in the wrong
//! order; a merged pull request; a renamed repository; an uninstalled App; deliveries missed
//! while Arno was down.

use std::time::Duration;

use hmac::{Hmac, Mac};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use sha2::Sha256;

use crate::git::git;
use crate::github_projects::{GitHubWorld, github_project, github_world};
use crate::support::{api, client};

const SECRET: &str = "It's a Secret to Everybody";

fn sign(secret: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

struct Delivered {
    status: StatusCode,
    body: Value,
}

async fn post(w: &GitHubWorld, connection: &str, event: &str, guid: &str, body: Vec<u8>, signature: &str) -> Delivered {
    let r = client()
        .post(w.app.url(&format!("/api/v1/webhooks/github/{connection}")))
        .header("content-type", "application/json")
        .header("user-agent", "GitHub-Hookshot/test")
        .header("x-github-event", event)
        .header("x-github-delivery", guid)
        .header("x-hub-signature-256", signature)
        .body(body)
        .send()
        .await
        .unwrap();
    let status = r.status();
    let body = r.json().await.unwrap_or(Value::Null);
    Delivered { status, body }
}

async fn deliver(w: &GitHubWorld, event: &str, guid: &str, payload: &Value) -> Delivered {
    let body = serde_json::to_vec(payload).unwrap();
    let signature = sign(SECRET, &body);
    post(w, "corp", event, guid, body, &signature).await
}

pub fn examples() -> Vec<Value> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/github-fake/node_modules/@octokit/webhooks-examples/api.github.com/index.json"
    );
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

pub fn example(all: &[Value], event: &str, action: Option<&str>) -> Value {
    let group = all.iter().find(|g| g["name"] == event).unwrap_or_else(|| panic!("no {event} examples"));
    group["examples"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| action.is_none_or(|a| e["action"] == a))
        .cloned()
        .unwrap_or_else(|| panic!("no {event}.{action:?} example"))
}

async fn count(w: &GitHubWorld, sql: &str) -> i64 {
    sqlx::query_as::<_, (i64,)>(sql).fetch_one(w.app.state.db.pool()).await.unwrap().0
}

async fn project(w: &GitHubWorld) -> Value {
    api(Method::GET, &w.app.url("/api/v1/projects/ds"), Some(&w.maker), None).await.json()
}

/// Wait until no delivery is waiting for a project's sync.
pub async fn drained(w: &GitHubWorld) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while count(w, "SELECT COUNT(*) FROM webhook_work").await > 0
        || count(w, "SELECT COUNT(*) FROM jobs WHERE kind = 'sync' AND state IN ('pending', 'running')").await > 0
    {
        if tokio::time::Instant::now() >= deadline {
            let jobs: Vec<(String, String, i64, Option<String>)> = sqlx::query_as(
                "SELECT kind, state, attempts, last_error FROM jobs WHERE state IN ('pending', 'running')",
            )
            .fetch_all(w.app.state.db.pool())
            .await
            .unwrap();
            let violations = w.fake.control(Method::GET, "violations", json!(null)).await;
            panic!("deliveries never handled; jobs waiting: {jobs:?}; the fake saw: {violations}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn created(w: &GitHubWorld) {
    let r =
        api(Method::POST, &w.app.url("/api/v1/projects"), Some(&w.maker), Some(github_project("acme/design-system")))
            .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
}

#[tokio::test]
async fn githubs_example_deliveries_are_verified_stored_once_and_forgeries_refused() {
    let Some(w) = github_world(true).await else { return };
    created(&w).await;
    let all = examples();
    // GitHub's own example payloads, signed as GitHub signs them: accepted (202) at once.
    let mut n = 0;
    for (event, action) in [
        ("push", None),
        ("pull_request", Some("opened")),
        ("pull_request", Some("closed")),
        ("installation", Some("new_permissions_accepted")),
        ("installation_repositories", Some("added")),
        ("repository", Some("edited")),
    ] {
        n += 1;
        let mut payload = example(&all, event, action);
        if event == "push" {
            // GitHub's example, about the project's repository.
            payload["repository"]["full_name"] = json!("acme/design-system");
        }
        let r = deliver(&w, event, &format!("example-{n}"), &payload).await;
        assert_eq!(r.status, StatusCode::ACCEPTED, "{event} {action:?}: {:?}", r.body);
        assert_eq!(r.body["duplicate"], false);
    }
    let ping = example(&all, "ping", None);
    assert_eq!(deliver(&w, "ping", "ping-1", &ping).await.status, StatusCode::ACCEPTED);
    assert_eq!(count(&w, "SELECT COUNT(*) FROM webhook_deliveries").await, 6, "pings are not stored");
    drained(&w).await;
    assert_eq!(count(&w, "SELECT COUNT(*) FROM webhook_deliveries WHERE handled_at IS NULL").await, 0);
    // The push and the installation events reached the project's sync; the rest concern
    // repositories Arno does not follow.
    assert!(count(&w, "SELECT COUNT(*) FROM jobs WHERE kind = 'sync' AND state = 'done'").await >= 1);

    // A redelivery (GitHub keeps the id) is recognised and stored once.
    let push = example(&all, "push", None);
    let again = deliver(&w, "push", "example-1", &push).await;
    assert_eq!((again.status, again.body["duplicate"].as_bool()), (StatusCode::ACCEPTED, Some(true)));
    assert_eq!(count(&w, "SELECT COUNT(*) FROM webhook_deliveries").await, 6);

    // Forgeries: another secret, no signature, a tampered body, an unknown connection — all the
    // same 401, nothing stored, and a flood of them is one audit record.
    let body = serde_json::to_vec(&push).unwrap();
    let good = sign(SECRET, &body);
    let mut tampered = body.clone();
    tampered[10] ^= 1;
    for (connection, body, signature) in [
        ("corp", body.clone(), sign("guess", &body)),
        ("corp", body.clone(), String::new()),
        ("corp", body.clone(), good.replace("sha256=", "sha1=")),
        ("corp", tampered, good.clone()),
        ("nope", body.clone(), good.clone()),
        ("bad%20name", body.clone(), good.clone()),
    ] {
        let r = post(&w, connection, "push", "forged-1", body, &signature).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{connection} {signature}: {:?}", r.body);
        assert_eq!(r.body["code"], "webhook_refused");
    }
    for _ in 0..30 {
        let r = post(&w, "corp", "push", "forged-2", body.clone(), &sign("guess", &body)).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    }
    assert_eq!(count(&w, "SELECT COUNT(*) FROM webhook_deliveries WHERE delivery_id LIKE 'forged%'").await, 0);
    // Unknown connections of any name are one target: a flood of names is no flood of records.
    for i in 0..50 {
        let r = post(&w, &format!("made-up-{i}"), "push", "forged-3", body.clone(), &good).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    }
    let refusals = count(&w, "SELECT COUNT(*) FROM audit_events WHERE action = 'webhook.refused'").await;
    assert_eq!(refusals, 2, "one record per kind (bad signature on corp, unknown connection), the rest counted");
    let targets =
        count(&w, "SELECT COUNT(DISTINCT target_id) FROM audit_events WHERE action = 'webhook.refused'").await;
    assert_eq!(targets, 2);

    // Oversized (GitHub caps deliveries at 25 MB), without an id, or not JSON: refused, nothing stored.
    let huge = vec![b' '; (25 << 20) + 1];
    let r = post(&w, "corp", "push", "huge-1", huge.clone(), &sign(SECRET, &huge)).await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE);
    let r = post(&w, "corp", "push", "", body.clone(), &good).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{:?}", r.body);
    let junk = b"\xff\xfe not json".to_vec();
    let r = post(&w, "corp", "push", "junk-1", junk.clone(), &sign(SECRET, &junk)).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{:?}", r.body);
    assert_eq!(count(&w, "SELECT COUNT(*) FROM webhook_deliveries").await, 6);
    // Not for browsers: a cross-site form post is refused by the signature, not let through.
    let r = client()
        .post(w.app.url("/api/v1/webhooks/github/corp"))
        .header("origin", "https://evil.example")
        .header("content-type", "application/x-www-form-urlencoded")
        .body("a=b")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
}

/// Push `commits` commits to `main` from a clone (an IDE), the last changing Button.md; returns
/// the head before and after.
fn ide_push(w: &GitHubWorld, dir: &std::path::Path, commits: usize, text: &str) -> (String, String) {
    if !dir.exists() {
        git(dir.parent().unwrap(), &["clone", "-q", w.bare.to_str().unwrap(), dir.to_str().unwrap()]);
    }
    git(dir, &["pull", "-q", "--ff-only", "origin", "main"]);
    let before = git(dir, &["rev-parse", "HEAD"]);
    for i in 0..commits {
        let (file, content) = if i + 1 == commits {
            ("Design_system/Button.md".to_owned(), format!("{}{text}\n", crate::writeback::BUTTON))
        } else {
            (format!("notes/{i}.txt"), format!("{i}\n"))
        };
        std::fs::create_dir_all(dir.join(&file).parent().unwrap()).unwrap();
        std::fs::write(dir.join(&file), content).unwrap();
        git(dir, &["add", "."]);
        git(dir, &["-c", "user.name=Ivy", "-c", "user.email=ivy@example.com", "commit", "-q", "-m", &format!("c{i}")]);
    }
    git(dir, &["push", "-q", "origin", "HEAD:main"]);
    (before, git(dir, &["rev-parse", "HEAD"]))
}

pub async fn hook(w: &GitHubWorld) {
    let url = w.app.url("/api/v1/webhooks/github/corp");
    w.fake.control(Method::POST, "hook", json!({"url": url, "secret": SECRET})).await;
}

#[tokio::test]
async fn an_ide_push_reaches_open_editors_through_the_webhook_whatever_the_order() {
    let Some(w) = github_world(true).await else { return };
    created(&w).await;
    hook(&w).await;
    let ide = w.bare.parent().unwrap().join("ide");
    let mut stream = client()
        .get(w.app.url("/api/v1/projects/ds/events?path=Design_system/Button.md"))
        .bearer_auth(&w.maker)
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status(), StatusCode::OK);
    let mut buffer = String::new();
    // 25 commits in one push: the payload lists 20, the rescan reads git.
    let mut seen = None;
    let mut heads = vec![];
    for attempt in 0..5 {
        let (before, after) = ide_push(&w, &ide, if attempt == 0 { 25 } else { 1 }, &format!("IDE edit {attempt}"));
        heads.push((before.clone(), after.clone()));
        let sent = w
            .fake
            .control(
                Method::POST,
                "repos/acme/design-system/push-event",
                json!({"ref": "refs/heads/main", "before": before}),
            )
            .await;
        assert_eq!(sent["status"], 202, "{sent}");
        if attempt == 0 {
            assert_eq!(sent["commits"], 20, "GitHub caps a push payload's commits at 20");
            // The delivery alone brought the project to the new head (reconciliation is 10
            // minutes away).
            drained(&w).await;
            assert_eq!(project(&w).await["repository"]["scanned_commit"].as_str(), Some(after.as_str()));
        }
        if let Some(ev) =
            crate::spec_editor::next_event(&mut stream, &mut buffer, "default_updated", Duration::from_secs(5)).await
        {
            seen = Some(ev);
            break;
        }
    }
    let event = seen.expect("open editors are told of the IDE push");
    assert_eq!(event["path"], "Design_system/Button.md");
    drained(&w).await;
    let p = project(&w).await;
    let head = heads.last().unwrap().1.clone();
    assert_eq!(p["repository"]["scanned_commit"].as_str(), Some(head.as_str()), "{p}");
    let spec =
        api(Method::GET, &w.app.url("/api/v1/projects/ds/specs/Design_system/Button.md"), Some(&w.maker), None).await;
    assert!(spec.text.contains("IDE edit"), "{}", spec.text);

    // An older push delivered late changes nothing: the head is re-read, not taken from the payload.
    let (first_before, _) = heads[0].clone();
    let late = json!({"ref": "refs/heads/main", "before": first_before, "guid": "late-1"});
    let sent = w.fake.control(Method::POST, "repos/acme/design-system/push-event", late).await;
    assert_eq!(sent["status"], 202);
    drained(&w).await;
    assert_eq!(project(&w).await["repository"]["scanned_commit"].as_str(), Some(head.as_str()));
    w.fake.assert_clean().await;
}

#[tokio::test]
async fn a_merged_pull_request_a_renamed_repository_and_an_uninstalled_app() {
    let Some(w) = github_world(false).await else { return };
    created(&w).await;
    hook(&w).await;
    // The onboarding pull request, merged on GitHub: the webhook brings the merge and the push.
    let r = api(Method::POST, &w.app.url("/api/v1/projects/ds/onboarding"), Some(&w.maker), None).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    assert_eq!(project(&w).await["state"], "pending_setup");
    w.fake.control(Method::POST, "repos/acme/design-system/pulls/1/merge", json!({})).await;
    drained(&w).await;
    let p = project(&w).await;
    assert_eq!(p["state"], "active", "{p}");
    let state: (String,) = sqlx::query_as("SELECT state FROM pull_requests WHERE branch = 'arno/setup'")
        .fetch_one(w.app.state.db.pool())
        .await
        .unwrap();
    assert_eq!(state.0, "merged");

    // Renamed on GitHub: Arno follows the new name.
    let renamed =
        w.fake.control(Method::POST, "repos/acme/design-system/rename", json!({"name": "brand-system"})).await;
    let payload = json!({
        "action": "renamed",
        "changes": {"repository": {"name": {"from": "design-system"}}},
        "repository": renamed,
        "installation": {"id": 7},
        "sender": {"login": "octo", "id": 2, "type": "User"},
    });
    let sent = w.fake.control(Method::POST, "deliver", json!({"event": "repository", "payload": payload})).await;
    assert_eq!(sent["status"], 202, "{sent}");
    drained(&w).await;
    let p = project(&w).await;
    assert_eq!(p["repository"]["repository"].as_str(), Some("acme/brand-system"), "{p}");
    let r = api(Method::POST, &w.app.url("/api/v1/projects/ds/scan"), Some(&w.maker), None).await;
    assert_eq!(r.status, StatusCode::OK, "the renamed repository is read: {}", r.text);
    let moved = count(&w, "SELECT COUNT(*) FROM audit_events WHERE action = 'project.repository_moved'").await;
    assert_eq!(moved, 1);

    // Another account's installation removed: a hint only, this project still reads its repository.
    let elsewhere = json!({
        "action": "deleted",
        "installation": {"id": 99, "account": {"login": "other", "id": 9, "type": "Organization"}},
        "sender": {"login": "octo", "id": 2, "type": "User"},
    });
    w.fake.control(Method::POST, "deliver", json!({"event": "installation", "payload": elsewhere})).await;
    drained(&w).await;
    assert!(project(&w).await["scan_error"].is_null());

    // The App uninstalled: the project says why and keeps everything.
    let components = count(&w, "SELECT COUNT(*) FROM components").await;
    w.fake.control(Method::PATCH, "installations/7", json!({"removed": true})).await;
    let uninstall = json!({
        "action": "deleted",
        "installation": {"id": 7, "account": {"login": "acme", "id": 1, "type": "Organization"}},
        "sender": {"login": "octo", "id": 2, "type": "User"},
    });
    let sent = w.fake.control(Method::POST, "deliver", json!({"event": "installation", "payload": uninstall})).await;
    assert_eq!(sent["status"], 202, "{sent}");
    drained(&w).await;
    let p = project(&w).await;
    assert!(p["scan_error"].as_str().is_some_and(|e| e.contains("uninstalled")), "{p}");
    assert_eq!(count(&w, "SELECT COUNT(*) FROM components").await, components, "nothing lost");
    // Installed again: the message goes at once.
    w.fake.control(Method::PATCH, "installations/7", json!({"removed": false})).await;
    let installed = json!({
        "action": "created",
        "installation": {"id": 7, "account": {"login": "acme", "id": 1, "type": "Organization"}},
        "repositories": [{"id": 100000, "name": "brand-system", "full_name": "acme/brand-system", "private": true}],
        "sender": {"login": "octo", "id": 2, "type": "User"},
    });
    w.fake.control(Method::POST, "deliver", json!({"event": "installation", "payload": installed})).await;
    drained(&w).await;
    let p = project(&w).await;
    assert!(p["scan_error"].is_null(), "{p}");
    w.fake.assert_clean().await;
}

#[tokio::test]
async fn deliveries_missed_while_arno_was_down_are_caught_at_start() {
    let Some(mut w) = github_world(true).await else { return };
    created(&w).await;
    hook(&w).await;
    let ide = w.bare.parent().unwrap().join("ide");
    let (before, after) = ide_push(&w, &ide, 1, "while down");
    // GitHub tried and could not connect: the delivery is only in the App's delivery list.
    let sent = w
        .fake
        .control(
            Method::POST,
            "repos/acme/design-system/push-event",
            json!({"ref": "refs/heads/main", "before": before, "offline": true, "ago": 120}),
        )
        .await;
    assert_eq!(sent["status"], 0);
    assert_ne!(project(&w).await["repository"]["scanned_commit"].as_str(), Some(after.as_str()));
    // Arno starts again: its first maintenance round asks GitHub what it missed.
    w.app.restart().await;
    hook(&w).await; // (on a new port)
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while project(&w).await["repository"]["scanned_commit"].as_str() != Some(after.as_str()) {
        assert!(tokio::time::Instant::now() < deadline, "the missed delivery was never caught");
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    drained(&w).await;
    // Caught once: the next start finds nothing missed.
    assert_eq!(arno::projects::sync::missed_deliveries(&w.app.state).await.unwrap(), 0);
    // Redelivered by hand after all (same id): handled, not taken for a repeat.
    let guid = sent["guid"].as_str().unwrap();
    let again = json!({"ref": "refs/heads/main", "before": before, "guid": guid});
    let redelivered = w.fake.control(Method::POST, "repos/acme/design-system/push-event", again).await;
    assert_eq!(redelivered["status"], 202);
    let answer: Value = serde_json::from_str(redelivered["body"].as_str().unwrap()).unwrap();
    assert_eq!(answer["duplicate"], false, "{answer}");
    drained(&w).await;
    w.fake.assert_clean().await;
}
