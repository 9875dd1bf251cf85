//! Write-back: from a save to a commit on the author's session branch, with the quiet period set
//! to zero (`ARNO_WRITEBACK_DEBOUNCE_SECS=0`), on a bare repository Arno created. Two runs:
//! 200 new specs saved back to back (how long until all are committed, and in how many commits),
//! then `BENCH_ROUNDS` (default 50) rounds of "save one spec, wait for its commit".
//!
//! Run: `cargo bench --bench writeback` (figures go to docs/performance.md).

mod common;

use std::time::{Duration, Instant};

use arno::config::Config;

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1000.0
}

/// Wait until the session branch has no text waiting and its head differs from `after`.
async fn committed(db: &arno::db::Db, after: Option<&str>) -> anyhow::Result<String> {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let row: Option<(String, Option<String>, i64)> = sqlx::query_as(
            "SELECT s.state, s.last_commit, (SELECT COUNT(*) FROM writeback_files w WHERE w.user_id = s.user_id) \
             FROM session_branches s",
        )
        .fetch_optional(db.pool())
        .await?;
        if let Some((state, Some(head), 0)) = &row {
            anyhow::ensure!(state != "failed" && state != "diverged", "write-back {state}");
            if state == "committed" && Some(head.as_str()) != after {
                return Ok(head.clone());
            }
        }
        anyhow::ensure!(Instant::now() < deadline, "no commit within 2 minutes: {row:?}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn main() -> anyhow::Result<()> {
    let rounds: usize = std::env::var("BENCH_ROUNDS").ok().and_then(|v| v.parse().ok()).unwrap_or(50);
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
        env.insert("ARNO_WRITEBACK_DEBOUNCE_SECS".to_owned(), "0".to_owned());
        let config = Config::load(&env).map_err(|e| anyhow::anyhow!("{e}"))?.config;
        let app = arno::app::build(config).await?;
        let state = app.state.clone();
        tokio::spawn(arno::app::serve(app, listener, metrics, std::future::pending()));
        let (_, token) = common::admin_token(&state.db, "a@example.com").await?;
        let http = reqwest::Client::new();
        let r = http.post(format!("{base}/api/v1/projects")).bearer_auth(&token).json(&serde_json::json!({"name": "Bench"})).send().await?;
        anyhow::ensure!(r.status().is_success(), "project: {}", r.status());
        let spec = |i: usize, n: usize| format!("---\nid: 0b5e1c1e-6c1a-4f44-9d7e-{i:012}\nname: C{i}\n---\n# C{i}\n\nEdit {n}.\n");
        let save = |file: usize, version: i64, content: String| {
            let (http, token, base_url) = (http.clone(), token.clone(), base.clone());
            async move {
                let r = http
                    .put(format!("{base_url}/api/v1/projects/bench/specs/Design_system/C{file}.md"))
                    .bearer_auth(&token)
                    .json(&serde_json::json!({"content": content, "base_version": version, "session_id": "bench"}))
                    .send()
                    .await?;
                let status = r.status();
                let body: serde_json::Value = serde_json::from_slice(&r.bytes().await?)?;
                anyhow::ensure!(status.is_success(), "save: {status} {body}");
                anyhow::Ok(body["version"].as_i64().unwrap_or(0))
            }
        };

        // 200 new specs, back to back.
        let started = Instant::now();
        let mut versions = vec![];
        for i in 0..200 {
            versions.push(save(i, 0, spec(i, 0)).await?);
        }
        let saved = started.elapsed();
        let head = committed(&state.db, None).await?;
        let all = started.elapsed();
        let (commits,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM audit_events WHERE action = 'writeback.commit'")
            .fetch_one(state.db.pool())
            .await?;
        println!(
            "| 200 new specs saved back to back | saved in {:.0} ms | all committed {:.0} ms after the first save | {commits} commit(s) |",
            saved.as_secs_f64() * 1000.0,
            all.as_secs_f64() * 1000.0
        );

        // Save one spec, wait for its commit.
        let mut head = head;
        let mut latencies = vec![];
        for n in 1..=rounds {
            let started = Instant::now();
            versions[0] = save(0, versions[0], spec(0, n)).await?;
            head = committed(&state.db, Some(&head)).await?;
            latencies.push(started.elapsed());
        }
        latencies.sort();
        println!(
            "| save one spec → committed ({rounds} rounds) | p50 {:.0} ms | p99 {:.0} ms |",
            percentile(&latencies, 0.5),
            percentile(&latencies, 0.99)
        );
        anyhow::Ok(())
    })
}
