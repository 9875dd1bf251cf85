//! `arno backup` / `arno restore` and `arno migrate --check`, through the real binary: an online
//! backup, a wipe, a restore into an empty database and object store, and a server on the
//! restored data that serves the same things — on SQLite and PostgreSQL, with objects in S3.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Output};

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::cli::arno_async;
use crate::support::{api, fresh_database_url, is_postgres, s3_endpoint};
use crate::workflow::{raw, replica_with, synced_content, workflow};

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

/// Object storage for a test: a fresh prefix on the S3 server when there is one, else local.
fn storage_env(dir: &Path) -> Vec<(String, String)> {
    match s3_endpoint() {
        Some((endpoint, bucket)) => vec![
            ("ARNO_STORAGE_URL".into(), format!("s3://{bucket}/b-{}", uuid::Uuid::new_v4().simple())),
            ("ARNO_S3_ENDPOINT".into(), endpoint),
            ("ARNO_S3_REGION".into(), "us-east-1".into()),
            ("ARNO_S3_ACCESS_KEY_ID".into(), "arno-test".into()),
            ("ARNO_S3_SECRET_ACCESS_KEY".into(), "arno-test-secret".into()),
        ],
        None => vec![("ARNO_STORAGE_URL".into(), format!("file://{}", dir.join("objects").display()))],
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backup_wipe_restore_serves_the_same_data() {
    use yrs::sync::protocol::{Message, SyncMessage};
    use yrs::{Map, ReadTxn, Transact};
    let scratch = tempfile::tempdir().unwrap();
    let storage: Vec<(String, String)> = storage_env(&scratch.path().join("before"));
    let extra: Vec<(&str, &str)> = storage.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let mut w = workflow(&extra).await;

    // Data of every kind: a saved spec version, a workflow screen, objects, audit records.
    let spec_url = w.app.url("/api/v1/projects/flows/specs/Design_system/Button.md");
    let spec = api(Method::GET, &spec_url, Some(&w.maker), None).await.json();
    let edited = spec["content"].as_str().unwrap().replace("# Button", "# Button\n\nRestored from a backup.");
    let r = api(
        Method::PUT,
        &spec_url,
        Some(&w.maker),
        Some(json!({"content": edited, "base_version": spec["version"], "session_id": "backup-test"})),
    )
    .await;
    assert!(r.status.is_success(), "{}", r.text);
    let mut s = raw::connect(&w.app.base, &w.project, &w.maker).await;
    let doc = arno::workflow::filter::new_doc();
    let screens = doc.get_or_insert_map("screens");
    screens.insert(&mut doc.transact_mut(), "kept", "a screen that must survive");
    raw::send(
        &mut s,
        Message::Sync(SyncMessage::Update(doc.transact().encode_state_as_update_v1(&Default::default()))),
    )
    .await;
    for _ in 0..100 {
        if synced_content(&w.app.base, &w.project, &w.viewer).await["screens"].get("kept").is_some() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    drop(s);
    let objects = [("workflow/p/1.yjs", vec![1u8, 2, 3]), ("sha256/ab/abcdef", b"content".to_vec())];
    for (key, data) in &objects {
        w.app.state.storage.put(key, data.clone().into()).await.unwrap();
    }
    let projects_before = api(Method::GET, &w.app.url("/api/v1/projects"), Some(&w.maker), None).await.json();
    let workflow_before = synced_content(&w.app.base, &w.project, &w.viewer).await;
    let public_key = text(&arno_async(&w.app.env, &["audit", "public-key"]).await).trim().to_owned();

    // An online backup, while the server serves.
    let dest = scratch.path().join("backup");
    let out = arno_async(&w.app.env, &["backup", dest.to_str().unwrap()]).await;
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("2 objects"), "{}", text(&out));
    let check =
        Command::new("sha256sum").arg("-c").arg("--quiet").arg("SHA256SUMS").current_dir(&dest).output().unwrap();
    assert!(check.status.success(), "sha256sum -c: {}", text(&check));
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dest.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(manifest["backend"], if is_postgres() { "postgres" } else { "sqlite" });
    assert_eq!(manifest["objects"], 2);
    assert_eq!(manifest["secret_key"], "included");
    assert!(manifest["tables"]["workflow_updates"]["rows"].as_u64().unwrap() >= 1, "{manifest}");
    use std::os::unix::fs::PermissionsExt as _;
    assert_eq!(std::fs::metadata(&dest).unwrap().permissions().mode() & 0o777, 0o700, "a backup is private");
    // Every file and folder in it too, whatever the umask of whoever ran it.
    let mut pending = vec![dest.clone()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let entry = entry.unwrap();
            let (path, meta) = (entry.path(), entry.metadata().unwrap());
            let expected = if meta.is_dir() { 0o700 } else { 0o600 };
            assert_eq!(meta.permissions().mode() & 0o777, expected, "{} is not private", path.display());
            if meta.is_dir() {
                pending.push(path);
            }
        }
    }
    let (recorded,): (i64,) =
        sqlx::query_as("SELECT count(*) FROM audit_events WHERE action = 'instance.backup' AND outcome = 'allowed'")
            .fetch_one(w.app.state.db.pool())
            .await
            .unwrap();
    assert_eq!(recorded, 1, "the backup is audited on the instance it was taken of");
    let ok = arno_async(&w.app.env, &["restore", "--verify-only", dest.to_str().unwrap()]).await;
    assert!(ok.status.success() && text(&ok).contains("intact"), "{}", text(&ok));

    // Wipe: the old instance is gone; a new, empty database, data directory and object store.
    w.app.halt().await;
    let mut env = BTreeMap::new();
    env.insert("ARNO_CONFIG".to_owned(), String::new());
    env.insert("ARNO_DATA_DIR".to_owned(), scratch.path().join("after").display().to_string());
    env.insert("ARNO_DATABASE_URL".to_owned(), fresh_database_url(&scratch.path().join("after-db")).await);
    std::fs::create_dir_all(scratch.path().join("after-db")).unwrap();
    env.extend(storage_env(&scratch.path().join("after")));
    env.insert("ARNO_GIT_LOCAL_ROOTS".to_owned(), w.app.env["ARNO_GIT_LOCAL_ROOTS"].clone());
    let out = arno_async(&env, &["restore", dest.to_str().unwrap()]).await;
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("every checksum and row count verified"), "{}", text(&out));

    // A server on the restored data serves the same things to the same token.
    let restored = replica_with(&env).await;
    let url = |p: &str| format!("{}{p}", restored.base);
    assert_eq!(api(Method::GET, &url("/api/v1/projects"), Some(&w.maker), None).await.json(), projects_before);
    let spec_after =
        api(Method::GET, &url("/api/v1/projects/flows/specs/Design_system/Button.md"), Some(&w.maker), None).await;
    assert_eq!(spec_after.status, StatusCode::OK);
    assert_eq!(spec_after.json()["content"].as_str().unwrap(), edited);
    assert_eq!(synced_content(&restored.base, &w.project, &w.viewer).await, workflow_before);
    let config = arno::config::Config::load(&env).unwrap().config;
    let store = arno::storage::Storage::from_config(&config).await.unwrap();
    for (key, data) in &objects {
        assert_eq!(store.get(key).await.unwrap().unwrap().as_ref(), data.as_slice(), "{key}");
    }
    // The audit trail came along, with its signing key: an export verifies against the original
    // instance's public key, and the restore itself is recorded.
    let export = scratch.path().join("audit.jsonl");
    let out = arno_async(&env, &["audit", "export", "--out", export.to_str().unwrap()]).await;
    assert!(out.status.success(), "{}", text(&out));
    let out = arno_async(&env, &["audit", "verify", export.to_str().unwrap(), "--public-key", &public_key]).await;
    assert!(out.status.success(), "{}", text(&out));
    let log = std::fs::read_to_string(&export).unwrap();
    assert!(log.contains("instance.restore"), "the restore is audited");
    // (the backup's own record was written after its snapshot, to the instance it was taken of)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restore_refuses_a_damaged_or_newer_backup_and_a_non_empty_target() {
    let scratch = tempfile::tempdir().unwrap();
    let storage = storage_env(&scratch.path().join("src"));
    let extra: Vec<(&str, &str)> = storage.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let app = crate::support::TestApp::start_with(&extra).await;
    app.state.storage.put("workflow/x/1.yjs", vec![9u8; 100].into()).await.unwrap();
    let dest = scratch.path().join("backup");
    let out = arno_async(&app.env, &["backup", dest.to_str().unwrap()]).await;
    assert!(out.status.success(), "{}", text(&out));
    // An existing destination is never overwritten.
    let again = arno_async(&app.env, &["backup", dest.to_str().unwrap()]).await;
    assert!(!again.status.success() && text(&again).contains("already exists"), "{}", text(&again));

    let empty_target = |name: &str| {
        let name = name.to_owned();
        let scratch = scratch.path().to_owned();
        async move {
            let dir = scratch.join(&name);
            std::fs::create_dir_all(&dir).unwrap();
            let mut env = BTreeMap::new();
            env.insert("ARNO_CONFIG".to_owned(), String::new());
            env.insert("ARNO_DATA_DIR".to_owned(), dir.join("data").display().to_string());
            env.insert("ARNO_DATABASE_URL".to_owned(), fresh_database_url(&dir).await);
            env.extend(storage_env(&dir));
            env
        }
    };
    let copy = |name: &str| {
        let to = scratch.path().join(name);
        let out = Command::new("cp").args(["-a", dest.to_str().unwrap(), to.to_str().unwrap()]).output().unwrap();
        assert!(out.status.success());
        to
    };
    let nothing_written = |env: &BTreeMap<String, String>| {
        let env = env.clone();
        async move {
            let config = arno::config::Config::load(&env).unwrap().config;
            let db = arno::db::Db::connect(&config.database_url, 1).await.unwrap();
            assert!(db.applied_versions().await.unwrap().is_empty(), "the database was written to");
            db.close().await;
            let store = arno::storage::Storage::from_config(&config).await.unwrap();
            assert!(store.list("").await.unwrap().is_empty(), "objects were written");
        }
    };

    // A damaged object: refused, naming it, before anything is written.
    let damaged = copy("damaged");
    let object = damaged.join("objects/workflow/x/1.yjs");
    let mut bytes = std::fs::read(&object).unwrap();
    bytes[10] ^= 1;
    std::fs::write(&object, bytes).unwrap();
    let target = empty_target("t1").await;
    let out = arno_async(&target, &["restore", damaged.to_str().unwrap()]).await;
    assert!(!out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("objects/workflow/x/1.yjs is damaged"), "{}", text(&out));
    nothing_written(&target).await;
    let out = arno_async(&target, &["restore", "--verify-only", damaged.to_str().unwrap()]).await;
    assert!(!out.status.success());

    // A backup from a newer Arno (its manifest and checksums consistent): refused.
    let newer = copy("newer");
    let mut manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(newer.join("manifest.json")).unwrap()).unwrap();
    manifest["schema_version"] = json!(99_999_999_999_999i64);
    manifest["arno_version"] = json!("99.0.0");
    let json = serde_json::to_vec_pretty(&manifest).unwrap();
    std::fs::write(newer.join("manifest.json"), &json).unwrap();
    let sums = std::fs::read_to_string(newer.join("SHA256SUMS")).unwrap();
    let digest = {
        use sha2::Digest as _;
        hex::encode(sha2::Sha256::digest(&json))
    };
    let sums: String = sums
        .lines()
        .map(|l| if l.ends_with("  manifest.json") { format!("{digest}  manifest.json\n") } else { format!("{l}\n") })
        .collect();
    std::fs::write(newer.join("SHA256SUMS"), sums).unwrap();
    let target = empty_target("t2").await;
    let out = arno_async(&target, &["restore", newer.to_str().unwrap()]).await;
    assert!(!out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("newer than this binary") && text(&out).contains("99.0.0"), "{}", text(&out));
    nothing_written(&target).await;

    // Another instance key than the backed-up instance's: refused before anything is written.
    let mut target = empty_target("t4").await;
    target.insert("ARNO_SECRET_KEY".to_owned(), "another instance's key, long enough to be valid".to_owned());
    let out = arno_async(&target, &["restore", dest.to_str().unwrap()]).await;
    assert!(!out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("not the backed-up instance's"), "{}", text(&out));
    nothing_written(&target).await;

    // A target that is not empty: the running instance itself.
    let out = arno_async(&app.env, &["restore", dest.to_str().unwrap()]).await;
    assert!(!out.status.success());
    assert!(text(&out).contains("not empty"), "{}", text(&out));

    // The object store fails midway (a folder where an object goes; local storage so the test
    // can make it fail): the database already restored is taken back, nothing is left, and once
    // the cause is gone the same restore works.
    let mut target = empty_target("t5").await;
    target.retain(|k, _| !k.starts_with("ARNO_S3_"));
    let objects = scratch.path().join("t5/objects");
    target.insert("ARNO_STORAGE_URL".to_owned(), format!("file://{}", objects.display()));
    std::fs::create_dir_all(objects.join("workflow/x/1.yjs")).unwrap();
    let out = arno_async(&target, &["restore", dest.to_str().unwrap()]).await;
    assert!(!out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("targets are empty again") && text(&out).contains("storing object workflow/x/1.yjs"),
        "{}",
        text(&out)
    );
    nothing_written(&target).await;
    if is_postgres() {
        let config = arno::config::Config::load(&target).unwrap().config;
        let db = arno::db::Db::connect(&config.database_url, 1).await.unwrap();
        let (left,): (i64,) = sqlx::query_as(
            "SELECT (SELECT count(*) FROM pg_tables WHERE schemaname = current_schema()) + \
             (SELECT count(*) FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace \
              WHERE n.nspname = current_schema())",
        )
        .fetch_one(db.pool())
        .await
        .unwrap();
        db.close().await;
        assert_eq!(left, 0, "tables or functions left behind");
    }
    assert!(!scratch.path().join("t5/data/secret.key").exists(), "the key written by the failed restore stayed");
    std::fs::remove_dir_all(objects.join("workflow")).unwrap();
    let out = arno_async(&target, &["restore", dest.to_str().unwrap()]).await;
    assert!(out.status.success(), "the second attempt: {}", text(&out));

    // And the intact backup restores.
    let target = empty_target("t3").await;
    let out = arno_async(&target, &["restore", dest.to_str().unwrap()]).await;
    assert!(out.status.success(), "{}", text(&out));
}

