//! The live workflow: one Yjs document per project (screens and edges), co-edited over the
//! standard y-protocols WebSocket (sync step 1/2, update, awareness), so a stock `y-websocket`
//! client works unchanged.
//!
//! **Durability.** An accepted update is appended to the database log (`workflow_updates`) before
//! it is applied to the room's document, broadcast, or visible to anyone's sync: what a client
//! sees from the server is on disk. Updates arriving together are written in one transaction
//! (group commit, one writer task per room).
//!
//! **Roles** are enforced on every incoming update ([`filter`]); a refused update is not applied,
//! stored or broadcast; the sender gets a y-protocols `auth` message saying why, and the refusal
//! is audited.
//!
//! **Rooms** load lazily on the first connection and are dropped when idle. On PostgreSQL every
//! replica hears every accepted update (`NOTIFY arno_workflow` with the log ids, sent at commit)
//! and applies it to its own copy of the room, so clients on different replicas see each other.

pub mod compact;
pub mod fanout;
pub mod filter;
#[cfg(test)]
mod filter_sim;
#[cfg(test)]
mod fuzz;
pub mod history;
pub mod page;
pub mod picture;
pub mod store;
pub mod structs;
pub mod ws;

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock, Mutex as StdMutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use prometheus::{Histogram, HistogramOpts, IntCounterVec, IntGauge, Opts};
use tokio::sync::{broadcast, mpsc, watch};
use yrs::sync::protocol::{Message, SyncMessage};
use yrs::sync::{Awareness, AwarenessUpdate};
use yrs::updates::decoder::Decode;
use yrs::updates::encoder::Encode;
use yrs::{ReadTxn, Transact, Update};

use crate::db::{Backend, Db};
use crate::error::{AppError, AppResult};

/// `workflow_rooms_active`
pub static ROOMS_ACTIVE: LazyLock<IntGauge> =
    LazyLock::new(|| IntGauge::new("workflow_rooms_active", "Workflow documents loaded in memory").expect("metric"));
/// `workflow_connections`
pub static CONNECTIONS: LazyLock<IntGauge> =
    LazyLock::new(|| IntGauge::new("workflow_connections", "Open workflow WebSocket connections").expect("metric"));
/// `workflow_updates_total{result}`: `accepted`, `rejected` (by role), `invalid`, `failed` (not stored).
pub static UPDATES_TOTAL: LazyLock<IntCounterVec> = LazyLock::new(|| {
    IntCounterVec::new(Opts::new("workflow_updates_total", "Incoming workflow updates, by result"), &["result"])
        .expect("metric")
});
/// `workflow_update_apply_seconds`: from an update's arrival at the writer to its broadcast
/// (including the durable append).
pub static APPLY_SECONDS: LazyLock<Histogram> = LazyLock::new(|| {
    Histogram::with_opts(
        HistogramOpts::new("workflow_update_apply_seconds", "Workflow update: durable append, apply and broadcast")
            .buckets(vec![0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0]),
    )
    .expect("metric")
});
/// `workflow_room_bytes`: the encoded size of the loaded documents (their memory is a small multiple).
pub static ROOM_BYTES: LazyLock<IntGauge> = LazyLock::new(|| {
    IntGauge::new("workflow_room_bytes", "Encoded size of the workflow documents loaded in memory").expect("metric")
});

/// Limits on what a connection may send (configurable; see configuration.md).
#[derive(Debug, Clone)]
pub struct Limits {
    /// The largest WebSocket message accepted; larger closes the connection.
    pub max_message_bytes: usize,
    /// The largest a document may grow (encoded); updates beyond are refused.
    pub max_document_bytes: usize,
    /// Awareness messages per second per connection (a burst of twice this is allowed).
    pub awareness_per_second: u32,
    /// A room with no connection is dropped from memory after this long.
    pub idle_room: Duration,
}

/// A message for every connection of a room except its origin, encoded once: every connection
/// sends the same bytes.
#[derive(Debug)]
pub struct Outgoing {
    pub origin: u64,
    /// The y-protocols message.
    pub bytes: Bytes,
    /// For a document update, the update inside it: a connection that finds several queued
    /// merges them into one message.
    pub update: Option<Bytes>,
}

