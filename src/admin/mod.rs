//! The admin console: identity providers and SCIM (`/admin`), and users (`/admin/users`):
//! search, identities, sessions and tokens, deactivation, org roles. Admins only; every refusal
//! and every change is audited.

pub mod git;

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Redirect, Response};
use serde::Deserialize;
use serde_json::json;

use crate::app::AppState;
use crate::audit::{self, Actor, Event, Origin, Outcome};
use crate::auth::access::{self, Administer, OrgGrant};
use crate::auth::{Authenticated, OrgRole, PageUser, sessions, tokens, users};
use crate::db::rfc3339;
use crate::error::{AppError, AppResult};
use crate::http::RequestContext;
use crate::http::api::PageForm;
use crate::ui::{PageContext, render};

/// The administrator's grant for the console (and the admin API), or an audited refusal.
pub(crate) async fn require_admin(
    state: &AppState,
    auth: &Authenticated,
    ctx: &RequestContext,
    action: &str,
) -> AppResult<OrgGrant<Administer>> {
    let reason = match access::decide_org::<Administer>(&auth.user) {
        Ok(admin) => return Ok(admin),
        Err(reason) => reason,
    };
    let origin = Origin::from(ctx);
    let event = Event::new(action, Outcome::Denied, Actor::of(auth), &origin).intent(json!({"reason": reason}));
    audit::record_alone(&state.db, event).await?;
    Err(AppError::forbidden("the admin console is for administrators"))
}

pub struct ProviderView {
    pub id: String,
    pub name: String,
    pub issuer: String,
    pub client_id: String,
    pub groups_claim: String,
    pub strict: bool,
    pub org_roles: Vec<String>,
    pub project_roles: Vec<String>,
}

#[derive(Template)]
#[template(path = "admin.html")]
struct AdminPage {
    page: PageContext,
    providers: Vec<ProviderView>,
    local_login: bool,
    scim_configured: bool,
    scim_provider: String,
    new_scim_token: Option<String>,
    scim_base: String,
}

async fn admin_page(state: &AppState, auth: &Authenticated, new_scim_token: Option<String>) -> AppResult<Html<String>> {
    let providers = state
        .config
        .oidc
        .iter()
        .map(|p| ProviderView {
            id: p.id.clone(),
            name: p.name.clone(),
            issuer: p.issuer.to_string(),
            client_id: p.client_id.clone(),
            groups_claim: p.groups_claim.clone(),
            strict: p.strict,
            org_roles: p.org_roles.iter().map(|(g, r)| format!("{g} → {}", r.as_str())).collect(),
            project_roles: p
                .project_roles
                .iter()
                .map(|(g, grants)| {
                    let list: Vec<String> = grants.iter().map(|(s, r)| format!("{s}:{}", r.as_str())).collect();
                    format!("{g} → {}", list.join(", "))
                })
                .collect(),
        })
        .collect();
    render(&AdminPage {
        page: PageContext::for_user(auth, &state.keys.csrf),
        providers,
        local_login: state.config.local_login,
        scim_configured: crate::auth::scim::token_configured(&state.db).await?,
        scim_provider: state.config.scim_provider.clone().unwrap_or_default(),
        new_scim_token,
        scim_base: format!("{}/scim/v2", state.config.public_base()),
    })
}

/// `GET /admin`
pub async fn overview(
    State(state): State<AppState>,
    PageUser(auth): PageUser,
    ctx: RequestContext,
) -> AppResult<Html<String>> {
    require_admin(&state, &auth, &ctx, "admin.read").await?;
    admin_page(&state, &auth, None).await
}

/// `POST /admin/scim-token`: generate (or rotate) the SCIM token; shown once.
pub async fn scim_token(
    State(state): State<AppState>,
    PageUser(auth): PageUser,
    ctx: RequestContext,
) -> AppResult<Html<String>> {
    let grant = require_admin(&state, &auth, &ctx, "scim.token").await?;
    let by = crate::auth::scim::TokenRotation::Admin(&grant, &auth);
    let token = crate::auth::scim::rotate_token(&state.db, &state.keys, by, &Origin::from(&ctx)).await?;
    admin_page(&state, &auth, Some(token)).await
}

pub struct UserRowView {
    pub id: String,
    pub name: String,
    pub email: String,
    pub handle: String,
    pub org_role: String,
    pub managed: bool,
    pub active: bool,
    pub last_login: String,
}

