//! The WebSocket endpoint `GET /api/v1/workflow/{project_id}` (y-protocols) and its tickets.
//!
//! Authentication: the session cookie (browsers; the `Origin` must be Arno's own), an
//! `Authorization: Bearer` token, or `?ticket=` — single-use, valid one minute, issued by
//! `POST /api/v1/projects/{id}/workflow/ticket` — so no long-lived secret is ever put in a URL.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Json;
use axum::extract::ws::{CloseFrame, Message as WsMessage, WebSocket, WebSocketUpgrade};
use axum::extract::{FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;
use tokio::sync::{mpsc, watch};
use yrs::ClientID;
use yrs::sync::AwarenessUpdate;
use yrs::sync::protocol::{Message, MessageReader, SyncMessage};
use yrs::updates::decoder::{Decode, DecoderV1};
use yrs::updates::encoder::Encode;
use yrs::{ReadTxn, Transact, Update};

use super::filter::{self, Writer};
use super::{Pending, Room, UPDATES_TOTAL};
use crate::app::AppState;
use crate::audit::{self, Actor, Event, Origin, Outcome};
use crate::auth::access::{self, EditWorkflow, EditWorkflowText, ProjectRole, View};
use crate::auth::{ApiUser, AuthMethod, Authenticated};
use crate::error::{AppError, AppResult, ErrorBody};
use crate::http::RequestContext;
use crate::projects::store as project_store;

/// Tickets are good for this long, once.
const TICKET_TTL: Duration = Duration::from_secs(60);
/// A connection whose updates are refused this many times is closed (it is not listening).
const MAX_REFUSALS: u32 = 20;
/// Distinct awareness client ids one connection may speak for (a tab has one).
const MAX_AWARENESS_CLIENTS: usize = 8;
/// Updates that add nothing a read-only connection may send (a sync reply after each
/// reconnect is one); more closes it.
const MAX_IGNORED: u32 = 256;
/// y-protocols messages one WebSocket frame may carry (a client sends one).
const MAX_MESSAGES_PER_FRAME: usize = 16;
/// A refusal's reason is audited up to this many characters.
const MAX_REASON_CHARS: usize = 500;
/// The role of a connection is looked up again after this long.
const ROLE_TTL: Duration = Duration::from_secs(15);
/// Queued room messages one connection takes at once (merged into as few frames as it can).
const MAX_DRAIN: usize = 256;
#[derive(Deserialize)]
pub struct ConnectQuery {
    ticket: Option<String>,
}

/// `POST /api/v1/projects/{id}/workflow/ticket`: a single-use ticket to open the workflow socket
/// (valid for one minute), for clients that cannot send a cookie or a header with a WebSocket.
#[utoipa::path(post, path = "/api/v1/projects/{id}/workflow/ticket", tag = "workflow",
    security(("token" = []), ("session" = [])),
    params(("id" = String, Path, description = "Project id or slug")),
    responses((status = 201, description = "`{\"ticket\", \"expires_in\"}`"), (status = 404, body = ErrorBody)))]
pub async fn ticket(
    State(state): State<AppState>,
    ApiUser(auth): ApiUser,
    ctx: RequestContext,
    Path(id): Path<String>,
) -> AppResult<Response> {
    let origin = Origin::from(&ctx);
    let (project, _) = crate::projects::authorize::<View>(&state.db, &auth, &origin, &id, "workflow.ticket").await?;
    let credential = auth.credential().encode();
    let ticket = super::store::issue_ticket(&state.db, &auth.user.id, &credential, &project.id, TICKET_TTL).await?;
    let event = Event::new("workflow.ticket", Outcome::Allowed, Actor::of(&auth), &origin)
        .project(&project.id)
        .target("project", &project.id);
    audit::record_alone(&state.db, event).await?;
    Ok((axum::http::StatusCode::CREATED, Json(json!({"ticket": ticket, "expires_in": TICKET_TTL.as_secs()})))
        .into_response())
}

