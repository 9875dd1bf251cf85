//! What the live-collaboration benchmarks share: the servers under test as separate processes
//! (Arno's release binary on SQLite or PostgreSQL, the stock Node servers from npm in
//! `benches/yjs-server`), raw y-protocols clients that speak each server's framing, and a
//! reader of the clock ranges an update carries (so merged updates are counted exactly).

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::{Message as Ws, client::IntoClientRequest};
use yrs::StateVector;
use yrs::sync::protocol::{Message, SyncMessage};
use yrs::updates::encoder::Encode;

pub type Socket = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// How a server frames y-protocols messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wire {
    /// One document per socket, messages as they are (Arno, `@y/websocket-server`).
    Plain,
    /// Hocuspocus: every message starts with the document's name, and the first is a token.
    Hocuspocus,
}

/// A server under test; killed when dropped.
pub struct Server {
    pub child: Child,
    /// Where the WebSocket of document `name` is.
    base: String,
    pub wire: Wire,
    pub token: Option<String>,
    pub name: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    /// The URL of document `doc`'s socket (Arno: the project with that slug).
    pub fn url(&self, doc: &str) -> String {
        match self.wire {
            Wire::Plain if self.token.is_some() => format!("{}/api/v1/workflow/{doc}", self.base),
            Wire::Plain => format!("{}/{doc}", self.base),
            Wire::Hocuspocus => self.base.clone(),
        }
    }

    /// The server's resident memory now, KiB.
    pub fn rss_kib(&self) -> u64 {
        rss_kib(self.child.id())
    }
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

pub fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines().find_map(|l| l.strip_prefix("VmRSS:").map(|v| v.trim().trim_end_matches(" kB").parse().ok()))
        })
        .flatten()
        .unwrap_or(0)
}

