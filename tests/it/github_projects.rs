//! Projects on GitHub repositories, end to end against the fake GitHub: an Admin connects the
//! App, a Maker creates a project from a repository the App is installed on, Arno scans it in a
//! handful of requests, and saves reach the Maker's session branch on GitHub as commits authored
//! by them — with every request checked against GitHub's published descriptions.

use std::path::PathBuf;
use std::time::Duration;

use arno::auth::OrgRole;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::fake_github::{APP_ID, FakeGitHub, KEY_PEM};
use crate::git::git;
use crate::support::{TestApp, api};
use crate::writeback::BUTTON;

pub struct GitHubWorld {
    pub app: TestApp,
    pub fake: FakeGitHub,
    /// The fake's bare repository behind `acme/design-system`.
    pub bare: PathBuf,
    pub admin: String,
    pub maker: String,
    _tmp: tempfile::TempDir,
}

/// An instance, the fake GitHub with `acme/design-system` (Button on `main`, with or without an
/// `.arno/config.json`), a connection `corp` to it, an Admin and a Maker by token.
pub async fn github_world(with_config: bool) -> Option<GitHubWorld> {
    let fake = FakeGitHub::start()?;
    let bare = fake.repo("acme", "design-system", 7).await;
    let tmp = tempfile::tempdir().unwrap();
    let work = tmp.path().join("work");
    std::fs::create_dir_all(work.join("Design_system")).unwrap();
    std::fs::write(work.join("Design_system/Button.md"), BUTTON).unwrap();
    if with_config {
        std::fs::create_dir_all(work.join(".arno")).unwrap();
        std::fs::write(work.join(".arno/config.json"), arno::specs::RepoConfig::default().to_file()).unwrap();
    }
    git(tmp.path(), &["init", "-q", "-b", "main", work.to_str().unwrap()]);
    git(&work, &["add", "."]);
    git(&work, &["commit", "-q", "-m", "init"]);
    git(&work, &["push", "-q", bare.to_str().unwrap(), "main"]);
    let app = TestApp::start_with(&[("ARNO_WRITEBACK_DEBOUNCE_SECS", "1")]).await;
    let (_, admin) = app.user_with_token("root@example.com", OrgRole::Admin).await;
    let (_, maker) = app.user_with_token("m1@example.com", OrgRole::Member).await;
    let connection = json!({
        "name": "corp", "provider": "github", "api_url": format!("{}/api/v3", fake.origin),
        "app_id": APP_ID, "private_key": KEY_PEM, "webhook_secret": "It's a Secret to Everybody",
    });
    let r = api(Method::POST, &app.url("/api/v1/admin/git/connections"), Some(&admin), Some(connection)).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    Some(GitHubWorld { app, fake, bare, admin, maker, _tmp: tmp })
}

/// Wait until `handle`'s session branch has everything committed.
pub async fn committed(w: &GitHubWorld, handle: &str) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let r = api(Method::GET, &w.app.url("/api/v1/projects/ds/changes"), Some(&w.admin), None).await;
        let branch = r.json()["branches"].as_array().unwrap().iter().find(|b| b["user_handle"] == handle).cloned();
        if let Some(b) = branch.filter(|b| b["state"] == "committed" && b["pending_files"] == 0) {
            return b;
        }
        assert!(tokio::time::Instant::now() < deadline, "never written back to GitHub: {}", r.text);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

pub fn github_project(repository: &str) -> Value {
    json!({"name": "Design system", "slug": "ds",
           "repository": {"provider": "github", "connection": "corp", "repository": repository}})
}