/// Who is connecting, and how they proved it.
async fn connecting_user(
    parts: &mut Parts,
    state: &AppState,
    project_key: &str,
    ticket: Option<&str>,
) -> AppResult<Authenticated> {
    if let Some(ticket) = ticket {
        let t = super::store::consume_ticket(&state.db, ticket).await?.ok_or(AppError::Unauthorized)?;
        let project = {
            let mut conn = state.db.pool().acquire().await?;
            project_store::find(&mut conn, project_key).await?.ok_or(AppError::Unauthorized)?
        };
        if project.id != t.project_id {
            return Err(AppError::Unauthorized);
        }
        return crate::auth::extract::from_ticket(state, &t.user_id, t.credential.as_deref())
            .await?
            .ok_or(AppError::Unauthorized);
    }
    let ApiUser(auth) = ApiUser::from_request_parts(parts, state).await?;
    // A browser sends its cookie with a cross-site WebSocket too: only Arno's own pages may use it.
    if auth.method == AuthMethod::Session {
        let origin = parts.headers.get(axum::http::header::ORIGIN).and_then(|v| v.to_str().ok());
        let ours = state.config.public_url.origin().ascii_serialization();
        if origin.is_some_and(|o| o != ours) {
            return Err(AppError::forbidden("this WebSocket may only be opened from Arno's own pages"));
        }
    }
    Ok(auth)
}

/// `GET /api/v1/workflow/{project_id}`: the workflow document's WebSocket (y-protocols).
pub async fn connect(
    State(state): State<AppState>,
    Path(project_key): Path<String>,
    Query(q): Query<ConnectQuery>,
    ctx: RequestContext,
    request: axum::extract::Request,
) -> AppResult<Response> {
    let (mut parts, _body) = request.into_parts();
    let ws = WebSocketUpgrade::from_request_parts(&mut parts, &state)
        .await
        .map_err(|_| AppError::validation("this endpoint speaks WebSocket (y-protocols)"))?;
    let auth = connecting_user(&mut parts, &state, &project_key, q.ticket.as_deref()).await?;
    let origin = Origin::from(&ctx);
    // Read before the checks: a change during them makes the connection look again at once.
    let writer_epoch = state.rooms.access_epoch();
    let (project, grant) =
        crate::projects::authorize::<View>(&state.db, &auth, &origin, &project_key, "workflow.connect").await?;
    let writer = writer_for(&state, &auth, &project.id, grant.role()).await?;
    let id = rand_id().ok_or_else(|| AppError::Unavailable("the server has no source of randomness".into()))?;
    let room = state.rooms.open(&project.id).await?;
    let limits = state.rooms.limits.clone();
    // Small buffers: an idle connection must cost little (they grow while a message arrives); a
    // client that stops reading is cut off by the broadcast lag, not buffered without end.
    let ws = ws
        .read_buffer_size(4 * 1024)
        .write_buffer_size(0)
        .max_write_buffer_size(limits.max_message_bytes.saturating_mul(2))
        .max_message_size(limits.max_message_bytes)
        .max_frame_size(limits.max_message_bytes);
    Ok(ws.on_upgrade(move |socket| async move {
        let conn = Connection {
            state: state.clone(),
            room: room.clone(),
            auth,
            origin,
            writer,
            writer_at: Instant::now(),
            writer_epoch,
            id,
            clients: HashSet::new(),
            refusals: 0,
            unaudited: None,
            ignored: 0,
            awareness_tokens: f64::from(limits.awareness_per_second) * 2.0,
            awareness_at: Instant::now(),
        };
        state.rooms.joined(&room);
        conn.run(socket).await;
        state.rooms.left(&room);
    }))
}

