//! The fake GitHub (tests/github-fake, Node) as the tests drive it: started per test over real
//! bare repositories in a temp dir; every request Arno sends and every answer it gets is checked
//! there against GitHub's OpenAPI descriptions, and [`FakeGitHub::assert_clean`] fails a test
//! that sent anything the real GitHub would refuse.

use std::io::BufRead as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arno::git::github::client::Client;
use serde_json::{Value, json};

pub const APP_ID: &str = "4711";
pub const KEY_PEM: &str = include_str!("../fixtures/github-app-key.pem");

pub struct FakeGitHub {
    child: std::process::Child,
    pub origin: String,
    _root: tempfile::TempDir,
    http: reqwest::Client,
}

impl Drop for FakeGitHub {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl FakeGitHub {
    /// `None` (a skip) where the fake's npm packages are not installed and services are optional.
    pub fn start() -> Option<FakeGitHub> {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/github-fake");
        if !dir.join("node_modules/@octokit/openapi").exists() {
            assert!(
                std::env::var("TEST_REQUIRE_SERVICES").as_deref() != Ok("1"),
                "tests/github-fake has no node_modules (run npm ci there)"
            );
            eprintln!("skipping: tests/github-fake/node_modules is missing");
            return None;
        }
        let root = tempfile::tempdir().unwrap();
        let mut child = std::process::Command::new("node")
            .arg(dir.join("server.mjs"))
            .env("PORT", "0")
            .env("ROOT", root.path())
            .env("APP_ID", APP_ID)
            .env("CLIENT_ID", "Iv23liFake")
            .env("APP_KEY", Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/github-app-key.pem"))
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::inherit())
            .spawn()
            .expect("node runs");
        let stdout = child.stdout.take().unwrap();
        let mut lines = std::io::BufReader::new(stdout).lines();
        let ready = lines.next().expect("the fake says READY").unwrap();
        let origin = ready.strip_prefix("READY ").expect("READY line").to_owned();
        std::thread::spawn(move || for _ in lines {});
        Some(FakeGitHub { child, origin, _root: root, http: reqwest::Client::new() })
    }

    /// A client for the fake, as a connection with App id [`APP_ID`] would build it.
    pub fn client(&self) -> Arc<Client> {
        let key = arno::git::connections::parse_private_key(KEY_PEM).unwrap();
        let (rest, graphql) = arno::git::connections::api_urls(
            arno::git::connections::Provider::GitHub,
            &format!("{}/api/v3", self.origin),
        )
        .unwrap();
        Arc::new(Client::new("fake", &rest, &graphql, APP_ID, key, None).unwrap())
    }

    pub async fn control(&self, method: reqwest::Method, path: &str, body: Value) -> Value {
        let r = self.http.request(method, format!("{}/_fake/{path}", self.origin)).json(&body).send().await.unwrap();
        assert!(r.status().is_success(), "fake control {path}: {}", r.status());
        if r.status() == 204 { Value::Null } else { r.json().await.unwrap() }
    }

    /// A bare repository `owner/name` the App's `installation` reaches; returns its directory.
    pub async fn repo(&self, owner: &str, name: &str, installation: u64) -> PathBuf {
        let r = self
            .control(
                reqwest::Method::POST,
                "repos",
                json!({"owner": owner, "name": name, "installation": installation}),
            )
            .await;
        PathBuf::from(r["dir"].as_str().unwrap())
    }

    /// The next `times` requests matching `method` and the `path` regex get this answer.
    pub async fn fault(&self, method: &str, path: &str, status: u16, headers: Value, times: u32) {
        let body = json!({"message": "You have exceeded a secondary rate limit.", "documentation_url": "https://docs.github.com/rest"});
        self.control(
            reqwest::Method::POST,
            "faults",
            json!({"method": method, "path": path, "status": status, "headers": headers, "times": times, "body": body}),
        )
        .await;
    }

    pub async fn settings(&self, settings: Value) {
        self.control(reqwest::Method::POST, "settings", settings).await;
    }

    /// Every request the fake saw: method, path (with query), status, auth.
    pub async fn log(&self) -> Vec<Value> {
        self.http.get(format!("{}/_fake/log", self.origin)).send().await.unwrap().json().await.unwrap()
    }

    pub async fn clear_log(&self) {
        self.control(reqwest::Method::POST, "log/clear", json!({})).await;
    }

    /// Requests whose path (without query) matches `needle`.
    pub async fn count(&self, method: &str, needle: &str) -> usize {
        self.log()
            .await
            .iter()
            .filter(|e| {
                e["method"] == method && e["path"].as_str().unwrap().split('?').next().unwrap().contains(needle)
            })
            .count()
    }

    /// Fails the test if anything sent or answered broke GitHub's published descriptions.
    pub async fn assert_clean(&self) {
        let v: Vec<String> =
            self.http.get(format!("{}/_fake/violations", self.origin)).send().await.unwrap().json().await.unwrap();
        assert!(v.is_empty(), "requests or answers GitHub's descriptions refuse:\n{}", v.join("\n"));
    }
}