#[tokio::test]
async fn a_maker_creates_a_project_from_a_github_repository_and_bad_requests_write_nothing() {
    let Some(w) = github_world(true).await else { return };
    let url = w.app.url("/api/v1/projects");
    let projects = || async {
        sqlx::query_as::<_, (i64,)>("SELECT COUNT(*) FROM projects").fetch_one(w.app.state.db.pool()).await.unwrap().0
    };
    // Refused, each naming its field, and nothing written.
    for (body, field) in [
        (
            json!({"name": "x", "repository": {"provider": "github", "repository": "acme/design-system"}}),
            "repository.connection",
        ),
        (json!({"name": "x", "repository": {"provider": "github", "connection": "corp"}}), "repository.repository"),
        (
            json!({"name": "x", "repository": {"provider": "github", "connection": "nope", "repository": "acme/design-system"}}),
            "repository.connection",
        ),
        (
            json!({"name": "x", "repository": {"provider": "github", "connection": "corp", "repository": "acme/other"}}),
            "repository.repository",
        ),
        (
            json!({"name": "x", "repository": {"provider": "github", "connection": "corp", "repository": "a/b/c"}}),
            "repository.repository",
        ),
        (
            json!({"name": "x", "repository": {"provider": "github", "connection": "corp", "repository": "../x"}}),
            "repository.repository",
        ),
        (
            json!({"name": "x", "repository": {"provider": "github", "connection": "corp", "repository": "acme/design-system", "path": "/tmp"}}),
            "repository.path",
        ),
        (
            json!({"name": "x", "repository": {"provider": "gitlab", "connection": "corp", "repository": "acme/design-system"}}),
            "repository.provider",
        ),
    ] {
        let r = api(Method::POST, &url, Some(&w.maker), Some(body.clone())).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{body}: {}", r.text);
        assert_eq!(r.json()["details"]["field"], field, "{body}: {}", r.text);
    }
    assert_eq!(projects().await, 0);

    let r = api(Method::POST, &url, Some(&w.maker), Some(github_project("acme/design-system"))).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let p = r.json();
    assert_eq!(p["state"], "active", "{p}");
    // The same repository twice is refused (webhooks find the project by repository).
    let again = json!({"name": "Again", "repository": {"provider": "github", "connection": "corp", "repository": "ACME/design-system"}});
    let r = api(Method::POST, &url, Some(&w.maker), Some(again)).await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.text);
    assert_eq!(projects().await, 1);

    let r = api(Method::GET, &w.app.url("/api/v1/projects/ds/components"), Some(&w.maker), None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let list = r.json();
    let names: Vec<&str> = list.as_array().unwrap().iter().map(|c| c["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["Button"]);
    let audit: (String,) =
        sqlx::query_as("SELECT intent FROM audit_events WHERE action = 'project.create' AND outcome = 'allowed'")
            .fetch_one(w.app.state.db.pool())
            .await
            .unwrap();
    let intent: Value = serde_json::from_str(&audit.0).unwrap();
    assert_eq!(
        (intent["repository"].as_str(), intent["full_name"].as_str()),
        (Some("github"), Some("acme/design-system"))
    );

    // The connection is in use now: deleting it is refused, naming the project.
    let r = api(Method::DELETE, &w.app.url("/api/v1/admin/git/connections/corp"), Some(&w.admin), None).await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.text);
    assert_eq!(r.json()["details"]["projects"], json!(["ds"]));
    w.fake.assert_clean().await;
}

#[tokio::test]
async fn saves_reach_the_makers_session_branch_on_github() {
    let Some(w) = github_world(true).await else { return };
    let r =
        api(Method::POST, &w.app.url("/api/v1/projects"), Some(&w.maker), Some(github_project("acme/design-system")))
            .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let url = w.app.url("/api/v1/projects/ds/specs/Design_system/Button.md");
    let current = api(Method::GET, &url, Some(&w.maker), None).await.json();
    let edited = BUTTON.replace("A button.", "A button, edited in Arno.");
    let body = json!({"content": edited, "base_version": current["version"], "session_id": "tab"});
    let r = api(Method::PUT, &url, Some(&w.maker), Some(body)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);

    committed(&w, "m1").await;
    // One commit on the session branch, authored by the Maker and committed by Arno.
    assert_eq!(git(&w.bare, &["rev-list", "--count", "main..arno/m1"]), "1");
    assert_eq!(git(&w.bare, &["log", "-1", "--format=%an <%ae>|%cn", "arno/m1"]), "Ada Lovelace <m1@example.com>|Arno");
    assert_eq!(git(&w.bare, &["show", "arno/m1:Design_system/Button.md"]) + "\n", edited);
    assert_eq!(git(&w.bare, &["show", "main:Design_system/Button.md"]) + "\n", BUTTON, "main untouched");
    git(&w.bare, &["fsck", "--strict", "--no-progress"]);
    w.fake.assert_clean().await;
}

#[tokio::test]
async fn a_repository_without_config_is_set_up_by_an_onboarding_pull_request() {
    let Some(w) = github_world(false).await else { return };
    let r =
        api(Method::POST, &w.app.url("/api/v1/projects"), Some(&w.maker), Some(github_project("acme/design-system")))
            .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    assert_eq!(r.json()["state"], "pending_setup");
    let (viewer_user, viewer) = w.app.user_with_token("v@example.com", OrgRole::Member).await;
    let url = w.app.url(&format!("/api/v1/projects/ds/members/{}", viewer_user.id));
    assert!(api(Method::PUT, &url, Some(&w.maker), Some(json!({"role": "viewer"}))).await.status.is_success());
    let (_, outsider) = w.app.user_with_token("o@example.com", OrgRole::Member).await;

    let onboarding = w.app.url("/api/v1/projects/ds/onboarding");
    let status = api(Method::GET, &onboarding, Some(&viewer), None).await;
    assert_eq!(status.status, StatusCode::OK, "{}", status.text);
    let s = status.json();
    assert_eq!((s["components_md"].as_str(), s["pull_request"].is_null()), (Some("Design_system/"), true), "{s}");

    // Refused: a Viewer, an outsider, bad paths, a malformed body; nothing is opened.
    let r = api(Method::POST, &onboarding, Some(&viewer), None).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.text);
    let r = api(Method::POST, &onboarding, Some(&outsider), None).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.text);
    for (body, field) in
        [(json!({"components_md": "../up/"}), "components_md"), (json!({"components_code": "a//b"}), "components_code")]
    {
        let r = api(Method::POST, &onboarding, Some(&w.maker), Some(body)).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text);
        assert_eq!(r.json()["details"]["field"], field);
    }
    let r = api(Method::POST, &onboarding, Some(&w.maker), Some(json!({"paths": 1}))).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text);
    assert!(git(&w.bare, &["branch", "--list", "arno/setup"]).is_empty(), "nothing opened");
    // The default branch is never written for a GitHub project.
    let r = api(Method::POST, &w.app.url("/api/v1/projects/ds/setup"), Some(&w.maker), None).await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.text);

    let r = api(Method::POST, &onboarding, Some(&w.maker), None).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let pull = r.json();
    assert_eq!(
        (pull["branch"].as_str(), pull["state"].as_str(), pull["number"].as_i64()),
        (Some("arno/setup"), Some("open"), Some(1))
    );
    assert!(pull["url"].as_str().unwrap().ends_with("/acme/design-system/pull/1"), "{pull}");
    let config = git(&w.bare, &["show", "arno/setup:.arno/config.json"]);
    assert!(config.contains("\"componentsMd\": \"Design_system/\""), "{config}");
    let workflow = git(&w.bare, &["show", "arno/setup:.github/workflows/arno-check.yml"]);
    assert!(workflow.contains("lint ."), "{workflow}");
    assert!(
        workflow.contains(&format!("{}/downloads/arno", w.app.state.config.public_url.as_str().trim_end_matches('/')))
    );
    assert_eq!(git(&w.bare, &["log", "-1", "--format=%an|%cn", "arno/setup"]), "Ada Lovelace|Arno");
    assert!(
        git(&w.bare, &["ls-tree", "-r", "--name-only", "main"]).lines().all(|l| !l.starts_with(".arno")),
        "main untouched"
    );
    let pulls = w.fake.control(Method::GET, "pulls", json!(null)).await;
    let opened = &pulls["acme/design-system"][0];
    assert_eq!(
        (opened["title"].as_str(), opened["base"].as_str(), opened["head"].as_str()),
        (Some("Set up Arno"), Some("main"), Some("arno/setup"))
    );
    assert!(opened["body"].as_str().unwrap().contains("/projects/ds"), "links back to Arno");
    let again = api(Method::POST, &onboarding, Some(&w.maker), None).await;
    assert_eq!(again.status, StatusCode::CONFLICT, "{}", again.text);
    assert!(again.text.contains("/pull/1"), "{}", again.text);
    let audit: (i64,) =
        sqlx::query_as("SELECT COUNT(*) FROM audit_events WHERE action = 'project.onboarding' AND outcome = 'allowed'")
            .fetch_one(w.app.state.db.pool())
            .await
            .unwrap();
    assert_eq!(audit.0, 1);

    // Merged on GitHub; the next scan finds the config and the project is active.
    w.fake.control(Method::POST, "repos/acme/design-system/pulls/1/merge", json!({})).await;
    let r = api(Method::POST, &w.app.url("/api/v1/projects/ds/scan"), Some(&w.maker), None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.json()["state"], "active");
    w.fake.assert_clean().await;
}

