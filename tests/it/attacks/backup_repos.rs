//! Hole 9: a restore lost every repository Arno manages. `arno backup` copied the database, the
//! objects and the key, but not `{data}/repos/*.git` — the only copy of a local project's specs
//! and of every unmerged `arno/{handle}` branch — and projects named their repository by absolute
//! path, so a restored instance kept reading the old machine's folder (and on a new machine had
//! none). These tests lose the original data directory entirely and expect everything back.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use arno::auth::OrgRole;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::cli::arno_async;
use crate::git::git;
use crate::support::{TestApp, api, fresh_database_url, is_postgres};

const BUTTON: &str = "---\nid: 0b5e1c1e-6c1a-4f44-9d7e-0c1f0d6d1a01\nname: Button\n---\n# Button\n\nA button.\n";

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

/// A new, empty instance layout in `dir` (its own data directory, database and object store).
async fn empty_target(dir: &Path) -> BTreeMap<String, String> {
    std::fs::create_dir_all(dir).unwrap();
    let mut env = BTreeMap::new();
    env.insert("ARNO_CONFIG".to_owned(), String::new());
    env.insert("ARNO_DATA_DIR".to_owned(), dir.join("data").display().to_string());
    env.insert("ARNO_DATABASE_URL".to_owned(), fresh_database_url(dir).await);
    env.insert("ARNO_WRITEBACK_DEBOUNCE_SECS".to_owned(), "1".to_owned());
    env
}

