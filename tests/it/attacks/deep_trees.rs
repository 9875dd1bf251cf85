//! Hole 7: deep git trees. Git puts no limit on how deep a tree nests, and a chain of 30,000
//! folders costs a push a few hundred kilobytes; walking it recursively overflowed the stack and
//! aborted the whole server (connecting the repository, a push the branch watcher noticed, a
//! change page). Arno now reads trees with an explicit stack and leaves out what lies beyond
//! `arno::git::MAX_TREE_DEPTH` folders or `arno::git::MAX_PATH_BYTES` bytes, and refuses to save
//! a spec there.

use std::path::{Path, PathBuf};
use std::time::Duration;

use arno::auth::OrgRole;
use gix::objs::tree::{Entry, EntryKind};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::git::git;
use crate::support::{Page, TestApp, api};

const BUTTON: &str = "---\nid: 0b5e1c1e-6c1a-4f44-9d7e-0c1f0d6d1a01\nname: Button\n---\n# Button\n";
const DEEP: &str = "---\nid: 2d000000-0000-4000-8000-000000000001\nname: Deep\n---\n# Deep\n";
/// What the brief measured: enough to overflow any thread's stack in a recursive walk.
const FOLDERS: usize = 30_000;

struct World {
    app: TestApp,
    _roots: tempfile::TempDir,
    root: PathBuf,
    admin: String,
}

async fn world(extra: &[(&str, &str)]) -> World {
    let roots = tempfile::tempdir().unwrap();
    let root = roots.path().canonicalize().unwrap();
    let mut settings = vec![("ARNO_GIT_LOCAL_ROOTS", root.to_str().unwrap())];
    settings.extend_from_slice(extra);
    let app = TestApp::start_with(&settings).await;
    let (_, admin) = app.user_with_token("root@example.com", OrgRole::Admin).await;
    World { app, _roots: roots, root, admin }
}

