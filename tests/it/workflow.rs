//! The live workflow over the Yjs protocol: stock `yjs` + `y-websocket` clients from npm
//! (tests/yjs) connect, converge, see presence; roles are enforced on every update; what was
//! accepted survives a restart; malformed input closes only the sender's connection.

use std::path::Path;

use arno::auth::OrgRole;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::git::git;
use crate::support::{TestApp, api};

const COMPONENT: &str = "0b5e1c1e-6c1a-4f44-9d7e-0c1f0d6d1a01";
const LABEL: &str = "6f1c7d2e-1111-4a2b-8c3d-000000000001";
const SIZE: &str = "6f1c7d2e-1111-4a2b-8c3d-000000000002";

pub struct Workflow {
    pub app: TestApp,
    _roots: tempfile::TempDir,
    pub repo: std::path::PathBuf,
    pub project: String,
    pub maker: String,
    pub maker2: String,
    pub editor: String,
    pub viewer: String,
    pub admin: String,
}

pub async fn workflow(extra: &[(&str, &str)]) -> Workflow {
    let roots = tempfile::tempdir().unwrap();
    let root = roots.path().canonicalize().unwrap();
    let repo = root.join("ds");
    std::fs::create_dir_all(repo.join("Design_system")).unwrap();
    std::fs::write(
        repo.join("Design_system/Button.md"),
        [
            "---",
            &format!("id: {COMPONENT}"),
            "name: Button",
            "---",
            "# Button",
            "",
            "<!-- arno:props v1 -->",
            "| id | name | type | default | textEditable |",
            "|---|---|---|---|---|",
            &format!("| {LABEL} | label | string | \"Buy\" | true |"),
            &format!("| {SIZE} | size | string | \"large\" | false |"),
            "<!-- /arno:props -->",
            "",
        ]
        .join("\n"),
    )
    .unwrap();
    git(&repo, &["init", "-q", "-b", "main"]);
    git(&repo, &["add", "."]);
    git(&repo, &["commit", "-q", "-m", "init"]);
    let mut settings = vec![("ARNO_GIT_LOCAL_ROOTS", root.to_str().unwrap())];
    settings.extend_from_slice(extra);
    let app = TestApp::start_with(&settings).await;
    let (_, maker) = app.user_with_token("m1@example.com", OrgRole::Member).await;
    let r = api(Method::POST, &app.url("/api/v1/projects"), Some(&maker), Some(json!({"name": "DS"}))).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let _ = r;
    // Connect the repository holding the component (Admins connect existing repositories).
    let (_, admin) = app.user_with_token("root@example.com", OrgRole::Admin).await;
    let r = api(
        Method::POST,
        &app.url("/api/v1/projects"),
        Some(&admin),
        Some(json!({"name": "Flows", "repository": {"provider": "local", "path": repo}})),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let project = r.json()["id"].as_str().unwrap().to_owned();
    let mut tokens = vec![];
    for (email, role) in [
        ("m1@example.com", "maker"),
        ("m2@example.com", "maker"),
        ("e@example.com", "editor"),
        ("v@example.com", "viewer"),
    ] {
        let (user, token) = if email == "m1@example.com" {
            let mut conn = app.state.db.pool().acquire().await.unwrap();
            let user = arno::auth::users::find_by_email(&mut conn, email).await.unwrap().unwrap();
            (user, maker.clone())
        } else {
            app.user_with_token(email, OrgRole::Member).await
        };
        let url = app.url(&format!("/api/v1/projects/flows/members/{}", user.id));
        let r = api(Method::PUT, &url, Some(&admin), Some(json!({"role": role}))).await;
        assert!(r.status.is_success(), "{}", r.text);
        tokens.push(token);
    }
    let [maker, maker2, editor, viewer]: [String; 4] = tokens.try_into().unwrap();
    Workflow { app, _roots: roots, repo, project, maker, maker2, editor, viewer, admin }
}

/// Where the stock clients connect, and as whom.
pub struct Clients {
    pub base: String,
    pub project: String,
    pub tokens: Value,
}

impl Workflow {
    pub fn clients(&self) -> Clients {
        self.clients_at(&self.app.base)
    }

    pub fn clients_at(&self, base: &str) -> Clients {
        Clients {
            base: base.to_owned(),
            project: self.project.clone(),
            tokens: json!({"makerA": self.maker, "makerB": self.maker2, "editor": self.editor, "viewer": self.viewer}),
        }
    }
}

fn clients_dir() -> Option<std::path::PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/yjs");
    if !dir.join("node_modules/y-websocket").exists() {
        assert!(
            std::env::var("TEST_REQUIRE_SERVICES").as_deref() != Ok("1"),
            "tests/yjs has no node_modules (run npm ci there)"
        );
        eprintln!("skipping: tests/yjs/node_modules is missing");
        return None;
    }
    Some(dir)
}

fn script(c: &Clients, dir: &Path, mode: &str) -> std::process::Command {
    let mut command = std::process::Command::new("node");
    command
        .arg(dir.join("interop.mjs"))
        .env("BASE", &c.base)
        .env("PROJECT", &c.project)
        .env("TOKENS", c.tokens.to_string())
        .env("COMPONENT", COMPONENT)
        .env("LABEL", LABEL)
        .env("SIZE", SIZE)
        .env("MODE", mode);
    command
}

