//! `/profile`: a user's own API tokens (create with an expiry, list, revoke) and sessions.

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
