//! Live project events for open pages (server-sent events): "Button.md was saved by Ada, now at
//! version 7". On PostgreSQL every replica hears every event: the event is `NOTIFY`d inside the
//! transaction that made the change (so it is sent only if that commits) and each replica's
//! listener re-broadcasts it to its own subscribers. On SQLite (one process) the broadcast is
//! direct, after the commit.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use futures_util::Stream;
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;

use crate::app::AppState;
use crate::audit::Origin;
use crate::auth::ApiUser;
use crate::auth::access::View;
use crate::db::{Backend, Db};
use crate::error::AppResult;
use crate::http::RequestContext;

const CHANNEL: &str = "arno_events";

/// Something that happened in a project, as open pages learn it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct ProjectEvent {
    pub project_id: String,
    /// `spec_saved` (a save, or the default branch brought a new text), `default_updated` (the
    /// default branch changed a spec Arno holds edits of), `writeback` (a session branch changed
    /// state; `path` is empty).
    pub kind: String,
    pub path: String,
    pub version: i64,
    pub content_sha: String,
    pub by_name: String,
    pub by_handle: String,
    /// `writeback`: where the author's session branch stands (`committed`, `diverged`, `failed`,
    /// `pending`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
}

/// The process's event bus.
#[derive(Clone, Debug)]
pub struct Bus {
    tx: broadcast::Sender<ProjectEvent>,
    /// Ends every open stream at shutdown (they would otherwise hold the graceful stop).
    closing: std::sync::Arc<tokio::sync::watch::Sender<bool>>,
}

impl Default for Bus {
    fn default() -> Self {
        Bus { tx: broadcast::channel(1024).0, closing: std::sync::Arc::new(tokio::sync::watch::channel(false).0) }
    }
}

impl Bus {
    /// End every open event stream (shutdown).
    pub fn close(&self) {
        let _ = self.closing.send(true);
    }

    pub fn subscribe(&self) -> broadcast::Receiver<ProjectEvent> {
        self.tx.subscribe()
    }

    /// Announce `event` as part of the caller's transaction (PostgreSQL: delivered at commit to
    /// every replica). Call [`Bus::after_commit`] once the transaction committed.
    pub async fn within(&self, tx: &mut sqlx::AnyConnection, backend: Backend, event: &ProjectEvent) -> AppResult<()> {
        if backend == Backend::Postgres {
            let payload = serde_json::to_string(event).unwrap_or_default();
            sqlx::query("SELECT pg_notify($1, $2)").bind(CHANNEL).bind(payload).execute(tx).await?;
        }
        Ok(())
    }

    /// After the commit: on SQLite, deliver locally (PostgreSQL's listener does it there).
    pub fn after_commit(&self, backend: Backend, event: ProjectEvent) {
        if backend == Backend::Sqlite {
            let _ = self.tx.send(event);
        }
    }

    /// Announce an event outside any transaction (background work).
    pub async fn publish(&self, db: &Db, event: ProjectEvent) -> AppResult<()> {
        let mut conn = db.pool().acquire().await?;
        self.within(&mut conn, db.backend(), &event).await?;
        self.after_commit(db.backend(), event);
        Ok(())
    }

    /// On PostgreSQL: listen for every replica's events and re-broadcast them here, reconnecting
    /// with backoff until `stop`.
    pub async fn listen(self, db: Db, database_url: String, mut stop: tokio::sync::watch::Receiver<bool>) {
        if db.backend() != Backend::Postgres {
            return;
        }
        let mut delay = Duration::from_millis(500);
        loop {
            let listener = async {
                let mut l = sqlx::postgres::PgListener::connect(&database_url).await?;
                l.listen(CHANNEL).await?;
                Ok::<_, sqlx::Error>(l)
            };
            match listener.await {
                Ok(mut l) => {
                    delay = Duration::from_millis(500);
                    loop {
                        tokio::select! {
                            _ = stop.changed() => return,
                            n = l.recv() => match n {
                                Ok(n) => {
                                    if let Ok(event) = serde_json::from_str::<ProjectEvent>(n.payload()) {
                                        let _ = self.tx.send(event);
                                    }
                                }
                                Err(e) => {
                                    tracing::warn!(event_type = "event_listener_lost", error = %e, "event listener lost its connection");
                                    break;
                                }
                            }
                        }
                    }
                }
                Err(e) => tracing::warn!(event_type = "event_listener_failed", error = %e, "cannot listen for events"),
            }
            tokio::select! {
                _ = stop.changed() => return,
                _ = tokio::time::sleep(delay) => {}
            }
            delay = (delay * 2).min(Duration::from_secs(30));
        }
    }
}