/// An accepted update on its way to the log.
struct Pending {
    data: Vec<u8>,
    user_id: String,
    origin: u64,
    /// Tells the origin connection its update could not be stored (it then reconnects).
    close: watch::Sender<Option<String>>,
    arrived: Instant,
    /// Told whether the update was stored (server-made updates wait for it).
    done: Option<tokio::sync::oneshot::Sender<bool>>,
    /// For a restricted writer: decided by the writer loop, in order, against the state it is
    /// applied to; a refusal is sent back to the connection.
    check: Option<Check>,
}

/// What a restricted writer may change, and where to send a refusal.
struct Check {
    editable: Arc<filter::Editable>,
    refused: mpsc::Sender<String>,
}

/// One loaded document and its connections.
pub struct Room {
    pub project_id: String,
    /// The document and the presence of everyone connected.
    pub awareness: tokio::sync::Mutex<Awareness>,
    broadcast: broadcast::Sender<Arc<Outgoing>>,
    writer: mpsc::Sender<Pending>,
    connections: AtomicUsize,
    /// The highest log id applied here (for catching up on PostgreSQL).
    last_id: AtomicI64,
    /// Encoded bytes of the document (approximately: loaded size plus accepted updates).
    bytes: AtomicUsize,
    /// Log rows since the last compaction was scheduled (approximately).
    log_rows: AtomicUsize,
    /// Changed since the last periodic snapshot.
    changed: std::sync::atomic::AtomicBool,
    last_snapshot: StdMutex<Instant>,
    idle_since: StdMutex<Option<Instant>>,
    /// Presence client id → (connection, user) that publishes it: a connection may publish
    /// only its own clients' presence (and pass on that of the same person's other connections,
    /// which stays theirs).
    pub(crate) presence_owners: StdMutex<HashMap<yrs::ClientID, (u64, String)>>,
    /// The document as JSON, for the document state it was made from (what it has seen and
    /// deleted): pages and write-backs read it without converting the document again.
    content_cache: StdMutex<Option<(yrs::Snapshot, Arc<serde_json::Value>)>>,
    /// Bumped (under the document's lock) whenever the document changes.
    version: AtomicU64,
    /// The whole document as a sync step 2 message, for the version it was encoded at: every new
    /// connection (and every resynchronised one) is sent the same bytes, encoded once.
    full_state: StdMutex<Option<(u64, Bytes)>>,
}

impl Room {
    /// The document's screens and edges as JSON (see [`filter::content`]). Under the room's lock
    /// only the document's state is read and encoded; the conversion, which grows with the
    /// document, runs on a blocking thread, and its result is kept until the document changes
    /// (its state vector or delete set), so page loads of an unchanged document convert nothing.
    pub async fn content(&self) -> AppResult<Arc<serde_json::Value>> {
        let (snapshot, encoded) = {
            let awareness = self.awareness.lock().await;
            let txn = awareness.doc().transact();
            let snapshot = txn.snapshot();
            if let Some((seen, value)) = self.content_cache.lock().unwrap_or_else(|e| e.into_inner()).as_ref()
                && *seen == snapshot
            {
                return Ok(value.clone());
            }
            (snapshot, txn.encode_state_as_update_v1(&yrs::StateVector::default()))
        };
        let value = tokio::task::spawn_blocking(move || -> Result<serde_json::Value, String> {
            let doc = filter::new_doc();
            let update = Update::decode_v1(&encoded).map_err(|e| e.to_string())?;
            doc.transact_mut().apply_update(update).map_err(|e| e.to_string())?;
            Ok(filter::content(&doc))
        })
        .await
        .map_err(|e| AppError::Internal(anyhow::anyhow!("workflow content task: {e}")))?
        .map_err(|e| AppError::Internal(anyhow::anyhow!("workflow content: {e}")))?;
        let value = Arc::new(value);
        *self.content_cache.lock().unwrap_or_else(|e| e.into_inner()) = Some((snapshot, value.clone()));
        Ok(value)
    }