#[derive(sqlx::FromRow)]
struct ListRow {
    id: String,
    name: String,
    email: String,
    handle: String,
    org_role: String,
    role_source: Option<String>,
    disabled_at: Option<i64>,
    last_login_at: Option<i64>,
}

#[derive(Template)]
#[template(path = "admin_users.html")]
struct UsersPage {
    page: PageContext,
    q: String,
    users: Vec<UserRowView>,
    truncated: bool,
}

#[derive(Deserialize, Default)]
pub struct UsersQuery {
    #[serde(default)]
    q: String,
}

const LIST_LIMIT: i64 = 200;

/// `GET /admin/users?q=`
pub async fn list(
    State(state): State<AppState>,
    PageUser(auth): PageUser,
    ctx: RequestContext,
    Query(q): Query<UsersQuery>,
) -> AppResult<Html<String>> {
    require_admin(&state, &auth, &ctx, "admin.read").await?;
    let needle = format!("%{}%", q.q.trim().to_lowercase().replace(['\\', '%', '_'], ""));
    let mut conn = state.db.pool().acquire().await?;
    let rows: Vec<ListRow> = sqlx::query_as(&format!(
        "SELECT id, name, email, handle, org_role, role_source, disabled_at, last_login_at FROM users \
         WHERE {} AND (LOWER(name) LIKE $1 OR email LIKE $1 OR handle LIKE $1) \
         ORDER BY name, email LIMIT {}",
        crate::auth::scim::NOT_ERASED,
        LIST_LIMIT + 1
    ))
    .bind(&needle)
    .fetch_all(&mut *conn)
    .await?;
    let truncated = rows.len() as i64 > LIST_LIMIT;
    let users = rows
        .into_iter()
        .take(LIST_LIMIT as usize)
        .map(|r| UserRowView {
            id: r.id,
            name: r.name,
            email: r.email,
            handle: r.handle,
            org_role: r.org_role,
            managed: r.role_source.is_some(),
            active: r.disabled_at.is_none(),
            last_login: r.last_login_at.map(rfc3339).unwrap_or_else(|| "never".into()),
        })
        .collect();
    render(&UsersPage { page: PageContext::for_user(&auth, &state.keys.csrf), q: q.q, users, truncated })
}

pub struct IdentityView {
    pub provider_id: String,
    pub issuer: String,
    pub subject: String,
    pub last_login: String,
}

pub struct SessionView {
    pub created: String,
    pub last_seen: String,
    pub ip: String,
    pub user_agent: String,
}

#[derive(Template)]
#[template(path = "admin_user.html")]
struct UserPage {
    page: PageContext,
    user: UserRowView,
    role_source: String,
    identities: Vec<IdentityView>,
    groups: Vec<String>,
    sessions: Vec<SessionView>,
    tokens: Vec<tokens::TokenInfo>,
    memberships: Vec<crate::projects::Membership>,
    roles: Vec<&'static str>,
    message: Option<String>,
    error: Option<String>,
}

async fn user_page(
    state: &AppState,
    auth: &Authenticated,
    id: &str,
    message: Option<String>,
    error: Option<(StatusCode, String)>,
) -> AppResult<Response> {
    let mut conn = state.db.pool().acquire().await?;
    let row: ListRow = sqlx::query_as(
        "SELECT id, name, email, handle, org_role, role_source, disabled_at, last_login_at FROM users WHERE id = $1 \
         AND email NOT LIKE '%@erased.invalid'",
    )
    .bind(id)
    .fetch_optional(&mut *conn)
    .await?
    .ok_or(AppError::NotFound)?;
    let identities: Vec<(String, String, String, i64)> = sqlx::query_as(
        "SELECT provider_id, issuer, subject, last_login_at FROM user_identities WHERE user_id = $1 ORDER BY last_login_at DESC",
    )
    .bind(id)
    .fetch_all(&mut *conn)
    .await?;
    let sessions = sessions::list_for_user(&mut conn, id).await?;
    let tokens = tokens::list(&mut conn, id).await?;
    let groups = crate::auth::scim::groups_of(&mut conn, id).await?;
    let memberships = crate::projects::memberships_of(&state.db, id).await?;
    let status = error.as_ref().map_or(StatusCode::OK, |(s, _)| *s);
    let html = render(&UserPage {
        page: PageContext::for_user(auth, &state.keys.csrf),
        role_source: row.role_source.clone().unwrap_or_default(),
        user: UserRowView {
            id: row.id,
            name: row.name,
            email: row.email,
            handle: row.handle,
            org_role: row.org_role,
            managed: row.role_source.is_some(),
            active: row.disabled_at.is_none(),
            last_login: row.last_login_at.map(rfc3339).unwrap_or_else(|| "never".into()),
        },
        identities: identities
            .into_iter()
            .map(|(provider_id, issuer, subject, at)| IdentityView {
                provider_id,
                issuer,
                subject,
                last_login: rfc3339(at),
            })
            .collect(),
        groups,
        sessions: sessions
            .into_iter()
            .map(|s| SessionView {
                created: rfc3339(s.created_at),
                last_seen: rfc3339(s.last_seen_at),
                ip: s.ip.unwrap_or_default(),
                user_agent: s.user_agent.unwrap_or_default(),
            })
            .collect(),
        tokens,
        memberships,
        roles: vec!["admin", "auditor", "member"],
        message,
        error: error.map(|(_, m)| m),
    })?;
    Ok((status, html).into_response())
}

