//! `/profile`: a user's own API tokens (create with an expiry, list, revoke), sessions, and
//! GitHub accounts (linked through a connection's App, for roles from GitHub).

use askama::Template;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;

use super::{Authenticated, PageUser, sessions, tokens};
use crate::app::AppState;
use crate::audit::{self, Actor, Event, Origin, Outcome};
use crate::db::rfc3339;
use crate::error::{AppError, AppResult};
use crate::http::RequestContext;
use crate::http::api::PageForm;
use crate::ui::{PageContext, render};

#[derive(Template)]
#[template(path = "profile.html")]
struct ProfilePage {
    page: PageContext,
    email: String,
    handle: String,
    org_role: &'static str,
    tokens: Vec<tokens::TokenInfo>,
    sessions: Vec<(String, String, String)>,
    new_token: Option<String>,
    message: Option<String>,
    error: Option<String>,
    max_days: i64,
    git_accounts: Vec<GitAccountRow>,
}

/// A connection the user may link a GitHub account on, and where that stands.
struct GitAccountRow {
    connection: String,
    linked: Option<crate::git::logins::GitLogin>,
    pending: Option<crate::git::logins::PendingLink>,
}

async fn git_accounts(conn: &mut sqlx::AnyConnection, user_id: &str) -> AppResult<Vec<GitAccountRow>> {
    let linked = crate::git::logins::list(conn, user_id).await?;
    let pending = crate::git::logins::pending(conn, user_id).await?;
    let connections = crate::git::connections::list(conn).await.map_err(AppError::from)?;
    let mut rows: Vec<GitAccountRow> = connections
        .into_iter()
        .filter(|c| c.provider == crate::git::connections::Provider::GitHub && c.client_id.is_some())
        .map(|c| GitAccountRow { connection: c.name, linked: None, pending: None })
        .collect();
    for l in linked {
        match rows.iter_mut().find(|r| r.connection == l.connection) {
            Some(r) => r.linked = Some(l),
            None => rows.push(GitAccountRow { connection: l.connection.clone(), linked: Some(l), pending: None }),
        }
    }
    for p in pending {
        if let Some(r) = rows.iter_mut().find(|r| r.connection == p.connection && r.linked.is_none()) {
            r.pending = Some(p);
        }
    }
    Ok(rows)
}

async fn page(
    state: &AppState,
    auth: &Authenticated,
    new_token: Option<String>,
    message: Option<String>,
    error: Option<String>,
) -> AppResult<Response> {
    let mut conn = state.db.pool().acquire().await?;
    let tokens = tokens::list(&mut conn, &auth.user.id).await?;
    let sessions = sessions::list_for_user(&mut conn, &auth.user.id)
        .await?
        .into_iter()
        .map(|s| (rfc3339(s.created_at), rfc3339(s.last_seen_at), s.user_agent.unwrap_or_default()))
        .collect();
    let git_accounts = git_accounts(&mut conn, &auth.user.id).await?;
    let status = if error.is_some() { StatusCode::BAD_REQUEST } else { StatusCode::OK };
    let html = render(&ProfilePage {
        page: PageContext::for_user(auth, &state.keys.csrf),
        email: auth.user.email.clone(),
        handle: auth.user.handle.clone(),
        org_role: auth.user.org_role.as_str(),
        tokens,
        sessions,
        new_token,
        message,
        error,
        max_days: tokens::MAX_EXPIRES_DAYS,
        git_accounts,
    })?;
    Ok((status, html).into_response())
}

/// `GET /profile`
pub async fn show(State(state): State<AppState>, PageUser(auth): PageUser) -> AppResult<Response> {
    page(&state, &auth, None, None, None).await
}

#[derive(Deserialize)]
pub struct NewTokenForm {
    #[serde(default)]
    name: String,
    #[serde(default)]
    expires_days: String,
}

/// `POST /profile/tokens`
pub async fn create_token(
    State(state): State<AppState>,
    PageUser(auth): PageUser,
    ctx: RequestContext,
    PageForm(form): PageForm<NewTokenForm>,
) -> AppResult<Response> {
    let days = match form.expires_days.trim() {
        "" => None,
        raw => match raw.parse::<i64>() {
            Ok(d) => Some(d),
            Err(_) => return page(&state, &auth, None, None, Some("Expiry must be a number of days.".into())).await,
        },
    };
    let mut tx = state.db.begin().await?;
    let (info, token) = match tokens::create(&mut tx, &auth.user.id, &form.name, days).await {
        Ok(created) => created,
        Err(AppError::Validation { message, .. }) => return page(&state, &auth, None, None, Some(message)).await,
        Err(e) => return Err(e),
    };
    let origin = Origin::from(&ctx);
    let event = Event::new("token.create", Outcome::Allowed, Actor::of(&auth), &origin)
        .target("api_token", &info.id)
        .intent(json!({"expires_at": info.expires_at, "via": "profile"}));
    audit::record(&mut tx, event).await?;
    tx.commit().await?;
    page(&state, &auth, Some(token), None, None).await
}