    /// The whole document as a sync step 2 message (call with the document's lock held: the
    /// bytes are those of the document as `awareness` holds it).
    pub fn full_state(&self, awareness: &Awareness) -> Bytes {
        let version = self.version.load(Ordering::Acquire);
        let mut cache = self.full_state.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((v, bytes)) = cache.as_ref()
            && *v == version
        {
            return bytes.clone();
        }
        let update = awareness.doc().transact().encode_state_as_update_v1(&yrs::StateVector::default());
        let bytes = Bytes::from(Message::Sync(SyncMessage::SyncStep2(update)).encode_v1());
        *cache = Some((version, bytes.clone()));
        bytes
    }

    /// The document changed (with its lock held).
    fn bump(&self) {
        self.version.fetch_add(1, Ordering::Release);
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Outgoing>> {
        self.broadcast.subscribe()
    }

    pub fn size_bytes(&self) -> usize {
        self.bytes.load(Ordering::Relaxed)
    }

    /// A periodic snapshot was taken.
    pub fn snapshot_taken(&self) {
        self.changed.store(false, Ordering::Relaxed);
        *self.last_snapshot.lock().unwrap_or_else(|e| e.into_inner()) = Instant::now();
    }

    /// Queue an accepted update for the durable log (waits when the writer is behind).
    async fn submit(&self, p: Pending) -> AppResult<()> {
        self.writer.send(p).await.map_err(|_| AppError::Unavailable("the workflow room is closing; reconnect".into()))
    }

    /// A message that is not a document update (presence) for every connection but `origin`.
    fn broadcast_from(&self, origin: u64, bytes: Vec<u8>) {
        let _ = self.broadcast.send(Arc::new(Outgoing { origin, bytes: bytes.into(), update: None }));
    }

    /// Applied updates for every connection but `origin`, merged into as few messages as
    /// [`fanout::merged`] makes of them.
    fn broadcast_updates<B: AsRef<[u8]>>(&self, origin: u64, updates: &[B]) {
        for (update, bytes) in fanout::merged(updates) {
            let _ = self.broadcast.send(Arc::new(Outgoing { origin, bytes, update: Some(update) }));
        }
    }

    /// Apply updates that are already stored (loaded, or announced by another replica).
    async fn apply_stored(&self, updates: Vec<Vec<u8>>, origin: u64) {
        let awareness = self.awareness.lock().await;
        let mut applied = Vec::with_capacity(updates.len());
        for data in updates {
            match Update::decode_v1(&data) {
                Ok(u) => {
                    if let Err(e) = awareness.doc().transact_mut().apply_update(u) {
                        tracing::warn!(event_type = "workflow_apply_failed", project_id = %self.project_id, error = %e, "a stored update did not apply");
                        continue;
                    }
                    self.bump();
                    self.bytes.fetch_add(data.len(), Ordering::Relaxed);
                    self.changed.store(true, Ordering::Relaxed);
                    ROOM_BYTES.add(data.len() as i64);
                    applied.push(data);
                }
                Err(e) => {
                    tracing::warn!(event_type = "workflow_apply_failed", project_id = %self.project_id, error = %e, "a stored update did not decode")
                }
            }
        }
        self.broadcast_updates(origin, &applied);
    }
}

/// Every loaded room of this process.
pub struct Rooms {
    rooms: StdMutex<HashMap<String, Arc<Room>>>,
    /// Ends every connection at shutdown (they would otherwise hold the graceful stop).
    closing: watch::Sender<bool>,
    /// Serialises loading, so two first connections load a room once.
    loading: tokio::sync::Mutex<()>,
    db: Db,
    pub limits: Limits,
    /// When the workflow file is written to its editors' session branches.
    writeback: crate::projects::writeback::Schedule,
    /// This process, in presence announcements (so it ignores its own).
    replica: u64,
    /// Bumped whenever access changes (a project archived or restored, a member's role set or
    /// removed, an account's organisation role changed, an account deactivated), here or on
    /// another replica: every open connection is woken to look at its caller's access again.
    access_epoch: watch::Sender<u64>,
}

impl std::fmt::Debug for Rooms {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rooms").field("loaded", &self.rooms.lock().map(|r| r.len()).unwrap_or(0)).finish()
    }
}

