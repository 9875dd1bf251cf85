//! The GitHub adapter against the fake GitHub where GitHub differs from git on disk: App
//! authentication and installation tokens, rate limits (primary and secondary), an App that
//! was uninstalled, bulk reads through GraphQL, and the fake's own checks biting.

use std::time::{Duration, Instant};

use arno::git::github::client::{Auth, REQUESTS_TOTAL};
use arno::git::github::provider::GitHubProvider;
use arno::git::{GitError, GitProvider};
use serde_json::json;

use crate::fake_github::FakeGitHub;
use crate::provider_suite::seed;

struct Setup {
    fake: FakeGitHub,
    repo: GitHubProvider,
    first: String,
    dir: std::path::PathBuf,
    tmp: tempfile::TempDir,
}

async fn setup() -> Option<Setup> {
    let fake = FakeGitHub::start()?;
    let dir = fake.repo("acme", "design-system", 7).await;
    let tmp = tempfile::tempdir().unwrap();
    let first = seed(&dir, &tmp.path().join("work"));
    let repo = GitHubProvider::connect(fake.client(), "acme/design-system").await.unwrap();
    Some(Setup { fake, repo, first, dir, tmp })
}

#[tokio::test]
async fn one_installation_token_serves_many_calls_and_an_expired_one_is_renewed_once() {
    let Some(Setup { fake, repo, first, .. }) = setup().await else { return };
    for _ in 0..3 {
        repo.default_branch().await.unwrap();
        repo.read_file(&first, "Design_system/Button.md").await.unwrap();
    }
    assert_eq!(fake.count("POST", "/access_tokens").await, 1, "the token is cached");

    // Concurrent first calls of a fresh client share one renewal.
    let fresh = GitHubProvider::new(fake.client(), "acme", "design-system", 7);
    fake.clear_log().await;
    let results = futures_util::future::join_all((0..6).map(|_| fresh.resolve("main"))).await;
    assert!(results.iter().all(|r| r.as_ref().is_ok_and(|id| *id == first)), "{results:?}");
    assert_eq!(fake.count("POST", "/access_tokens").await, 1, "one renewal at a time per installation");

    // GitHub stops accepting the token before Arno thought it would: one renewal, then the call.
    fake.settings(json!({"expire_tokens": true})).await;
    fake.clear_log().await;
    assert_eq!(repo.resolve("main").await.unwrap(), first);
    let log = fake.log().await;
    let statuses: Vec<(String, u64)> =
        log.iter().map(|e| (e["path"].as_str().unwrap().to_owned(), e["status"].as_u64().unwrap())).collect();
    assert_eq!(statuses.len(), 3, "{statuses:?}");
    assert_eq!(statuses[0].1, 401);
    assert!(statuses[1].0.ends_with("/access_tokens") && statuses[1].1 == 201, "{statuses:?}");
    assert_eq!(statuses[2].1, 200);

    // A token GitHub says lives less than the safety margin is renewed for every call.
    fake.settings(json!({"token_lifetime": 120})).await;
    let short = GitHubProvider::new(fake.client(), "acme", "design-system", 7);
    fake.clear_log().await;
    short.resolve("main").await.unwrap();
    short.resolve("main").await.unwrap();
    assert_eq!(fake.count("POST", "/access_tokens").await, 2);
    fake.assert_clean().await;
}

#[tokio::test]
async fn rate_limits_are_honoured_and_long_waits_become_retryable_errors() {
    let Some(Setup { fake, repo, first, .. }) = setup().await else { return };
    repo.resolve("main").await.unwrap();
    let before = REQUESTS_TOTAL.with_label_values(&["github", "read", "403"]).get();

    // A secondary limit with retry-after: 1 — waited out, then the call succeeds.
    fake.fault("GET", "/git/ref/heads/main$", 403, json!({"retry-after": "1"}), 1).await;
    let started = Instant::now();
    assert_eq!(repo.resolve("main").await.unwrap(), first);
    assert!(started.elapsed() >= Duration::from_millis(950), "waited {:?}", started.elapsed());
    assert_eq!(REQUESTS_TOTAL.with_label_values(&["github", "read", "403"]).get(), before + 1);

    // 429 the same way.
    fake.fault("GET", "/git/ref/heads/main$", 429, json!({"retry-after": "1"}), 1).await;
    assert_eq!(repo.resolve("main").await.unwrap(), first);

    // The primary limit spent: wait until the reset GitHub names.
    let reset = chrono::Utc::now().timestamp() + 1;
    fake.fault(
        "GET",
        "/git/ref/heads/main$",
        403,
        json!({"x-ratelimit-remaining": "0", "x-ratelimit-reset": reset.to_string()}),
        1,
    )
    .await;
    assert_eq!(repo.resolve("main").await.unwrap(), first);

    // A long wait is not slept through: the caller gets a retryable error at once, and further
    // calls do not even reach GitHub until the time is up.
    fake.fault("GET", "/git/ref/heads/main$", 403, json!({"retry-after": "120"}), 1).await;
    let started = Instant::now();
    match repo.resolve("main").await {
        Err(GitError::RateLimited { retry_after_ms }) => assert!(retry_after_ms >= 119_000, "{retry_after_ms}"),
        other => panic!("expected rate limited, got {other:?}"),
    }
    assert!(started.elapsed() < Duration::from_secs(5));
    fake.clear_log().await;
    assert!(matches!(repo.read_file(&first, "logo.bin").await, Err(GitError::RateLimited { .. })));
    assert_eq!(fake.log().await.len(), 0, "nothing sent while GitHub asked Arno to wait");
    fake.assert_clean().await;
}