#[tokio::test]
async fn migrate_check_tells_what_would_run_and_a_newer_schema_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut env = BTreeMap::new();
    env.insert("ARNO_CONFIG".to_owned(), String::new());
    env.insert("ARNO_DATA_DIR".to_owned(), dir.path().join("data").display().to_string());
    env.insert("ARNO_DATABASE_URL".to_owned(), fresh_database_url(dir.path()).await);
    // Never started: nothing to back up (status 3, the package's pre-upgrade backup skips),
    // and looking does not create a database.
    let dest = dir.path().join("backup");
    let out = arno_async(&env, &["backup", dest.to_str().unwrap()]).await;
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    assert!(text(&out).contains("nothing to back up"), "{}", text(&out));
    assert!(!dest.exists());
    if !is_postgres() {
        assert!(!dir.path().join("arno.db").exists(), "a backup attempt created the database");
    }
    let out = arno_async(&env, &["migrate", "--check"]).await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("migration(s) would run") && text(&out).contains("  1 "), "{}", text(&out));
    let out = arno_async(&env, &["migrate"]).await;
    assert!(out.status.success(), "{}", text(&out));
    let out = arno_async(&env, &["migrate", "--check"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(text(&out).contains("up to date"), "{}", text(&out));

    // A newer Arno applied a migration this binary does not know: every command refuses.
    let config = arno::config::Config::load(&env).unwrap().config;
    let db = arno::db::Db::connect(&config.database_url, 1).await.unwrap();
    sqlx::query(
        "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
         VALUES (99990101000000, 'from the future', TRUE, $1, 1)",
    )
    .bind(vec![0u8; 48])
    .execute(db.pool())
    .await
    .unwrap();
    db.close().await;
    let out = arno_async(&env, &["migrate", "--check"]).await;
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("newer than this Arno"), "{}", text(&out));
    let out = arno_async(&env, &["migrate"]).await;
    assert!(!out.status.success() && text(&out).contains("99990101000000"), "{}", text(&out));
    let out = arno_async(&env, &["serve"]).await;
    assert!(!out.status.success() && text(&out).contains("newer than this Arno"), "{}", text(&out));
}

#[tokio::test]
async fn replicas_starting_together_apply_each_migration_once() {
    if !is_postgres() {
        eprintln!("skipping: the migration lock matters with several processes on PostgreSQL");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut env = BTreeMap::new();
    env.insert("ARNO_CONFIG".to_owned(), String::new());
    env.insert("ARNO_DATA_DIR".to_owned(), dir.path().join("data").display().to_string());
    env.insert("ARNO_DATABASE_URL".to_owned(), fresh_database_url(dir.path()).await);
    let runs: Vec<_> = (0..3).map(|_| arno_async(&env, &["migrate"])).collect();
    for out in futures_util::future::join_all(runs).await {
        assert!(out.status.success(), "{}", text(&out));
    }
    let config = arno::config::Config::load(&env).unwrap().config;
    let db = arno::db::Db::connect(&config.database_url, 1).await.unwrap();
    let applied = db.applied_versions().await.unwrap();
    assert_eq!(applied, arno::db::known_versions(arno::db::Backend::Postgres));
    db.close().await;
}