/// A presence state as others will see it: whatever the client published, but `user` is the
/// server's record of who is connected (name and handle), with a colour that is a plain
/// `#rrggbb` (the client's, if it is one; else one derived from the handle). `null` (gone) and
/// states that are not objects pass as they are; non-objects carry no name.
pub(super) fn presence_as_recorded(json: &str, user: &crate::auth::User) -> String {
    let Ok(serde_json::Value::Object(mut state)) = serde_json::from_str::<serde_json::Value>(json) else {
        return if json.trim() == "null" { "null".to_owned() } else { "{}".to_owned() };
    };
    let claimed = state.get("user").and_then(|u| u.get("color")).and_then(serde_json::Value::as_str);
    let color = match claimed {
        Some(c) if c.len() == 7 && c.starts_with('#') && c[1..].bytes().all(|b| b.is_ascii_hexdigit()) => c.to_owned(),
        _ => color_for(&user.handle).to_owned(),
    };
    state.insert("user".into(), json!({"name": user.name, "handle": user.handle, "color": color}));
    serde_json::Value::Object(state).to_string()
}

/// The palette of static/src/live.js `colorFor` (contrast-safe on white), by the same hash.
fn color_for(handle: &str) -> &'static str {
    const PALETTE: [&str; 6] = ["#1f5fbf", "#a13a00", "#0b7a3b", "#7a2a9a", "#8a5a00", "#b0204a"];
    let mut h: u32 = 0;
    for unit in handle.encode_utf16() {
        h = h.wrapping_mul(31).wrapping_add(u32::from(unit));
    }
    PALETTE[h as usize % PALETTE.len()]
}

/// A random connection id (never 0, the id of server-made updates); `None` without randomness.
fn rand_id() -> Option<u64> {
    let mut b = [0u8; 8];
    getrandom::fill(&mut b).ok()?;
    Some(u64::from_le_bytes(b).max(1))
}

/// What this user may write in this project's workflow.
async fn writer_for(
    state: &AppState,
    auth: &Authenticated,
    project_id: &str,
    role: Option<ProjectRole>,
) -> AppResult<Writer> {
    let project = {
        let mut conn = state.db.pool().acquire().await?;
        project_store::find(&mut conn, project_id).await?.ok_or(AppError::NotFound)?
    };
    let facts = project.facts(role);
    if access::holds::<EditWorkflow>(&auth.user, &facts) {
        return Ok(Writer::Full);
    }
    if !access::holds::<EditWorkflowText>(&auth.user, &facts) {
        let archived = project.state == crate::projects::model::ProjectState::Archived;
        return Ok(if archived { Writer::Archived } else { Writer::ReadOnly });
    }
    // Exactly the text-editable props this Editor is shown (projects::catalog).
    let catalog = {
        let mut conn = state.db.pool().acquire().await?;
        crate::projects::catalog::catalog(&mut conn, project_id, &auth.user.id).await?
    };
    let shown = catalog.entries.iter().map(|e| (&e.component_id, &e.component));
    let pending = catalog.others_new.iter().map(|p| (&p.component_id, &p.component));
    let mut editable: HashMap<String, HashSet<String>> = HashMap::new();
    for (id, model) in shown.chain(pending) {
        let Some(id) = id else { continue };
        editable.insert(id.clone(), model.props.iter().filter(|p| p.text_editable).map(|p| p.id.clone()).collect());
    }
    Ok(Writer::TextProps(Arc::new(editable)))
}

/// The y-protocols messages of one WebSocket frame: at most [`MAX_MESSAGES_PER_FRAME`], each
/// well formed, and nothing else (no truncated message, no trailing bytes).
pub(crate) fn read_frame(data: &[u8]) -> Result<Vec<Message>, End> {
    let mut decoder = DecoderV1::from(data);
    let mut messages = vec![];
    let mut consumed = 0;
    for message in MessageReader::new(&mut decoder) {
        if messages.len() >= MAX_MESSAGES_PER_FRAME {
            return Err(End::Error(1008, "too many messages in one frame".into()));
        }
        let message = message.map_err(|e| End::Error(1007, format!("malformed y-protocols message: {e}")))?;
        consumed += message.encode_v1().len();
        messages.push(message);
    }
    // The reader stops quietly at a truncated message: everything must have been read (and
    // written canonically, as every Yjs client does).
    if consumed != data.len() {
        return Err(End::Error(1007, "malformed y-protocols message: truncated or trailing bytes".into()));
    }
    Ok(messages)
}