/// `GET /admin/users/{id}`
pub async fn show(
    State(state): State<AppState>,
    PageUser(auth): PageUser,
    ctx: RequestContext,
    Path(id): Path<String>,
) -> AppResult<Response> {
    require_admin(&state, &auth, &ctx, "admin.read").await?;
    user_page(&state, &auth, &id, None, None).await
}

#[derive(Deserialize)]
pub struct RoleForm {
    #[serde(default)]
    org_role: String,
}

/// `POST /admin/users/{id}/role`
pub async fn set_role(
    State(state): State<AppState>,
    PageUser(auth): PageUser,
    ctx: RequestContext,
    Path(id): Path<String>,
    PageForm(form): PageForm<RoleForm>,
) -> AppResult<Response> {
    require_admin(&state, &auth, &ctx, "user.role").await?;
    let role = OrgRole::parse(&form.org_role)
        .ok_or_else(|| AppError::field("org_role", "must be admin, auditor or member"))?;
    let origin = Origin::from(&ctx);
    let mut tx = state.db.begin().await?;
    let (user, _) = users::find_any(&mut tx, &id).await?.ok_or(AppError::NotFound)?;
    let source: Option<(Option<String>,)> =
        sqlx::query_as("SELECT role_source FROM users WHERE id = $1").bind(&id).fetch_optional(&mut *tx).await?;
    if let Some((Some(source),)) = source {
        drop(tx);
        let message = format!(
            "This user's organisation role comes from {source} and is set again at every sign-in; change it there."
        );
        return user_page(&state, &auth, &id, None, Some((StatusCode::CONFLICT, message))).await;
    }
    if role != OrgRole::Admin && users::is_last_admin(&mut tx, state.db.backend(), &id).await? {
        drop(tx);
        let message = "The last administrator cannot be demoted; make someone else an administrator first.".to_owned();
        return user_page(&state, &auth, &id, None, Some((StatusCode::CONFLICT, message))).await;
    }
    users::set_org_role(&mut tx, &id, role, None).await?;
    let event = Event::new("user.role", Outcome::Allowed, Actor::of(&auth), &origin)
        .target("user", &id)
        .intent(json!({"role": role.as_str(), "previous_role": user.org_role.as_str(), "source": "console"}));
    audit::record(&mut tx, event).await?;
    tx.commit().await?;
    state.rooms.access_changed("*").await;
    user_page(&state, &auth, &id, Some(format!("Organisation role set to {}.", role.as_str())), None).await
}

/// `POST /admin/users/{id}/deactivate` and `/reactivate`
pub async fn deactivate(
    state: State<AppState>,
    user: PageUser,
    ctx: RequestContext,
    path: Path<String>,
) -> AppResult<Response> {
    set_active(state, user, ctx, path, false).await
}

pub async fn reactivate(
    state: State<AppState>,
    user: PageUser,
    ctx: RequestContext,
    path: Path<String>,
) -> AppResult<Response> {
    set_active(state, user, ctx, path, true).await
}