/// The origin id of updates that did not come from a local connection.
const REMOTE: u64 = 0;

impl Rooms {
    pub fn new(db: Db, limits: Limits, writeback: crate::projects::writeback::Schedule) -> anyhow::Result<Rooms> {
        let mut b = [0u8; 8];
        getrandom::fill(&mut b).map_err(|e| anyhow::anyhow!("no source of randomness for the replica id: {e}"))?;
        Ok(Rooms {
            rooms: StdMutex::new(HashMap::new()),
            closing: watch::channel(false).0,
            loading: tokio::sync::Mutex::new(()),
            db,
            limits,
            writeback,
            replica: u64::from_le_bytes(b),
            access_epoch: watch::channel(0).0,
        })
    }

    /// The current access epoch (see [`Rooms::access_changed`]).
    pub fn access_epoch(&self) -> u64 {
        *self.access_epoch.borrow()
    }

    /// Changes of the access epoch, for connections to wait on.
    pub fn access_watch(&self) -> watch::Receiver<u64> {
        self.access_epoch.subscribe()
    }

    /// Who may see or write a project's workflow changed (`project_id`, or `*` for a change to
    /// an account that may touch any project): every open connection looks again at once, on
    /// every replica (PostgreSQL: `NOTIFY arno_workflow_access`).
    pub async fn access_changed(&self, project_id: &str) {
        self.access_epoch.send_modify(|e| *e += 1);
        if self.db.backend() == Backend::Postgres
            && let Err(e) = sqlx::query("SELECT pg_notify('arno_workflow_access', $1)")
                .bind(project_id)
                .execute(self.db.pool())
                .await
        {
            tracing::warn!(event_type = "workflow_access_fanout_failed", error = %e,
                "could not tell other replicas about an access change; they re-check within 15 s");
        }
    }

    /// Presence from a local connection: apply it, pass it to the room's other connections and,
    /// on PostgreSQL, to the other replicas (presence is not stored).
    pub async fn presence(&self, room: &Room, update: AwarenessUpdate) -> Result<(), String> {
        let encoded = Message::Awareness(update.clone()).encode_v1();
        {
            let mut awareness = room.awareness.lock().await;
            awareness.apply_update(update).map_err(|e| format!("malformed presence update: {e}"))?;
        }
        // To every connection, the sender too: y-websocket clients treat 30 s without any message
        // as a dead connection, and their own presence renewal (every 15 s) is what a lone
        // client hears back.
        room.broadcast_from(REMOTE, encoded.clone());
        // NOTIFY payloads are limited to 8000 bytes; larger presence stays on this replica.
        if self.db.backend() == Backend::Postgres && encoded.len() <= 5000 {
            use base64::Engine as _;
            let payload = format!(
                "{}:{}:{}",
                room.project_id,
                self.replica,
                base64::engine::general_purpose::STANDARD.encode(&encoded)
            );
            if let Err(e) =
                sqlx::query("SELECT pg_notify('arno_presence', $1)").bind(payload).execute(self.db.pool()).await
            {
                tracing::warn!(event_type = "presence_fanout_failed", error = %e, "could not pass presence to other replicas");
            }
        }
        Ok(())
    }

    /// Presence announced by another replica.
    async fn remote_presence(&self, payload: &str) {
        use base64::Engine as _;
        let mut parts = payload.splitn(3, ':');
        let (Some(project), Some(replica), Some(data)) = (parts.next(), parts.next(), parts.next()) else { return };
        if replica.parse::<u64>().ok() == Some(self.replica) {
            return;
        }
        let Some(room) = self.loaded(project) else { return };
        let Ok(bytes) = base64::engine::general_purpose::STANDARD.decode(data) else { return };
        let Ok(Message::Awareness(update)) = Message::decode_v1(&bytes) else { return };
        {
            let mut awareness = room.awareness.lock().await;
            if awareness.apply_update(update).is_err() {
                return;
            }
        }
        room.broadcast_from(REMOTE, bytes);
    }