struct Connection {
    state: AppState,
    room: Arc<Room>,
    auth: Authenticated,
    origin: Origin,
    writer: Writer,
    writer_at: Instant,
    /// The access epoch `writer` was computed in.
    writer_epoch: u64,
    id: u64,
    /// Awareness client ids this connection spoke for (removed when it closes).
    clients: HashSet<ClientID>,
    refusals: u32,
    /// Refusals after the first, not audited one by one: (count, last reason); one record with
    /// the count is written when the connection ends.
    unaudited: Option<(u32, String)>,
    /// Updates from a reader that added nothing (dropped quietly, but bounded).
    ignored: u32,
    awareness_tokens: f64,
    awareness_at: Instant,
}

/// Why a connection ends.
pub(crate) enum End {
    Closed,
    Error(u16, String),
}

impl Connection {
    async fn run(mut self, mut socket: WebSocket) {
        let mut outgoing = self.room.subscribe();
        let (close_tx, mut close_rx) = watch::channel::<Option<String>>(None);
        // Refusals of this connection's updates, decided by the room's writer loop.
        let (refused_tx, mut refused_rx) = mpsc::channel::<String>(MAX_REFUSALS as usize);
        let mut shutdown = self.state.rooms.closing();
        let mut access = self.state.rooms.access_watch();
        access.mark_unchanged();
        if *access.borrow() != self.writer_epoch {
            // Access changed while this connection was being set up.
            if let Err(end) = self.recheck().await {
                return self.finish(Some(socket), end).await;
            }
        }
        if *shutdown.borrow() {
            return self.finish(Some(socket), End::Error(1012, "the server is restarting".into())).await;
        }
        // The server speaks first: its state vector (sync step 1) and who is here.
        let hello = {
            let awareness = self.room.awareness.lock().await;
            let sv = awareness.doc().transact().state_vector();
            let mut msgs = vec![Message::Sync(SyncMessage::SyncStep1(sv)).encode_v1()];
            if let Ok(update) = awareness.update()
                && !update.clients.is_empty()
            {
                msgs.push(Message::Awareness(update).encode_v1());
            }
            msgs
        };
        let mut end = End::Closed;
        for m in hello {
            if socket.send(WsMessage::Binary(m.into())).await.is_err() {
                return self.finish(Some(socket), End::Closed).await;
            }
        }
        // One timer for the role's next look, moved only when the role was looked at again.
        let mut role_due = self.writer_at + ROLE_TTL;
        let role_timer = tokio::time::sleep_until(tokio::time::Instant::from_std(role_due));
        tokio::pin!(role_timer);
        loop {
            if self.writer_at + ROLE_TTL != role_due {
                role_due = self.writer_at + ROLE_TTL;
                role_timer.as_mut().reset(tokio::time::Instant::from_std(role_due));
            }
            tokio::select! {
                // Revocation and shutdown first: after access changed, not one more message
                // goes either way before the caller is looked at again.
                biased;
                Ok(()) = access.changed() => {
                    if let Err(e) = self.recheck().await {
                        end = e;
                        break;
                    }
                }
                // Sessions expire and go idle, tokens expire, identity providers change roles:
                // look again every little while even when nothing is sent.
                _ = &mut role_timer => {
                    if let Err(e) = self.recheck().await {
                        end = e;
                        break;
                    }
                }
                _ = shutdown.changed() => {
                    end = End::Error(1012, "the server is restarting".into());
                    break;
                }
                _ = close_rx.changed() => {
                    let reason = close_rx.borrow().clone().unwrap_or_default();
                    end = End::Error(1011, reason);
                    break;
                }
                incoming = socket.recv() => match incoming {
                    Some(Ok(WsMessage::Binary(data))) => {
                        match self.handle(&data, &close_tx, &refused_tx).await {
                            Ok(replies) => {
                                let mut failed = false;
                                for r in replies {
                                    if socket.send(WsMessage::Binary(r)).await.is_err() {
                                        failed = true;
                                        break;
                                    }
                                }
                                if failed { break; }
                            }
                            Err(e) => { end = e; break; }
                        }
                    }
                    Some(Ok(WsMessage::Close(_))) | None => break,
                    Some(Ok(WsMessage::Text(_))) => {
                        end = End::Error(1003, "y-protocols messages are binary".into());
                        break;
                    }
                    Some(Ok(_)) => {}
                    Some(Err(e)) => {
                        // Includes messages over the size limit.
                        end = End::Error(1009, format!("the connection failed: {e}"));
                        break;
                    }
                },
                msg = outgoing.recv() => {
                    use tokio::sync::broadcast::error::{RecvError, TryRecvError};
                    let mut queued = vec![];
                    let mut lagged = false;
                    match msg {
                        Ok(m) => queued.push(m),
                        Err(RecvError::Lagged(_)) => lagged = true,
                        Err(RecvError::Closed) => break,
                    }
                    // Whatever else is already queued goes out now too, merged where it can be.
                    while !lagged && queued.len() < MAX_DRAIN {
                        match outgoing.try_recv() {
                            Ok(m) => queued.push(m),
                            Err(TryRecvError::Lagged(_)) => lagged = true,
                            Err(_) => break,
                        }
                    }
                    let frames = if lagged {
                        // It fell behind the room (which keeps memory bounded): send it the whole
                        // document instead (applying known parts again changes nothing), the bytes
                        // every resynchronised connection shares. A client that does not read at
                        // all fills its bounded write buffer and is cut off.
                        let awareness = self.room.awareness.lock().await;
                        vec![self.room.full_state(&awareness)]
                    } else {
                        queued.retain(|m| m.origin != self.id);
                        super::fanout::coalesce(&queued)
                    };
                    let mut failed = false;
                    for f in frames {
                        if socket.send(WsMessage::Binary(f)).await.is_err() {
                            failed = true;
                            break;
                        }
                    }
                    if failed { break; }
                }
                Some(reason) = refused_rx.recv() => {
                    match self.refused(reason).await {
                        Ok(reply) => {
                            if socket.send(WsMessage::Binary(reply.into())).await.is_err() { break; }
                        }
                        Err(e) => { end = e; break; }
                    }
                }
            }
        }
        self.finish(Some(socket), end).await
    }