async fn save(app: &TestApp, token: &str, content: &str, base_version: i64) -> Value {
    let url = app.url("/api/v1/projects/mobile/specs/Design_system/Button.md");
    let r = api(
        Method::PUT,
        &url,
        Some(token),
        Some(json!({"content": content, "base_version": base_version, "session_id": "tab"})),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    r.json()
}

/// The project's only session branch, once everything saved on it is committed.
async fn committed_branch(app: &TestApp, token: &str) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let r = api(Method::GET, &app.url("/api/v1/projects/mobile/changes"), Some(token), None).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        let branches = r.json()["branches"].clone();
        if let Some(b) = branches.as_array().and_then(|a| a.first())
            && b["state"] == "committed"
            && b["pending_files"] == 0
        {
            return b.clone();
        }
        assert!(tokio::time::Instant::now() < deadline, "never committed: {branches}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A managed project (`mobile`, created by a Maker, its repository under `{data}/repos`) with a
/// saved spec committed to the Maker's unmerged session branch.
struct World {
    app: TestApp,
    admin: String,
    maker: String,
    project_id: String,
}

async fn world(extra: &[(&str, &str)]) -> World {
    let mut settings = vec![("ARNO_WRITEBACK_DEBOUNCE_SECS", "1")];
    settings.extend_from_slice(extra);
    let app = TestApp::start_with(&settings).await;
    let (_, admin) = app.user_with_token("root@example.com", OrgRole::Admin).await;
    let (_, maker) = app.user_with_token("maker@example.com", OrgRole::Member).await;
    let r = api(Method::POST, &app.url("/api/v1/projects"), Some(&maker), Some(json!({"name": "Mobile"}))).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let project_id = r.json()["id"].as_str().unwrap().to_owned();
    World { app, admin, maker, project_id }
}

fn manifest(backup: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(backup.join("manifest.json")).unwrap()).unwrap()
}

/// Rewrite a backup's manifest (and SHA256SUMS to match): a backup altered consistently, so that
/// only what restore checks beyond the checksums can find the fault.
fn rewrite_manifest(backup: &Path, edit: impl FnOnce(&mut Value)) {
    let mut m = manifest(backup);
    edit(&mut m);
    let json = serde_json::to_vec_pretty(&m).unwrap();
    std::fs::write(backup.join("manifest.json"), &json).unwrap();
    let sha = |data: &[u8]| {
        use sha2::Digest as _;
        hex::encode(sha2::Sha256::digest(data))
    };
    let mut sums = String::new();
    for (path, entry) in m["files"].as_object().unwrap() {
        sums.push_str(&format!("{}  {path}\n", entry["sha256"].as_str().unwrap()));
    }
    sums.push_str(&format!("{}  manifest.json\n", sha(&json)));
    std::fs::write(backup.join("SHA256SUMS"), sums).unwrap();
}

fn copy_dir(from: &Path, to: &Path) {
    let out = std::process::Command::new("cp").arg("-a").arg(from).arg(to).output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
}

/// A restore that failed left nothing behind: no schema, no objects, no repository, no key.
async fn nothing_written(env: &BTreeMap<String, String>) {
    let config = arno::config::Config::load(env).unwrap().config;
    let db = arno::db::Db::connect(&config.database_url, 1).await.unwrap();
    assert!(db.applied_versions().await.unwrap().is_empty(), "the database was written to");
    db.close().await;
    let store = arno::storage::Storage::from_config(&config).await.unwrap();
    assert!(store.list("").await.unwrap().is_empty(), "objects were written");
    let repos = config.data_dir.join("repos");
    let left: Vec<PathBuf> =
        std::fs::read_dir(&repos).map(|d| d.map(|e| e.unwrap().path()).collect()).unwrap_or_default();
    assert!(left.is_empty(), "repositories left behind: {left:?}");
    assert!(!config.data_dir.join("secret.key").exists(), "the key written by the failed restore stayed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restore_on_a_new_machine_brings_back_managed_repositories_and_session_branches() {
    let scratch = tempfile::tempdir().unwrap();
    // An external repository, connected by an administrator: not Arno's to copy.
    let roots = scratch.path().join("roots");
    let work = roots.join("work");
    std::fs::create_dir_all(work.join("Design_system")).unwrap();
    std::fs::write(work.join("Design_system/Button.md"), BUTTON).unwrap();
    git(&work, &["init", "-q", "-b", "main"]);
    git(&work, &["add", "."]);
    git(&work, &["commit", "-q", "-m", "init"]);
    let external = roots.join("external.git");
    git(&roots, &["clone", "-q", "--bare", work.to_str().unwrap(), external.to_str().unwrap()]);

    let mut w = world(&[("ARNO_GIT_LOCAL_ROOTS", roots.to_str().unwrap())]).await;
    let old_data = w.app.state.config.data_dir.clone();
    let r = api(
        Method::POST,
        &w.app.url("/api/v1/projects"),
        Some(&w.admin),
        Some(json!({"name": "External", "repository": {"provider": "local", "path": external}})),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);

    // A spec that exists only on the Maker's unmerged session branch (and in the database).
    let saved = BUTTON.replace("A button.", "A button, saved before the machine was lost.");
    save(&w.app, &w.maker, &saved, 0).await;
    let branch = committed_branch(&w.app, &w.maker).await;
    let handle = branch["user_handle"].as_str().unwrap().to_owned();
    let head = branch["last_commit"].as_str().unwrap().to_owned();
    let old_repo = old_data.join("repos").join(format!("{}.git", w.project_id));
    assert_eq!(git(&old_repo, &["rev-parse", &format!("arno/{handle}")]), head);

    // The backup says what it holds: the managed repository, and which one it does not hold.
    let dest = scratch.path().join("backup");
    let out = arno_async(&w.app.env, &["backup", dest.to_str().unwrap()]).await;
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("1 repository"), "{}", text(&out));
    assert!(
        text(&out).contains("not in the backup") && text(&out).contains(external.to_str().unwrap()),
        "the external repository is named as not backed up: {}",
        text(&out)
    );
    let m = manifest(&dest);
    let repo = &m["repositories"][&w.project_id];
    assert_eq!(repo["refs"][format!("refs/heads/arno/{handle}")], head.as_str(), "{m}");
    assert!(repo["refs"]["refs/heads/main"].is_string(), "{m}");
    assert!(
        m["files"].as_object().unwrap().keys().any(|k| k.starts_with(&format!("repos/{}.git/objects/", w.project_id))),
        "the repository's objects are in the backup, with checksums: {m}"
    );
    assert_eq!(m["external_repositories"].as_object().unwrap().len(), 1, "{m}");
    let check = std::process::Command::new("sha256sum")
        .args(["-c", "--quiet", "SHA256SUMS"])
        .current_dir(&dest)
        .output()
        .unwrap();
    assert!(check.status.success(), "sha256sum -c: {}", text(&check));

    // The machine is lost: its data directory (repositories, objects, key) and its database.
    w.app.halt().await;
    std::fs::remove_dir_all(&old_data).unwrap();
    if !is_postgres() {
        let db = arno::db::sqlite_path(&w.app.env["ARNO_DATABASE_URL"]).unwrap();
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", db.display()));
        }
        assert!(!db.exists());
    }

    // A new machine: an empty layout somewhere else.
    let mut env = empty_target(&scratch.path().join("new-machine")).await;
    env.insert("ARNO_GIT_LOCAL_ROOTS".to_owned(), roots.display().to_string());
    let new_data = PathBuf::from(&env["ARNO_DATA_DIR"]);
    let out = arno_async(&env, &["restore", dest.to_str().unwrap()]).await;
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("1 repository"), "{}", text(&out));
    assert!(text(&out).contains(external.to_str().unwrap()), "the external repository is named: {}", text(&out));
    let new_repo = new_data.join("repos").join(format!("{}.git", w.project_id));
    assert_eq!(git(&new_repo, &["rev-parse", &format!("arno/{handle}")]), head);
    assert_eq!(git(&new_repo, &["show", &format!("arno/{handle}:Design_system/Button.md")]), saved.trim_end());
    assert!(git(&new_repo, &["fsck", "--strict", "--no-dangling"]).is_empty());

    // The app on it reads the repository from the new data directory.
    let extra: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let app = TestApp::start_with(&extra).await;
    assert_eq!(app.state.config.data_dir, new_data);
    let p = api(Method::GET, &app.url("/api/v1/projects/mobile"), Some(&w.admin), None).await;
    assert_eq!(p.status, StatusCode::OK, "{}", p.text);
    let path = PathBuf::from(p.json()["repository"]["path"].as_str().unwrap());
    assert!(
        path.starts_with(&new_data),
        "the restored project reads {} (old data dir {})",
        path.display(),
        old_data.display()
    );
    let e = api(Method::GET, &app.url("/api/v1/projects/external"), Some(&w.admin), None).await;
    assert_eq!(
        e.json()["repository"]["path"].as_str(),
        Some(external.to_str().unwrap()),
        "external paths stay as they were"
    );
    let (stored,): (String,) = sqlx::query_as("SELECT repo_path FROM projects WHERE id = $1")
        .bind(&w.project_id)
        .fetch_one(app.state.db.pool())
        .await
        .unwrap();
    assert_eq!(stored, format!("repos/{}.git", w.project_id), "managed paths are stored relative to the data dir");

    let scan = api(Method::POST, &app.url("/api/v1/projects/mobile/scan"), Some(&w.maker), None).await;
    assert!(scan.status.is_success(), "the default branch is readable: {}", scan.text);
    let spec =
        api(Method::GET, &app.url("/api/v1/projects/mobile/specs/Design_system/Button.md"), Some(&w.maker), None).await;
    assert_eq!(spec.status, StatusCode::OK, "{}", spec.text);
    assert_eq!(spec.json()["content"].as_str(), Some(saved.as_str()));
    let change =
        api(Method::GET, &app.url(&format!("/api/v1/projects/mobile/changes/{handle}")), Some(&w.maker), None).await;
    assert_eq!(change.status, StatusCode::OK, "the session branch is readable: {}", change.text);
    let change = change.json();
    assert_eq!(change["head"].as_str(), Some(head.as_str()), "{change}");
    assert_eq!(change["files"][0]["path"], "Design_system/Button.md", "{change}");

    // And it goes on where it stopped: the next save lands on the same branch, on top of it.
    let version = spec.json()["version"].as_i64().unwrap();
    let again = saved.replace("lost.", "lost, and saved again after the restore.");
    save(&app, &w.maker, &again, version).await;
    let branch = committed_branch(&app, &w.maker).await;
    let new_head = branch["last_commit"].as_str().unwrap();
    assert_eq!(git(&new_repo, &["rev-parse", &format!("{new_head}^")]), head, "written on top of the restored branch");
    assert_eq!(git(&new_repo, &["show", &format!("arno/{handle}:Design_system/Button.md")]), again.trim_end());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_repository_in_a_backup_is_refused_and_nothing_is_left_half_written() {
    let scratch = tempfile::tempdir().unwrap();
    let w = world(&[]).await;
    save(&w.app, &w.maker, BUTTON, 0).await;
    committed_branch(&w.app, &w.maker).await;
    w.app.state.storage.put("workflow/x/1.yjs", vec![9u8; 100].into()).await.unwrap();
    let dest = scratch.path().join("backup");
    let out = arno_async(&w.app.env, &["backup", dest.to_str().unwrap()]).await;
    assert!(out.status.success(), "{}", text(&out));
    let prefix = format!("repos/{}.git/objects/", w.project_id);
    let objects: Vec<String> =
        manifest(&dest)["files"].as_object().unwrap().keys().filter(|k| k.starts_with(&prefix)).cloned().collect();
    assert!(!objects.is_empty(), "the backup holds the repository's objects");

    // A damaged repository file: named, refused before anything is written.
    let damaged = scratch.path().join("damaged");
    copy_dir(&dest, &damaged);
    let file = damaged.join(&objects[0]);
    let mut bytes = std::fs::read(&file).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    std::fs::write(&file, bytes).unwrap();
    let target = empty_target(&scratch.path().join("t1")).await;
    let out = arno_async(&target, &["restore", damaged.to_str().unwrap()]).await;
    assert!(!out.status.success(), "{}", text(&out));
    assert!(text(&out).contains(&format!("{} is damaged", objects[0])), "{}", text(&out));
    nothing_written(&target).await;

    // Consistent checksums, but the repository misses objects its branches need (altered, or
    // copied from a broken repository): the git check finds it, and the restore takes back what
    // it had written.
    let repo = w.app.state.config.data_dir.join("repos").join(format!("{}.git", w.project_id));
    let reachable: Vec<String> = git(&repo, &["rev-list", "--objects", "--all"])
        .lines()
        .map(|l| {
            let id = &l[..40];
            format!("{prefix}{}/{}", &id[..2], &id[2..])
        })
        .collect();
    let needed: Vec<&String> = objects.iter().filter(|o| reachable.contains(o)).collect();
    assert!(needed.len() >= 4, "commits, trees and blobs: {needed:?}");
    for (i, victim) in needed.into_iter().enumerate() {
        let broken = scratch.path().join(format!("broken-{i}"));
        copy_dir(&dest, &broken);
        std::fs::remove_file(broken.join(victim)).unwrap();
        rewrite_manifest(&broken, |m| {
            m["files"].as_object_mut().unwrap().remove(victim.as_str());
        });
        let target = empty_target(&scratch.path().join(format!("t2-{i}"))).await;
        let ok = arno_async(&target, &["restore", "--verify-only", broken.to_str().unwrap()]).await;
        assert!(ok.status.success(), "the checksums alone cannot tell: {}", text(&ok));
        let out = arno_async(&target, &["restore", broken.to_str().unwrap()]).await;
        assert!(!out.status.success(), "restored a repository missing {victim}: {}", text(&out));
        assert!(text(&out).contains(&w.project_id) && text(&out).contains("missing"), "{}", text(&out));
        nothing_written(&target).await;
    }

    // The object store fails after the repositories were written: they are taken back too.
    let target = empty_target(&scratch.path().join("t3")).await;
    let objects_dir = scratch.path().join("t3/data/objects");
    std::fs::create_dir_all(objects_dir.join("workflow/x/1.yjs")).unwrap();
    let out = arno_async(&target, &["restore", dest.to_str().unwrap()]).await;
    assert!(!out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("targets are empty again"), "{}", text(&out));
    std::fs::remove_dir_all(objects_dir.join("workflow")).unwrap();
    nothing_written(&target).await;

    // A data directory that already holds the repository: not empty, refused, left as it was.
    let target = empty_target(&scratch.path().join("t4")).await;
    let occupied = PathBuf::from(&target["ARNO_DATA_DIR"]).join("repos").join(format!("{}.git", w.project_id));
    std::fs::create_dir_all(&occupied).unwrap();
    std::fs::write(occupied.join("HEAD"), "ref: refs/heads/main\n").unwrap();
    let out = arno_async(&target, &["restore", dest.to_str().unwrap()]).await;
    assert!(!out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("not empty") && text(&out).contains(&w.project_id), "{}", text(&out));
    assert_eq!(std::fs::read_to_string(occupied.join("HEAD")).unwrap(), "ref: refs/heads/main\n");

    // The intact backup restores, and the restored repository passes git's own check.
    let target = empty_target(&scratch.path().join("t5")).await;
    let out = arno_async(&target, &["restore", dest.to_str().unwrap()]).await;
    assert!(out.status.success(), "{}", text(&out));
    let repo = PathBuf::from(&target["ARNO_DATA_DIR"]).join("repos").join(format!("{}.git", w.project_id));
    assert!(git(&repo, &["fsck", "--strict", "--no-dangling"]).is_empty());
}