/// `POST /profile/tokens/{id}/revoke`
pub async fn revoke_token(
    State(state): State<AppState>,
    PageUser(auth): PageUser,
    ctx: RequestContext,
    Path(id): Path<String>,
) -> AppResult<Response> {
    let mut tx = state.db.begin().await?;
    let revoked = tokens::revoke(&mut tx, &auth.user.id, &id).await?;
    let origin = Origin::from(&ctx);
    let outcome = if revoked { Outcome::Allowed } else { Outcome::Denied };
    let event = Event::new("token.revoke", outcome, Actor::of(&auth), &origin)
        .target("api_token", &id)
        .intent(json!({"via": "profile"}));
    audit::record(&mut tx, event).await?;
    tx.commit().await?;
    // Open live connections (workflow socket, event stream) look at their credential again.
    state.rooms.access_changed("*").await;
    if !revoked {
        return Err(AppError::NotFound);
    }
    page(&state, &auth, None, Some("Token revoked.".into()), None).await
}

/// What a linking step says on the page: a message, or an error the user can act on.
fn link_message(result: AppResult<String>) -> AppResult<(Option<String>, Option<String>)> {
    match result {
        Ok(m) => Ok((Some(m), None)),
        Err(AppError::Conflict(m) | AppError::Validation { message: m, .. } | AppError::Upstream(m)) => {
            Ok((None, Some(m)))
        }
        Err(AppError::NotFound) => Ok((None, Some("There is no such git connection.".into()))),
        Err(AppError::RateLimited { .. }) => {
            Ok((None, Some("GitHub asked Arno to slow down; try again in a minute.".into())))
        }
        Err(e) => Err(e),
    }
}

/// `POST /profile/git-logins/{connection}`: start linking a GitHub account.
pub async fn start_link(
    State(state): State<AppState>,
    PageUser(auth): PageUser,
    ctx: RequestContext,
    Path(connection): Path<String>,
) -> AppResult<Response> {
    let hosted = state.repos.hosted().ok_or_else(|| AppError::Internal(anyhow::anyhow!("no hosted clients")))?;
    let origin = Origin::from(&ctx);
    let started = crate::git::logins::start(&state.db, &state.keys, hosted, &auth, &origin, &connection)
        .await
        .map_err(AppError::from)
        .map(|p| {
            format!(
                "Enter the code {} on GitHub, approve, then come back and choose “I have approved it”.",
                p.user_code
            )
        });
    let (message, error) = link_message(started)?;
    page(&state, &auth, None, message, error).await
}

/// `POST /profile/git-logins/{connection}/check`: finish linking once approved on GitHub.
pub async fn check_link(
    State(state): State<AppState>,
    PageUser(auth): PageUser,
    ctx: RequestContext,
    Path(connection): Path<String>,
) -> AppResult<Response> {
    let origin = Origin::from(&ctx);
    let checked =
        crate::projects::github_roles_api::check_and_sync(&state, &auth, &origin, &connection).await.map(|o| match o {
            crate::git::logins::LinkOutcome::Linked { login } => {
                format!(
                    "Your GitHub account {} is linked. Projects that take roles from GitHub update yours now.",
                    login.login
                )
            }
            crate::git::logins::LinkOutcome::Pending { .. } => {
                "GitHub has not seen your approval yet. Enter the code on GitHub, approve, then try again.".into()
            }
        });
    let (message, error) = link_message(checked)?;
    page(&state, &auth, None, message, error).await
}

/// `POST /profile/git-logins/{connection}/unlink`
pub async fn unlink(
    State(state): State<AppState>,
    PageUser(auth): PageUser,
    ctx: RequestContext,
    Path(connection): Path<String>,
) -> AppResult<Response> {
    let origin = Origin::from(&ctx);
    crate::projects::github_roles_api::unlink_and_sync(&state, &auth, &origin, &connection).await?;
    page(&state, &auth, None, Some("GitHub account unlinked; roles it gave go at the next sync.".into()), None).await
}