    /// Look at the caller's access again: after an access change anywhere (at once), and before
    /// an update once ROLE_TTL passed (changes made at the identity provider). A deactivated
    /// account, or a caller who may no longer see the project, is disconnected; otherwise what
    /// they may write is recomputed from their current roles.
    async fn recheck(&mut self) -> Result<(), End> {
        let epoch = self.state.rooms.access_epoch();
        match crate::auth::extract::still_valid(&self.state, &self.auth).await {
            Ok(true) => {}
            Ok(false) => {
                return Err(End::Error(1008, "your session ended or your token was revoked; sign in again".into()));
            }
            Err(e) => return Err(End::Error(1011, e.to_string())),
        }
        let found = {
            let mut conn = self.state.db.pool().acquire().await.map_err(|e| End::Error(1011, e.to_string()))?;
            crate::auth::users::find_any(&mut conn, &self.auth.user.id)
                .await
                .map_err(|e| End::Error(1011, e.to_string()))?
        };
        match found {
            Some((user, false)) => self.auth.user = user,
            _ => return Err(End::Error(1008, "your account is deactivated".into())),
        }
        let grant = match crate::projects::authorize::<View>(
            &self.state.db,
            &self.auth,
            &self.origin,
            &self.room.project_id,
            "workflow.connect",
        )
        .await
        {
            Ok((_, grant)) => grant,
            Err(AppError::NotFound | AppError::Forbidden(_)) => {
                return Err(End::Error(1008, "you no longer have access to this project".into()));
            }
            Err(e) => return Err(End::Error(1011, e.to_string())),
        };
        self.writer = writer_for(&self.state, &self.auth, &self.room.project_id, grant.role())
            .await
            .map_err(|e| End::Error(1011, e.to_string()))?;
        self.writer_at = Instant::now();
        self.writer_epoch = epoch;
        Ok(())
    }

