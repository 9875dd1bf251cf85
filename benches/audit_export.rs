//! Audit export at scale: append N records (default 1,000,000; `BENCH_AUDIT_RECORDS`), then
//! stream a signed JSON Lines export of all of them to a file and verify it offline, reporting
//! time, throughput and the process's peak resident memory during each phase (the high-water
//! mark is reset between phases through /proc/self/clear_refs).
//!
//! Run: `cargo bench --bench audit_export` (figures go to docs/performance.md).

use std::io::Write;
use std::time::Instant;

use arno::audit::{self, Actor, Event, Origin, Outcome};
use arno::config::Config;

fn rss_kib(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// Reset the peak-RSS mark so the next phase's peak is its own.
fn reset_peak() {
    let _ = std::fs::OpenOptions::new().write(true).open("/proc/self/clear_refs").and_then(|mut f| f.write_all(b"5"));
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

fn main() -> anyhow::Result<()> {
    let n: usize = std::env::var("BENCH_AUDIT_RECORDS").ok().and_then(|v| v.parse().ok()).unwrap_or(1_000_000);
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async move {
        let dir = tempfile::tempdir()?;
        let app = arno::app::build(Config::for_data_dir(dir.path())).await?;
        let (db, keys) = (app.state.db.clone(), app.state.keys.clone());

        let started = Instant::now();
        let batch = 10_000;
        let origin = Origin {
            ip: Some("10.1.2.3".into()),
            user_agent: Some("Mozilla/5.0 (bench)".into()),
            request_id: Some("0123456789abcdef0123456789abcdef".into()),
            trace_id: Some("fedcba9876543210fedcba9876543210".into()),
        };
        let user = uuid::Uuid::now_v7().to_string();
        for start in (0..n).step_by(batch) {
            let mut tx = db.begin().await?;
            for i in start..(start + batch).min(n) {
                let target = format!("t{i}");
                let event = Event::new(if i % 3 == 0 { "token.create" } else { "auth.login" }, if i % 7 == 0 { Outcome::Denied } else { Outcome::Allowed }, Actor::User(&user), &origin).target("api_token", &target).intent(serde_json::json!({"method": "password"}));
                audit::record(&mut tx, event).await.map_err(|e| anyhow::anyhow!("{e}"))?;
            }
            tx.commit().await?;
        }
        audit::checkpoint(&db, &keys.audit).await.map_err(|e| anyhow::anyhow!("{e}"))?;
        let append_s = started.elapsed().as_secs_f64();

        reset_peak();
        let before = rss_kib("VmRSS:");
        let path = dir.path().join("export.jsonl");
        let started = Instant::now();
        let file = tokio::fs::File::create(&path).await?;
        let mut sink = tokio::io::BufWriter::new(file);
        let req = audit::export::Request {
            from: 0,
            to: None,
            filter: Default::default(),
            format: audit::export::Format::Jsonl,
        };
        let summary = audit::export::run(&db, &keys.audit, &req, &mut sink).await.map_err(|e| anyhow::anyhow!("{e}"))?;
        tokio::io::AsyncWriteExt::flush(&mut sink).await?;
        let export_s = started.elapsed().as_secs_f64();
        let export_peak = rss_kib("VmHWM:");
        let bytes = std::fs::metadata(&path)?.len();

        reset_peak();
        let started = Instant::now();
        let reader = std::io::BufReader::new(std::fs::File::open(&path)?);
        let report = audit::verify::verify(reader, Some(&keys.audit.public_key())).map_err(|p| anyhow::anyhow!("{p}"))?;
        let verify_s = started.elapsed().as_secs_f64();
        let verify_peak = rss_kib("VmHWM:");
        assert_eq!(report.records as usize, summary.records as usize);

        println!("records: {n} ({} exported, {} bytes = {:.0} MiB)", summary.records, bytes, bytes as f64 / 1048576.0);
        println!("append (batches of {batch} per transaction): {append_s:.1} s = {:.0} records/s", n as f64 / append_s);
        println!(
            "export: {export_s:.1} s = {:.0} records/s, {:.0} MiB/s; RSS before {:.1} MiB, peak during export {:.1} MiB",
            summary.records as f64 / export_s,
            bytes as f64 / 1048576.0 / export_s,
            mib(before),
            mib(export_peak)
        );
        println!(
            "verify: {verify_s:.1} s = {:.0} records/s; peak RSS during verify {:.1} MiB",
            report.records as f64 / verify_s,
            mib(verify_peak)
        );
        anyhow::Ok(())
    })
}