pub async fn wait_http(url: &str) {
    for _ in 0..300 {
        if reqwest::get(url).await.is_ok() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{url} never answered");
}

/// Arno as a separate process on `data` (SQLite there, or `database_url`), with an Admin's token;
/// projects `bench` and `empty` exist. A second call on the same directory reuses both.
pub async fn arno(data: &std::path::Path, database_url: Option<&str>) -> anyhow::Result<Server> {
    let port = free_port();
    let metrics = free_port();
    let mut env = std::collections::BTreeMap::new();
    env.insert("ARNO_CONFIG".to_owned(), String::new());
    env.insert("ARNO_DATA_DIR".to_owned(), data.display().to_string());
    env.insert("ARNO_LISTEN".to_owned(), format!("127.0.0.1:{port}"));
    env.insert("ARNO_METRICS_LISTEN".to_owned(), format!("127.0.0.1:{metrics}"));
    env.insert("ARNO_LOG".to_owned(), "warn".to_owned());
    env.insert("ARNO_WORKFLOW_AWARENESS_PER_SECOND".to_owned(), "1000".to_owned());
    if let Some(url) = database_url {
        env.insert("ARNO_DATABASE_URL".to_owned(), url.to_owned());
    }
    // First run of a data directory: an Admin with a token, made in-process before the server starts.
    let token_file = data.join("bench-token");
    let fresh = !token_file.exists();
    if fresh {
        let config = arno::config::Config::load(&env).map_err(|e| anyhow::anyhow!("{e}"))?.config;
        let app = arno::app::build(config).await?;
        let (_, token) = super::admin_token(&app.state.db, "bench@example.com").await?;
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
    let server = Server {
        child,
        base: format!("ws://127.0.0.1:{port}"),
        wire: Wire::Plain,
        token: Some(token),
        name: if database_url.is_some() { "Arno (PostgreSQL)" } else { "Arno (SQLite)" }.to_owned(),
    };
    if fresh {
        for name in ["Bench", "Empty"] {
            create_project(&server, port, name).await?;
        }
    }
    Ok(server)
}

/// A project named `name` on an Arno server listening on `port`; returns its slug.
pub async fn create_project(server: &Server, port: u16, name: &str) -> anyhow::Result<String> {
    let token = server.token.as_deref().unwrap_or_default();
    let r = reqwest::Client::new()
        .post(format!("http://127.0.0.1:{port}/api/v1/projects"))
        .bearer_auth(token)
        .json(&serde_json::json!({"name": name}))
        .send()
        .await?;
    anyhow::ensure!(r.status().is_success(), "project {name}: {}", r.status());
    let body: serde_json::Value = r.json().await?;
    body["slug"].as_str().map(str::to_owned).ok_or_else(|| anyhow::anyhow!("no slug for {name}"))
}

/// The port an Arno server listens on.
pub fn port_of(server: &Server) -> u16 {
    server.base.rsplit(':').next().and_then(|p| p.parse().ok()).unwrap_or(0)
}

fn node_dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/yjs-server")
}

/// The stock `@y/websocket-server`, in-memory documents; `None` when npm did not install it.
pub async fn y_websocket_server() -> anyhow::Result<Option<Server>> {
    let bin = node_dir().join("node_modules/.bin/y-websocket-server");
    if !bin.exists() {
        eprintln!("skipping @y/websocket-server: run the bench's script (it installs benches/yjs-server)");
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
    wait_http(&format!("http://127.0.0.1:{port}")).await;
    Ok(Some(Server {
        child,
        base: format!("ws://127.0.0.1:{port}"),
        wire: Wire::Plain,
        token: None,
        name: "Node @y/websocket-server".to_owned(),
    }))
}

/// The stock `@hocuspocus/server` (no extensions: documents in memory only).
pub async fn hocuspocus() -> anyhow::Result<Option<Server>> {
    let dir = node_dir();
    if !dir.join("node_modules/@hocuspocus/server").exists() {
        eprintln!("skipping Hocuspocus: run the bench's script (it installs benches/yjs-server)");
        return Ok(None);
    }
    let port = free_port();
    let child = Command::new("node")
        .arg(dir.join("hocuspocus.mjs"))
        .current_dir(&dir)
        .env("PORT", port.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()?;
    wait_http(&format!("http://127.0.0.1:{port}")).await;
    let version = std::fs::read_to_string(dir.join("node_modules/@hocuspocus/server/package.json"))
        .ok()
        .and_then(|s| serde_json::from_str::<serde_json::Value>(&s).ok())
        .and_then(|v| v["version"].as_str().map(str::to_owned))
        .unwrap_or_default();
    Ok(Some(Server {
        child,
        base: format!("ws://127.0.0.1:{port}"),
        wire: Wire::Hocuspocus,
        token: None,
        name: format!("Hocuspocus {version}"),
    }))
}

fn write_var_uint(out: &mut Vec<u8>, mut n: u64) {
    while n >= 0x80 {
        out.push((n as u8 & 0x7f) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

fn write_var_string(out: &mut Vec<u8>, s: &str) {
    write_var_uint(out, s.len() as u64);
    out.extend_from_slice(s.as_bytes());
}

/// A client of one document on one server.
pub struct Client {
    pub socket: Socket,
    pub wire: Wire,
    pub doc: String,
}

impl Client {
    /// A y-protocols message as this server wants it.
    pub fn frame(&self, message: &[u8]) -> Vec<u8> {
        frame(self.wire, &self.doc, message)
    }
}

/// A y-protocols message framed for `wire` (Hocuspocus: the document's name first).
pub fn frame(wire: Wire, doc: &str, message: &[u8]) -> Vec<u8> {
    match wire {
        Wire::Plain => message.to_vec(),
        Wire::Hocuspocus => {
            let mut out = Vec::with_capacity(message.len() + doc.len() + 2);
            write_var_string(&mut out, doc);
            out.extend_from_slice(message);
            out
        }
    }
}

/// The y-protocols message in a frame received over `wire`.
pub fn unframe(wire: Wire, frame: &[u8]) -> Option<&[u8]> {
    match wire {
        Wire::Plain => Some(frame),
        Wire::Hocuspocus => {
            let mut at = 0;
            let len = read_var_uint(frame, &mut at)? as usize;
            // Hocuspocus' "sync reply" (4) is a sync message (0) that asks for no answer: see is_sync.
            frame.get(at + len..)
        }
    }
}

/// Is this y-protocols message a document sync message (type 0, or Hocuspocus' reply 4) of
/// sync type `step` (1 = step 2, the whole document; 2 = an update)?
pub fn is_sync(message: &[u8], step: u8) -> bool {
    matches!(message.first(), Some(0 | 4)) && message.get(1) == Some(&step)
}

/// A synced client of `doc`: it asked for everything and received it. Returns the client and
/// the size of the document message it received.
pub async fn connect(server: &Server, doc: &str) -> anyhow::Result<(Client, usize)> {
    let mut request = server.url(doc).into_client_request()?;
    if let Some(t) = &server.token {
        request.headers_mut().insert("authorization", format!("Bearer {t}").parse()?);
    }
    let (socket, _) = tokio_tungstenite::connect_async(request).await?;
    let mut client = Client { socket, wire: server.wire, doc: doc.to_owned() };
    if server.wire == Wire::Hocuspocus {
        // Auth, token "" (Hocuspocus without an onAuthenticate hook accepts any).
        let mut auth = vec![2, 0];
        write_var_string(&mut auth, "");
        let f = client.frame(&auth);
        client.socket.send(Ws::Binary(f.into())).await?;
    }
    let step1 = client.frame(&Message::Sync(SyncMessage::SyncStep1(StateVector::default())).encode_v1());
    client.socket.send(Ws::Binary(step1.into())).await?;
    loop {
        match client.socket.next().await {
            Some(Ok(Ws::Binary(b))) => {
                if unframe(client.wire, &b).is_some_and(|m| is_sync(m, 1)) {
                    return Ok((client, b.len()));
                }
            }
            Some(Ok(_)) => {}
            other => anyhow::bail!("sync failed: {other:?}"),
        }
    }
}

pub fn read_var_uint(b: &[u8], at: &mut usize) -> Option<u64> {
    let mut n: u64 = 0;
    let mut shift = 0;
    loop {
        let byte = *b.get(*at)?;
        *at += 1;
        n |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Some(n);
        }
        shift += 7;
        if shift > 63 {
            return None;
        }
    }
}

fn skip_var(b: &[u8], at: &mut usize) -> Option<()> {
    loop {
        let byte = *b.get(*at)?;
        *at += 1;
        if byte & 0x80 == 0 {
            return Some(());
        }
    }
}

fn skip_string(b: &[u8], at: &mut usize) -> Option<()> {
    let len = read_var_uint(b, at)? as usize;
    *at = at.checked_add(len).filter(|&e| e <= b.len())?;
    Some(())
}

/// Skip one lib0 `any` value.
fn skip_any(b: &[u8], at: &mut usize) -> Option<()> {
    let tag = *b.get(*at)?;
    *at += 1;
    match tag {
        127 | 126 | 121 | 120 => Some(()),
        125 => skip_var(b, at),
        124 => {
            *at += 4;
            Some(())
        }
        123 | 122 => {
            *at += 8;
            Some(())
        }
        119 | 116 => skip_string(b, at),
        118 => {
            for _ in 0..read_var_uint(b, at)? {
                skip_string(b, at)?;
                skip_any(b, at)?;
            }
            Some(())
        }
        117 => {
            for _ in 0..read_var_uint(b, at)? {
                skip_any(b, at)?;
            }
            Some(())
        }
        _ => None,
    }
}

/// The clock range `[from, to)` of `client`'s structs in a v1 update whose items hold `any`
/// values (what the benchmarks' writers send), or `None` if the update holds none of them or
/// something else. Merged updates (several items, or one squashed item) are counted exactly.
pub fn clock_range(update: &[u8], client: u64) -> Option<(u64, u64)> {
    let mut at = 0;
    let clients = read_var_uint(update, &mut at)?;
    for _ in 0..clients {
        let structs = read_var_uint(update, &mut at)?;
        let id = read_var_uint(update, &mut at)?;
        let from = read_var_uint(update, &mut at)?;
        let mut to = from;
        for _ in 0..structs {
            let info = *update.get(at)?;
            at += 1;
            let len = match info & 0x1f {
                0 | 10 => read_var_uint(update, &mut at)?,
                8 => {
                    if info & 0x80 != 0 {
                        skip_var(update, &mut at)?;
                        skip_var(update, &mut at)?;
                    }
                    if info & 0x40 != 0 {
                        skip_var(update, &mut at)?;
                        skip_var(update, &mut at)?;
                    }
                    if info & 0xc0 == 0 {
                        if read_var_uint(update, &mut at)? == 1 {
                            skip_string(update, &mut at)?;
                        } else {
                            skip_var(update, &mut at)?;
                            skip_var(update, &mut at)?;
                        }
                        if info & 0x20 != 0 {
                            skip_string(update, &mut at)?;
                        }
                    }
                    let n = read_var_uint(update, &mut at)?;
                    for _ in 0..n {
                        skip_any(update, &mut at)?;
                    }
                    n
                }
                _ => return None,
            };
            to += len;
        }
        if id == client {
            return Some((from, to));
        }
    }
    None
}

/// The update inside a y-protocols sync message (step 2 or update).
pub fn update_of(message: &[u8]) -> Option<&[u8]> {
    let mut at = 2;
    let len = read_var_uint(message, &mut at)? as usize;
    message.get(at..at.checked_add(len)?)
}

/// `n` updates of one writer (client id `client`): each appends one number to the array `log`,
/// as a y-protocols update message.
pub fn appends(n: usize, client: u64) -> Vec<Vec<u8>> {
    use yrs::{Array, ReadTxn, Transact};
    let doc = yrs::Doc::with_client_id(client);
    let log = doc.get_or_insert_array("log");
    (0..n)
        .map(|i| {
            let before = doc.transact().state_vector();
            log.push_back(&mut doc.transact_mut(), i as i64);
            Message::Sync(SyncMessage::Update(doc.transact().encode_state_as_update_v1(&before))).encode_v1()
        })
        .collect()
}

pub fn pct(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    f64::from(sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]) / 1000.0
}

/// A new, empty document called `name` (Arno: a new project; returns its slug).
pub async fn new_doc(server: &Server, name: &str) -> anyhow::Result<String> {
    if server.token.is_some() { create_project(server, port_of(server), name).await } else { Ok(name.to_owned()) }
}