    /// The end of a connection: a closing frame if the socket can still take one, then the
    /// presence of its people removed.
    async fn finish(mut self, socket: Option<WebSocket>, end: End) {
        if let Some((count, reason)) = self.unaudited.take() {
            self.audit_refusal(&reason, count).await;
        }
        if let (End::Error(code, reason), Some(mut socket)) = (&end, socket) {
            tracing::info!(event_type = "workflow_connection_closed", project_id = %self.room.project_id, code, reason = %reason, "workflow connection closed by the server");
            let reason: String = reason.chars().take(120).collect();
            // Bounded: a client that reads nothing must not keep this connection (and its
            // people's presence) forever.
            let close = WsMessage::Close(Some(CloseFrame { code: *code, reason: reason.into() }));
            let _ = tokio::time::timeout(Duration::from_secs(2), socket.send(close)).await;
            // The closing handshake: read (and drop) what the client still sends until it closes
            // too, so the connection ends with our close frame delivered rather than a reset.
            let _ = tokio::time::timeout(Duration::from_secs(2), async {
                while let Some(Ok(m)) = socket.recv().await {
                    if matches!(m, WsMessage::Close(_)) {
                        break;
                    }
                }
            })
            .await;
        }
        // Everyone else learns this connection's people left.
        if !self.clients.is_empty() {
            let ids: Vec<ClientID> = {
                let owners = self.room.presence_owners.lock().unwrap_or_else(|e| e.into_inner());
                // Ids another tab took over stay theirs.
                self.clients.drain().filter(|id| owners.get(id).is_none_or(|(c, _)| *c == self.id)).collect()
            };
            {
                let mut owners = self.room.presence_owners.lock().unwrap_or_else(|e| e.into_inner());
                for id in &ids {
                    owners.remove(id);
                }
            }
            let removal = {
                let mut awareness = self.room.awareness.lock().await;
                for id in &ids {
                    awareness.remove_state(*id);
                }
                awareness.update_with_clients(ids)
            };
            if let Ok(update) = removal {
                let _ = self.state.rooms.presence(&self.room, update).await;
            }
        }
    }

    /// Handle one WebSocket message (it may hold several y-protocols messages).
    async fn handle(
        &mut self,
        data: &[u8],
        close: &watch::Sender<Option<String>>,
        refused: &mpsc::Sender<String>,
    ) -> Result<Vec<bytes::Bytes>, End> {
        let mut replies: Vec<bytes::Bytes> = vec![];
        let messages = read_frame(data).inspect_err(|e| {
            if matches!(e, End::Error(1007, _)) {
                UPDATES_TOTAL.with_label_values(&["invalid"]).inc();
            }
        })?;
        // Answered once per frame: each answer is the whole document (or everyone's presence).
        let (mut step1, mut query) = (false, false);
        for message in messages {
            match message {
                Message::Sync(SyncMessage::SyncStep1(_)) if step1 => {}
                Message::AwarenessQuery if query => {}
                Message::Sync(SyncMessage::SyncStep1(sv)) => {
                    step1 = true;
                    let awareness = self.room.awareness.lock().await;
                    // A new client knows nothing: it gets the bytes every new client gets.
                    if sv.is_empty() {
                        replies.push(self.room.full_state(&awareness));
                    } else {
                        let update = awareness.doc().transact().encode_state_as_update_v1(&sv);
                        replies.push(Message::Sync(SyncMessage::SyncStep2(update)).encode_v1().into());
                    }
                }
                Message::Sync(SyncMessage::SyncStep2(data)) | Message::Sync(SyncMessage::Update(data)) => {
                    if let Some(refusal) = self.update(data, close, refused).await? {
                        replies.push(refusal.into());
                    }
                }
                Message::Awareness(update) => self.awareness(update).await?,
                Message::AwarenessQuery => {
                    query = true;
                    let awareness = self.room.awareness.lock().await;
                    if let Ok(update) = awareness.update() {
                        replies.push(Message::Awareness(update).encode_v1().into());
                    }
                }
                Message::Auth(_) | Message::Custom(..) => {}
            }
        }
        Ok(replies)
    }

