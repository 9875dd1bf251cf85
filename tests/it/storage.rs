//! Object storage: the same behaviour on the local filesystem and on a real S3 server.

use arno::config::Config;
use arno::storage::Storage;
use bytes::Bytes;

use crate::support::{TestApp, s3_endpoint};

async fn exercise(storage: &Storage) {
    assert_eq!(storage.get("a/missing.bin").await.unwrap(), None);
    assert_eq!(storage.head("a/missing.bin").await.unwrap(), None);
    storage.put("a/one.bin", Bytes::from_static(b"first")).await.unwrap();
    storage.put("a/two.bin", Bytes::from_static(b"second!")).await.unwrap();
    storage.put("b/three.bin", Bytes::from_static(b"3")).await.unwrap();
    assert_eq!(storage.get("a/one.bin").await.unwrap().as_deref(), Some(&b"first"[..]));
    // Overwrite replaces.
    storage.put("a/one.bin", Bytes::from_static(b"FIRST")).await.unwrap();
    assert_eq!(storage.get("a/one.bin").await.unwrap().as_deref(), Some(&b"FIRST"[..]));
    assert_eq!(storage.head("a/two.bin").await.unwrap().unwrap().size, 7);
    let listed: Vec<String> = storage.list("a").await.unwrap().into_iter().map(|o| o.key).collect();
    assert_eq!(listed, ["a/one.bin", "a/two.bin"]);
    assert_eq!(storage.list("").await.unwrap().len(), 3);
    storage.delete("a/one.bin").await.unwrap();
    storage.delete("a/one.bin").await.unwrap();
    assert_eq!(storage.get("a/one.bin").await.unwrap(), None);
    let key = storage.put_content(Bytes::from_static(b"abc")).await.unwrap();
    assert!(key.starts_with("sha256/ba/"));
    assert_eq!(storage.get(&key).await.unwrap().as_deref(), Some(&b"abc"[..]));
    assert!(storage.put("../escape", Bytes::new()).await.is_err());
    assert!(storage.check(std::time::Duration::from_secs(5)).await.is_ok());
}

#[tokio::test]
async fn local_filesystem_storage() {
    let dir = tempfile::tempdir().unwrap();
    let config = Config::for_data_dir(dir.path());
    let storage = Storage::from_config(&config).await.unwrap();
    exercise(&storage).await;
    // Objects are plain files under the data directory.
    assert!(dir.path().join("objects/a/two.bin").is_file());
}

fn s3_env(endpoint: &str, bucket: &str, prefix: &str) -> Vec<(String, String)> {
    vec![
        ("ARNO_STORAGE_URL".into(), format!("s3://{bucket}/{prefix}")),
        ("ARNO_S3_ENDPOINT".into(), endpoint.into()),
        ("ARNO_S3_REGION".into(), "us-east-1".into()),
        ("ARNO_S3_ACCESS_KEY_ID".into(), "arno-test".into()),
        ("ARNO_S3_SECRET_ACCESS_KEY".into(), "arno-test-secret".into()),
    ]
}

#[tokio::test]
async fn s3_storage_against_a_real_server() {
    let Some((endpoint, bucket)) = s3_endpoint() else { return };
    let dir = tempfile::tempdir().unwrap();
    let prefix = format!("t-{}", uuid::Uuid::new_v4().simple());
    let mut env: std::collections::BTreeMap<String, String> = s3_env(&endpoint, &bucket, &prefix).into_iter().collect();
    env.insert("ARNO_CONFIG".into(), String::new());
    env.insert("ARNO_DATA_DIR".into(), dir.path().display().to_string());
    let config = Config::load(&env).unwrap().config;
    let storage = Storage::from_config(&config).await.unwrap();
    exercise(&storage).await;
    // The prefix isolates: a store on another prefix sees nothing.
    env.insert("ARNO_STORAGE_URL".into(), format!("s3://{bucket}/{prefix}-other"));
    let other = Storage::from_config(&Config::load(&env).unwrap().config).await.unwrap();
    assert!(other.list("").await.unwrap().is_empty());
}

#[tokio::test]
async fn the_app_runs_on_s3_and_reports_ready() {
    let Some((endpoint, bucket)) = s3_endpoint() else { return };
    let prefix = format!("t-{}", uuid::Uuid::new_v4().simple());
    let env = s3_env(&endpoint, &bucket, &prefix);
    let pairs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let app = TestApp::start_with(&pairs).await;
    let r = crate::support::api(reqwest::Method::GET, &app.url("/ready"), None, None).await;
    assert_eq!(r.status, reqwest::StatusCode::OK, "{}", r.text);
    assert_eq!(r.json()["checks"]["storage"]["ok"], true);
    app.state.storage.put("probe/x", Bytes::from_static(b"x")).await.unwrap();
    assert_eq!(app.state.storage.list("probe").await.unwrap().len(), 1);
}