    /// Close every connection (shutdown); clients reconnect to another replica or after restart.
    pub fn close(&self) {
        let _ = self.closing.send(true);
    }

    pub fn closing(&self) -> watch::Receiver<bool> {
        self.closing.subscribe()
    }

    fn loaded(&self, project_id: &str) -> Option<Arc<Room>> {
        self.rooms.lock().unwrap_or_else(|e| e.into_inner()).get(project_id).cloned()
    }

    /// The room of a project, loading it from the database on first use.
    pub async fn open(&self, project_id: &str) -> AppResult<Arc<Room>> {
        if let Some(room) = self.loaded(project_id) {
            return Ok(room);
        }
        let _guard = self.loading.lock().await;
        if let Some(room) = self.loaded(project_id) {
            return Ok(room);
        }
        let (pieces, last_id) = {
            let mut conn = self.db.pool().acquire().await?;
            store::load(&mut conn, project_id).await?
        };
        let doc = filter::new_doc();
        let mut bytes = 0;
        {
            let mut txn = doc.transact_mut();
            for piece in &pieces {
                bytes += piece.len();
                match Update::decode_v1(piece) {
                    Ok(u) => {
                        if let Err(e) = txn.apply_update(u) {
                            tracing::warn!(event_type = "workflow_apply_failed", project_id, error = %e, "a stored update did not apply");
                        }
                    }
                    Err(e) => {
                        tracing::warn!(event_type = "workflow_apply_failed", project_id, error = %e, "a stored update did not decode")
                    }
                }
            }
        }
        let (writer, rx) = mpsc::channel(1024);
        let room = Arc::new(Room {
            project_id: project_id.to_owned(),
            awareness: tokio::sync::Mutex::new(Awareness::new(doc)),
            broadcast: broadcast::channel(4096).0,
            writer,
            connections: AtomicUsize::new(0),
            last_id: AtomicI64::new(last_id),
            bytes: AtomicUsize::new(bytes),
            log_rows: AtomicUsize::new(pieces.len()),
            changed: std::sync::atomic::AtomicBool::new(false),
            last_snapshot: StdMutex::new(Instant::now()),
            idle_since: StdMutex::new(Some(Instant::now())),
            presence_owners: StdMutex::new(HashMap::new()),
            content_cache: StdMutex::new(None),
            version: AtomicU64::new(0),
            full_state: StdMutex::new(None),
        });
        tokio::spawn(write_loop(Arc::downgrade(&room), self.db.clone(), self.writeback, self.replica, rx));
        self.rooms.lock().unwrap_or_else(|e| e.into_inner()).insert(project_id.to_owned(), room.clone());
        ROOMS_ACTIVE.inc();
        ROOM_BYTES.add(bytes as i64);
        tracing::info!(
            event_type = "workflow_room_loaded",
            project_id,
            updates = pieces.len(),
            bytes,
            "workflow room loaded"
        );
        Ok(room)
    }

    /// A connection joined / left a room.
    pub fn joined(&self, room: &Room) {
        room.connections.fetch_add(1, Ordering::Relaxed);
        *room.idle_since.lock().unwrap_or_else(|e| e.into_inner()) = None;
        CONNECTIONS.inc();
    }

    pub fn left(&self, room: &Room) {
        if room.connections.fetch_sub(1, Ordering::Relaxed) == 1 {
            *room.idle_since.lock().unwrap_or_else(|e| e.into_inner()) = Some(Instant::now());
        }
        CONNECTIONS.dec();
    }

    /// Drop rooms nobody has used for `limits.idle_room` (they load again on the next connection).
    pub fn evict_idle(&self) -> usize {
        let mut rooms = self.rooms.lock().unwrap_or_else(|e| e.into_inner());
        let before = rooms.len();
        rooms.retain(|_, room| {
            let idle = room
                .idle_since
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .is_some_and(|t| t.elapsed() >= self.limits.idle_room);
            let keep = !idle || room.connections.load(Ordering::Relaxed) > 0;
            if !keep {
                ROOMS_ACTIVE.dec();
                ROOM_BYTES.sub(room.size_bytes() as i64);
            }
            keep
        });
        before - rooms.len()
    }