    /// A document update from the client. A reader's is never stored (one that adds nothing is
    /// dropped quietly, any other refused); a Maker's is queued for the durable log; an Editor's
    /// is queued to be decided by the writer loop against the state it will be applied to.
    async fn update(
        &mut self,
        data: Vec<u8>,
        close: &watch::Sender<Option<String>>,
        refused: &mpsc::Sender<String>,
    ) -> Result<Option<Vec<u8>>, End> {
        // Read by Arno's own reader first, whatever the role: it bounds what yrs would do with
        // hostile bytes (nesting, counts, a client's structs twice; structs.rs).
        super::structs::decode(&data).map_err(|e| {
            UPDATES_TOTAL.with_label_values(&["invalid"]).inc();
            End::Error(1007, e)
        })?;
        let update = Update::decode_v1(&data).map_err(|e| {
            UPDATES_TOTAL.with_label_values(&["invalid"]).inc();
            End::Error(1007, format!("malformed update: {e}"))
        })?;
        if update.is_empty() {
            return Ok(None);
        }
        if self.writer_at.elapsed() > ROLE_TTL || self.state.rooms.access_epoch() != self.writer_epoch {
            self.recheck().await?;
        }
        let check = match &self.writer {
            Writer::ReadOnly | Writer::Archived => {
                let doc = self.room.awareness.lock().await.doc().clone();
                let adds = tokio::task::spawn_blocking(move || filter::adds_anything(&doc, &update))
                    .await
                    .map_err(|e| End::Error(1011, format!("the update could not be checked: {e}")))?;
                if adds {
                    let reason = match self.writer {
                        Writer::Archived => {
                            "the project is archived, so its workflow is read-only until it is restored"
                        }
                        _ => "your role can read this workflow but not change it",
                    };
                    UPDATES_TOTAL.with_label_values(&["rejected"]).inc();
                    return self.refused(reason.to_owned()).await.map(Some);
                }
                self.ignored += 1;
                if self.ignored > MAX_IGNORED {
                    return Err(End::Error(1008, "too many updates from a read-only connection".into()));
                }
                return Ok(None);
            }
            Writer::Full | Writer::TextProps(_) => {
                let sv = self.room.awareness.lock().await.doc().transact().state_vector();
                if !filter::has_new_structs(&update, &sv) && update.delete_set().is_empty() {
                    self.ignored += 1;
                    if self.ignored > MAX_IGNORED {
                        return Err(End::Error(1008, "too many updates that change nothing".into()));
                    }
                    return Ok(None);
                }
                match &self.writer {
                    Writer::TextProps(editable) => {
                        Some(super::Check { editable: editable.clone(), refused: refused.clone() })
                    }
                    _ => None,
                }
            }
        };
        let limit = self.state.rooms.limits.max_document_bytes;
        if self.room.size_bytes().saturating_add(data.len()) > limit {
            UPDATES_TOTAL.with_label_values(&["rejected"]).inc();
            let reason = format!("the workflow document reached its size limit ({limit} bytes)");
            return self.refused(reason).await.map(Some);
        }
        let pending = Pending {
            data,
            user_id: self.auth.user.id.clone(),
            origin: self.id,
            close: close.clone(),
            arrived: Instant::now(),
            done: None,
            check,
        };
        self.room.submit(pending).await.map_err(|e| End::Error(1012, e.to_string()))?;
        Ok(None)
    }

