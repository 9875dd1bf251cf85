//! The live workflow under load, against Arno (release binary, SQLite, separate process) and —
//! the same clients, the same scenario — against a stock Node Yjs server from npm
//! (`@y/websocket-server`, installed in `benches/yjs-server` by `scripts/bench-workflow`).
//!
//! Per server: 1 writer and R readers (R = 50, 200) on one document:
//! - **throughput**: the writer sends `BENCH_UPDATES` (2,000) small updates as fast as it can;
//!   updates/s until every reader has all of them;
//! - **fan-out latency**: 500 updates paced at 100/s; p50/p99 from send to receipt over every
//!   (reader, update) pair;
//! - **memory per idle connection**: the server's RSS growth for 1,000 idle synced connections;
//! - **cold load** (Arno): a document of 20,000 stored updates (2,000 screens), restart, time
//!   until a new client has the full state.
//!
//! Run: `scripts/bench-workflow` (figures go to docs/performance.md). Durability is not equal:
//! Arno appends every update to its database (fsync) before passing it on; the Node server keeps
//! the document in memory only.

mod common;

use std::time::{Duration, Instant};

use common::live::{self, Server, Socket};
use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message as Ws;
use yrs::sync::protocol::{Message, SyncMessage};
use yrs::updates::encoder::Encode;
use yrs::{Map, ReadTxn, StateVector, Transact};

async fn connect(server: &Server) -> anyhow::Result<Socket> {
    Ok(live::connect(server, "bench").await?.0.socket)
}

/// Count document updates (sync type 2) arriving on a socket, with their arrival times.
fn is_update(b: &[u8]) -> bool {
    b.first() == Some(&0) && b.get(1) == Some(&2)
}

fn updates(n: usize, tag: &str) -> Vec<Vec<u8>> {
    let doc = yrs::Doc::new();
    let screens = doc.get_or_insert_map("screens");
    (0..n)
        .map(|i| {
            let before = doc.transact().state_vector();
            screens.insert(&mut doc.transact_mut(), format!("{tag}{}", i % 100), i as i64);
            Message::Sync(SyncMessage::Update(doc.transact().encode_state_as_update_v1(&before))).encode_v1()
        })
        .collect()
}

fn pct(sorted: &[Duration], p: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize].as_secs_f64() * 1000.0
}

/// The writer sends `n` updates (paced or not); every reader must receive all of them.
/// Returns updates/s (to the last receipt), the sorted latencies, and the readers.
async fn round(
    writer: &mut Socket,
    sockets: Vec<Socket>,
    n: usize,
    pace: Option<Duration>,
    tag: &str,
) -> anyhow::Result<(f64, Vec<Duration>, Vec<Socket>)> {
    let mut tasks = vec![];
    for mut s in sockets {
        tasks.push(tokio::spawn(async move {
            let mut got = Vec::with_capacity(n);
            while got.len() < n {
                match tokio::time::timeout(Duration::from_secs(60), s.next()).await {
                    Ok(Some(Ok(Ws::Binary(b)))) if is_update(&b) => got.push(Instant::now()),
                    Ok(Some(Ok(_))) => {}
                    _ => break,
                }
            }
            (s, got)
        }));
    }
    let messages = updates(n, tag);
    let mut sent = Vec::with_capacity(n);
    let started = Instant::now();
    for m in messages {
        sent.push(Instant::now());
        writer.send(Ws::Binary(m.into())).await?;
        if let Some(p) = pace {
            tokio::time::sleep(p).await;
        }
    }
    let mut latencies = vec![];
    let mut back = vec![];
    let mut last = started;
    for t in tasks {
        let (s, got) = t.await?;
        anyhow::ensure!(got.len() == n, "a reader got {} of {n} updates", got.len());
        for (i, at) in got.iter().enumerate() {
            latencies.push(at.duration_since(sent[i]));
            last = last.max(*at);
        }
        back.push(s);
    }
    latencies.sort();
    Ok((n as f64 / last.duration_since(started).as_secs_f64(), latencies, back))
}