#[tokio::test]
async fn a_secondary_limit_without_a_hint_backs_off_a_minute() {
    let Some(Setup { fake, repo, .. }) = setup().await else { return };
    repo.resolve("main").await.unwrap();
    fake.fault("GET", "/git/ref/heads/main$", 403, json!({}), 1).await;
    match repo.resolve("main").await {
        Err(GitError::RateLimited { retry_after_ms }) => {
            assert!((59_000..=60_000).contains(&retry_after_ms), "{retry_after_ms}")
        }
        other => panic!("expected rate limited, got {other:?}"),
    }
    fake.assert_clean().await;
}

#[tokio::test]
async fn an_uninstalled_app_says_so_and_changes_nothing() {
    let Some(Setup { fake, repo, first, .. }) = setup().await else { return };
    repo.resolve("main").await.unwrap();
    fake.control(reqwest::Method::PATCH, "installations/7", json!({"removed": true})).await;
    fake.settings(json!({"expire_tokens": true})).await;
    let refused = repo
        .commit(arno::git::CommitRequest {
            branch: "main".into(),
            parent: first.clone(),
            message: "x".into(),
            author: crate::provider_suite::alice(),
            changes: vec![arno::git::Change::Upsert { path: "x.md".into(), content: b"x".to_vec() }],
        })
        .await;
    match refused {
        Err(GitError::Unauthorized(m)) => assert!(m.contains("not installed"), "{m}"),
        other => panic!("expected unauthorized, got {other:?}"),
    }
    let gone = GitHubProvider::connect(fake.client(), "acme/design-system").await;
    assert!(matches!(gone, Err(GitError::NotFound(ref m)) if m.contains("not installed")), "{gone:?}");
    fake.assert_clean().await;
}

#[tokio::test]
async fn many_blobs_in_graphql_batches_and_the_rest_by_rest() {
    let Some(Setup { fake, repo, first, dir, tmp }) = setup().await else { return };
    // 250 specs and one binary file among 254 files: two GraphQL queries (250 a query), one
    // REST read for the binary.
    let work = tmp.path().join("work");
    for i in 0..250 {
        std::fs::write(work.join(format!("Design_system/C{i:03}.md")), format!("# C{i}\n")).unwrap();
    }
    crate::git::git(&work, &["add", "."]);
    crate::git::git(&work, &["commit", "-q", "-m", "Many"]);
    crate::git::git(&work, &["push", "-q", dir.to_str().unwrap(), "main"]);
    let head = repo.resolve("main").await.unwrap();
    assert_ne!(head, first);
    fake.clear_log().await;
    let files = repo.list_files(&head, "", None, 10_000).await.unwrap();
    let ids: Vec<String> = files.items.iter().map(|f| f.blob_id.clone()).collect();
    let blobs = repo.read_blobs(&ids).await.unwrap();
    assert_eq!(blobs.len(), files.items.len());
    assert_eq!(
        blobs[&files.items.iter().find(|f| f.path == "logo.bin").unwrap().blob_id],
        crate::provider_suite::BINARY
    );
    assert_eq!(blobs[&files.items.iter().find(|f| f.path == "Design_system/C007.md").unwrap().blob_id], b"# C7\n");
    let log = fake.log().await;
    let graphql = log.iter().filter(|e| e["path"] == "/graphql").count();
    let rest_blobs = log.iter().filter(|e| e["path"].as_str().unwrap().contains("/git/blobs/")).count();
    assert_eq!((graphql, rest_blobs), (2, 1), "{log:?}");
    assert!(log.len() <= 5, "one tree listing, two batches, one blob: {log:?}");
    fake.assert_clean().await;
}

#[tokio::test]
async fn the_fake_refuses_what_github_would_refuse() {
    let Some(Setup { fake, repo, .. }) = setup().await else { return };
    let client = fake.client();
    repo.resolve("main").await.unwrap();
    // A body GitHub's description refuses (a number where a ref name goes).
    let r = client
        .call(
            Auth::Installation(repo.installation()),
            reqwest::Method::POST,
            &["repos", "acme", "design-system", "git", "refs"],
            &[],
            Some(&json!({"ref": 5, "sha": "x"})),
        )
        .await
        .unwrap();
    assert_eq!(r.status, 422);
    // A JWT for the wrong App is refused.
    let wrong = arno::git::github::client::Client::new(
        "wrong",
        &format!("{}/api/v3", fake.origin),
        &format!("{}/api/graphql", fake.origin),
        "999",
        arno::git::connections::parse_private_key(crate::fake_github::KEY_PEM).unwrap(),
        None,
    )
    .unwrap();
    let r = wrong.call(Auth::App, reqwest::Method::GET, &["app", "installations"], &[], None).await.unwrap();
    assert_eq!(r.status, 401);
    let violations: Vec<String> =
        reqwest::get(format!("{}/_fake/violations", fake.origin)).await.unwrap().json().await.unwrap();
    assert_eq!(violations.len(), 2, "{violations:?}");
    assert!(violations.iter().all(|v| v.contains("POST /repos/{owner}/{repo}/git/refs body")), "{violations:?}");
}