#[tokio::test]
async fn an_onboarding_pull_request_left_unmerged_archives_the_project() {
    let Some(w) = github_world(false).await else { return };
    let r =
        api(Method::POST, &w.app.url("/api/v1/projects"), Some(&w.maker), Some(github_project("acme/design-system")))
            .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let r = api(Method::POST, &w.app.url("/api/v1/projects/ds/onboarding"), Some(&w.maker), None).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let day = 24 * 3600 * 1000;
    let after = w.app.state.config.git_onboarding_archive_after;
    assert_eq!(after, Duration::from_secs(30 * 86_400), "30 days by default");
    let now = arno::db::now_ms();
    assert_eq!(arno::projects::onboarding::archive_stale(&w.app.state.db, now + 29 * day, after).await.unwrap(), 0);
    assert_eq!(arno::projects::onboarding::archive_stale(&w.app.state.db, now + 31 * day, after).await.unwrap(), 1);
    let p = api(Method::GET, &w.app.url("/api/v1/projects/ds"), Some(&w.maker), None).await.json();
    assert_eq!(p["state"], "archived");
    let reason: (String,) = sqlx::query_as("SELECT intent FROM audit_events WHERE action = 'project.archive'")
        .fetch_one(w.app.state.db.pool())
        .await
        .unwrap();
    assert!(reason.0.contains("unmerged for 30 days"), "{}", reason.0);
}