/// One writer, `readers` readers: throughput (flood) and latency (paced at 100/s).
async fn fan_out(server: &Server, readers: usize, flood: usize) -> anyhow::Result<(f64, f64, f64)> {
    let mut sockets = vec![];
    for _ in 0..readers {
        sockets.push(connect(server).await?);
    }
    let mut writer = connect(server).await?;
    let (rate, _, sockets) = round(&mut writer, sockets, flood, None, &format!("f{readers}-")).await?;
    let (_, latencies, _) =
        round(&mut writer, sockets, 500, Some(Duration::from_millis(10)), &format!("p{readers}-")).await?;
    Ok((rate, pct(&latencies, 0.5), pct(&latencies, 0.99)))
}

/// RSS growth per connection for 1,000 idle synced connections, and the document's size.
async fn idle_memory(server: &Server, doc: &str) -> anyhow::Result<(f64, usize)> {
    let before = server.rss_kib();
    let mut sockets = vec![];
    let mut size = 0;
    for _ in 0..1000 {
        let (client, n) = live::connect(server, doc).await?;
        sockets.push(client.socket);
        size = n;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = server.rss_kib();
    drop(sockets);
    Ok(((after.saturating_sub(before)) as f64 / 1000.0, size))
}

fn main() -> anyhow::Result<()> {
    let flood: usize = std::env::var("BENCH_UPDATES").ok().and_then(|v| v.parse().ok()).unwrap_or(2_000);
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async move {
        let dir = tempfile::tempdir()?;
        let mut servers = vec![live::arno(dir.path(), None).await?];
        if let Some(node) = live::y_websocket_server().await? {
            servers.push(node);
        }
        println!("| server | readers | updates/s (flood of {flood}) | fan-out p50 | fan-out p99 |");
        println!("|---|---|---|---|---|");
        for server in &servers {
            for readers in [50, 200] {
                let (rate, p50, p99) = fan_out(server, readers, flood).await?;
                println!("| {} | {readers} | {rate:.0} | {p50:.1} ms | {p99:.1} ms |", server.name);
            }
        }
        println!();
        println!("| server | document | memory per idle connection |");
        println!("|---|---|---|");
        for server in &servers {
            for doc in ["empty", "bench"] {
                let (kib, size) = idle_memory(server, doc).await?;
                println!("| {} | {:.1} KiB | {kib:.1} KiB |", server.name, size as f64 / 1024.0);
            }
        }
        // Cold load: 20,000 stored updates (2,000 screens), then a restart.
        drop(servers);
        let big = tempfile::tempdir()?;
        let server = live::arno(big.path(), None).await?;
        let mut writer = connect(&server).await?;
        let doc = yrs::Doc::new();
        let screens = doc.get_or_insert_map("screens");
        for i in 0..20_000usize {
            let before = doc.transact().state_vector();
            screens.insert(&mut doc.transact_mut(), format!("screen-{}", i % 2_000), format!("Screen {i} with a longer name"));
            let m = Message::Sync(SyncMessage::Update(doc.transact().encode_state_as_update_v1(&before))).encode_v1();
            writer.send(Ws::Binary(m.into())).await?;
        }
        // Wait until stored: a fresh client sees the last one.
        let size = doc.transact().encode_state_as_update_v1(&StateVector::default()).len();
        tokio::time::sleep(Duration::from_secs(3)).await;
        drop(writer);
        drop(server);
        let server = live::arno(big.path(), None).await?;
        let started = Instant::now();
        let _reader = connect(&server).await?;
        println!();
        println!(
            "| cold load (Arno): 20,000 stored updates, 2,000 screens, {} KiB encoded | first full sync {:.0} ms after the connection |",
            size / 1024,
            started.elapsed().as_secs_f64() * 1000.0
        );
        anyhow::Ok(())
    })
}
