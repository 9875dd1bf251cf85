//! The console's git page (`/admin/git`): connections to GitHub Apps — add, rotate, delete —
//! with what each reaches (installations and their repositories, asked of GitHub when the page
//! is shown), its rate-limit state and its last webhook delivery. Admins only; every change and
//! refusal is audited by the same functions the API uses.

use std::time::Duration;

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;

use super::require_admin;
use crate::app::AppState;
use crate::audit::Origin;
use crate::auth::{Authenticated, PageUser};
use crate::db::rfc3339;
use crate::error::{AppError, AppResult};
use crate::git::connections::{self, ConnectionChange, NewConnection};
use crate::git::connections_api::{create_connection, delete_connection, update_connection};
use crate::http::RequestContext;
use crate::http::api::PageForm;
use crate::ui::{PageContext, render};

/// How long the page waits for GitHub to list what a connection reaches.
pub const LIST_TIMEOUT: Duration = Duration::from_secs(5);

pub struct InstallationView {
    pub id: u64,
    pub account: String,
    pub suspended: bool,
    pub repositories: Vec<String>,
    pub truncated: bool,
}

pub struct LaneView {
    pub installation: String,
    pub remaining: String,
    pub reset: String,
    pub waiting: Option<u64>,
}

pub struct ConnectionView {
    pub name: String,
    pub api_url: String,
    pub app_id: String,
    pub client_id: String,
    pub ca_bundle: bool,
    /// Declared in the configuration file: read-only here.
    pub from_config: bool,
    pub rotated: String,
    pub webhook_url: String,
    pub projects: Vec<String>,
    pub last_delivery: Option<String>,
    pub installations: Vec<InstallationView>,
    /// Why GitHub could not be asked.
    pub unreachable: Option<String>,
    pub lanes: Vec<LaneView>,
}

#[derive(Default, Deserialize)]
pub struct ConnectionForm {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub api_url: String,
    #[serde(default)]
    pub app_id: String,
    #[serde(default)]
    pub client_id: String,
    #[serde(default)]
    pub private_key: String,
    #[serde(default)]
    pub webhook_secret: String,
    #[serde(default)]
    pub ca_bundle: String,
    /// On a change: remove the CA bundle.
    #[serde(default)]
    pub remove_ca_bundle: Option<String>,
}

#[derive(Template)]
#[template(path = "admin_git.html")]
struct GitPage {
    page: PageContext,
    connections: Vec<ConnectionView>,
    notice: Option<String>,
    error: Option<String>,
    /// Which form the error belongs to: `new` or a connection's name.
    error_for: String,
    form: ConnectionForm,
}

fn nonempty(s: &str) -> Option<String> {
    Some(s.trim()).filter(|s| !s.is_empty()).map(str::to_owned)
}

async fn git_page(
    state: &AppState,
    auth: &Authenticated,
    notice: Option<String>,
    error: Option<(String, String)>,
    form: ConnectionForm,
) -> AppResult<Response> {
    let listed = {
        let mut conn = state.db.pool().acquire().await?;
        connections::list(&mut conn).await?
    };
    let mut reached: std::collections::HashMap<String, Result<Vec<InstallationView>, String>> =
        match state.repos.hosted() {
            Some(hosted) => hosted
                .reachable(LIST_TIMEOUT, Duration::ZERO)
                .await
                .map_err(|e| AppError::Upstream(e.to_string()))?
                .into_iter()
                .map(|(name, r)| {
                    let views = r.map(|list| {
                        list.into_iter()
                            .map(|i| InstallationView {
                                id: i.id,
                                account: i.account,
                                suspended: i.suspended,
                                repositories: i.repositories,
                                truncated: i.truncated,
                            })
                            .collect()
                    });
                    (name, views)
                })
                .collect(),
            None => Default::default(),
        };
    let clients = state.repos.hosted().map(|h| h.built()).unwrap_or_default();
    let base = state.config.public_base();
    let mut views = vec![];
    for c in listed {
        let mut conn = state.db.pool().acquire().await?;
        let projects: Vec<(String,)> =
            sqlx::query_as("SELECT slug FROM projects WHERE git_connection = $1 ORDER BY slug")
                .bind(&c.name)
                .fetch_all(&mut *conn)
                .await?;
        let last: Option<(String, Option<String>, i64)> = sqlx::query_as(
            "SELECT event, action, received_at FROM webhook_deliveries WHERE connection = $1 AND event <> 'missed' \
             ORDER BY received_at DESC LIMIT 1",
        )
        .bind(&c.name)
        .fetch_optional(&mut *conn)
        .await?;
        let lanes = clients
            .iter()
            .filter(|client| client.connection() == c.name)
            .flat_map(|client| client.lanes())
            .map(|l| LaneView {
                installation: l.installation.map_or("the App itself".into(), |i| format!("installation {i}")),
                remaining: l.remaining.map_or("not reported".into(), |r| r.to_string()),
                reset: l.reset_at.map_or("—".into(), |t| rfc3339(t * 1000)),
                waiting: l.blocked_for_secs,
            })
            .collect();
        let (installations, unreachable) = match reached.remove(&c.name) {
            Some(Ok(list)) => (list, None),
            Some(Err(e)) => (vec![], Some(e)),
            None => (vec![], None),
        };
        views.push(ConnectionView {
            webhook_url: format!("{base}/api/v1/webhooks/github/{}", c.name),
            name: c.name,
            api_url: c.api_url,
            app_id: c.app_id,
            client_id: c.client_id.unwrap_or_default(),
            ca_bundle: c.ca_bundle,
            from_config: c.from_config,
            rotated: c.secrets_rotated_at,
            projects: projects.into_iter().map(|(s,)| s).collect(),
            last_delivery: last.map(|(event, action, at)| {
                let what = action.map_or(event.clone(), |a| format!("{event}.{a}"));
                format!("{what}, {}", rfc3339(at))
            }),
            installations,
            unreachable,
            lanes,
        });
    }
    let (error_for, error) = match error {
        Some((which, message)) => (which, Some(message)),
        None => (String::new(), None),
    };
    let html = render(&GitPage {
        page: PageContext::for_user(auth, &state.keys.csrf),
        connections: views,
        notice,
        error,
        error_for,
        form,
    })?;
    Ok(html.into_response())
}

