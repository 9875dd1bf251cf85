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

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::{Message as Ws, client::IntoClientRequest};
use yrs::sync::protocol::{Message, SyncMessage};
use yrs::updates::encoder::Encode;
use yrs::{Map, ReadTxn, StateVector, Transact};

type Socket = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

struct Server {
    child: Child,
    ws_url: String,
    /// A document nobody edits (idle memory with nothing to sync).
    empty_ws_url: String,
    token: Option<String>,
    name: &'static str,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines().find_map(|l| l.strip_prefix("VmRSS:").map(|v| v.trim().trim_end_matches(" kB").parse().ok()))
        })
        .flatten()
        .unwrap_or(0)
}

async fn wait_http(url: &str) {
    for _ in 0..300 {
        if reqwest::get(url).await.is_ok() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{url} never answered");
}

/// Arno as a separate process, with an admin token and a project; returns the server.
async fn arno(data: &std::path::Path) -> anyhow::Result<Server> {
    let port = free_port();
    let metrics = free_port();
    let mut env = std::collections::BTreeMap::new();
    env.insert("ARNO_CONFIG".to_owned(), String::new());
    env.insert("ARNO_DATA_DIR".to_owned(), data.display().to_string());
    env.insert("ARNO_LISTEN".to_owned(), format!("127.0.0.1:{port}"));
    env.insert("ARNO_METRICS_LISTEN".to_owned(), format!("127.0.0.1:{metrics}"));
    env.insert("ARNO_LOG".to_owned(), "warn".to_owned());
    env.insert("ARNO_WORKFLOW_AWARENESS_PER_SECOND".to_owned(), "1000".to_owned());
    // First run of a data directory: an admin with a token, made in-process before the server starts.
    let token_file = data.join("bench-token");
    let fresh = !token_file.exists();
    if fresh {
        let config = arno::config::Config::load(&env).map_err(|e| anyhow::anyhow!("{e}"))?.config;
        let app = arno::app::build(config).await?;
        let (_, token) = common::admin_token(&app.state.db, "bench@example.com").await?;
        app.state.db.close().await;
        std::fs::write(&token_file, &token)?;
    }
    let token = std::fs::read_to_string(&token_file)?;
    let child = Command::new(env!("CARGO_BIN_EXE_arno"))
        .arg("serve")
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(&env)
        .stdout(Stdio::null())
        .spawn()?;
    let base = format!("http://127.0.0.1:{port}");
    wait_http(&format!("{base}/health")).await;
    if fresh {
        let http = reqwest::Client::new();
        let r = http
            .post(format!("{base}/api/v1/projects"))
            .bearer_auth(&token)
            .json(&serde_json::json!({"name": "Bench"}))
            .send()
            .await?;
        anyhow::ensure!(r.status().is_success(), "project: {}", r.status());
        let r = http
            .post(format!("{base}/api/v1/projects"))
            .bearer_auth(&token)
            .json(&serde_json::json!({"name": "Empty"}))
            .send()
            .await?;
        anyhow::ensure!(r.status().is_success(), "project: {}", r.status());
    }
    Ok(Server {
        child,
        ws_url: format!("ws://127.0.0.1:{port}/api/v1/workflow/bench"),
        empty_ws_url: format!("ws://127.0.0.1:{port}/api/v1/workflow/empty"),
        token: Some(token),
        name: "Arno",
    })
}

/// The stock Node server (`@y/websocket-server`), in-memory documents.
async fn node_server() -> anyhow::Result<Option<Server>> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/yjs-server");
    let bin = dir.join("node_modules/.bin/y-websocket-server");
    if !bin.exists() {
        eprintln!("skipping the Node comparison: run scripts/bench-workflow (installs benches/yjs-server)");
        return Ok(None);
    }
    let port = free_port();
    let child = Command::new("node")
        .arg(bin)
        .env("HOST", "127.0.0.1")
        .env("PORT", port.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    let base = format!("http://127.0.0.1:{port}");
    wait_http(&base).await;
    Ok(Some(Server {
        child,
        ws_url: format!("ws://127.0.0.1:{port}/bench"),
        empty_ws_url: format!("ws://127.0.0.1:{port}/empty"),
        token: None,
        name: "Node @y/websocket-server",
    }))
}

async fn connect(server: &Server) -> anyhow::Result<Socket> {
    Ok(connect_to(server, &server.ws_url).await?.0)
}

/// A synced connection, and the size of the document it received.
async fn connect_to(server: &Server, url: &str) -> anyhow::Result<(Socket, usize)> {
    let mut request = url.into_client_request()?;
    if let Some(t) = &server.token {
        request.headers_mut().insert("authorization", format!("Bearer {t}").parse()?);
    }
    let (mut socket, _) = tokio_tungstenite::connect_async(request).await?;
    // Sync: ask for everything and wait for the answer.
    socket.send(Ws::Binary(Message::Sync(SyncMessage::SyncStep1(StateVector::default())).encode_v1().into())).await?;
    loop {
        match socket.next().await {
            Some(Ok(Ws::Binary(b))) if b.first() == Some(&0) && b.get(1) == Some(&1) => return Ok((socket, b.len())),
            Some(Ok(_)) => {}
            other => anyhow::bail!("sync failed: {other:?}"),
        }
    }
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
async fn idle_memory(server: &Server, url: &str) -> anyhow::Result<(f64, usize)> {
    let before = rss_kib(server.child.id());
    let mut sockets = vec![];
    let mut size = 0;
    for _ in 0..1000 {
        let (socket, n) = connect_to(server, url).await?;
        sockets.push(socket);
        size = n;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = rss_kib(server.child.id());
    drop(sockets);
    Ok(((after.saturating_sub(before)) as f64 / 1000.0, size))
}

fn main() -> anyhow::Result<()> {
    let flood: usize = std::env::var("BENCH_UPDATES").ok().and_then(|v| v.parse().ok()).unwrap_or(2_000);
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async move {
        let dir = tempfile::tempdir()?;
        let mut servers = vec![arno(dir.path()).await?];
        if let Some(node) = node_server().await? {
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
            for url in [&server.empty_ws_url, &server.ws_url] {
                let (kib, size) = idle_memory(server, url).await?;
                println!("| {} | {:.1} KiB | {kib:.1} KiB |", server.name, size as f64 / 1024.0);
            }
        }
        // Cold load: 20,000 stored updates (2,000 screens), then a restart.
        drop(servers);
        let big = tempfile::tempdir()?;
        let server = arno(big.path()).await?;
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
        let server = arno(big.path()).await?;
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