/// A bare repository `name.git` with a config and `Design_system/Button.md` on `main`.
fn design_repo(root: &Path, name: &str) -> PathBuf {
    let work = root.join(format!("{name}-work"));
    std::fs::create_dir_all(work.join("Design_system")).unwrap();
    std::fs::create_dir_all(work.join(".arno")).unwrap();
    std::fs::write(work.join(".arno/config.json"), r#"{"version": 1}"#).unwrap();
    std::fs::write(work.join("Design_system/Button.md"), BUTTON).unwrap();
    git(&work, &["init", "-q", "-b", "main"]);
    git(&work, &["add", "."]);
    git(&work, &["commit", "-q", "-m", "init"]);
    let bare = root.join(format!("{name}.git"));
    git(root, &["clone", "-q", "--bare", work.to_str().unwrap(), bare.to_str().unwrap()]);
    bare
}

/// Commit `Design_system/d/d/…/Deep.md` (`folders` folders in all) on top of `from`, to
/// `refs/heads/{branch}`, the way a push would land it: objects written straight into the
/// repository (git's own porcelain refuses trees this deep), then the branch moved. The chain
/// is one small tree object per level, so no folder is ever created on disk.
fn commit_deep(repo: &Path, from: &str, branch: &str, folders: usize) -> String {
    let repo = gix::open_opts(repo, gix::open::Options::isolated()).unwrap();
    let blob = repo.write_blob(DEEP.as_bytes()).unwrap().detach();
    let tree = |filename: &str, mode: EntryKind, oid| gix::objs::Tree {
        entries: vec![Entry { mode: mode.into(), filename: filename.into(), oid }],
    };
    // The innermost folder holds the spec; `Design_system` is the outermost of `folders`.
    let mut chain = repo.write_object(tree("Deep.md", EntryKind::Blob, blob)).unwrap().detach();
    for _ in 0..folders - 2 {
        chain = repo.write_object(tree("d", EntryKind::Tree, chain)).unwrap().detach();
    }
    let parent = repo.rev_parse_single(from).unwrap().detach();
    let base = repo.find_commit(parent).unwrap().tree_id().unwrap().detach();
    let mut editor = repo.edit_tree(base).unwrap();
    editor.upsert("Design_system/d", EntryKind::Tree, chain).unwrap();
    let root = editor.write().unwrap().detach();
    let sig = gix::actor::Signature {
        name: "Mallory".into(),
        email: "mallory@example.com".into(),
        time: gix::date::Time::now_utc(),
    };
    let (mut b1, mut b2) = (gix::date::parse::TimeBuf::default(), gix::date::parse::TimeBuf::default());
    let reference = format!("refs/heads/{branch}");
    repo.commit_as(sig.to_ref(&mut b1), sig.to_ref(&mut b2), reference.as_str(), "a very deep spec", root, [parent])
        .unwrap()
        .detach()
        .to_string()
}

async fn connect(w: &World, repo: &Path) -> Page {
    api(
        Method::POST,
        &w.app.url("/api/v1/projects"),
        Some(&w.admin),
        Some(json!({"name": "DS", "repository": {"provider": "local", "path": repo}})),
    )
    .await
}

/// The server still answers: the process did not abort.
async fn assert_alive(w: &World) {
    let health = api(Method::GET, &w.app.url("/health"), None, None).await;
    assert_eq!(health.status, StatusCode::OK, "{}", health.text);
    let project = api(Method::GET, &w.app.url("/api/v1/projects/ds"), Some(&w.admin), None).await;
    assert_eq!(project.status, StatusCode::OK, "{}", project.text);
}

async fn component_files(w: &World) -> Vec<String> {
    let r = api(Method::GET, &w.app.url("/api/v1/projects/ds/components"), Some(&w.admin), None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    r.json().as_array().unwrap().iter().map(|c| c["file_path"].as_str().unwrap().to_owned()).collect()
}

async fn activity(w: &World) -> Vec<Value> {
    let r = api(Method::GET, &w.app.url("/api/v1/projects/ds/changes"), Some(&w.admin), None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    r.json()["activity"].as_array().unwrap().clone()
}

/// The project says, in its activity, that the scan of `commit` left paths out and why.
async fn assert_skip_reported(w: &World, commit: &str) {
    let list = activity(w).await;
    let entry = list
        .iter()
        .find(|a| a["kind"] == "scan.skipped" && a["commit_id"] == commit)
        .unwrap_or_else(|| panic!("no scan.skipped activity for {commit}: {list:?}"));
    let summary = entry["summary"].as_str().unwrap();
    assert!(summary.contains("64 folders") && summary.contains("4096 bytes"), "{summary}");
}

#[tokio::test]
async fn a_repository_with_a_spec_30000_folders_deep_connects_without_that_spec() {
    let w = world(&[]).await;
    let repo = design_repo(&w.root, "ds");
    let head = commit_deep(&repo, "main", "main", FOLDERS);

    // Like GitHub truncating a tree listing, the repository stays usable: only what lies beyond
    // the limits is left out.
    let r = connect(&w, &repo).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let project = r.json();
    assert_eq!(project["state"], "active", "{project}");
    assert_eq!(project["repository"]["scanned_commit"], head.as_str(), "{project}");
    assert_eq!(project["scan_error"], Value::Null, "{project}");
    assert_alive(&w).await;
    assert_eq!(component_files(&w).await, ["Design_system/Button.md"]);
    assert_skip_reported(&w, &head).await;

    // Scan now says the same, and the server is still there after it.
    let scan = api(Method::POST, &w.app.url("/api/v1/projects/ds/scan"), Some(&w.admin), None).await;
    assert_eq!(scan.status, StatusCode::OK, "{}", scan.text);
    assert_eq!(scan.json()["skipped_paths"], 1, "the chain is left out where it crosses the limit: {}", scan.text);
    assert_alive(&w).await;
}

#[tokio::test]
async fn a_push_of_a_deep_tree_to_the_default_branch_does_not_crash_the_branch_watcher() {
    let w = world(&[]).await;
    let repo = design_repo(&w.root, "ds");
    let r = connect(&w, &repo).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);

    let head = commit_deep(&repo, "main", "main", FOLDERS);
    // What the worker does every 30 seconds; twice, as the crash loop would have.
    for _ in 0..2 {
        arno::projects::changes::watch_default_branches(&w.app.state).await;
        assert_alive(&w).await;
    }
    let p = api(Method::GET, &w.app.url("/api/v1/projects/ds"), Some(&w.admin), None).await.json();
    assert_eq!(p["repository"]["scanned_commit"], head.as_str(), "{p}");
    assert_eq!(p["scan_error"], Value::Null, "{p}");
    assert_eq!(component_files(&w).await, ["Design_system/Button.md"]);
    assert_skip_reported(&w, &head).await;
    assert!(activity(&w).await.iter().any(|a| a["kind"] == "default.moved"));
}

#[tokio::test]
async fn a_session_branch_with_a_deep_tree_shows_its_change_request_and_is_not_merged_by_arno() {
    // Write-back stays away: the test moves the session branch itself.
    let w = world(&[("ARNO_WRITEBACK_DEBOUNCE_SECS", "3600")]).await;
    let repo = design_repo(&w.root, "ds");
    let r = connect(&w, &repo).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let (maker, token) = w.app.user_with_token("m1@example.com", OrgRole::Member).await;
    let url = w.app.url(&format!("/api/v1/projects/ds/members/{}", maker.id));
    let r = api(Method::PUT, &url, Some(&w.admin), Some(json!({"role": "maker"}))).await;
    assert!(r.status.is_success(), "{}", r.text);
    // A save opens the Maker's session branch in Arno …
    let spec = w.app.url("/api/v1/projects/ds/specs/Design_system/Button.md");
    let body =
        json!({"content": BUTTON.replace("# Button", "# Button\n\nSaved."), "base_version": 1, "session_id": "s"});
    let r = api(Method::PUT, &spec, Some(&token), Some(body)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    // … and someone pushes a deep tree to it.
    let branch = format!("arno/{}", maker.handle);
    let head = commit_deep(&repo, "main", &branch, FOLDERS);

    let change = w.app.url(&format!("/api/v1/projects/ds/changes/{}", maker.handle));
    let r = api(Method::GET, &change, Some(&w.admin), None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let c = r.json();
    assert_eq!(c["head"], head.as_str(), "{c}");
    assert_eq!(c["files"], json!([]), "nothing within the limits changed: {c}");
    assert_eq!(c["skipped_paths"], 1, "{c}");
    let mut browser = w.app.admin_browser().await;
    let page = browser.get(&format!("/projects/ds/changes/{}", maker.handle)).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.text);
    assert!(page.select_text("#skipped-paths").is_some_and(|t| t.contains("64 folders")), "{}", page.text);
    assert_alive(&w).await;

    // A merge commit would have to merge the deep tree: refused, with the reason, nothing moved.
    let merge = w.app.url(&format!("/api/v1/projects/ds/changes/{}/merge", maker.handle));
    let r = api(Method::POST, &merge, Some(&w.admin), Some(json!({"mode": "merge_commit"}))).await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.text);
    let e = r.json();
    assert_eq!(e["code"], "conflict");
    assert!(e["message"].as_str().unwrap().contains("64 folders"), "{e}");
    assert_ne!(git(&repo, &["rev-parse", "main"]), head);
    // A fast-forward only moves the branch; the re-scan that follows leaves the chain out.
    let r = api(Method::POST, &merge, Some(&w.admin), Some(json!({"mode": "fast_forward"}))).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(git(&repo, &["rev-parse", "main"]), head);
    assert_alive(&w).await;
    assert_eq!(component_files(&w).await, ["Design_system/Button.md"]);
}

#[tokio::test]
async fn saving_a_spec_at_a_too_deep_or_too_long_path_is_a_validation_error() {
    let w = world(&[("ARNO_WRITEBACK_DEBOUNCE_SECS", "3600")]).await;
    let repo = design_repo(&w.root, "ds");
    let r = connect(&w, &repo).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let save = |path: String| {
        let url = w.app.url(&format!("/api/v1/projects/ds/specs/{path}"));
        let admin = w.admin.clone();
        async move {
            let body = json!({"content": DEEP, "base_version": 0, "session_id": "s"});
            tokio::time::timeout(Duration::from_secs(60), api(Method::PUT, &url, Some(&admin), Some(body)))
                .await
                .expect("the save answers")
        }
    };
    let deep = |folders: usize| format!("Design_system/{}Deep.md", "d/".repeat(folders - 1));

    for (path, why) in [
        (deep(FOLDERS), "64 folders"),
        (deep(65), "64 folders"),
        (format!("Design_system/{}Long.md", format!("{}/", "x".repeat(200)).repeat(21)), "4096 bytes"),
    ] {
        let r = save(path.clone()).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{} bytes: {}", path.len(), r.text);
        let e = r.json();
        assert_eq!(e["code"], "validation", "{e}");
        assert!(e["message"].as_str().unwrap().contains(why), "{e}");
        assert_alive(&w).await;
    }
    // The limits themselves are allowed: 64 folders.
    let r = save(deep(64)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let n: (i64,) = sqlx::query_as("SELECT COUNT(*) FROM spec_versions WHERE path LIKE '%Deep.md'")
        .fetch_one(w.app.state.db.pool())
        .await
        .unwrap();
    assert_eq!(n.0, 1, "only the save within the limits is stored");
}
