//! Live collaboration at scale, against Arno (release binary, SQLite with `synchronous=FULL`, and
//! PostgreSQL when `BENCH_PG_URL` is set) and — same clients, same scenario, same run — the stock
//! `@hocuspocus/server` from npm (documents in memory, no extensions).
//!
//! `cargo bench --bench live -- fanout` (scripts/bench-fanout): one writer and N raw y-protocols
//! readers on one document; the writer sends small updates at a fixed rate for a few seconds;
//! every reader records when it sees each update (merged updates count every update they hold).
//! Reports p50/p99/max from send to receipt over every (reader, update) pair, deliveries/s, and
//! how many readers received every update.
//!
//! `cargo bench --bench live -- idle` (scripts/bench-idle-memory): the server's resident memory
//! growth per synced idle connection (1,000 connections, empty and 1 MiB documents), per room
//! (1,000 rooms × 5 connections), and a 10 MiB document's first full sync.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::live::{self, Server};
use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message as Ws;
use yrs::sync::protocol::{Message, SyncMessage};
use yrs::updates::encoder::Encode;
use yrs::{Map, ReadTxn, Transact};

/// The writers' client id.
const WRITER: u64 = 4_242_424;

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

struct Fanout {
    p50: f64,
    p99: f64,
    max: f64,
    per_second: f64,
    complete: usize,
}