/// Run the stock-client script; `None` when its packages are not installed (and not required).
pub fn node_clients(c: &Clients, mode: &str, extra: &[(&str, &str)]) -> Option<Value> {
    let dir = clients_dir()?;
    let out = std::process::Command::new("node")
        .arg(dir.join("interop.mjs"))
        .env("BASE", &c.base)
        .env("PROJECT", &c.project)
        .env("TOKENS", c.tokens.to_string())
        .env("COMPONENT", COMPONENT)
        .env("LABEL", LABEL)
        .env("SIZE", SIZE)
        .env("MODE", mode)
        .envs(extra.iter().copied())
        .output()
        .expect("node runs");
    assert!(
        out.status.success(),
        "stock clients failed: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    Some(serde_json::from_str(stdout.lines().last().unwrap_or_default()).expect("one JSON line"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stock_yjs_clients_converge_see_presence_and_roles_are_enforced() {
    let mut w = workflow(&[]).await;
    let clients = w.clients();
    let Some(result) = tokio::task::block_in_place(|| node_clients(&clients, "interop", &[])) else { return };
    assert_eq!(result["converged"], true, "{result}");
    assert_eq!(result["fresh_equals_a"], true, "{result}");
    assert_eq!(result["a_has_evil"], false, "a viewer's screen reached others: {result}");
    assert_eq!(result["a_name"], "Home", "an editor renamed a screen: {result}");
    assert_eq!(result["a_size"], "large", "an editor changed a prop that is not textEditable: {result}");
    let content = &result["content"];
    assert_eq!(content["screens"]["s1"]["root"]["props"][LABEL], "Pay", "the editor's text edit is kept: {result}");
    assert_eq!(content["screens"]["s2"]["name"], "Checkout");
    assert_eq!(content["edges"][0]["to"]["screen_id"], "s2");
    assert!(content["screens"].get("evil").is_none());
    assert!(result["refusals"].as_i64().unwrap() >= 3, "{result}");

    // Every refusal is audited, with the reason: a connection's first at once, the rest as one
    // record with their count when it closes (which may be a moment after the clients exit).
    let mut refused: Vec<(String,)> = vec![];
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        refused = sqlx::query_as(
            "SELECT intent FROM audit_events WHERE action = 'workflow.update' AND outcome = 'denied' ORDER BY id",
        )
        .fetch_all(w.app.state.db.pool())
        .await
        .unwrap();
        let total: i64 = refused
            .iter()
            .map(|(i,)| serde_json::from_str::<Value>(i).ok().and_then(|v| v["count"].as_i64()).unwrap_or(1))
            .sum();
        if total >= 3 || tokio::time::Instant::now() > deadline {
            assert!(total >= 3, "{refused:?}");
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(refused.iter().any(|(i,)| i.contains("read this workflow")), "{refused:?}");
    assert!(refused.iter().any(|(i,)| i.contains("textEditable")), "{refused:?}");
    let metrics = reqwest::get(format!("{}/metrics", w.app.metrics_base)).await.unwrap().text().await.unwrap();
    assert!(metrics.lines().any(|l| l.starts_with("workflow_updates_total{result=\"rejected\"}")), "{metrics}");
    assert!(metrics.lines().any(|l| l.starts_with("workflow_update_apply_seconds_count")), "{metrics}");

    // Accepted means durable: after a restart the document is the same.
    w.app.restart().await;
    let clients = w.clients();
    let again = tokio::task::block_in_place(|| node_clients(&clients, "read", &[])).unwrap();
    assert_eq!(again["content"], *content);
}

/// A minimal y-protocols client over a raw WebSocket (for what stock clients never send).
pub mod raw {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::{Message as Ws, client::IntoClientRequest};
    use yrs::sync::protocol::{Message, MessageReader, SyncMessage};
    use yrs::updates::decoder::DecoderV1;
    use yrs::updates::encoder::Encode;

    pub type Socket = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

    pub async fn connect(base: &str, project: &str, token: &str) -> Socket {
        let url = format!("{}/api/v1/workflow/{project}", base.replace("http://", "ws://"));
        let mut request = url.into_client_request().unwrap();
        request.headers_mut().insert("authorization", format!("Bearer {token}").parse().unwrap());
        tokio_tungstenite::connect_async(request).await.expect("WebSocket connects").0
    }

    pub async fn send(s: &mut Socket, m: Message) {
        s.send(Ws::Binary(m.encode_v1().into())).await.unwrap();
    }

    /// Read until a message satisfies `want` (→ `Ok`), or the server closes (→ `Err(code)`).
    pub async fn until(s: &mut Socket, mut want: impl FnMut(&Message) -> bool) -> Result<Message, u16> {
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            let next = tokio::time::timeout_at(deadline, s.next()).await.expect("the server answers in time");
            match next {
                Some(Ok(Ws::Binary(data))) => {
                    let mut decoder = DecoderV1::from(data.as_ref());
                    for m in MessageReader::new(&mut decoder) {
                        let m = m.expect("the server sends valid y-protocols");
                        if want(&m) {
                            return Ok(m);
                        }
                    }
                }
                Some(Ok(Ws::Close(frame))) => return Err(frame.map_or(1005, |f| u16::from(f.code))),
                Some(Ok(_)) => {}
                Some(Err(_)) | None => return Err(1006),
            }
        }
    }

    pub fn is_step2(m: &Message) -> bool {
        matches!(m, Message::Sync(SyncMessage::SyncStep2(_)))
    }
}

#[tokio::test]
async fn hostile_input_closes_only_the_senders_connection() {
    use futures_util::SinkExt;
    use tokio_tungstenite::tungstenite::Message as Ws;
    use yrs::sync::AwarenessUpdate;
    use yrs::sync::awareness::AwarenessUpdateEntry;
    use yrs::sync::protocol::{Message, SyncMessage};
    use yrs::updates::decoder::Decode;
    use yrs::{Map, ReadTxn, StateVector, Transact};

    let w = workflow(&[("ARNO_WORKFLOW_MAX_MESSAGE_BYTES", "1MiB"), ("ARNO_WORKFLOW_AWARENESS_PER_SECOND", "5")]).await;
    let mut good = raw::connect(&w.app.base, &w.project, &w.maker).await;
    raw::send(&mut good, Message::Sync(SyncMessage::SyncStep1(StateVector::default()))).await;
    raw::until(&mut good, raw::is_step2).await.unwrap();

    let attacks: Vec<(&str, Ws, u16)> = vec![
        ("a truncated varint", Ws::Binary(vec![0x00, 0x02, 0xff].into()), 1007),
        ("garbage in an update", Ws::Binary(vec![0x00, 0x02, 0x05, 0xde, 0xad, 0xbe, 0xef, 0x01].into()), 1007),
        ("an unknown sync message", Ws::Binary(vec![0x00, 0x09, 0x00].into()), 1007),
        ("a text frame", Ws::Text("hello".into()), 1003),
        ("a 100 MB message", Ws::Binary(vec![0u8; 100 << 20].into()), 1009),
    ];
    for (what, message, code) in attacks {
        let mut bad = raw::connect(&w.app.base, &w.project, &w.maker2).await;
        let _ = bad.send(message).await;
        let closed = raw::until(&mut bad, |_| false).await;
        assert!(matches!(closed, Err(c) if c == code || (code == 1009 && c == 1006)), "{what}: {closed:?}");
    }
    // A flood of presence updates.
    let mut flood = raw::connect(&w.app.base, &w.project, &w.maker2).await;
    let mut closed = None;
    for clock in 0..200u32 {
        let update = AwarenessUpdate {
            clients: [(yrs::ClientID::new(42), AwarenessUpdateEntry { clock, json: "{\"user\":{}}".into() })].into(),
        };
        if flood
            .send(Ws::Binary(yrs::updates::encoder::Encode::encode_v1(&Message::Awareness(update)).into()))
            .await
            .is_err()
        {
            break;
        }
    }
    if closed.is_none() {
        closed = Some(raw::until(&mut flood, |_| false).await);
    }
    assert_eq!(closed, Some(Err(1008)), "a presence flood closes that connection");

    // The well-behaved connection still works: its update is stored and a newcomer gets it.
    let doc = arno::workflow::filter::new_doc();
    {
        let screens = doc.get_or_insert_map("screens");
        screens.insert(&mut doc.transact_mut(), "calm", "still here");
    }
    let update = doc.transact().encode_state_as_update_v1(&StateVector::default());
    raw::send(&mut good, Message::Sync(SyncMessage::Update(update))).await;
    let mut newcomer = raw::connect(&w.app.base, &w.project, &w.viewer).await;
    let mut found = false;
    for _ in 0..50 {
        raw::send(&mut newcomer, Message::Sync(SyncMessage::SyncStep1(StateVector::default()))).await;
        let Ok(Message::Sync(SyncMessage::SyncStep2(state))) = raw::until(&mut newcomer, raw::is_step2).await else {
            panic!("no sync step 2")
        };
        let copy = arno::workflow::filter::new_doc();
        copy.transact_mut().apply_update(yrs::Update::decode_v1(&state).unwrap()).unwrap();
        if arno::workflow::filter::content(&copy)["screens"]["calm"] == "still here" {
            found = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(found, "the good connection's update was lost");
    let metrics = reqwest::get(format!("{}/metrics", w.app.metrics_base)).await.unwrap().text().await.unwrap();
    let invalid = metrics
        .lines()
        .find_map(|l| l.strip_prefix("workflow_updates_total{result=\"invalid\"} "))
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or(0.0);
    assert!(invalid >= 2.0, "{metrics}");
}

/// Another `arno serve` process on the same database and data directory (a second replica).
pub struct Replica {
    child: std::process::Child,
    pub base: String,
}

impl Drop for Replica {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn replica(app: &TestApp) -> Replica {
    replica_with(&app.env).await
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

pub async fn replica_with(app_env: &std::collections::BTreeMap<String, String>) -> Replica {
    replica_at(app_env, free_port(), free_port()).await
}

async fn replica_at(app_env: &std::collections::BTreeMap<String, String>, p: u16, m: u16) -> Replica {
    let mut env = app_env.clone();
    env.insert("ARNO_LISTEN".into(), format!("127.0.0.1:{p}"));
    env.insert("ARNO_METRICS_LISTEN".into(), format!("127.0.0.1:{m}"));
    env.insert("ARNO_LOG".into(), "warn".into());
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_arno"))
        .arg("serve")
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(&env)
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("the arno binary starts");
    let base = format!("http://127.0.0.1:{p}");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        if let Ok(r) = reqwest::get(format!("{base}/ready")).await
            && r.status().is_success()
        {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the second process did not become ready");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    Replica { child, base }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_on_postgresql_fan_out_edits_and_presence() {
    if !crate::support::is_postgres() {
        eprintln!("skipping: fan-out across processes needs PostgreSQL (TEST_DATABASE=postgres)");
        return;
    }
    let w = workflow(&[]).await;
    let second = replica(&w.app).await;
    let clients = w.clients();
    let base2 = second.base.clone();
    let Some(result) = tokio::task::block_in_place(|| node_clients(&clients, "fanout", &[("BASE2", base2.as_str())]))
    else {
        return;
    };
    assert_eq!(result["same"], true, "{result}");
    assert!(result["content"]["screens"]["from-1"].is_object() && result["content"]["screens"]["from-2"].is_object());
    drop(second);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_acknowledged_update_survives_kill_9() {
    let mut w = workflow(&[]).await;
    let env = w.app.env.clone();
    // The server under test is a separate process, killed with SIGKILL mid-stream.
    w.app.halt().await;
    let mut expected: Vec<String> = vec![];
    let mut start = 0u64;
    for round in 0..3u64 {
        let server = replica_with(&env).await;
        let clients = w.clients_at(&server.base);
        // Kill at a different moment each round (50..650 ms into the stream of edits).
        let kill_after = std::time::Duration::from_millis(50 + (round * 7919 + 311) % 600);
        let pid = server.child.id();
        let Some(dir) = clients_dir() else { return };
        let mut child = script(&clients, &dir, "stream")
            .env("START", start.to_string())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("node runs");
        let lines = {
            use std::io::BufRead as _;
            let stdout = child.stdout.take().unwrap();
            std::thread::spawn(move || {
                let mut lines = std::io::BufReader::new(stdout).lines().map_while(Result::ok);
                // Kill the server a while after the edits started flowing.
                let streaming = lines.by_ref().any(|l| l == "STREAMING");
                if streaming {
                    std::thread::sleep(kill_after);
                }
                let _ = std::process::Command::new("kill").args(["-9", &pid.to_string()]).status();
                lines.collect::<Vec<String>>()
            })
        };
        let status = tokio::task::block_in_place(|| child.wait()).unwrap();
        let lines = lines.join().unwrap();
        assert!(status.success(), "round {round}: the clients failed: {lines:?}");
        let result: Value = serde_json::from_str(lines.last().expect("a result line")).unwrap();
        drop(server);
        let seen: Vec<String> =
            result["seen"].as_array().unwrap().iter().map(|v| v.as_str().unwrap().to_owned()).collect();
        assert!(!seen.is_empty(), "round {round}: nothing was acknowledged before the kill: {result}");
        eprintln!("round {round}: {} edits sent, {} acknowledged before kill -9", result["written"], seen.len());
        expected.extend(seen);
        start += result["written"].as_u64().unwrap() + 1;

        // Restarted: everything acknowledged so far is there.
        let server = replica_with(&env).await;
        let clients = w.clients_at(&server.base);
        let read = tokio::task::block_in_place(|| node_clients(&clients, "read", &[])).unwrap();
        let screens = read["content"]["screens"].as_object().unwrap();
        let missing: Vec<&String> = expected.iter().filter(|k| !screens.contains_key(k.as_str())).collect();
        assert!(missing.is_empty(), "round {round}: acknowledged updates lost after kill -9: {missing:?}");
        drop(server);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_edits_offline_clients_delays_and_a_restart_converge_without_loss() {
    let mut w = workflow(&[]).await;
    let env = w.app.env.clone();
    w.app.halt().await;
    let (port, metrics) = (free_port(), free_port());
    let server = replica_at(&env, port, metrics).await;
    let clients = w.clients_at(&server.base);
    let Some(dir) = clients_dir() else { return };
    let seed = std::env::var("TEST_SEED").unwrap_or_else(|_| "20261122".into());
    eprintln!("randomized convergence with SEED={seed} (set TEST_SEED to replay)");
    let mut child = script(&clients, &dir, "random")
        .env("SEED", &seed)
        .env("CLIENTS", "5")
        .env("OPS", "240")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("node runs");
    let (half_tx, half_rx) = std::sync::mpsc::channel();
    let lines = {
        use std::io::BufRead as _;
        let stdout = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            let mut out = vec![];
            for line in std::io::BufReader::new(stdout).lines().map_while(Result::ok) {
                if line == "HALF" {
                    let _ = half_tx.send(());
                }
                out.push(line);
            }
            out
        })
    };
    // Halfway: restart the server on the same address (a graceful stop, then a new process).
    let halfway = tokio::task::block_in_place(|| half_rx.recv_timeout(std::time::Duration::from_secs(60)));
    assert!(halfway.is_ok(), "the clients never reached half of their edits");
    let mut server = server;
    let pid = server.child.id();
    let _ = std::process::Command::new("kill").args(["-TERM", &pid.to_string()]).status();
    let stopped = tokio::task::block_in_place(|| server.child.wait()).unwrap();
    assert!(stopped.success(), "the server did not stop cleanly: {stopped}");
    drop(server);
    let server = replica_at(&env, port, metrics).await;
    let status = tokio::task::block_in_place(|| child.wait()).unwrap();
    let lines = lines.join().unwrap();
    assert!(status.success(), "the clients failed: {lines:?}");
    let result: Value = serde_json::from_str(lines.last().unwrap()).unwrap();
    assert_eq!(result["converged"], true, "{result}");
    assert_eq!(result["screens_match"], true, "a screen was lost or resurrected: {result}");
    assert_eq!(result["edges_match"], true, "an edge was lost: {result}");
    assert!(result["screens"].as_u64().unwrap() > 10, "{result}");
    drop(server);
}

/// The document as a newcomer gets it (a full sync over a raw connection).
pub async fn synced_content(base: &str, project: &str, token: &str) -> Value {
    use yrs::Transact;
    use yrs::sync::protocol::{Message, SyncMessage};
    use yrs::updates::decoder::Decode;
    let mut s = raw::connect(base, project, token).await;
    raw::send(&mut s, Message::Sync(SyncMessage::SyncStep1(yrs::StateVector::default()))).await;
    let Ok(Message::Sync(SyncMessage::SyncStep2(state))) = raw::until(&mut s, raw::is_step2).await else {
        panic!("no sync step 2")
    };
    let doc = arno::workflow::filter::new_doc();
    doc.transact_mut().apply_update(yrs::Update::decode_v1(&state).unwrap()).unwrap();
    arno::workflow::filter::content(&doc)
}

#[tokio::test]
async fn a_long_log_is_compacted_into_a_verified_snapshot_with_a_backup() {
    use yrs::sync::protocol::{Message, SyncMessage};
    use yrs::{Map, ReadTxn, Transact};
    let mut w = workflow(&[]).await;
    let mut s = raw::connect(&w.app.base, &w.project, &w.maker).await;
    // 600 separate edits (the threshold is 500 rows).
    let doc = arno::workflow::filter::new_doc();
    let screens = doc.get_or_insert_map("screens");
    for i in 0..600 {
        let before = doc.transact().state_vector();
        screens.insert(&mut doc.transact_mut(), format!("k{}", i % 50), i as i64);
        let update = doc.transact().encode_state_as_update_v1(&before);
        raw::send(&mut s, Message::Sync(SyncMessage::Update(update))).await;
    }
    let expected = arno::workflow::filter::content(&doc);
    let db = w.app.state.db.clone();
    let rows = |db: arno::db::Db| async move {
        let (n,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM workflow_updates").fetch_one(db.pool()).await.unwrap();
        let (m,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM workflow_snapshots WHERE kind = 'compaction'")
            .fetch_one(db.pool())
            .await
            .unwrap();
        (n, m)
    };
    // The worker picks the scheduled compaction up within a second or so.
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let (n, m) = rows(db.clone()).await;
        if m == 1 && n < 600 {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "no compaction: {n} rows, {m} snapshots");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    // Wait until all 600 edits are in (the last ones may arrive after the compaction).
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    while synced_content(&w.app.base, &w.project, &w.viewer).await != expected {
        assert!(tokio::time::Instant::now() < deadline, "the document is not what was sent");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let backups = arno::workflow::compact::backups(&w.app.state, &w.project).await.unwrap();
    assert_eq!(backups.len(), 1, "{backups:?}");

    // Compacting again folds what is left; a restart loads snapshot + rows into the same document.
    let again = arno::workflow::compact::compact(&w.app.state, &w.project).await.unwrap();
    if let Some(c) = &again {
        assert!(c.bytes_after <= c.bytes_before, "{c:?}");
    }
    assert_eq!(rows(db.clone()).await, (0, 1));
    w.app.restart().await;
    assert_eq!(synced_content(&w.app.base, &w.project, &w.viewer).await, expected);

    // Old backups go after the retention; the newest stays.
    let backups = arno::workflow::compact::backups(&w.app.state, &w.project).await.unwrap();
    assert_eq!(backups.len(), if again.is_some() { 2 } else { 1 });
    arno::workflow::compact::prune_backups(&w.app.state, std::time::Duration::ZERO).await.unwrap();
    let left = arno::workflow::compact::backups(&w.app.state, &w.project).await.unwrap();
    assert_eq!(left.len(), 1);
    assert_eq!(left[0], *backups.last().unwrap());
}

#[tokio::test]
async fn snapshots_named_and_periodic_diff_and_restore_as_a_new_change() {
    use yrs::sync::protocol::{Message, SyncMessage};
    use yrs::{Map, ReadTxn, Transact};
    let w = workflow(&[("ARNO_WORKFLOW_SNAPSHOT_INTERVAL", "1s")]).await;
    let base = w.app.url(&format!("/api/v1/projects/{}/workflow/snapshots", w.project));
    let mut s = raw::connect(&w.app.base, &w.project, &w.maker).await;
    let doc = arno::workflow::filter::new_doc();
    let screens = doc.get_or_insert_map("screens");
    let send = |f: &dyn Fn(&mut yrs::TransactionMut)| {
        let before = doc.transact().state_vector();
        f(&mut doc.transact_mut());
        doc.transact().encode_state_as_update_v1(&before)
    };
    let first = send(&|t| {
        screens.insert(t, "a", "Home");
    });
    raw::send(&mut s, Message::Sync(SyncMessage::Update(first))).await;
    let wait_for = |expected: Value| {
        let (base, project, token) = (w.app.base.clone(), w.project.clone(), w.viewer.clone());
        async move {
            for _ in 0..100 {
                if synced_content(&base, &project, &token).await == expected {
                    return;
                }
                tokio::time::sleep(std::time::Duration::from_millis(30)).await;
            }
            panic!("the document never became {expected}");
        }
    };
    wait_for(json!({"screens": {"a": "Home"}, "edges": []})).await;
    let r = api(Method::POST, &base, Some(&w.maker), Some(json!({"label": "First version"}))).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let v1 = r.json()["id"].as_str().unwrap().to_owned();
    // Viewers read history but do not write it.
    let r = api(Method::POST, &base, Some(&w.viewer), Some(json!({"label": "x"}))).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);

    let second = send(&|t| {
        screens.insert(t, "a", "Start");
        screens.insert(t, "b", "Checkout");
    });
    raw::send(&mut s, Message::Sync(SyncMessage::Update(second))).await;
    wait_for(json!({"screens": {"a": "Start", "b": "Checkout"}, "edges": []})).await;

    let d = api(Method::GET, &format!("{base}/{v1}/diff"), Some(&w.viewer), None).await;
    assert_eq!(d.status, StatusCode::OK, "{}", d.text);
    let d = d.json();
    assert_eq!((d["screens_added"].clone(), d["screens_changed"].clone()), (json!(["b"]), json!(["a"])), "{d}");

    // Periodic snapshots: the document changed and the interval (1 s) passed.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    arno::workflow::history::periodic(&w.app.state).await;
    let list = api(Method::GET, &base, Some(&w.viewer), None).await.json();
    let kinds: Vec<&str> = list.as_array().unwrap().iter().map(|s| s["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["periodic", "named"], "{list}");
    assert_eq!(list[1]["label"], "First version");
    assert_eq!((list[0]["screens"].as_i64(), list[1]["screens"].as_i64()), (Some(2), Some(1)));

    // Restore: a new change that open clients receive too.
    let r = api(Method::POST, &format!("{base}/{v1}/restore"), Some(&w.viewer), None).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let r = api(Method::POST, &format!("{base}/{v1}/restore"), Some(&w.maker2), None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.json()["screens_removed"], json!(["b"]));
    assert_eq!(
        synced_content(&w.app.base, &w.project, &w.viewer).await,
        json!({"screens": {"a": "Home"}, "edges": []})
    );
    let got = raw::until(&mut s, |m| matches!(m, Message::Sync(SyncMessage::Update(_)))).await;
    assert!(got.is_ok(), "the open connection did not receive the restore");
    // Restoring is itself undoable: the periodic snapshot brings "b" back.
    let periodic = list[0]["id"].as_str().unwrap();
    let r = api(Method::POST, &format!("{base}/{periodic}/restore"), Some(&w.maker), None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(
        synced_content(&w.app.base, &w.project, &w.viewer).await,
        json!({"screens": {"a": "Start", "b": "Checkout"}, "edges": []})
    );
    let audited: (i64,) =
        sqlx::query_as("SELECT COUNT(*) FROM audit_events WHERE action IN ('workflow.snapshot', 'workflow.restore') AND outcome = 'allowed'")
            .fetch_one(w.app.state.db.pool())
            .await
            .unwrap();
    assert_eq!(audited.0, 3);
}

#[tokio::test]
async fn canvases_render_instances_with_the_spec_each_reader_is_served() {
    let w = workflow(&[]).await;
    let url = w.app.url(&format!("/api/v1/projects/{}/workflow/components", w.project));
    let before = api(Method::GET, &url, Some(&w.viewer), None).await.json();
    let props = |v: &Value| -> Vec<String> {
        v[0]["props"].as_array().unwrap().iter().map(|p| p["id"].as_str().unwrap().to_owned()).collect()
    };
    assert_eq!(props(&before), [LABEL, SIZE]);
    assert_eq!(before[0]["props"][0]["textEditable"], true);
    // A save that drops the size prop changes what its author's canvas renders before anything
    // reaches git (branch-aware); others keep the default branch's until it is merged.
    let spec = w.app.url(&format!("/api/v1/projects/{}/specs/Design_system/Button.md", w.project));
    let current = api(Method::GET, &spec, Some(&w.maker), None).await.json();
    let content: String =
        current["content"].as_str().unwrap().lines().filter(|l| !l.contains(SIZE)).map(|l| format!("{l}\n")).collect();
    let r = api(
        Method::PUT,
        &spec,
        Some(&w.maker),
        Some(json!({"content": content, "base_version": current["version"], "session_id": "s"})),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let after = api(Method::GET, &url, Some(&w.maker), None).await.json();
    assert_eq!((props(&after), after[0]["source"].as_str()), (vec![LABEL.to_owned()], Some("yours")));
    let others = api(Method::GET, &url, Some(&w.viewer), None).await.json();
    assert_eq!(
        (props(&others), others[0]["source"].as_str()),
        (vec![LABEL.to_owned(), SIZE.to_owned()], Some("default_branch"))
    );
    assert_eq!(others[0]["unmerged_by"].as_array().map(Vec::len), Some(1));
}

#[tokio::test]
async fn the_workflow_reaches_git_as_a_canonical_file_on_the_editors_session_branch() {
    use yrs::sync::protocol::{Message, SyncMessage};
    use yrs::{Map, MapPrelim, ReadTxn, Transact};
    let w = workflow(&[("ARNO_WRITEBACK_DEBOUNCE_SECS", "1")]).await;
    let mut s = raw::connect(&w.app.base, &w.project, &w.maker).await;
    let doc = arno::workflow::filter::new_doc();
    {
        let screens = doc.get_or_insert_map("screens");
        let mut txn = doc.transact_mut();
        let screen = screens.insert(&mut txn, "s1", MapPrelim::default());
        // Inserted out of order: the file sorts keys.
        screen.insert(&mut txn, "name", "Home");
        screen.insert(&mut txn, "id", "s1");
        screen.insert(&mut txn, "x", 40);
    }
    let update = doc.transact().encode_state_as_update_v1(&yrs::StateVector::default());
    raw::send(&mut s, Message::Sync(SyncMessage::Update(update))).await;
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(20);
    let file = loop {
        let out = std::process::Command::new("git")
            .arg("-C")
            .arg(&w.repo)
            .args(["show", "arno/m1:.arno/workflow.json"])
            .output()
            .unwrap();
        if out.status.success() {
            break String::from_utf8(out.stdout).unwrap();
        }
        assert!(tokio::time::Instant::now() < deadline, "no workflow file on arno/m1");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    };
    let expected = "{\n  \"edges\": [],\n  \"screens\": {\n    \"s1\": {\n      \"id\": \"s1\",\n      \"name\": \"Home\",\n      \"x\": 40\n    }\n  }\n}\n";
    assert_eq!(file, expected);
    let author = git(&w.repo, &["log", "-1", "--format=%ae %s", "arno/m1"]);
    assert_eq!(author, "m1@example.com Arno: update .arno/workflow.json");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_that_fell_behind_is_resynchronised_not_dropped() {
    use futures_util::StreamExt;
    use tokio_tungstenite::tungstenite::Message as Ws;
    use yrs::sync::protocol::{Message, MessageReader, SyncMessage};
    use yrs::updates::decoder::{Decode, DecoderV1};
    use yrs::{Map, ReadTxn, Transact};
    let w = workflow(&[]).await;
    let mut reader = raw::connect(&w.app.base, &w.project, &w.viewer).await;
    let mut writer = raw::connect(&w.app.base, &w.project, &w.maker).await;
    // More updates than the room's broadcast buffer holds, while the reader does not read.
    let doc = arno::workflow::filter::new_doc();
    let screens = doc.get_or_insert_map("screens");
    for i in 0..6000i64 {
        let before = doc.transact().state_vector();
        screens.insert(&mut doc.transact_mut(), format!("k{}", i % 300), i);
        raw::send(&mut writer, Message::Sync(SyncMessage::Update(doc.transact().encode_state_as_update_v1(&before))))
            .await;
    }
    let expected = arno::workflow::filter::content(&doc);
    // Now the reader reads: it ends up with everything, on the same connection.
    let mine = arno::workflow::filter::new_doc();
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    while arno::workflow::filter::content(&mine) != expected {
        let next = tokio::time::timeout_at(deadline, reader.next()).await.expect("the reader catches up in time");
        let Some(Ok(Ws::Binary(data))) = next else { panic!("the reader's connection ended: {next:?}") };
        let mut decoder = DecoderV1::from(data.as_ref());
        for m in MessageReader::new(&mut decoder) {
            if let Message::Sync(SyncMessage::Update(u) | SyncMessage::SyncStep2(u)) = m.unwrap() {
                mine.transact_mut().apply_update(yrs::Update::decode_v1(&u).unwrap()).unwrap();
            }
        }
    }
}

#[tokio::test]
async fn browsers_open_the_socket_with_their_cookie_only_from_arnos_own_pages() {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let app = TestApp::start().await;
    let mut browser = app.admin_browser().await;
    let csrf = browser.session_csrf().await;
    let project =
        browser.json(Method::POST, "/api/v1/projects", &json!({"name": "Cookies"}), &[("x-csrf-token", &csrf)]).await;
    assert_eq!(project.status, StatusCode::CREATED, "{}", project.text);
    let id = project.json()["id"].as_str().unwrap().to_owned();
    let cookie = format!("arno_session={}", browser.session_cookie().expect("a session cookie"));
    let open = |origin: &'static str| {
        let url = format!("{}/api/v1/workflow/{id}", app.base.replace("http://", "ws://"));
        let cookie = cookie.clone();
        async move {
            let mut request = url.into_client_request().unwrap();
            request.headers_mut().insert("cookie", cookie.parse().unwrap());
            request.headers_mut().insert("origin", origin.parse().unwrap());
            tokio_tungstenite::connect_async(request).await
        }
    };
    // Another site, with the visitor's cookie: refused before the upgrade.
    match open("https://evil.example").await {
        Err(tokio_tungstenite::tungstenite::Error::Http(r)) => assert_eq!(r.status(), 403),
        other => panic!("a cross-site WebSocket was accepted: {:?}", other.map(|_| ())),
    }
    // Arno's own page: accepted.
    let own: &'static str = Box::leak(app.state.config.public_url.origin().ascii_serialization().into_boxed_str());
    assert!(open(own).await.is_ok());
}

#[tokio::test]
async fn a_document_at_its_size_limit_refuses_further_growth() {
    use yrs::sync::protocol::{Message, SyncMessage};
    use yrs::{Map, ReadTxn, Transact};
    let w = workflow(&[("ARNO_WORKFLOW_MAX_DOCUMENT_BYTES", "1MiB")]).await;
    let mut s = raw::connect(&w.app.base, &w.project, &w.maker).await;
    let doc = arno::workflow::filter::new_doc();
    let screens = doc.get_or_insert_map("screens");
    let big = "x".repeat(300 * 1024);
    let mut refused = None;
    for i in 0..5 {
        let before = doc.transact().state_vector();
        screens.insert(&mut doc.transact_mut(), format!("big{i}"), big.clone());
        raw::send(&mut s, Message::Sync(SyncMessage::Update(doc.transact().encode_state_as_update_v1(&before)))).await;
        if let Ok(Ok(Message::Auth(Some(reason)))) = tokio::time::timeout(
            std::time::Duration::from_millis(500),
            raw::until(&mut s, |m| matches!(m, Message::Auth(_))),
        )
        .await
        {
            refused = Some((i, reason));
            break;
        }
    }
    let (i, reason) = refused.expect("the size limit never refused an update");
    assert_eq!(i, 3, "the fourth 300 KiB screen crosses 1 MiB");
    assert!(reason.contains("size limit"), "{reason}");
    let stored = synced_content(&w.app.base, &w.project, &w.viewer).await;
    assert_eq!(stored["screens"].as_object().unwrap().len(), 3);
}

#[tokio::test]
async fn archiving_or_a_role_change_applies_to_open_connections_at_once() {
    use yrs::sync::protocol::{Message, SyncMessage};
    use yrs::{Map, ReadTxn, Transact};
    let w = workflow(&[]).await;
    let admin = w.admin.clone();
    let mut maker = raw::connect(&w.app.base, &w.project, &w.maker).await;
    let mut maker2 = raw::connect(&w.app.base, &w.project, &w.maker2).await;
    // On PostgreSQL, a Maker connected to another replica too.
    let second = if crate::support::is_postgres() { Some(replica(&w.app).await) } else { None };
    let mut far = match &second {
        Some(r) => Some(raw::connect(&r.base, &w.project, &w.maker).await),
        None => None,
    };
    let doc = arno::workflow::filter::new_doc();
    let screens = doc.get_or_insert_map("screens");
    // Send a screen; `Some(reason)` when the server refused it.
    async fn put(s: &mut raw::Socket, doc: &yrs::Doc, screens: &yrs::MapRef, key: &str) -> Option<String> {
        let before = doc.transact().state_vector();
        screens.insert(&mut doc.transact_mut(), key, key);
        raw::send(s, Message::Sync(SyncMessage::Update(doc.transact().encode_state_as_update_v1(&before)))).await;
        match tokio::time::timeout(
            std::time::Duration::from_millis(700),
            raw::until(s, |m| matches!(m, Message::Auth(_))),
        )
        .await
        {
            Ok(Ok(Message::Auth(reason))) => Some(reason.unwrap_or_default()),
            _ => None,
        }
    }
    assert_eq!(put(&mut maker, &doc, &screens, "before").await, None);

    // Archive: the Maker's open connection is refused on its very next update, with the reason.
    let project_url = w.app.url("/api/v1/projects/flows");
    let patch = |archived: bool| api(Method::PATCH, &project_url, Some(&admin), Some(json!({"archived": archived})));
    assert_eq!(patch(true).await.status, StatusCode::OK);
    let reason = put(&mut maker, &doc, &screens, "while-archived").await.expect("an archived workflow took an update");
    assert!(reason.contains("archived"), "{reason}");
    if let Some(far) = far.as_mut() {
        // The other replica hears of it (NOTIFY) well before its periodic re-check.
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        let d = arno::workflow::filter::new_doc();
        let m = d.get_or_insert_map("screens");
        let reason = put(far, &d, &m, "far-while-archived").await.expect("another replica took an update");
        assert!(reason.contains("archived"), "{reason}");
    }
    // A new connection too.
    let mut late = raw::connect(&w.app.base, &w.project, &w.maker).await;
    let other = arno::workflow::filter::new_doc();
    let other_screens = other.get_or_insert_map("screens");
    assert!(put(&mut late, &other, &other_screens, "late").await.is_some());

    // Restored: the same connection writes again (after a resync, as a refused client does).
    assert_eq!(patch(false).await.status, StatusCode::OK);
    let fresh = arno::workflow::filter::new_doc();
    let fresh_screens = fresh.get_or_insert_map("screens");
    assert_eq!(put(&mut maker, &fresh, &fresh_screens, "after").await, None);

    // A Maker made Viewer is refused at once on the connection they already have.
    let user = {
        let mut conn = w.app.state.db.pool().acquire().await.unwrap();
        arno::auth::users::find_by_email(&mut conn, "m2@example.com").await.unwrap().unwrap()
    };
    assert_eq!(put(&mut maker2, &fresh, &fresh_screens, "maker2").await, None);
    let url = w.app.url(&format!("/api/v1/projects/flows/members/{}", user.id));
    assert!(api(Method::PUT, &url, Some(&admin), Some(json!({"role": "viewer"}))).await.status.is_success());
    let reason = put(&mut maker2, &fresh, &fresh_screens, "demoted").await.expect("a demoted Maker still wrote");
    assert!(reason.contains("your role"), "{reason}");

    let stored = synced_content(&w.app.base, &w.project, &w.viewer).await;
    let keys: std::collections::BTreeSet<&str> =
        stored["screens"].as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(keys, ["after", "before", "maker2"].into_iter().collect(), "{stored}");
    let refused = w.app.refusals("action = 'workflow.update'").await;
    assert_eq!(refused, if second.is_some() { 4 } else { 3 });
}

#[tokio::test]
async fn a_deactivated_account_or_a_lost_membership_ends_open_connections_at_once() {
    let w = workflow(&[]).await;
    let mut viewer = raw::connect(&w.app.base, &w.project, &w.viewer).await;
    let mut editor = raw::connect(&w.app.base, &w.project, &w.editor).await;
    let mut maker = raw::connect(&w.app.base, &w.project, &w.maker).await;
    let id_of = |email: &'static str| {
        let db = w.app.state.db.clone();
        async move {
            let mut conn = db.pool().acquire().await.unwrap();
            arno::auth::users::find_by_email(&mut conn, email).await.unwrap().unwrap().id
        }
    };
    let viewer_id = id_of("v@example.com").await;
    let editor_id = id_of("e@example.com").await;
    let idle = |s: &'static str| format!("{s}: an idle connection is ended without sending anything");

    // An Admin deactivates the Viewer: their open (read-only, idle) connection ends at once.
    let mut admin = w.app.admin_browser().await;
    let csrf = admin.session_csrf().await;
    let r = admin.post_form(&format!("/admin/users/{viewer_id}/deactivate"), &[("csrf_token", &csrf)]).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(raw::until(&mut viewer, |_| false).await.unwrap_err(), 1008, "{}", idle("deactivated"));

    // The Editor is removed from the (private) project: they may no longer even read it.
    let url = w.app.url(&format!("/api/v1/projects/flows/members/{editor_id}"));
    assert!(api(Method::DELETE, &url, Some(&w.admin), None).await.status.is_success());
    assert_eq!(raw::until(&mut editor, |_| false).await.unwrap_err(), 1008, "{}", idle("removed"));

    // Others are untouched: the Maker's connection still answers.
    use yrs::sync::protocol::{Message, SyncMessage};
    raw::send(&mut maker, Message::Sync(SyncMessage::SyncStep1(yrs::StateVector::default()))).await;
    assert!(raw::until(&mut maker, raw::is_step2).await.is_ok(), "the Maker was disconnected too");
    // The ends are audited as refusals of the connection.
    let (denied,): (i64,) = sqlx::query_as(
        "SELECT count(*) FROM audit_events WHERE action = 'workflow.connect' AND outcome = 'denied' AND actor_id = $1",
    )
    .bind(&editor_id)
    .fetch_one(w.app.state.db.pool())
    .await
    .unwrap();
    assert_eq!(denied, 1);
}

#[tokio::test]
async fn each_screen_has_its_own_page_that_offers_what_the_role_may_do() {
    use yrs::sync::protocol::{Message, SyncMessage};
    use yrs::updates::decoder::Decode;
    use yrs::{Map, MapPrelim, ReadTxn, Transact};
    let w = workflow(&[]).await;
    let mut maker = raw::connect(&w.app.base, &w.project, &w.maker).await;
    let doc = arno::workflow::filter::new_doc();
    let screens = doc.get_or_insert_map("screens");
    let before = doc.transact().state_vector();
    screens.insert(&mut doc.transact_mut(), "s1", MapPrelim::from([("id", "s1"), ("name", "Pay <now>")]));
    raw::send(&mut maker, Message::Sync(SyncMessage::Update(doc.transact().encode_state_as_update_v1(&before)))).await;
    for _ in 0..50 {
        if synced_content(&w.app.base, &w.project, &w.viewer).await["screens"].get("s1").is_some() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }

    let mut maker_page = crate::support::Browser::new(&w.app.base);
    maker_page.login("m2@example.com", "a long enough password").await;
    let page = maker_page.get("/projects/flows/workflow/screens/s1").await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.text);
    assert!(page.text.contains("<span id=\"screen-title\" tabindex=\"-1\">Pay &#60;now&#62;</span>"), "{}", page.text);
    assert!(page.text.contains("data-screen=\"s1\""));
    assert!(page.text.contains("data-can-edit=\"true\""));
    assert!(page.text.contains("id=\"rename-form\""), "Makers rename and delete screens here");

    let mut viewer_page = crate::support::Browser::new(&w.app.base);
    viewer_page.login("v@example.com", "a long enough password").await;
    let page = viewer_page.get("/projects/flows/workflow/screens/s1").await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.text.contains("data-can-edit=\"false\"") && page.text.contains("data-can-edit-text=\"false\""));
    assert!(!page.text.contains("id=\"rename-form\""));
    assert!(page.text.contains("Read-only for your role."));
    // A screen that does not exist (or was deleted) is not found.
    assert_eq!(viewer_page.get("/projects/flows/workflow/screens/nope").await.status, StatusCode::NOT_FOUND);
    // Someone who is not a member does not learn that the project exists.
    let (_, _) = w.app.user_with_token("stranger@example.com", OrgRole::Member).await;
    let mut stranger = crate::support::Browser::new(&w.app.base);
    stranger.login("stranger@example.com", "a long enough password").await;
    assert_eq!(stranger.get("/projects/flows/workflow/screens/s1").await.status, StatusCode::NOT_FOUND);

    // Pages read the document as JSON from a copy kept per document state: an unchanged document
    // is not converted again, and a change that only deletes (the state vector stays the same) is
    // seen at once.
    let (id,): (String,) =
        sqlx::query_as("SELECT id FROM projects WHERE slug = 'flows'").fetch_one(w.app.state.db.pool()).await.unwrap();
    let room = w.app.state.rooms.open(&id).await.unwrap();
    let (first, again) = (room.content().await.unwrap(), room.content().await.unwrap());
    assert!(std::sync::Arc::ptr_eq(&first, &again), "an unchanged document is converted once");
    assert!(first["screens"].get("s1").is_some());
    let synced = room.awareness.lock().await.doc().transact().encode_state_as_update_v1(&Default::default());
    let copy = arno::workflow::filter::new_doc();
    copy.transact_mut().apply_update(yrs::Update::decode_v1(&synced).unwrap()).unwrap();
    let before = copy.transact().state_vector();
    let deleted = copy.transact().snapshot();
    copy.get_or_insert_map("screens").remove(&mut copy.transact_mut(), "s1");
    assert_eq!(copy.transact().state_vector(), before, "a deletion alone does not move the state vector");
    assert_ne!(copy.transact().snapshot(), deleted);
    let update = copy.transact().encode_state_as_update_v1(&before);
    raw::send(&mut maker, Message::Sync(SyncMessage::Update(update))).await;
    for _ in 0..100 {
        if room.content().await.unwrap()["screens"].get("s1").is_none() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(room.content().await.unwrap()["screens"].get("s1").is_none(), "the deletion is seen");
    assert_eq!(viewer_page.get("/projects/flows/workflow/screens/s1").await.status, StatusCode::NOT_FOUND);
}

/// Progressive load: the canvas page carries a picture of the workflow as it is, drawn before the
/// live document has loaded (and before any script runs).
#[tokio::test]
async fn the_canvas_page_carries_a_picture_of_the_workflow() {
    let w = workflow(&[]).await;
    let mut viewer = crate::support::Browser::new(&w.app.base);
    viewer.login("v@example.com", "a long enough password").await;
    let empty = viewer.get("/projects/flows/workflow").await;
    assert_eq!(empty.status, StatusCode::OK);
    assert!(empty.select_attr("svg.server-picture", "viewBox").is_none(), "no screens, no picture");
    crate::impact::seed(&w).await;
    let page = viewer.get("/projects/flows/workflow").await;
    let label = page.select_attr("svg.server-picture", "aria-label").unwrap();
    assert!(label.contains("4 screen(s) and 2 edge(s)"), "{label}");
    let boxes = page.select_attr("svg.server-picture path.far-boxes", "d").unwrap();
    assert_eq!(boxes.matches('M').count(), 4, "{boxes}");
    assert_eq!(page.select_attr("svg.server-picture path.far-edges", "d").unwrap().matches('M').count(), 2);
    assert!(page.select_text("svg.server-picture").unwrap().contains("Cart"));
    assert!(page.select_text("#add-screen-button").is_none(), "a Viewer has no form");
    // For a Maker, editing waits for the live canvas (the script enables it when synced).
    let mut maker = crate::support::Browser::new(&w.app.base);
    maker.login("m1@example.com", "a long enough password").await;
    let page = maker.get("/projects/flows/workflow").await;
    assert!(page.select_attr("#add-screen-button", "disabled").is_some());
}