/// `GET /admin/git`
pub async fn page(
    State(state): State<AppState>,
    PageUser(auth): PageUser,
    ctx: RequestContext,
    Query(query): Query<std::collections::HashMap<String, String>>,
) -> AppResult<Response> {
    require_admin(&state, &auth, &ctx, "git.connection.read").await?;
    let notice = query.get("added").filter(|n| connections::valid_name(n)).map(|n| {
        format!("Connection {n} added. Set the App's webhook URL to the one shown below, with the same secret.")
    });
    git_page(&state, &auth, notice, None, ConnectionForm::default()).await
}

/// A refusal the form can show, or the error itself.
fn shown(e: AppError) -> Result<String, AppError> {
    match e {
        e @ (AppError::Validation { .. } | AppError::Conflict(_) | AppError::NotFound) => Ok(e.to_string()),
        other => Err(other),
    }
}

/// `POST /admin/git/connections`: add a connection.
pub async fn create(
    State(state): State<AppState>,
    PageUser(auth): PageUser,
    ctx: RequestContext,
    PageForm(form): PageForm<ConnectionForm>,
) -> AppResult<Response> {
    let grant = require_admin(&state, &auth, &ctx, "git.connection.create").await?;
    let new = NewConnection {
        name: form.name.trim().to_owned(),
        provider: "github".into(),
        api_url: form.api_url.trim().to_owned(),
        app_id: form.app_id.trim().to_owned(),
        client_id: nonempty(&form.client_id),
        private_key: form.private_key.clone(),
        webhook_secret: form.webhook_secret.clone(),
        ca_bundle: nonempty(&form.ca_bundle),
    };
    match create_connection(&state, &auth, &Origin::from(&ctx), &grant, new).await {
        Ok(c) => Ok(Redirect::to(&format!("/admin/git?added={}", c.name)).into_response()),
        Err(e) => {
            let message = shown(e)?;
            // The secrets are never sent back into the page.
            let kept = ConnectionForm { private_key: String::new(), webhook_secret: String::new(), ..form };
            git_page(&state, &auth, None, Some(("new".into(), message)), kept).await
        }
    }
}

/// `POST /admin/git/connections/{name}`: change or rotate; empty fields keep what is there.
pub async fn update(
    State(state): State<AppState>,
    PageUser(auth): PageUser,
    ctx: RequestContext,
    Path(name): Path<String>,
    PageForm(form): PageForm<ConnectionForm>,
) -> AppResult<Response> {
    let grant = require_admin(&state, &auth, &ctx, "git.connection.update").await?;
    let change = ConnectionChange {
        api_url: nonempty(&form.api_url),
        app_id: nonempty(&form.app_id),
        client_id: nonempty(&form.client_id).map(Some),
        private_key: nonempty(&form.private_key),
        webhook_secret: nonempty(&form.webhook_secret),
        ca_bundle: if form.remove_ca_bundle.is_some() { Some(None) } else { nonempty(&form.ca_bundle).map(Some) },
    };
    match update_connection(&state, &auth, &Origin::from(&ctx), &grant, &name, &change).await {
        Ok(c) => {
            let notice = format!("Connection {} changed: {}.", c.name, change.fields().join(", "));
            git_page(&state, &auth, Some(notice), None, ConnectionForm::default()).await
        }
        Err(e) => git_page(&state, &auth, None, Some((name, shown(e)?)), ConnectionForm::default()).await,
    }
}

/// `POST /admin/git/connections/{name}/delete`
pub async fn delete(
    State(state): State<AppState>,
    PageUser(auth): PageUser,
    ctx: RequestContext,
    Path(name): Path<String>,
) -> AppResult<Response> {
    let grant = require_admin(&state, &auth, &ctx, "git.connection.delete").await?;
    match delete_connection(&state, &auth, &Origin::from(&ctx), &grant, &name).await {
        Ok(None) => {
            git_page(&state, &auth, Some(format!("Connection {name} deleted.")), None, ConnectionForm::default()).await
        }
        Ok(Some(projects)) => {
            let message = format!(
                "Connection {name} is used by projects {}: move or delete them first.",
                if projects.is_empty() { "created meanwhile".to_owned() } else { projects.join(", ") }
            );
            git_page(&state, &auth, None, Some((name, message)), ConnectionForm::default()).await
        }
        Err(e) => git_page(&state, &auth, None, Some((name, shown(e)?)), ConnectionForm::default()).await,
    }
}