/// One writer at `rate` updates/s for `seconds`, `readers` readers on a new document.
async fn fanout(server: &Server, readers: usize, rate: usize, seconds: usize) -> anyhow::Result<Fanout> {
    let doc = live::new_doc(server, &format!("fanout-{readers}-{rate}")).await?;
    let total = rate * seconds;
    let base = Instant::now();
    let sent: Arc<Vec<AtomicU64>> = Arc::new((0..total).map(|_| AtomicU64::new(0)).collect());
    let mut tasks = Vec::with_capacity(readers);
    for _ in 0..readers {
        let (mut client, _) = live::connect(server, &doc).await?;
        let sent = sent.clone();
        tasks.push(tokio::spawn(async move {
            let mut next = 0u64;
            let mut latencies: Vec<u32> = Vec::with_capacity(total);
            let mut last = base;
            while next < total as u64 {
                match tokio::time::timeout(Duration::from_secs(20), client.socket.next()).await {
                    Ok(Some(Ok(Ws::Binary(b)))) => {
                        let now = Instant::now();
                        let Some(m) = live::unframe(client.wire, &b) else { continue };
                        if !(live::is_sync(m, 2) || live::is_sync(m, 1)) {
                            continue;
                        }
                        let Some((from, to)) = live::update_of(m).and_then(|u| live::clock_range(u, WRITER)) else {
                            continue;
                        };
                        let at = now.duration_since(base).as_nanos() as u64;
                        for c in from.max(next)..to.min(total as u64) {
                            let s = sent[c as usize].load(Ordering::Acquire);
                            latencies.push((at.saturating_sub(s) / 1000) as u32);
                        }
                        if to > next {
                            next = to;
                            last = now;
                        }
                    }
                    Ok(Some(Ok(_))) => {}
                    _ => break,
                }
            }
            (latencies, next >= total as u64, last, client)
        }));
    }
    let (writer, _) = live::connect(server, &doc).await?;
    let wire = writer.wire;
    let messages: Vec<bytes::Bytes> =
        live::appends(total, WRITER).iter().map(|m| live::frame(wire, &doc, m).into()).collect();
    let (mut sink, mut stream) = writer.socket.split();
    // What the server sends the writer (Hocuspocus acknowledges each update) is read and dropped.
    let drain = tokio::spawn(async move { while let Some(Ok(_)) = stream.next().await {} });
    let started = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_millis(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut i = 0;
    while i < total {
        tick.tick().await;
        let due = ((started.elapsed().as_secs_f64() * rate as f64) as usize + 1).min(total);
        while i < due {
            sent[i].store(base.elapsed().as_nanos() as u64, Ordering::Release);
            sink.send(Ws::Binary(messages[i].clone())).await?;
            i += 1;
        }
    }
    let mut all: Vec<u32> = Vec::with_capacity(readers * total);
    let mut complete = 0;
    let mut last = started;
    for t in tasks {
        let (latencies, done, at, _client) = t.await?;
        complete += usize::from(done);
        all.extend_from_slice(&latencies);
        last = last.max(at);
    }
    drop(sink);
    drain.abort();
    let first = Duration::from_nanos(sent[0].load(Ordering::Relaxed));
    let span = last.duration_since(base).saturating_sub(first).as_secs_f64();
    let deliveries = all.len();
    all.sort_unstable();
    Ok(Fanout {
        p50: live::pct(&all, 0.5),
        p99: live::pct(&all, 0.99),
        max: live::pct(&all, 1.0),
        per_second: deliveries as f64 / span,
        complete,
    })
}

/// Grow `doc` to about `bytes` (64 KiB strings in a map) and wait until a new client gets it all.
async fn fill(server: &Server, doc: &str, bytes: usize) -> anyhow::Result<usize> {
    let (mut writer, _) = live::connect(server, doc).await?;
    let ydoc = yrs::Doc::with_client_id(WRITER + 1);
    let blob = ydoc.get_or_insert_map("blob");
    let chunk = 64 * 1024;
    for i in 0..bytes.div_ceil(chunk) {
        let before = ydoc.transact().state_vector();
        let text: String = (0..chunk).map(|j| (b'a' + ((i * 7 + j) % 26) as u8) as char).collect();
        blob.insert(&mut ydoc.transact_mut(), format!("chunk-{i}"), text);
        let m = Message::Sync(SyncMessage::Update(ydoc.transact().encode_state_as_update_v1(&before))).encode_v1();
        let f = writer.frame(&m);
        writer.socket.send(Ws::Binary(f.into())).await?;
    }
    for _ in 0..600 {
        let (_, size) = live::connect(server, doc).await?;
        if size >= bytes {
            return Ok(size);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    anyhow::bail!("{doc} never reached {bytes} bytes")
}

/// Resident memory growth per connection for `n` synced idle connections to `doc`.
async fn idle(server: &Server, doc: &str, n: usize) -> anyhow::Result<f64> {
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = server.rss_kib();
    let mut clients = Vec::with_capacity(n);
    for _ in 0..n {
        clients.push(live::connect(server, doc).await?.0);
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = server.rss_kib();
    drop(clients);
    Ok(after.saturating_sub(before) as f64 / n as f64)
}

/// Resident memory growth per room for `rooms` small documents with 5 synced connections each.
async fn rooms(server: &Server, rooms: usize) -> anyhow::Result<f64> {
    let mut docs = Vec::with_capacity(rooms);
    for i in 0..rooms {
        docs.push(live::new_doc(server, &format!("room-{i}")).await?);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = server.rss_kib();
    let mut clients = Vec::with_capacity(rooms * 5);
    let update = live::appends(1, WRITER + 2).remove(0);
    for doc in &docs {
        for k in 0..5 {
            let (mut c, _) = live::connect(server, doc).await?;
            if k == 0 {
                let f = c.frame(&update);
                c.socket.send(Ws::Binary(f.into())).await?;
            }
            clients.push(c);
        }
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = server.rss_kib();
    drop(clients);
    Ok(after.saturating_sub(before) as f64 / rooms as f64)
}

/// Median time from opening a connection to having the whole document, over 5 connections.
async fn first_sync(server: &Server, doc: &str) -> anyhow::Result<f64> {
    let mut times = vec![];
    for _ in 0..5 {
        let started = Instant::now();
        let _client = live::connect(server, doc).await?;
        times.push(started.elapsed().as_secs_f64() * 1000.0);
    }
    times.sort_by(f64::total_cmp);
    Ok(times[2])
}

async fn servers(dirs: &[tempfile::TempDir]) -> anyhow::Result<Vec<Server>> {
    let mut servers = vec![live::arno(dirs[0].path(), None).await?];
    if let Ok(url) = std::env::var("BENCH_PG_URL") {
        servers.push(live::arno(dirs[1].path(), Some(&url)).await?);
    }
    if let Some(h) = live::hocuspocus().await? {
        servers.push(h);
    }
    Ok(servers)
}

fn main() -> anyhow::Result<()> {
    let mode = std::env::args().skip(1).find(|a| !a.starts_with('-')).unwrap_or_else(|| "fanout".into());
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async move {
        let dirs = [tempfile::tempdir()?, tempfile::tempdir()?];
        let servers = servers(&dirs).await?;
        match mode.as_str() {
            "fanout" => {
                let seconds = env_or("BENCH_SECONDS", 6);
                let loads = [(200, 1_000), (500, 2_000)];
                println!("| server | readers × updates/s ({seconds} s) | p50 | p99 | max | deliveries/s | readers with every update |");
                println!("|---|---|---|---|---|---|---|");
                for (readers, rate) in loads {
                    for server in &servers {
                        let f = fanout(server, readers, rate, seconds).await?;
                        println!(
                            "| {} | {readers} × {rate} | {:.1} ms | {:.1} ms | {:.0} ms | {:.0} k | {}/{readers} |",
                            server.name,
                            f.p50,
                            f.p99,
                            f.max,
                            f.per_second / 1000.0,
                            f.complete
                        );
                    }
                }
            }
            "idle" => {
                let n = env_or("BENCH_CONNECTIONS", 1_000);
                let n_rooms = env_or("BENCH_ROOMS", 1_000);
                println!("| server | empty document, per connection | 1 MiB document, per connection | per room ({n_rooms} rooms × 5 connections) | 10 MiB document: first full sync | 10 MiB document, per connection (100) |");
                println!("|---|---|---|---|---|---|");
                for server in &servers {
                    let empty = live::new_doc(server, "idle-empty").await?;
                    let empty_kib = idle(server, &empty, n).await?;
                    let big = live::new_doc(server, "idle-1mib").await?;
                    fill(server, &big, 1 << 20).await?;
                    let big_kib = idle(server, &big, n).await?;
                    let room_kib = rooms(server, n_rooms).await?;
                    let large = live::new_doc(server, "idle-10mib").await?;
                    fill(server, &large, 10 << 20).await?;
                    let sync_ms = first_sync(server, &large).await?;
                    let large_kib = idle(server, &large, 100).await?;
                    println!(
                        "| {} | {empty_kib:.1} KiB | {big_kib:.1} KiB | {room_kib:.1} KiB | {sync_ms:.0} ms | {large_kib:.0} KiB |",
                        server.name
                    );
                }
            }
            other => anyhow::bail!("unknown mode {other}: fanout or idle"),
        }
        anyhow::Ok(())
    })
}
