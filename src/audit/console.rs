//! The Audit page of the console: search with filters and keyset paging, the instance's
//! public key, and verification of the live log.

use askama::Template;
use axum::extract::{Query, State};
use axum::response::Html;
use serde::Deserialize;
use serde_json::json;

use super::store::{self, Row, Search};
use super::{Actor, Event, Origin, Outcome};
use crate::app::AppState;
use crate::auth::PageUser;
use crate::db::rfc3339;
use crate::error::AppResult;
use crate::http::RequestContext;
use crate::ui::{PageContext, render};

const PAGE_SIZE: i64 = 50;

#[derive(Deserialize, Default)]
pub struct AuditQuery {
    #[serde(default)]
    from: String,
    #[serde(default)]
    to: String,
    #[serde(default)]
    actor: String,
    #[serde(default)]
    action: String,
    #[serde(default)]
    project: String,
    #[serde(default)]
    target: String,
    #[serde(default)]
    outcome: String,
    before: Option<i64>,
}

/// One table row, formatted for display.
pub struct Entry {
    pub seq: i64,
    pub when: String,
    pub actor: String,
    pub action: String,
    pub outcome: String,
    pub target: String,
    pub project: String,
    pub intent: String,
    pub ip: String,
    pub user_agent: String,
    pub request_id: String,
    pub trace_id: String,
}

impl From<Row> for Entry {
    fn from(r: Row) -> Entry {
        let o = |v: Option<String>| v.unwrap_or_default();
        Entry {
            seq: r.seq,
            when: rfc3339(r.occurred_at).replace('T', " ").replace('Z', " UTC"),
            actor: match r.actor_id {
                Some(id) => format!("{} {id}", r.actor_kind),
                None => r.actor_kind,
            },
            action: r.action,
            outcome: r.outcome,
            target: match (r.target_type, r.target_id) {
                (Some(t), Some(id)) => format!("{t} {id}"),
                (_, id) => o(id),
            },
            project: o(r.project_id),
            intent: r.intent,
            ip: o(r.ip),
            user_agent: o(r.user_agent),
            request_id: o(r.request_id),
            trace_id: o(r.trace_id),
        }
    }
}

#[derive(Template)]
#[template(path = "audit.html")]
struct AuditPage {
    page: PageContext,
    q: AuditQuery,
    entries: Vec<Entry>,
    next_page: Option<String>,
    error: Option<String>,
    public_key: String,
    key_id: String,
    verification: Option<Verification>,
}

pub struct Verification {
    pub ok: bool,
    pub message: String,
}

fn nonempty(s: &str) -> Option<String> {
    let t = s.trim();
    (!t.is_empty()).then(|| t.to_owned())
}

/// `datetime-local` inputs send `2026-11-22T10:00` (read as UTC); dates and RFC 3339 also work.
fn parse_when(field: &str, raw: &str) -> AppResult<Option<i64>> {
    let Some(raw) = nonempty(raw) else { return Ok(None) };
    let full = if raw.len() == 16 { format!("{raw}:00Z") } else { raw };
    super::routes::parse_time(field, &full).map(Some)
}

async fn require_page_auditor(
    state: &AppState,
    auth: &crate::auth::Authenticated,
    ctx: &RequestContext,
) -> AppResult<()> {
    super::routes::require_auditor(state, auth, &Origin::from(ctx), "audit.read").await
}

fn link(q: &AuditQuery, before: i64) -> String {
    let mut s = url::form_urlencoded::Serializer::new(String::new());
    for (k, v) in [
        ("from", &q.from),
        ("to", &q.to),
        ("actor", &q.actor),
        ("action", &q.action),
        ("project", &q.project),
        ("target", &q.target),
        ("outcome", &q.outcome),
    ] {
        if !v.is_empty() {
            s.append_pair(k, v);
        }
    }
    s.append_pair("before", &before.to_string());
    format!("/audit?{}", s.finish())
}

async fn page(
    state: &AppState,
    auth: &crate::auth::Authenticated,
    q: AuditQuery,
    verification: Option<Verification>,
) -> AppResult<Html<String>> {
    let mut error = None;
    let search = match (parse_when("from", &q.from), parse_when("to", &q.to)) {
        (Ok(from), Ok(to)) => Some(Search {
            from,
            to,
            actor: nonempty(&q.actor),
            action: nonempty(&q.action),
            project: nonempty(&q.project),
            target: nonempty(&q.target),
            outcome: nonempty(&q.outcome).filter(|o| o == "allowed" || o == "denied"),
            before: q.before,
        }),
        (Err(e), _) | (_, Err(e)) => {
            error = Some(e.to_string());
            None
        }
    };
    let mut entries: Vec<Entry> = Vec::new();
    let mut next_page = None;
    if let Some(search) = search {
        let mut conn = state.db.pool().acquire().await?;
        let mut rows = store::search(&mut conn, &search, PAGE_SIZE + 1).await?;
        if rows.len() as i64 > PAGE_SIZE {
            rows.truncate(PAGE_SIZE as usize);
            next_page = rows.last().map(|r| link(&q, r.seq));
        }
        entries = rows.into_iter().map(Entry::from).collect();
    }
    render(&AuditPage {
        page: PageContext::for_user(auth, &state.keys.csrf),
        q,
        entries,
        next_page,
        error,
        public_key: state.keys.audit.public_key_text(),
        key_id: state.keys.audit.key_id(),
        verification,
    })
}

/// `GET /audit`
pub async fn audit_page(
    State(state): State<AppState>,
    PageUser(auth): PageUser,
    ctx: RequestContext,
    q: Result<Query<AuditQuery>, axum::extract::rejection::QueryRejection>,
) -> AppResult<Html<String>> {
    require_page_auditor(&state, &auth, &ctx).await?;
    // A mangled link (e.g. a non-numeric page cursor) shows the first page rather than failing.
    page(&state, &auth, q.map(|Query(q)| q).unwrap_or_default(), None).await
}

/// `POST /audit/verify`: verify the whole live log, the same way `arno audit verify` checks an
/// export (it is one: written to a temporary file, so memory stays constant).
pub async fn verify_page(
    State(state): State<AppState>,
    PageUser(auth): PageUser,
    ctx: RequestContext,
) -> AppResult<Html<String>> {
    require_page_auditor(&state, &auth, &ctx).await?;
    let origin = Origin::from(&ctx);
    let result = super::verify_live(&state.db, &state.keys.audit, &state.config.data_dir).await?;
    let (ok, message) = match &result {
        Ok(r) => (
            true,
            format!(
                "The audit log is intact: {} records (seq {}..{}) and {} signed checkpoints verified with key {}.",
                r.records,
                r.first_seq.unwrap_or(0),
                r.last_seq.unwrap_or(0),
                r.checkpoints,
                r.key_id
            ),
        ),
        Err(p) => (false, format!("Verification FAILED ({:?}) at {p}", p.kind)),
    };
    let event = Event::new("audit.verify", Outcome::Allowed, Actor::of(&auth), &origin).intent(json!({"intact": ok}));
    super::record_alone(&state.db, event).await?;
    page(&state, &auth, AuditQuery::default(), Some(Verification { ok, message })).await
}
