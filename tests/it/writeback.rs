//! Write-back against real repositories: saves reach `arno/{handle}` after the quiet period,
//! authored by the user; change requests merge (fast-forward and merge commit) or close; a
//! branch changed outside Arno is never overwritten; failures are retried and reported; the
//! job queue and its locks hold across concurrent workers.

use std::path::{Path, PathBuf};
use std::time::Duration;

use arno::auth::OrgRole;
use arno::jobs::{self, NewJob, lock::Lock};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::git::git;
use crate::support::{TestApp, api};

pub(crate) const BUTTON: &str =
    "---\nid: 0b5e1c1e-6c1a-4f44-9d7e-0c1f0d6d1a01\nname: Button\n---\n# Button\n\nA button.\n";
const CARD: &str = "---\nid: 1c6f2d2f-7d2b-4a55-8e8f-1d2e1e7e2b02\nname: Card\n---\n# Card\n";

/// An instance serving a local repository (Button, Card on `main`), an Admin, two Makers (`m1`,
/// `m2`) and a Viewer, by token; write-back after one quiet second.
pub(crate) struct World {
    pub(crate) app: TestApp,
    _roots: tempfile::TempDir,
    /// The bare repository Arno serves.
    pub(crate) bare: PathBuf,
    /// A developer's clone of it.
    pub(crate) clone: PathBuf,
    pub(crate) admin: String,
    pub(crate) maker: String,
    pub(crate) maker2: String,
    pub(crate) viewer: String,
}