    /// One of this connection's updates was refused: audit it (the first one at once, later
    /// ones as a count when the connection ends), close a connection that keeps sending them,
    /// and tell the client (y-protocols' "permission denied": clients drop their copy and sync
    /// again).
    async fn refused(&mut self, reason: String) -> Result<Vec<u8>, End> {
        self.refusals += 1;
        if self.refusals == 1 {
            self.audit_refusal(&reason, 1).await;
        } else {
            let (n, last) = self.unaudited.get_or_insert((0, String::new()));
            *n += 1;
            last.clone_from(&reason);
        }
        if self.refusals >= MAX_REFUSALS {
            return Err(End::Error(4403, "too many refused updates".into()));
        }
        Ok(Message::Auth(Some(reason)).encode_v1())
    }

    async fn audit_refusal(&self, reason: &str, count: u32) {
        let reason: String = reason.chars().take(MAX_REASON_CHARS).collect();
        let mut intent = json!({"reason": reason});
        if count > 1 {
            intent["count"] = json!(count);
        }
        let event = Event::new("workflow.update", Outcome::Denied, Actor::of(&self.auth), &self.origin)
            .project(&self.room.project_id)
            .target("workflow", &self.room.project_id)
            .intent(intent);
        if let Err(e) = audit::record_alone(&self.state.db, event).await {
            tracing::warn!(event_type = "audit_failed", error = %e, "could not record a refused workflow update");
        }
    }

    /// Presence: apply and pass on, within the rate and size limits.
    async fn awareness(&mut self, update: AwarenessUpdate) -> Result<(), End> {
        let rate = f64::from(self.state.rooms.limits.awareness_per_second);
        let now = Instant::now();
        self.awareness_tokens =
            (self.awareness_tokens + now.duration_since(self.awareness_at).as_secs_f64() * rate).min(rate * 2.0);
        self.awareness_at = now;
        if self.awareness_tokens < 1.0 {
            return Err(End::Error(1008, "too many presence updates".into()));
        }
        self.awareness_tokens -= 1.0;
        let mut update = update;
        {
            let mut owners = self.room.presence_owners.lock().unwrap_or_else(|e| e.into_inner());
            // Entries for someone else's clients are dropped: y-websocket clients echo every
            // state they receive, and nobody may speak for another person.
            update.clients.retain(|id, _| {
                owners.get(id).is_none_or(|(conn, user)| *conn == self.id || *user == self.auth.user.id)
            });
            if update.clients.is_empty() {
                return Ok(());
            }
            for (id, entry) in update.clients.iter_mut() {
                if entry.json.len() > 16 * 1024 {
                    return Err(End::Error(1009, "a presence state over 16 KiB".into()));
                }
                // An id nobody publishes becomes this connection's; one another connection of the
                // same person publishes (their other tab, echoed) is passed on but stays theirs,
                // so it is removed when that connection ends.
                if !owners.contains_key(id) {
                    if self.clients.len() >= MAX_AWARENESS_CLIENTS {
                        return Err(End::Error(1008, "too many presence clients on one connection".into()));
                    }
                    owners.insert(*id, (self.id, self.auth.user.id.clone()));
                    self.clients.insert(*id);
                }
                entry.json = presence_as_recorded(&entry.json, &self.auth.user).into();
            }
        }
        self.state.rooms.presence(&self.room, update).await.map_err(|e| End::Error(1007, e))
    }
}
