//! Scanning a GitHub repository: 10,000 files (`BENCH_SCAN_FILES`) of which a fifth are component
//! specs, in a repository of the fake GitHub (tests/github-fake: real git behind GitHub's REST and
//! GraphQL shapes, every request checked against GitHub's OpenAPI description). Counts the
//! requests Arno sends and times the first scan (inside project creation), a re-scan with nothing
//! changed and one after a push changing 20 specs — side by side with reading every spec by one
//! REST request each, as file-by-file clients (Contents API CMSs) do, 8 in flight.
//!
//! Run: `scripts/bench-github-scan` (needs `npm ci` in tests/github-fake; figures go to
//! docs/performance.md).

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use arno::audit::Origin;
use arno::config::Config;
use arno::git::github::client::{Auth, Client};
use arno::projects::{self, NewProject, RepositoryChoice, Visibility};
use futures_util::StreamExt;
use serde_json::{Value, json};

mod common;

use common::spec;

const APP_ID: &str = "4711";

fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git").current_dir(dir).args(args).output().expect("git runs");
    assert!(out.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

struct Fake {
    child: std::process::Child,
    origin: String,
    http: reqwest::Client,
}

impl Drop for Fake {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Fake {
    fn start(root: &Path) -> anyhow::Result<Fake> {
        let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
        let mut child = Command::new("node")
            .arg(manifest.join("tests/github-fake/server.mjs"))
            .env("PORT", "0")
            .env("ROOT", root)
            .env("APP_ID", APP_ID)
            .env("APP_KEY", manifest.join("tests/fixtures/github-app-key.pem"))
            .stdout(std::process::Stdio::piped())
            .spawn()?;
        let mut lines = std::io::BufReader::new(child.stdout.take().expect("stdout")).lines();
        let ready = lines.next().ok_or_else(|| anyhow::anyhow!("the fake did not start"))??;
        let origin = ready.strip_prefix("READY ").ok_or_else(|| anyhow::anyhow!("{ready}"))?.to_owned();
        std::thread::spawn(move || for _ in lines {});
        Ok(Fake { child, origin, http: reqwest::Client::new() })
    }

    async fn control(&self, method: reqwest::Method, path: &str, body: Value) -> anyhow::Result<Value> {
        let r = self.http.request(method, format!("{}/_fake/{path}", self.origin)).json(&body).send().await?;
        anyhow::ensure!(r.status().is_success(), "fake control {path}: {}", r.status());
        Ok(if r.status() == 204 { Value::Null } else { r.json().await? })
    }

    /// Requests since the last call, by kind.
    async fn requests(&self) -> anyhow::Result<(usize, String)> {
        let log = self.control(reqwest::Method::GET, "log", Value::Null).await?;
        self.control(reqwest::Method::POST, "log/clear", json!({})).await?;
        let log = log.as_array().cloned().unwrap_or_default();
        let mut kinds = std::collections::BTreeMap::<String, usize>::new();
        for e in &log {
            let path = e["path"].as_str().unwrap_or_default().split('?').next().unwrap_or_default();
            let kind = if path.ends_with("/graphql") {
                "graphql".to_owned()
            } else if path.contains("/access_tokens") {
                "token".to_owned()
            } else {
                let p = path.trim_start_matches("/api/v3").trim_start_matches("/repos/acme/big");
                let p: Vec<&str> = p.split('/').filter(|s| !s.is_empty()).take(2).collect();
                format!("{} /{}", e["method"].as_str().unwrap_or_default(), p.join("/"))
            };
            *kinds.entry(kind).or_default() += 1;
        }
        let text = kinds.iter().map(|(k, n)| format!("{n}× {k}")).collect::<Vec<_>>().join(", ");
        Ok((log.len(), text))
    }
}

fn main() -> anyhow::Result<()> {
    let files = common::scan_files();
    let specs = files / 5;
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async move {
        let dir = tempfile::tempdir()?;
        let fake = Fake::start(dir.path())?;
        let created = fake.control(reqwest::Method::POST, "repos", json!({"owner": "acme", "name": "big", "installation": 7})).await?;
        let bare = PathBuf::from(created["dir"].as_str().unwrap_or_default());

        // The repository: specs in 40 folders, the rest component code in 100.
        let started = Instant::now();
        let work = dir.path().join("work");
        for i in 0..specs {
            let path = work.join(format!("Design_system/group{}/C{i}.md", i % 40));
            std::fs::create_dir_all(path.parent().unwrap())?;
            std::fs::write(path, spec(i, "Buy"))?;
        }
        for i in 0..(files - specs) {
            let path = work.join(format!("src/components/dir{}/C{i}.tsx", i % 100));
            std::fs::create_dir_all(path.parent().unwrap())?;
            std::fs::write(path, format!("export const C{i} = () => null; // {}\n", "x".repeat(i % 200)))?;
        }
        std::fs::create_dir_all(work.join(".arno"))?;
        std::fs::write(work.join(".arno/config.json"), "{\"version\":1}\n")?;
        git(dir.path(), &["init", "-q", "-b", "main", work.to_str().unwrap()]);
        git(&work, &["add", "."]);
        git(&work, &["-c", "user.name=Bench", "-c", "user.email=b@example.com", "commit", "-q", "-m", "bench"]);
        git(&work, &["push", "-q", bare.to_str().unwrap(), "main"]);
        println!("setup: {files} files ({specs} specs) pushed in {:.1} s", started.elapsed().as_secs_f64());

        let mut env = std::collections::BTreeMap::new();
        env.insert("ARNO_CONFIG".to_owned(), String::new());
        env.insert("ARNO_DATA_DIR".to_owned(), dir.path().join("data").display().to_string());
        let config = Config::load(&env).map_err(|e| anyhow::anyhow!("{e}"))?.config;
        let app = arno::app::build(config).await?;
        let state = app.state.clone();
        let origin = Origin::system();
        let auth = common::admin(&state.db).await?;
        let grant = arno::auth::access::decide_org::<arno::auth::access::Administer>(&auth.user)
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let key_pem = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/github-app-key.pem"))?;
        {
            let mut conn = state.db.pool().acquire().await?;
            let connection = arno::git::connections::NewConnection {
                name: "corp".into(),
                provider: "github".into(),
                api_url: format!("{}/api/v3", fake.origin),
                app_id: APP_ID.into(),
                client_id: None,
                private_key: key_pem.clone(),
                webhook_secret: "a webhook secret for the bench".into(),
                ca_bundle: None,
            };
            arno::git::connections::create(&mut conn, &state.keys, &grant, connection)
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
        }
        fake.requests().await?;

        // First scan (inside create).
        let started = Instant::now();
        let new = NewProject {
            name: "Big".into(),
            slug: None,
            visibility: Visibility::Private,
            repository: RepositoryChoice::GitHub { connection: "corp".into(), repository: "acme/big".into() },
        };
        let project = projects::create(&state.db, &state.config, &state.repos, &auth, &origin, new)
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let first_s = started.elapsed().as_secs_f64();
        let (first_n, first_kinds) = fake.requests().await?;
        let provider = state.repos.get(&project).await.map_err(|e| anyhow::anyhow!("{e}"))?;
        let on =
            projects::authorize_on::<arno::auth::access::Scan>(&state.db, &auth, &origin, &project.id, "project.scan")
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
        let mut conn = state.db.pool().acquire().await?;
        let stored = projects::store::components(&mut conn, &project.id).await.map_err(|e| anyhow::anyhow!("{e}"))?;
        drop(conn);
        anyhow::ensure!(stored.len() == specs, "{} of {specs} specs stored", stored.len());

        let started = Instant::now();
        let r = projects::scan::refresh(&state.db, provider.as_ref(), on.project()).await.map_err(|e| anyhow::anyhow!("{e}"))?;
        let unchanged_s = started.elapsed().as_secs_f64();
        let (unchanged_n, unchanged_kinds) = fake.requests().await?;
        anyhow::ensure!(r.parsed == 0);

        for k in 0..20 {
            let i = k * 97;
            std::fs::write(work.join(format!("Design_system/group{}/C{i}.md", i % 40)), spec(i, "Pay"))?;
        }
        git(&work, &["-c", "user.name=Bench", "-c", "user.email=b@example.com", "commit", "-q", "-am", "twenty"]);
        git(&work, &["push", "-q", bare.to_str().unwrap(), "main"]);
        let fresh = {
            let mut conn = state.db.pool().acquire().await?;
            projects::store::find(&mut conn, &project.id).await.map_err(|e| anyhow::anyhow!("{e}"))?.expect("project")
        };
        let started = Instant::now();
        let r = projects::scan::refresh(&state.db, provider.as_ref(), &fresh).await.map_err(|e| anyhow::anyhow!("{e}"))?;
        let incremental_s = started.elapsed().as_secs_f64();
        let (incremental_n, incremental_kinds) = fake.requests().await?;
        anyhow::ensure!(r.parsed == 20, "{} re-read", r.parsed);

        // File by file: one REST read per spec, 8 in flight (the same client and governor).
        let key = arno::git::connections::parse_private_key(&key_pem).map_err(|e| anyhow::anyhow!("{e}"))?;
        let (rest, graphql) =
            arno::git::connections::api_urls(arno::git::connections::Provider::GitHub, &format!("{}/api/v3", fake.origin))
                .map_err(|e| anyhow::anyhow!("{e}"))?;
        let client = std::sync::Arc::new(Client::new("bench", &rest, &graphql, APP_ID, key, None).map_err(|e| anyhow::anyhow!(e))?);
        let listing = git(&bare, &["ls-tree", "-r", "main", "Design_system"]);
        let blobs: Vec<String> =
            listing.lines().filter_map(|l| l.split_whitespace().nth(2).map(str::to_owned)).collect();
        fake.requests().await?;
        let started = Instant::now();
        let read = futures_util::stream::iter(blobs.iter().cloned())
            .map(|sha| {
                let client = client.clone();
                async move {
                    let segments = ["repos", "acme", "big", "git", "blobs", sha.as_str()];
                    client.call(Auth::Installation(7), reqwest::Method::GET, &segments, &[], None).await.map(|r| r.status)
                }
            })
            .buffer_unordered(8)
            .collect::<Vec<_>>()
            .await;
        let per_file_s = started.elapsed().as_secs_f64();
        let (per_file_n, _) = fake.requests().await?;
        anyhow::ensure!(read.iter().all(|r| matches!(r, Ok(200))), "every blob read");

        println!("| first scan: {files} files listed, {specs} specs read and parsed | {first_n} | {first_s:.2} s | {first_kinds} |");
        println!("| re-scan, nothing changed | {unchanged_n} | {unchanged_s:.2} s | {unchanged_kinds} |");
        println!("| re-scan after a push changing 20 specs | {incremental_n} | {incremental_s:.2} s | {incremental_kinds} |");
        println!("| file by file: one REST read per spec, 8 in flight | {per_file_n} | {per_file_s:.2} s | |");
        anyhow::Ok(())
    })
}