#[tokio::test]
async fn ci_runners_download_the_arno_binary_from_the_instance() {
    let app = TestApp::start().await;
    let r = reqwest::get(app.url("/downloads/arno")).await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["content-type"], "application/octet-stream");
    let length: u64 = r.headers()["content-length"].to_str().unwrap().parse().unwrap();
    let bytes = r.bytes().await.unwrap();
    assert_eq!(bytes.len() as u64, length);
    assert_eq!(&bytes[..4], b"\x7fELF", "an executable");
    assert_eq!(length, std::fs::metadata(std::env::current_exe().unwrap()).unwrap().len());
}

#[tokio::test]
async fn the_first_push_of_a_session_branch_opens_a_pull_request_and_later_ones_update_it() {
    let Some(w) = github_world(true).await else { return };
    let r =
        api(Method::POST, &w.app.url("/api/v1/projects"), Some(&w.maker), Some(github_project("acme/design-system")))
            .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let url = w.app.url("/api/v1/projects/ds/specs/Design_system/Button.md");
    let save = |text: String| {
        let (url, maker) = (url.clone(), w.maker.clone());
        async move {
            let current = api(Method::GET, &url, Some(&maker), None).await.json();
            let body = json!({"content": text, "base_version": current["version"], "session_id": "tab"});
            let r = api(Method::PUT, &url, Some(&maker), Some(body)).await;
            assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        }
    };
    save(BUTTON.replace("A button.", "A button, once.")).await;
    committed(&w, "m1").await;
    let pull = wait_for_pull(&w, |p| p["head"] == "arno/m1").await;
    assert_eq!((pull["base"].as_str(), pull["state"].as_str()), (Some("main"), Some("open")));
    assert_eq!(pull["title"], "Arno: Button.md by Ada Lovelace");
    let body = pull["body"].as_str().unwrap();
    assert!(body.contains("- `Design_system/Button.md` (changed)"), "{body}");
    assert!(body.contains("/projects/ds/changes/m1"), "{body}");

    // A second push: the same pull request, its description brought up to date.
    let r = api(
        Method::POST,
        &w.app.url("/api/v1/projects/ds/components"),
        Some(&w.maker),
        Some(json!({"name": "Card", "description": "A card."})),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    tokio::time::sleep(Duration::from_millis(300)).await;
    committed(&w, "m1").await;
    let pull = wait_for_pull(&w, |p| p["body"].as_str().unwrap_or("").contains("Card.md")).await;
    assert_eq!(pull["number"], 1, "updated, not a second one");
    assert_eq!(pull["title"], "Arno: 2 specs by Ada Lovelace");
    let pulls = w.fake.control(Method::GET, "pulls", json!(null)).await;
    assert_eq!(pulls["acme/design-system"].as_array().unwrap().len(), 1);

    // The change request shows it, and merging happens on GitHub, not in Arno.
    let r = api(Method::GET, &w.app.url("/api/v1/projects/ds/changes/m1"), Some(&w.maker), None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let change = r.json();
    assert_eq!(
        (change["pull_request"]["number"].as_i64(), change["pull_request"]["state"].as_str()),
        (Some(1), Some("open")),
        "{change}"
    );
    let r = api(
        Method::POST,
        &w.app.url("/api/v1/projects/ds/changes/m1/merge"),
        Some(&w.maker),
        Some(json!({"mode": "merge_commit"})),
    )
    .await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.text);
    let audit: (i64, i64) = sqlx::query_as(
        "SELECT SUM(CASE WHEN action = 'pull_request.open' THEN 1 ELSE 0 END), \
         SUM(CASE WHEN action = 'pull_request.update' THEN 1 ELSE 0 END) FROM audit_events",
    )
    .fetch_one(w.app.state.db.pool())
    .await
    .unwrap();
    assert_eq!(audit, (1, 1));
    w.fake.assert_clean().await;
}

pub async fn wait_for_pull(w: &GitHubWorld, wanted: impl Fn(&Value) -> bool) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let pulls = w.fake.control(Method::GET, "pulls", json!(null)).await;
        if let Some(p) = pulls["acme/design-system"].as_array().and_then(|l| l.iter().find(|p| wanted(p))) {
            return p.clone();
        }
        assert!(tokio::time::Instant::now() < deadline, "no such pull request: {pulls}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
