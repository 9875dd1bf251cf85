//! The spec editor's save path over HTTP: bearer auth, permission check, the versioned save
//! (lock, fast-forward check, insert, purge to 20), the audit record, one durable commit
//! (SQLite WAL, synchronous=FULL). Sequential saves of one file by one editor, then four
//! editors saving four files concurrently. `BENCH_SAVES` (default 2,000) per run.
//!
//! Run: `cargo bench --bench spec_save` (figures go to docs/performance.md).

mod common;

use std::time::{Duration, Instant};

use arno::config::Config;

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1000.0
}

fn main() -> anyhow::Result<()> {
    let saves: usize = std::env::var("BENCH_SAVES").ok().and_then(|v| v.parse().ok()).unwrap_or(2_000);
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async move {
        let dir = tempfile::tempdir()?;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let metrics = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let base = format!("http://{}", listener.local_addr()?);
        let mut env = std::collections::BTreeMap::new();
        env.insert("ARNO_CONFIG".to_owned(), String::new());
        env.insert("ARNO_DATA_DIR".to_owned(), dir.path().join("data").display().to_string());
        env.insert("ARNO_LISTEN".to_owned(), listener.local_addr()?.to_string());
        env.insert("ARNO_METRICS_LISTEN".to_owned(), metrics.local_addr()?.to_string());
        env.insert("ARNO_LOG".to_owned(), "warn".to_owned());
        let config = Config::load(&env).map_err(|e| anyhow::anyhow!("{e}"))?.config;
        let app = arno::app::build(config).await?;
        let state = app.state.clone();
        tokio::spawn(arno::app::serve(app, listener, metrics, std::future::pending()));
        let (_, token) = common::admin_token(&state.db, "a@example.com").await?;
        let http = reqwest::Client::new();
        let r = http.post(format!("{base}/api/v1/projects")).bearer_auth(&token).json(&serde_json::json!({"name": "Bench"})).send().await?;
        anyhow::ensure!(r.status().is_success(), "project: {}", r.status());

        let spec = |i: usize| format!("---\nid: 0b5e1c1e-6c1a-4f44-9d7e-0c1f0d6d1a01\nname: Button\n---\n# Button\n\nEdit {i}.\n\n<!-- arno:props v1 -->\n| id | name | type | default |\n|---|---|---|---|\n| 6f1c7d2e-1111-4a2b-8c3d-000000000001 | label | string | \"{i}\" |\n<!-- /arno:props -->\n");
        let (h, t, b) = (http.clone(), token.clone(), base.clone());
        let save = move |file: String, base: i64, content: String| {
            let (http, token, base_url) = (h.clone(), t.clone(), b.clone());
            async move {
                let started = Instant::now();
                let r = http
                    .put(format!("{base_url}/api/v1/projects/bench/specs/Design_system/{file}"))
                    .bearer_auth(&token)
                    .json(&serde_json::json!({"content": content, "base_version": base, "session_id": file}))
                    .send()
                    .await?;
                let status = r.status();
                let body: serde_json::Value = serde_json::from_slice(&r.bytes().await?)?;
                anyhow::ensure!(status.is_success(), "save: {status} {body}");
                anyhow::Ok((body["version"].as_i64().unwrap_or(0), started.elapsed()))
            }
        };

        // One editor, one file, sequential.
        let mut latencies = vec![];
        let mut version = 0;
        let started = Instant::now();
        for i in 0..saves {
            let (v, took) = save("Button.md".into(), version, spec(i)).await?;
            version = v;
            latencies.push(took);
        }
        let total = started.elapsed().as_secs_f64();
        latencies.sort();
        println!(
            "| sequential saves, one file ({saves}) | {:.0} saves/s | p50 {:.2} ms | p99 {:.2} ms |",
            saves as f64 / total,
            percentile(&latencies, 0.5),
            percentile(&latencies, 0.99)
        );

        // Four editors, four files, concurrently.
        let started = Instant::now();
        let mut tasks = vec![];
        for editor in 0..4 {
            let save = save.clone();
            tasks.push(tokio::spawn(async move {
                let mut lat = vec![];
                let mut v = 0;
                for i in 0..saves / 4 {
                    let (nv, took) = save(format!("File{editor}.md"), v, spec(i)).await?;
                    v = nv;
                    lat.push(took);
                }
                anyhow::Ok(lat)
            }));
        }
        let mut all = vec![];
        for t in tasks {
            all.extend(t.await??);
        }
        let total = started.elapsed().as_secs_f64();
        all.sort();
        println!(
            "| 4 editors × {} saves, 4 files, concurrent | {:.0} saves/s | p50 {:.2} ms | p99 {:.2} ms |",
            saves / 4,
            all.len() as f64 / total,
            percentile(&all, 0.5),
            percentile(&all, 0.99)
        );
        anyhow::Ok(())
    })
}
