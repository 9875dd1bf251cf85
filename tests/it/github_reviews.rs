//! What reviewers will ask of a Maker's change, shown in Arno before anyone is asked: the checks
//! on the session branch's pull request (check runs and commit statuses, brought by webhooks and
//! by reconciliation, and what the App may not read said so), and the CODEOWNERS of each changed
//! spec on the Changes page and in the editor.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::git::git;
use crate::github_projects::{GitHubWorld, committed, github_project, github_world, wait_for_pull};
use crate::support::{Browser, api};
use crate::webhooks::{drained, example, examples, hook};
use crate::writeback::BUTTON;

const CODEOWNERS: &str = "\
# Design system owners
*                      @acme/everyone
/Design_system/        @acme/design  # the components
/Design_system/Card.md @ada
";

/// Add `.github/CODEOWNERS` to `main` on the fake's repository.
fn push_codeowners(w: &GitHubWorld) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("clone");
    git(tmp.path(), &["clone", "-q", w.bare.to_str().unwrap(), dir.to_str().unwrap()]);
    std::fs::create_dir_all(dir.join(".github")).unwrap();
    std::fs::write(dir.join(".github/CODEOWNERS"), CODEOWNERS).unwrap();
    git(&dir, &["add", "."]);
    git(&dir, &["-c", "user.name=Ivy", "-c", "user.email=ivy@example.com", "commit", "-q", "-m", "owners"]);
    git(&dir, &["push", "-q", "origin", "HEAD:main"]);
}

async fn change(w: &GitHubWorld) -> Value {
    let r = api(Method::GET, &w.app.url("/api/v1/projects/ds/changes/m1"), Some(&w.maker), None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    r.json()
}

/// A check suite finished on `sha`, as GitHub delivers it (its own example, this repository's).
async fn check_suite_completed(w: &GitHubWorld, sha: &str) {
    let mut payload = example(&examples(), "check_suite", Some("completed"));
    payload["check_suite"]["head_sha"] = json!(sha);
    payload["repository"]["full_name"] = json!("acme/design-system");
    payload["repository"]["name"] = json!("design-system");
    payload["repository"]["owner"]["login"] = json!("acme");
    payload["installation"] = json!({"id": 7, "node_id": "I_7"});
    let sent = w.fake.control(Method::POST, "deliver", json!({"event": "check_suite", "payload": payload})).await;
    assert_eq!(sent["status"], 202, "{sent}");
    drained(w).await;
}

#[tokio::test]
async fn checks_and_code_owners_of_a_session_pull_request_show_in_arno() {
    let Some(w) = github_world(true).await else { return };
    push_codeowners(&w);
    let r =
        api(Method::POST, &w.app.url("/api/v1/projects"), Some(&w.maker), Some(github_project("acme/design-system")))
            .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    hook(&w).await;
    let url = w.app.url("/api/v1/projects/ds/specs/Design_system/Button.md");
    let current = api(Method::GET, &url, Some(&w.maker), None).await.json();
    let body = json!({"content": BUTTON.replace("A button.", "A button, owned."), "base_version": current["version"],
                      "session_id": "tab"});
    let r = api(Method::PUT, &url, Some(&w.maker), Some(body)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    committed(&w, "m1").await;
    let pull = wait_for_pull(&w, |p| p["head"] == "arno/m1").await;
    let sha = pull["head_sha"].as_str().unwrap().to_owned();

    // The owners come from .github/CODEOWNERS on main: the last matching line wins.
    let c = change(&w).await;
    assert_eq!(c["codeowners_file"], ".github/CODEOWNERS", "{c}");
    let button = c["files"].as_array().unwrap().iter().find(|f| f["path"] == "Design_system/Button.md").unwrap();
    assert_eq!(button["owners"], json!(["@acme/design"]), "{c}");
    assert!(c["pull_request"]["checks"].is_null(), "nothing read yet: {c}");

    // CI starts: one check run still running, an older CI's status failed. GitHub reports it.
    let checks = |body: Value| w.fake.control(Method::POST, "repos/acme/design-system/checks", body);
    let statuses = |body: Value| w.fake.control(Method::POST, "repos/acme/design-system/statuses", body);
    checks(json!({"sha": sha, "name": "build", "status": "in_progress"})).await;
    checks(json!({"sha": sha, "name": "lint", "status": "completed", "conclusion": "success"})).await;
    statuses(json!({"sha": sha, "context": "ci/legacy", "state": "failure"})).await;
    check_suite_completed(&w, &sha).await;
    let c = change(&w).await;
    let got = &c["pull_request"]["checks"];
    assert_eq!(
        (got["state"].as_str(), got["total"].as_u64(), got["failed"].as_u64(), got["pending"].as_u64()),
        (Some("failure"), Some(3), Some(1), Some(1)),
        "{c}"
    );
    assert_eq!(got["failing"], json!(["ci/legacy"]));
    assert_eq!(got["sha"], sha.as_str());

    // Everything passes; the status is re-reported (latest per context counts).
    checks(json!({"sha": sha, "name": "build", "status": "completed", "conclusion": "success"})).await;
    statuses(json!({"sha": sha, "context": "ci/legacy", "state": "success"})).await;
    check_suite_completed(&w, &sha).await;
    let c = change(&w).await;
    assert_eq!(c["pull_request"]["checks"]["state"], "success", "{c}");

    // The page, as the Maker sees it: owners beside the file, the checks by the pull request,
    // and both in the editor.
    let mut b = Browser::new(&w.app.url(""));
    let r = b.login("m1@example.com", "a long enough password").await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.text);
    let page = b.get("/projects/ds/changes/m1").await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.select_text("#files td.owners").is_some_and(|t| t.contains("@acme/design")), "{}", page.text);
    assert!(page.select_text("#pull-checks").is_some_and(|t| t.contains("all 3 check(s) passed")), "{}", page.text);
    let page = b.get("/projects/ds/edit/Design_system/Button.md").await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.text);
    assert!(page.select_text("#editor-owners").is_some_and(|t| t.contains("@acme/design")), "{}", page.text);
    assert!(page.select_text("#editor-pull").is_some_and(|t| t.contains("pull request #1")), "{}", page.text);
    assert!(page.select_text("#pull-checks").is_some_and(|t| t.contains("passing")), "{}", page.text);

    // An App without the Checks permission: what it may not read is said, the rest still counts.
    w.fake
        .control(
            Method::POST,
            "faults",
            json!({"method": "GET", "path": "/check-runs$", "status": 403, "times": 5,
                   "body": {"message": "Resource not accessible by integration", "documentation_url": "https://docs.github.com/rest"}}),
        )
        .await;
    statuses(json!({"sha": sha, "context": "ci/legacy", "state": "error"})).await;
    check_suite_completed(&w, &sha).await;
    let c = change(&w).await;
    let got = &c["pull_request"]["checks"];
    assert_eq!((got["state"].as_str(), got["total"].as_u64()), (Some("failure"), Some(1)), "{c}");
    assert!(got["unreadable"][0].as_str().is_some_and(|u| u.contains("Checks: read")), "{c}");
    w.fake.assert_clean().await;
}