    /// An update made by the server (restoring a snapshot): stored, applied and sent to every
    /// connection like an accepted client update; returns once it is stored.
    pub async fn submit_server_update(&self, room: &Room, data: Vec<u8>, user_id: &str) -> AppResult<()> {
        let (done, stored) = tokio::sync::oneshot::channel();
        room.submit(Pending {
            data,
            user_id: user_id.to_owned(),
            origin: REMOTE,
            close: watch::channel(None).0,
            arrived: Instant::now(),
            done: Some(done),
            check: None,
        })
        .await?;
        match stored.await {
            Ok(true) => Ok(()),
            _ => Err(AppError::Unavailable("the change could not be stored; try again".into())),
        }
    }

    /// Loaded rooms that changed since their last periodic snapshot, taken `interval` ago or more.
    pub fn due_for_snapshot(&self, interval: Duration) -> Vec<Arc<Room>> {
        let rooms = self.rooms.lock().unwrap_or_else(|e| e.into_inner());
        rooms
            .values()
            .filter(|r| {
                r.changed.load(Ordering::Relaxed)
                    && r.last_snapshot.lock().unwrap_or_else(|e| e.into_inner()).elapsed() >= interval
            })
            .cloned()
            .collect()
    }

    /// Drop a room at once (its connections are told to reconnect by their closing channel).
    fn discard(&self, project_id: &str) {
        if let Some(room) = self.rooms.lock().unwrap_or_else(|e| e.into_inner()).remove(project_id) {
            ROOMS_ACTIVE.dec();
            ROOM_BYTES.sub(room.size_bytes() as i64);
        }
    }

    /// Another replica stored updates (PostgreSQL): apply them to the loaded room, if any.
    pub async fn announced(&self, project_id: &str, ids: &[i64]) {
        let Some(room) = self.loaded(project_id) else { return };
        match store::updates_by_id(&self.db, project_id, ids).await {
            Ok(updates) => {
                room.apply_stored(updates, REMOTE).await;
                if let Some(max) = ids.iter().max() {
                    room.last_id.fetch_max(*max, Ordering::Relaxed);
                }
            }
            Err(e) => {
                tracing::warn!(event_type = "workflow_fanout_failed", project_id, error = %e, "could not read announced updates; reloading the room");
                self.discard(project_id);
            }
        }
    }

    /// After the listener lost its connection: apply whatever was stored meanwhile.
    pub async fn catch_up(&self) {
        let rooms: Vec<Arc<Room>> = self.rooms.lock().unwrap_or_else(|e| e.into_inner()).values().cloned().collect();
        for room in rooms {
            let after = room.last_id.load(Ordering::Relaxed);
            match store::updates_after(&self.db, &room.project_id, after).await {
                Ok(rows) => {
                    let max = rows.iter().map(|r| r.0).max();
                    room.apply_stored(rows.into_iter().map(|r| r.1).collect(), REMOTE).await;
                    if let Some(max) = max {
                        room.last_id.fetch_max(max, Ordering::Relaxed);
                    }
                }
                Err(e) => {
                    tracing::warn!(event_type = "workflow_fanout_failed", error = %e, "could not catch up a room")
                }
            }
        }
    }