#[derive(Deserialize)]
pub struct EventsQuery {
    /// Only events about this spec path.
    path: Option<String>,
}

/// An open stream looks at its caller's access again this often (and at once on any change).
const RECHECK: Duration = Duration::from_secs(15);

/// What an open event stream needs to look at its caller's access again.
struct Watch {
    state: AppState,
    auth: crate::auth::Authenticated,
    origin: Origin,
    access: tokio::sync::watch::Receiver<u64>,
    project_id: String,
    path: Option<String>,
    /// When to look again without a change.
    due: tokio::time::Instant,
}

impl Watch {
    /// The credential is still good and the caller may still see the project.
    async fn still_allowed(&self) -> bool {
        if !crate::auth::extract::still_valid(&self.state, &self.auth).await.unwrap_or(false) {
            return false;
        }
        let mut conn = match self.state.db.pool().acquire().await {
            Ok(c) => c,
            Err(_) => return true, // a database hiccup is not a revocation; look again later
        };
        let user = match crate::auth::users::find_any(&mut conn, &self.auth.user.id).await {
            Ok(Some((user, false))) => user,
            Ok(_) => return false,
            Err(_) => return true,
        };
        drop(conn);
        let mut auth = self.auth.clone();
        auth.user = user;
        super::authorize::<View>(&self.state.db, &auth, &self.origin, &self.project_id, "project.view").await.is_ok()
    }
}

/// `GET /api/v1/projects/{id}/events`: the project's events as server-sent events
/// (`event: spec_saved`, data: the JSON of [`ProjectEvent`]). Kept alive every 15 s.
#[utoipa::path(get, path = "/api/v1/projects/{id}/events", tag = "specs",
    security(("token" = []), ("session" = [])),
    params(("id" = String, Path, description = "Project id or slug"), ("path" = Option<String>, Query, description = "Only this spec")),
    responses((status = 200, description = "Server-sent events: `spec_saved`, `default_updated`, `writeback`, `resync`", content_type = "text/event-stream"),
        (status = 404, body = crate::error::ErrorBody)))]
pub async fn stream(
    State(state): State<AppState>,
    ApiUser(auth): ApiUser,
    ctx: RequestContext,
    Path(id): Path<String>,
    Query(q): Query<EventsQuery>,
) -> AppResult<Sse<impl Stream<Item = Result<SseEvent, Infallible>>>> {
    let origin = Origin::from(&ctx);
    let (project, _) = super::authorize::<View>(&state.db, &auth, &origin, &id, "project.view").await?;
    let rx = state.events.subscribe();
    let closing = state.events.closing.subscribe();
    let mut access = state.rooms.access_watch();
    access.mark_unchanged();
    let watch = Watch {
        state,
        auth,
        origin,
        access,
        project_id: project.id,
        path: q.path,
        due: tokio::time::Instant::now() + RECHECK,
    };
    let stream = futures_util::stream::unfold((rx, closing, watch), |(mut rx, mut closing, mut w)| async move {
        loop {
            let received = tokio::select! {
                // Revocation ends the stream at once (sign-out everywhere, a revoked token, a
                // deactivated account, a lost membership), before any further event; expiry
                // within RECHECK.
                biased;
                _ = closing.wait_for(|c| *c) => return None,
                Ok(()) = w.access.changed() => None,
                _ = tokio::time::sleep_until(w.due) => None,
                r = rx.recv() => Some(r),
            };
            let Some(received) = received else {
                w.due = tokio::time::Instant::now() + RECHECK;
                if !w.still_allowed().await {
                    return None;
                }
                continue;
            };
            match received {
                // Project-wide events (empty path) reach every page of the project.
                Ok(e)
                    if e.project_id == w.project_id
                        && (e.path.is_empty() || w.path.as_ref().is_none_or(|p| *p == e.path)) =>
                {
                    let data = serde_json::to_string(&e).unwrap_or_default();
                    let event = SseEvent::default().event(e.kind.clone()).data(data);
                    return Some((Ok(event), (rx, closing, w)));
                }
                Ok(_) => continue,
                // A slow reader missed events: tell it to reload what it shows.
                Err(broadcast::error::RecvError::Lagged(_)) => {
                    let event = SseEvent::default().event("resync").data("{}");
                    return Some((Ok(event), (rx, closing, w)));
                }
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}