pub(crate) async fn world(extra: &[(&str, &str)]) -> World {
    let roots = tempfile::tempdir().unwrap();
    let root = roots.path().canonicalize().unwrap();
    let work = root.join("work");
    std::fs::create_dir_all(work.join("Design_system")).unwrap();
    std::fs::write(work.join("Design_system/Button.md"), BUTTON).unwrap();
    std::fs::write(work.join("Design_system/Card.md"), CARD).unwrap();
    git(&work, &["init", "-q", "-b", "main"]);
    git(&work, &["add", "."]);
    git(&work, &["commit", "-q", "-m", "init"]);
    let bare = root.join("ds.git");
    git(&root, &["clone", "-q", "--bare", work.to_str().unwrap(), bare.to_str().unwrap()]);
    let clone = root.join("clone");
    git(&root, &["clone", "-q", bare.to_str().unwrap(), clone.to_str().unwrap()]);
    let mut settings = vec![("ARNO_GIT_LOCAL_ROOTS", root.to_str().unwrap()), ("ARNO_WRITEBACK_DEBOUNCE_SECS", "1")];
    settings.extend_from_slice(extra);
    let app = TestApp::start_with(&settings).await;
    let (_, admin) = app.user_with_token("root@example.com", OrgRole::Admin).await;
    let r = api(
        Method::POST,
        &app.url("/api/v1/projects"),
        Some(&admin),
        Some(json!({"name": "DS", "repository": {"provider": "local", "path": bare}})),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let mut tokens = vec![];
    for (email, role) in [("m1@example.com", "maker"), ("m2@example.com", "maker"), ("v@example.com", "viewer")] {
        let (user, token) = app.user_with_token(email, OrgRole::Member).await;
        let url = app.url(&format!("/api/v1/projects/ds/members/{}", user.id));
        let r = api(Method::PUT, &url, Some(&admin), Some(json!({"role": role}))).await;
        assert!(r.status.is_success(), "{}", r.text);
        tokens.push(token);
    }
    let [maker, maker2, viewer]: [String; 3] = tokens.try_into().unwrap();
    World { app, _roots: roots, bare, clone, admin, maker, maker2, viewer }
}

pub(crate) async fn save(w: &World, token: &str, file: &str, content: &str, session: &str) -> Value {
    let url = w.app.url(&format!("/api/v1/projects/ds/specs/Design_system/{file}"));
    let current = api(Method::GET, &url, Some(token), None).await.json();
    let base = current["version"].as_i64().unwrap();
    let r = api(
        Method::PUT,
        &url,
        Some(token),
        Some(json!({"content": content, "base_version": base, "session_id": session})),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    r.json()
}

async fn branch_state(w: &World, handle: &str) -> Option<Value> {
    let r = api(Method::GET, &w.app.url("/api/v1/projects/ds/changes"), Some(&w.admin), None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    r.json()["branches"].as_array().unwrap().iter().find(|b| b["user_handle"] == handle).cloned()
}

/// Wait until `handle`'s branch is in `state` (the worker polls twice a second).
pub(crate) async fn wait_for(w: &World, handle: &str, state: &str) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(b) = branch_state(w, handle).await {
            // "committed" also means nothing is left waiting.
            if b["state"] == state && (state != "committed" || b["pending_files"] == 0) {
                return b;
            }
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{handle} never reached {state}: {:?}",
            branch_state(w, handle).await
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn show(repo: &Path, rev_path: &str) -> String {
    git(repo, &["show", rev_path])
}

async fn metric(w: &World, line: &str) -> bool {
    let text = reqwest::get(format!("{}/metrics", w.app.metrics_base)).await.unwrap().text().await.unwrap();
    text.lines().any(|l| l == line)
}

#[tokio::test]
async fn saves_reach_the_session_branch_after_the_quiet_period_authored_by_the_user() {
    let w = world(&[]).await;
    let edited = BUTTON.replace("A button.", "A button. Edited once.");
    save(&w, &w.maker, "Button.md", &edited, "tab-1").await;
    let twice = BUTTON.replace("A button.", "A button. Edited twice.");
    let saved = save(&w, &w.maker, "Button.md", &twice, "tab-1").await;
    let card = CARD.replace("# Card", "# Card\n\nA card.");
    let card_saved = save(&w, &w.maker, "Card.md", &card, "tab-1").await;
    // Within the quiet period nothing is written.
    let b = branch_state(&w, "m1").await.unwrap();
    assert_eq!((b["state"].as_str(), b["pending_files"].as_i64()), (Some("pending"), Some(2)), "{b}");
    assert!(git(&w.bare, &["branch", "--list", "arno/m1"]).is_empty(), "written before the quiet period");

    let b = wait_for(&w, "m1", "committed").await;
    assert_eq!(b["review"], "open");
    // One commit for the three saves, authored by the user, committed by Arno.
    assert_eq!(git(&w.bare, &["rev-list", "--count", "main..arno/m1"]), "1");
    let head = git(&w.bare, &["rev-parse", "arno/m1"]);
    assert_eq!(b["last_commit"], head);
    assert_eq!(git(&w.bare, &["log", "-1", "--format=%an <%ae>|%cn", "arno/m1"]), "Ada Lovelace <m1@example.com>|Arno");
    let message = git(&w.bare, &["log", "-1", "--format=%B", "arno/m1"]);
    let (v_button, v_card) = (saved["version"].as_i64().unwrap(), card_saved["version"].as_i64().unwrap());
    assert!(message.contains(&format!("- Design_system/Button.md (version {v_button})")), "{message}");
    assert!(message.contains(&format!("- Design_system/Card.md (version {v_card})")), "{message}");
    assert_eq!(show(&w.bare, "arno/m1:Design_system/Button.md") + "\n", twice);
    assert_eq!(show(&w.bare, "arno/m1:Design_system/Card.md") + "\n", card);
    // The default branch is untouched; git agrees the repository is sound.
    assert_eq!(show(&w.bare, "main:Design_system/Button.md") + "\n", BUTTON);
    git(&w.bare, &["fsck", "--strict", "--no-progress"]);
    assert!(metric(&w, "git_push_total{result=\"committed\"} 1").await);
    let audit: (i64,) = sqlx::query_as("SELECT COUNT(*) FROM audit_events WHERE action = 'writeback.commit'")
        .fetch_one(w.app.state.db.pool())
        .await
        .unwrap();
    assert_eq!(audit.0, 1);

    // The next save commits on top of Arno's last commit.
    let third = BUTTON.replace("A button.", "A button. Edited thrice.");
    save(&w, &w.maker, "Button.md", &third, "tab-2").await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    wait_for(&w, "m1", "committed").await;
    assert_eq!(git(&w.bare, &["rev-list", "--count", "main..arno/m1"]), "2");
    assert_eq!(git(&w.bare, &["rev-parse", "arno/m1~1"]), head);
}

#[tokio::test]
async fn change_requests_merge_by_fast_forward_or_merge_commit_and_close() {
    let w = world(&[]).await;
    let button = BUTTON.replace("A button.", "A button by maker one.");
    save(&w, &w.maker, "Button.md", &button, "a").await;
    let card = CARD.replace("# Card", "# Card\n\nBy maker two.");
    save(&w, &w.maker2, "Card.md", &card, "b").await;
    wait_for(&w, "m1", "committed").await;
    wait_for(&w, "m2", "committed").await;

    // The change request: what the branch changes and who changed it.
    let r = api(Method::GET, &w.app.url("/api/v1/projects/ds/changes/m1"), Some(&w.viewer), None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let c = r.json();
    assert_eq!(c["files"].as_array().unwrap().len(), 1, "{c}");
    assert_eq!(
        (c["files"][0]["path"].as_str(), c["files"][0]["status"].as_str()),
        (Some("Design_system/Button.md"), Some("modified"))
    );
    assert_eq!(c["files"][0]["author"], "Ada Lovelace");
    assert_eq!(c["can_fast_forward"], true);

    // Viewers cannot merge; the refusal is audited.
    let merge_url = w.app.url("/api/v1/projects/ds/changes/m1/merge");
    let r = api(Method::POST, &merge_url, Some(&w.viewer), Some(json!({"mode": "fast_forward"}))).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.text);

    // Fast-forward: main is the branch's head.
    let head = git(&w.bare, &["rev-parse", "arno/m1"]);
    let r = api(Method::POST, &merge_url, Some(&w.maker2), Some(json!({"mode": "fast_forward"}))).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.json()["commit"], head);
    assert_eq!(git(&w.bare, &["rev-parse", "main"]), head);
    // The scan followed the default branch.
    let p = api(Method::GET, &w.app.url("/api/v1/projects/ds"), Some(&w.admin), None).await.json();
    assert_eq!(p["repository"]["scanned_commit"], head, "{p}");
    assert_eq!(branch_state(&w, "m1").await.unwrap()["review"], "merged");

    // Maker two's branch parted from the old main: no fast-forward, a merge commit instead.
    let m2 = api(Method::GET, &w.app.url("/api/v1/projects/ds/changes/m2"), Some(&w.admin), None).await.json();
    assert_eq!(m2["can_fast_forward"], false);
    let url2 = w.app.url("/api/v1/projects/ds/changes/m2/merge");
    let r = api(Method::POST, &url2, Some(&w.maker), Some(json!({"mode": "fast_forward"}))).await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.text);
    let r = api(Method::POST, &url2, Some(&w.maker), Some(json!({"mode": "merge_commit"}))).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let merge = git(&w.bare, &["rev-parse", "main"]);
    assert_eq!(r.json()["commit"], merge);
    let parents = git(&w.bare, &["log", "-1", "--format=%P", "main"]);
    assert_eq!(parents, format!("{head} {}", git(&w.bare, &["rev-parse", "arno/m2"])));
    assert_eq!(show(&w.bare, "main:Design_system/Button.md") + "\n", button);
    assert_eq!(show(&w.bare, "main:Design_system/Card.md") + "\n", card);
    git(&w.bare, &["fsck", "--strict", "--no-progress"]);
    // Merging again: nothing left to merge.
    let r = api(Method::POST, &url2, Some(&w.maker), Some(json!({"mode": "merge_commit"}))).await;
    assert!(r.status == StatusCode::BAD_REQUEST || r.status == StatusCode::CONFLICT, "{}", r.text);

    // A later save on a merged branch starts from the new main (a clean change request).
    let again = button.replace("maker one.", "maker one, again.");
    save(&w, &w.maker, "Button.md", &again, "c").await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    wait_for(&w, "m1", "committed").await;
    assert_eq!(git(&w.bare, &["rev-list", "--count", "main..arno/m1"]), "1");
    assert_eq!(git(&w.bare, &["rev-parse", "arno/m1~1"]), merge);
    assert_eq!(branch_state(&w, "m1").await.unwrap()["review"], "open");
    // Close it without merging.
    let r = api(Method::POST, &w.app.url("/api/v1/projects/ds/changes/m1/close"), Some(&w.maker2), None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(branch_state(&w, "m1").await.unwrap()["review"], "closed");
    assert_eq!(git(&w.bare, &["rev-parse", "main"]), merge, "closing does not merge");

    // Merges, closes and refusals are audit events; the activity list shows them.
    let audit: Vec<(String, String)> = sqlx::query_as(
        "SELECT action, outcome FROM audit_events WHERE action IN ('change.merge', 'change.close') ORDER BY id",
    )
    .fetch_all(w.app.state.db.pool())
    .await
    .unwrap();
    let audit: Vec<(&str, &str)> = audit.iter().map(|(a, o)| (a.as_str(), o.as_str())).collect();
    assert_eq!(
        audit,
        [
            ("change.merge", "denied"),
            ("change.merge", "allowed"),
            ("change.merge", "denied"),
            ("change.merge", "allowed"),
            ("change.merge", "denied"),
            ("change.close", "allowed")
        ]
    );
    let list = api(Method::GET, &w.app.url("/api/v1/projects/ds/changes"), Some(&w.viewer), None).await.json();
    let kinds: Vec<&str> = list["activity"].as_array().unwrap().iter().map(|a| a["kind"].as_str().unwrap()).collect();
    assert!(
        kinds.starts_with(&["change.closed", "writeback.committed", "change.merged", "change.merged"]),
        "{kinds:?}"
    );
}

#[tokio::test]
async fn a_branch_changed_outside_arno_is_never_overwritten() {
    let w = world(&[]).await;
    let mine = BUTTON.replace("A button.", "Mine, first.");
    save(&w, &w.maker, "Button.md", &mine, "a").await;
    let first = wait_for(&w, "m1", "committed").await["last_commit"].as_str().unwrap().to_owned();

    // A developer commits to the session branch and pushes.
    git(&w.clone, &["fetch", "-q", "origin"]);
    git(&w.clone, &["checkout", "-q", "-b", "arno/m1", "origin/arno/m1"]);
    std::fs::write(
        w.clone.join("Design_system/Button.md"),
        "---\nid: 0b5e1c1e-6c1a-4f44-9d7e-0c1f0d6d1a01\nname: Button\n---\n# Theirs\n",
    )
    .unwrap();
    git(&w.clone, &["commit", "-q", "-am", "theirs"]);
    git(&w.clone, &["push", "-q", "origin", "arno/m1"]);
    let theirs = git(&w.clone, &["rev-parse", "HEAD"]);

    // The next save is not written: the branch is diverged and keeps their commit.
    let second = BUTTON.replace("A button.", "Mine, second.");
    save(&w, &w.maker, "Button.md", &second, "a").await;
    let b = wait_for(&w, "m1", "diverged").await;
    assert_eq!(b["found_head"], theirs);
    assert_eq!(b["last_commit"], first);
    assert!(b["reason"].as_str().unwrap().contains("changed outside Arno"), "{b}");
    assert_eq!(b["pending_files"], 1);
    assert_eq!(git(&w.bare, &["rev-parse", "arno/m1"]), theirs, "Arno wrote to a diverged branch");
    // Further saves wait too (still no write, no force).
    let third = BUTTON.replace("A button.", "Mine, third.");
    save(&w, &w.maker, "Button.md", &third, "a").await;
    tokio::time::sleep(Duration::from_millis(1800)).await;
    assert_eq!(branch_state(&w, "m1").await.unwrap()["state"], "diverged");
    assert_eq!(git(&w.bare, &["rev-parse", "arno/m1"]), theirs);
    assert!(metric(&w, "git_push_total{result=\"diverged\"} 1").await);
    let audit: (i64,) = sqlx::query_as("SELECT COUNT(*) FROM audit_events WHERE action = 'writeback.diverged'")
        .fetch_one(w.app.state.db.pool())
        .await
        .unwrap();
    assert_eq!(audit.0, 1);

    // The change request page says so and offers the choice to the owner only.
    let take = w.app.url("/api/v1/projects/ds/changes/m1/take-theirs");
    let r = api(Method::POST, &take, Some(&w.maker2), None).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.text);
    let r = api(Method::POST, &take, Some(&w.maker), None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.json()["backups"], 1);
    // My text is a backup version, not lost.
    let versions = api(
        Method::GET,
        &w.app.url("/api/v1/projects/ds/specs/Design_system/Button.md/versions"),
        Some(&w.maker),
        None,
    )
    .await
    .json();
    let backup = versions
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["kind"] == "backup")
        .unwrap_or_else(|| panic!("no backup in {versions}"))
        .clone();
    assert_eq!(backup["label"], "not written: branch changed outside Arno");
    let n = backup["version"].as_i64().unwrap();
    let kept = api(
        Method::GET,
        &w.app.url(&format!("/api/v1/projects/ds/specs/Design_system/Button.md/versions/{n}")),
        Some(&w.maker),
        None,
    )
    .await
    .json();
    assert_eq!(kept["content"], third);
    let b = branch_state(&w, "m1").await.unwrap();
    assert_eq!(
        (b["state"].as_str(), b["last_commit"].as_str(), b["pending_files"].as_i64()),
        (Some("committed"), Some(theirs.as_str()), Some(0))
    );

    // From now on saves build on their commit.
    let fourth = BUTTON.replace("A button.", "Mine, on top of theirs.");
    save(&w, &w.maker, "Button.md", &fourth, "a").await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    wait_for(&w, "m1", "committed").await;
    assert_eq!(git(&w.bare, &["rev-parse", "arno/m1~1"]), theirs);
    assert_eq!(show(&w.bare, "arno/m1:Design_system/Button.md") + "\n", fourth);
}

#[tokio::test]
async fn failed_writes_are_retried_then_reported() {
    let w = world(&[("ARNO_JOBS_RETRY_BASE", "200ms"), ("ARNO_JOBS_MAX_ATTEMPTS", "3")]).await;
    // A stale lock file left by a crashed git process blocks creating the branch.
    std::fs::create_dir_all(w.bare.join("refs/heads/arno")).unwrap();
    std::fs::write(w.bare.join("refs/heads/arno/m1.lock"), "").unwrap();
    save(&w, &w.maker, "Button.md", &BUTTON.replace("A button.", "Blocked."), "a").await;
    let b = wait_for(&w, "m1", "failed").await;
    assert!(b["reason"].as_str().unwrap().contains("arno/m1"), "{b}");
    assert_eq!(b["pending_files"], 1, "the text waits for the next attempt");
    let job: (String, i64, Option<String>) =
        sqlx::query_as("SELECT state, attempts, last_error FROM jobs WHERE kind = 'writeback'")
            .fetch_one(w.app.state.db.pool())
            .await
            .unwrap();
    assert_eq!((job.0.as_str(), job.1), ("failed", 3), "{job:?}");
    assert!(metric(&w, "git_push_total{result=\"retry\"} 2").await);
    assert!(metric(&w, "git_push_total{result=\"failed\"} 1").await);
    let list = api(Method::GET, &w.app.url("/api/v1/projects/ds/changes"), Some(&w.viewer), None).await.json();
    assert_eq!(list["activity"][0]["kind"], "writeback.failed", "{list}");

    // Once the lock file is gone, the next save writes everything.
    std::fs::remove_file(w.bare.join("refs/heads/arno/m1.lock")).unwrap();
    let fixed = BUTTON.replace("A button.", "Unblocked.");
    save(&w, &w.maker, "Button.md", &fixed, "a").await;
    wait_for(&w, "m1", "committed").await;
    assert_eq!(show(&w.bare, "arno/m1:Design_system/Button.md") + "\n", fixed);
}

#[tokio::test]
async fn a_moved_default_branch_is_rescanned_and_unedited_specs_follow_it() {
    let w = world(&[]).await;
    // Button is edited in Arno (and not merged); Card is only read.
    let url = |f: &str| w.app.url(&format!("/api/v1/projects/ds/specs/Design_system/{f}"));
    save(&w, &w.maker, "Button.md", &BUTTON.replace("A button.", "Edited in Arno."), "a").await;
    let card_before = api(Method::GET, &url("Card.md"), Some(&w.maker), None).await.json();
    assert_eq!(card_before["version"], 1);
    // Materialize Card's row as it is (a reader opening it in the editor does no harm).
    let mut events = w.app.state.events.subscribe();

    // A developer pushes to main.
    git(&w.clone, &["checkout", "-q", "main"]);
    let card_theirs = CARD.replace("# Card", "# Card\n\nPushed to main.");
    std::fs::write(w.clone.join("Design_system/Card.md"), &card_theirs).unwrap();
    std::fs::write(w.clone.join("Design_system/Button.md"), BUTTON.replace("A button.", "Pushed.")).unwrap();
    git(&w.clone, &["commit", "-q", "-am", "push to main"]);
    git(&w.clone, &["push", "-q", "origin", "main"]);
    let head = git(&w.clone, &["rev-parse", "HEAD"]);

    arno::projects::changes::watch_default_branches(&w.app.state).await;
    let p = api(Method::GET, &w.app.url("/api/v1/projects/ds"), Some(&w.admin), None).await.json();
    assert_eq!(p["repository"]["scanned_commit"], head);
    // Card had no Arno edits: readers get the pushed text.
    let card = api(Method::GET, &url("Card.md"), Some(&w.maker), None).await.json();
    assert_eq!(card["content"], card_theirs);
    // Button has Arno edits on their way to git: they stay current, and open editors are told.
    let button = api(Method::GET, &url("Button.md"), Some(&w.maker), None).await.json();
    assert_eq!(button["content"], BUTTON.replace("A button.", "Edited in Arno."));
    let mut kinds = vec![];
    while let Ok(e) = events.try_recv() {
        if !e.path.is_empty() {
            kinds.push((e.kind, e.path));
        }
    }
    assert!(kinds.contains(&("default_updated".into(), "Design_system/Button.md".into())), "{kinds:?}");
    let list = api(Method::GET, &w.app.url("/api/v1/projects/ds/changes"), Some(&w.viewer), None).await.json();
    assert!(list["activity"].as_array().unwrap().iter().any(|a| a["kind"] == "default.moved"), "{list}");
}

#[tokio::test]
async fn opened_spec_rows_follow_the_default_branch() {
    // A file someone opened for editing (its row exists at version 1 = git) follows a push.
    let w = world(&[]).await;
    let url = w.app.url("/api/v1/projects/ds/specs/Design_system/Card.md/versions/1/restore");
    let r = api(Method::POST, &url, Some(&w.maker), Some(json!({"session_id": "s"}))).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    git(&w.clone, &["checkout", "-q", "main"]);
    let card_theirs = CARD.replace("# Card", "# Card\n\nPushed.");
    std::fs::write(w.clone.join("Design_system/Card.md"), &card_theirs).unwrap();
    git(&w.clone, &["commit", "-q", "-am", "push"]);
    git(&w.clone, &["push", "-q", "origin", "main"]);
    arno::projects::changes::watch_default_branches(&w.app.state).await;
    let card = api(Method::GET, &w.app.url("/api/v1/projects/ds/specs/Design_system/Card.md"), Some(&w.maker), None)
        .await
        .json();
    assert_eq!(card["content"], card_theirs);
    assert_eq!(card["version"], 3, "version 1 (git), 2 (restored), 3 (from the default branch): {card}");
}

#[tokio::test]
async fn the_job_queue_debounces_leases_and_never_hands_one_job_to_two_workers() {
    let app = TestApp::start().await;
    let db = &app.state.db;
    let now = arno::db::now_ms();
    // Debounce: enqueueing the same key again moves its run time.
    {
        let mut conn = db.pool().acquire().await.unwrap();
        for at in [now + 60_000, now + 120_000] {
            let job = NewJob { kind: "test", dedup_key: Some("k"), payload: json!({}), run_at: at, max_attempts: 3 };
            jobs::enqueue(&mut conn, &job).await.unwrap();
        }
        for i in 0..40 {
            let key = format!("j{i}");
            let job =
                NewJob { kind: "test", dedup_key: Some(&key), payload: json!({"i": i}), run_at: now, max_attempts: 3 };
            jobs::enqueue(&mut conn, &job).await.unwrap();
        }
    }
    let k: Vec<(i64,)> =
        sqlx::query_as("SELECT run_at FROM jobs WHERE dedup_key = 'k'").fetch_all(db.pool()).await.unwrap();
    assert_eq!(k, [(now + 120_000,)]);
    // Stop the app's own worker from taking test jobs: claim them here with four workers at once.
    let mut workers = vec![];
    for n in 0..4 {
        let db = db.clone();
        workers.push(tokio::spawn(async move {
            let mut got = vec![];
            while let Some(job) = jobs::claim(&db, &format!("w{n}")).await.unwrap() {
                if job.kind == "test" {
                    got.push(job.payload.clone());
                    jobs::complete(&db, &job, &format!("w{n}")).await.unwrap();
                }
            }
            got
        }));
    }
    let mut all = vec![];
    for w in workers {
        all.extend(w.await.unwrap());
    }
    let before = all.len();
    all.sort();
    all.dedup();
    assert_eq!(before, all.len(), "a job was handed to two workers");
    // Let the app's worker finish what it took.
    for _ in 0..100 {
        let (running,): (i64,) =
            sqlx::query_as("SELECT COUNT(*) FROM jobs WHERE state = 'running'").fetch_one(db.pool()).await.unwrap();
        if running == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The app's worker may have taken (and failed, unknown kind) some; none is lost or doubled.
    let (done,): (i64,) =
        sqlx::query_as("SELECT COUNT(*) FROM jobs WHERE dedup_key LIKE 'j%' AND state IN ('done', 'failed')")
            .fetch_one(db.pool())
            .await
            .unwrap();
    assert_eq!(done, 40);

    // A lease that ran out (a crashed worker) makes the job claimable again.
    {
        let mut conn = db.pool().acquire().await.unwrap();
        let job = NewJob { kind: "test", dedup_key: Some("lease"), payload: json!({}), run_at: now, max_attempts: 3 };
        jobs::enqueue(&mut conn, &job).await.unwrap();
    }
    sqlx::query("UPDATE jobs SET state = 'running', lease_owner = 'dead', lease_until = 1, attempts = 1 WHERE dedup_key = 'lease'")
        .execute(db.pool())
        .await
        .unwrap();
    let mut taken = None;
    for _ in 0..50 {
        if let Some(job) = jobs::claim(db, "alive").await.unwrap() {
            taken = Some(job);
            break;
        }
        let (state,): (String,) =
            sqlx::query_as("SELECT state FROM jobs WHERE dedup_key = 'lease'").fetch_one(db.pool()).await.unwrap();
        if state != "running" {
            break;
        }
    }
    let (attempts, owner): (i64, Option<String>) =
        sqlx::query_as("SELECT attempts, lease_owner FROM jobs WHERE dedup_key = 'lease'")
            .fetch_one(db.pool())
            .await
            .unwrap();
    assert_eq!(attempts, 2, "taken over once (by {owner:?}, here: {:?})", taken.map(|j| j.id));
}

#[tokio::test]
async fn database_locks_exclude_and_expire() {
    let app = TestApp::start().await;
    let db = &app.state.db;
    let first = Lock::try_acquire(db, "git:p:arno/x", Duration::from_secs(60)).await.unwrap().expect("free lock");
    assert!(Lock::try_acquire(db, "git:p:arno/x", Duration::from_secs(60)).await.unwrap().is_none());
    assert!(first.still_held(db, Duration::from_secs(1)).await.unwrap());
    first.release(db).await.unwrap();
    let short = Lock::try_acquire(db, "git:p:arno/x", Duration::from_millis(50)).await.unwrap().expect("released");
    tokio::time::sleep(Duration::from_millis(120)).await;
    // Expired: another holder may take it, and the old holder learns it lost it.
    let next = Lock::try_acquire(db, "git:p:arno/x", Duration::from_secs(60)).await.unwrap().expect("expired lock");
    assert!(!short.still_held(db, Duration::ZERO).await.unwrap());
    short.release(db).await.unwrap();
    assert!(next.still_held(db, Duration::from_secs(1)).await.unwrap(), "a stale holder released someone else's lock");
}

/// A component created in Arno is a new file on the Maker's branch, and in the project's list
/// once merged.
#[tokio::test]
async fn a_new_component_reaches_the_branch_and_after_merge_the_list() {
    let w = world(&[]).await;
    let r = api(
        Method::POST,
        &w.app.url("/api/v1/projects/ds/components"),
        Some(&w.maker),
        Some(json!({"name": "Toast", "description": "Says something briefly."})),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let id = r.json()["id"].as_str().unwrap().to_owned();
    wait_for(&w, "m1", "committed").await;
    let text = show(&w.bare, "arno/m1:Design_system/Toast.md");
    assert!(text.contains(&format!("id: {id}")) && text.contains("Says something briefly."), "{text}");
    assert!(
        git(&w.bare, &["ls-tree", "--name-only", "main", "Design_system/"]).lines().all(|l| !l.ends_with("Toast.md"))
    );

    let r = api(
        Method::POST,
        &w.app.url("/api/v1/projects/ds/changes/m1/merge"),
        Some(&w.maker2),
        Some(json!({"mode": "fast_forward"})),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let page = w.app.admin_browser().await.get("/projects/ds").await;
    let rows = page.select_text("#components").unwrap();
    assert!(rows.contains("Toast") && !rows.contains("not merged yet"), "merged: no longer new: {rows}");
    let list = api(Method::GET, &w.app.url("/api/v1/projects/ds/components"), Some(&w.viewer), None).await.json();
    let toast = list.as_array().unwrap().iter().find(|c| c["name"] == "Toast").unwrap_or_else(|| panic!("{list}"));
    assert_eq!(toast["id"], id.as_str());
    assert_eq!(toast["file_path"], "Design_system/Toast.md");
}