    /// On PostgreSQL: hear every replica's accepted updates until `stop`, reconnecting with backoff.
    pub async fn listen(self: Arc<Self>, database_url: String, mut stop: watch::Receiver<bool>) {
        if self.db.backend() != Backend::Postgres {
            return;
        }
        let mut delay = Duration::from_millis(500);
        loop {
            let listener = async {
                let mut l = sqlx::postgres::PgListener::connect(&database_url).await?;
                l.listen_all(["arno_workflow", "arno_presence", "arno_workflow_access"]).await?;
                Ok::<_, sqlx::Error>(l)
            };
            match listener.await {
                Ok(mut l) => {
                    delay = Duration::from_millis(500);
                    // Anything stored while we were not listening.
                    self.catch_up().await;
                    loop {
                        tokio::select! {
                            _ = stop.changed() => return,
                            n = l.recv() => match n {
                                Ok(n) if n.channel() == "arno_presence" => self.remote_presence(n.payload()).await,
                                Ok(n) if n.channel() == "arno_workflow_access" => {
                                    self.access_epoch.send_modify(|e| *e += 1);
                                }
                                Ok(n) => {
                                    let mut parts = n.payload().splitn(3, ':');
                                    if let (Some(project), Some(replica), Some(ids)) = (parts.next(), parts.next(), parts.next())
                                        && replica.parse::<u64>().ok() != Some(self.replica)
                                    {
                                        let ids: Vec<i64> = ids.split(',').filter_map(|i| i.parse().ok()).collect();
                                        self.announced(project, &ids).await;
                                    }
                                }
                                Err(e) => {
                                    tracing::warn!(event_type = "workflow_listener_lost", error = %e, "workflow listener lost its connection");
                                    break;
                                }
                            }
                        }
                    }
                }
                Err(e) => {
                    tracing::warn!(event_type = "workflow_listener_failed", error = %e, "cannot listen for workflow updates")
                }
            }
            tokio::select! {
                _ = stop.changed() => return,
                _ = tokio::time::sleep(delay) => {}
            }
            delay = (delay * 2).min(Duration::from_secs(30));
        }
    }
}

/// The room's single writer: append accepted updates durably (in batches), then apply and
/// broadcast them. Ends when the room is dropped.
async fn write_loop(
    room: std::sync::Weak<Room>,
    db: Db,
    writeback: crate::projects::writeback::Schedule,
    replica: u64,
    mut rx: mpsc::Receiver<Pending>,
) {
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        while batch.len() < 512 {
            match rx.try_recv() {
                Ok(p) => batch.push(p),
                Err(_) => break,
            }
        }
        let Some(room) = room.upgrade() else { return };
        if batch.iter().any(|p| p.check.is_some()) {
            batch = decide(&room, batch).await;
            if batch.is_empty() {
                continue;
            }
        }
        let rows: Vec<store::NewUpdate<'_>> =
            batch.iter().map(|p| store::NewUpdate { data: &p.data, user_id: Some(p.user_id.as_str()) }).collect();
        match store::append(&db, &room.project_id, replica, &rows).await {
            Ok(ids) => {
                drop(rows);
                {
                    let awareness = room.awareness.lock().await;
                    let mut txn = awareness.doc().transact_mut();
                    for p in &batch {
                        // Decoded and checked before it was queued.
                        if let Ok(u) = Update::decode_v1(&p.data)
                            && let Err(e) = txn.apply_update(u)
                        {
                            tracing::warn!(event_type = "workflow_apply_failed", project_id = %room.project_id, error = %e, "an accepted update did not apply");
                        }
                    }
                    drop(txn);
                    room.bump();
                }
                if let Some(max) = ids.iter().max() {
                    room.last_id.fetch_max(*max, Ordering::Relaxed);
                }
                if room.log_rows.fetch_add(ids.len(), Ordering::Relaxed) + ids.len() >= compact::THRESHOLD {
                    room.log_rows.store(0, Ordering::Relaxed);
                    if let Err(e) = compact::schedule(&db, &room.project_id).await {
                        tracing::warn!(event_type = "compaction_schedule_failed", error = %e, "could not schedule a compaction");
                    }
                }
                room.changed.store(true, Ordering::Relaxed);
                let authors: std::collections::BTreeSet<String> = batch.iter().map(|p| p.user_id.clone()).collect();
                let last = ids.iter().max().copied().unwrap_or_default();
                if let Err(e) = note_authors(&db, writeback, &room.project_id, &authors, last).await {
                    tracing::warn!(event_type = "workflow_writeback_failed", error = %e, "could not schedule the workflow file's write-back");
                }
                // One message for the whole batch: stored in one transaction, it is passed on as
                // one merged update (its sender, if it has one sender, does not get it back).
                let origin = batch[0].origin;
                let origin = if batch.iter().all(|p| p.origin == origin) { origin } else { REMOTE };
                let datas: Vec<&[u8]> = batch.iter().map(|p| p.data.as_slice()).collect();
                room.broadcast_updates(origin, &datas);
                drop(datas);
                for mut p in batch {
                    if let Some(done) = p.done.take() {
                        let _ = done.send(true);
                    }
                    let size = p.data.len();
                    room.bytes.fetch_add(size, Ordering::Relaxed);
                    ROOM_BYTES.add(size as i64);
                    APPLY_SECONDS.observe(p.arrived.elapsed().as_secs_f64());
                    UPDATES_TOTAL.with_label_values(&["accepted"]).inc();
                }
            }
            Err(e) => {
                tracing::error!(event_type = "workflow_store_failed", project_id = %room.project_id, error = %e, updates = batch.len(), "workflow updates could not be stored");
                for mut p in batch {
                    if let Some(done) = p.done.take() {
                        let _ = done.send(false);
                    }
                    UPDATES_TOTAL.with_label_values(&["failed"]).inc();
                    let _ =
                        p.close.send(Some("the server could not store a change; reconnect to send it again".into()));
                }
            }
        }
    }
}