async fn set_active(
    State(state): State<AppState>,
    PageUser(auth): PageUser,
    ctx: RequestContext,
    Path(id): Path<String>,
    active: bool,
) -> AppResult<Response> {
    let action = if active { "user.reactivate" } else { "user.deactivate" };
    let admin = require_admin(&state, &auth, &ctx, action).await?;
    if !active && id == auth.user.id {
        return user_page(
            &state,
            &auth,
            &id,
            None,
            Some((StatusCode::CONFLICT, "You cannot deactivate yourself.".into())),
        )
        .await;
    }
    let (ended, revoked) = set_account_active(&state, &admin, &auth, &Origin::from(&ctx), &id, active).await?;
    let message = if active {
        "The account is active again.".to_owned()
    } else {
        format!("The account is deactivated: {ended} session(s) ended and {revoked} API token(s) revoked.")
    };
    user_page(&state, &auth, &id, Some(message), None).await
}

/// Deactivate (ending every session and token) or reactivate an account, as an administrator.
async fn set_account_active(
    state: &AppState,
    _admin: &OrgGrant<Administer>,
    auth: &Authenticated,
    origin: &Origin,
    id: &str,
    active: bool,
) -> AppResult<(u64, u64)> {
    let action = if active { "user.reactivate" } else { "user.deactivate" };
    let mut tx = state.db.begin().await?;
    users::find_any(&mut tx, id).await?.ok_or(AppError::NotFound)?;
    let (ended, revoked) = users::set_active(&mut tx, id, active).await?;
    let event = Event::new(action, Outcome::Allowed, Actor::of(auth), origin)
        .target("user", id)
        .intent(json!({"via": "console", "sessions_ended": ended, "tokens_revoked": revoked}));
    audit::record(&mut tx, event).await?;
    tx.commit().await?;
    state.rooms.access_changed("*").await;
    Ok((ended, revoked))
}

/// Sign an account out everywhere, as an administrator.
async fn end_sessions(
    state: &AppState,
    _admin: &OrgGrant<Administer>,
    auth: &Authenticated,
    origin: &Origin,
    id: &str,
) -> AppResult<u64> {
    let mut tx = state.db.begin().await?;
    users::find_any(&mut tx, id).await?.ok_or(AppError::NotFound)?;
    let ended = sessions::delete_for_user(&mut tx, id).await?;
    let event = Event::new("session.revoke", Outcome::Allowed, Actor::of(auth), origin)
        .target("user", id)
        .intent(json!({"sessions": ended}));
    audit::record(&mut tx, event).await?;
    tx.commit().await?;
    // Open live connections (workflow socket, event stream) look at their credential again.
    state.rooms.access_changed("*").await;
    Ok(ended)
}

/// Revoke one of an account's API tokens, as an administrator.
async fn revoke_account_token(
    state: &AppState,
    _admin: &OrgGrant<Administer>,
    auth: &Authenticated,
    origin: &Origin,
    id: &str,
    token_id: &str,
) -> AppResult<()> {
    let mut tx = state.db.begin().await?;
    if !tokens::revoke(&mut tx, id, token_id).await? {
        return Err(AppError::NotFound);
    }
    let event = Event::new("token.revoke", Outcome::Allowed, Actor::of(auth), origin)
        .target("api_token", token_id)
        .intent(json!({"for_user": id, "via": "console"}));
    audit::record(&mut tx, event).await?;
    tx.commit().await?;
    // Open live connections (workflow socket, event stream) look at their credential again.
    state.rooms.access_changed("*").await;
    Ok(())
}

/// `POST /admin/users/{id}/sessions/revoke`: sign the user out everywhere.
pub async fn revoke_sessions(
    State(state): State<AppState>,
    PageUser(auth): PageUser,
    ctx: RequestContext,
    Path(id): Path<String>,
) -> AppResult<Response> {
    let admin = require_admin(&state, &auth, &ctx, "session.revoke").await?;
    let ended = end_sessions(&state, &admin, &auth, &Origin::from(&ctx), &id).await?;
    if id == auth.user.id {
        return Ok(Redirect::to("/login").into_response());
    }
    user_page(&state, &auth, &id, Some(format!("{ended} session(s) ended.")), None).await
}

/// `POST /admin/users/{id}/tokens/{token_id}/revoke`
pub async fn revoke_token(
    State(state): State<AppState>,
    PageUser(auth): PageUser,
    ctx: RequestContext,
    Path((id, token_id)): Path<(String, String)>,
) -> AppResult<Response> {
    let admin = require_admin(&state, &auth, &ctx, "token.revoke").await?;
    revoke_account_token(&state, &admin, &auth, &Origin::from(&ctx), &id, &token_id).await?;
    user_page(&state, &auth, &id, Some("Token revoked.".into()), None).await
}