#[tokio::test]
async fn managed_repository_paths_are_stored_relative_to_the_data_directory() {
    let mut w = world(&[]).await;
    let stored = |app: &TestApp, id: &str| {
        let (pool, id) = (app.state.db.pool().clone(), id.to_owned());
        async move {
            let (path,): (String,) =
                sqlx::query_as("SELECT repo_path FROM projects WHERE id = $1").bind(id).fetch_one(&pool).await.unwrap();
            path
        }
    };
    let relative = format!("repos/{}.git", w.project_id);
    assert_eq!(stored(&w.app, &w.project_id).await, relative, "a new managed repository");
    // An instance from before this change stored the absolute path: rewritten when it starts.
    let absolute = w.app.state.config.data_dir.join(&relative);
    sqlx::query("UPDATE projects SET repo_path = $1 WHERE id = $2")
        .bind(absolute.display().to_string())
        .bind(&w.project_id)
        .execute(w.app.state.db.pool())
        .await
        .unwrap();
    w.app.restart().await;
    assert_eq!(stored(&w.app, &w.project_id).await, relative, "rewritten at start");
    let r = api(Method::GET, &w.app.url("/api/v1/projects/mobile"), Some(&w.admin), None).await;
    assert_eq!(r.json()["repository"]["path"].as_str(), Some(absolute.to_str().unwrap()), "admins see where it is");
    let r = api(Method::POST, &w.app.url("/api/v1/projects/mobile/scan"), Some(&w.maker), None).await;
    assert!(r.status.is_success(), "{}", r.text);
}