/// Decide the restricted writers' updates of a batch, in order, each against the document plus
/// every update of the batch before it (what it will be applied to); returns the updates to
/// store, an Editor's as the server integrated it. CPU work, off the runtime.
async fn decide(room: &Room, batch: Vec<Pending>) -> Vec<Pending> {
    let state = {
        let awareness = room.awareness.lock().await;
        awareness.doc().transact().encode_state_as_update_v1(&yrs::StateVector::default())
    };
    let project_id = room.project_id.clone();
    let decided = tokio::task::spawn_blocking(move || {
        let fresh = || {
            let doc = filter::new_doc();
            if let Ok(u) = Update::decode_v1(&state) {
                let _ = doc.transact_mut().apply_update(u);
            }
            doc
        };
        let mut scratch = fresh();
        let mut out: Vec<Pending> = Vec::with_capacity(batch.len());
        for mut p in batch {
            let Some(check) = &p.check else {
                if let Ok(u) = Update::decode_v1(&p.data) {
                    let _ = scratch.transact_mut().apply_update(u);
                }
                out.push(p);
                continue;
            };
            let (verdict, spoiled) = filter::decide(&scratch, &p.data, &check.editable);
            if spoiled {
                // Rebuild: the state before the batch plus what was accepted so far.
                scratch = fresh();
                for q in &out {
                    if let Ok(u) = Update::decode_v1(&q.data) {
                        let _ = scratch.transact_mut().apply_update(u);
                    }
                }
            }
            match verdict {
                filter::Verdict::Apply(data) => {
                    p.data = data;
                    out.push(p);
                }
                filter::Verdict::Nothing => {}
                filter::Verdict::Refuse(reason) => {
                    UPDATES_TOTAL.with_label_values(&["rejected"]).inc();
                    // The connection audits and answers; a full queue means it is flooding.
                    let _ = check.refused.try_send(reason);
                }
            }
        }
        out
    })
    .await;
    decided.unwrap_or_else(|e| {
        tracing::error!(event_type = "workflow_filter_failed", project_id = %project_id, error = %e, "the workflow filter failed; the batch's updates are dropped");
        vec![]
    })
}

/// Schedule the workflow file for the session branches of the people who just changed it.
async fn note_authors(
    db: &Db,
    schedule: crate::projects::writeback::Schedule,
    project_id: &str,
    authors: &std::collections::BTreeSet<String>,
    version: i64,
) -> AppResult<()> {
    let mut tx = db.begin().await?;
    for user_id in authors {
        let handle: Option<(String,)> =
            sqlx::query_as("SELECT handle FROM users WHERE id = $1").bind(user_id).fetch_optional(&mut *tx).await?;
        let Some((handle,)) = handle else { continue };
        crate::projects::writeback::note_save(
            &mut tx,
            schedule,
            project_id,
            user_id,
            &handle,
            crate::projects::writeback::WORKFLOW_FILE,
            version,
            Some(""),
        )
        .await?;
    }
    tx.commit().await?;
    Ok(())
}
