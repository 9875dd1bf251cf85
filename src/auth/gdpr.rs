//! GDPR: a user's data export (`GET /api/v1/me/export`) and erasure — by an admin
//! (`DELETE /api/v1/users/{id}`) or by the user themself (`DELETE /api/v1/me`).
//!
//! Erasure, in one transaction: the user's audit records keep their place and hashes but their
//! actor becomes `deleted_user_<HMAC-SHA-256(user_id, pepper)>` and their IP addresses and user
//! agents are dropped; the user row is scrubbed (no e-mail, name or handle left) and disabled; the
//! password, every session and every API token are deleted; the erasure itself is audited.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::json;
use sqlx::AnyConnection;
use utoipa::ToSchema;
use utoipa_axum::routes;

use super::access::{self, Administer, OrgGrant};
use super::model::Authenticated;
use super::{ApiUser, sessions, tokens, users};
use crate::app::AppState;
use crate::audit::{self, Actor, Event, Origin, Outcome};
use crate::db::{Db, now_ms, rfc3339};
use crate::error::{AppError, AppResult, ErrorBody};
use crate::http::api::{ApiJson, ApiRouter};
use crate::http::{RequestContext, cookies};
use crate::keys::Keys;

pub fn api() -> ApiRouter {
    ApiRouter::new().routes(routes!(export_me)).routes(routes!(erase_me)).routes(routes!(erase_user))
}

/// Who may erase an account: an administrator (any account), or its owner (their own).
pub enum Erasure<'a> {
    ByAdmin(&'a OrgGrant<Administer>),
    OwnAccount,
}

/// Erase `user_id`, on behalf of `by`. Returns how many audit records were pseudonymized.
pub async fn erase(
    db: &Db,
    keys: &Keys,
    user_id: &str,
    by: &Authenticated,
    authority: Erasure<'_>,
    origin: &Origin,
) -> AppResult<u64> {
    match authority {
        Erasure::ByAdmin(admin) if admin.user_id() == by.user.id => {}
        Erasure::OwnAccount if by.user.id == user_id => {}
        _ => return Err(AppError::forbidden("only administrators erase other people's accounts")),
    }
    let pseudonym = audit::pseudonym(&keys.erasure_pepper, user_id);
    let mut tx = db.begin().await?;
    users::find_by_id(&mut tx, user_id).await?.ok_or(AppError::NotFound)?;
    if users::is_last_admin(&mut tx, db.backend(), user_id).await? {
        return Err(AppError::Conflict(
            "the last administrator cannot be erased; make someone else an admin first".into(),
        ));
    }
    let pseudonymized = audit::pseudonymize_actor(&mut tx, db.backend(), user_id, &pseudonym).await?;
    scrub(&mut tx, user_id, &pseudonym).await?;
    sessions::delete_for_user(&mut tx, user_id).await?;
    tokens::delete_for_user(&mut tx, user_id).await?;
    crate::projects::end_memberships(&mut tx, user_id).await?;
    crate::git::logins::forget_user(&mut tx, user_id).await?;
    // Their comments lose text and author; spec versions stay (the project's design) but forget who saved them.
    crate::projects::comments::erase_user(&mut tx, user_id).await?;
    crate::specs::versions::forget_user(&mut tx, user_id).await?;
    // Text not yet committed under their name is not committed any more (it stays as versions).
    crate::projects::writeback::forget_user(&mut tx, user_id).await?;
    let by_self = by.user.id == user_id;
    let event = Event::new(
        "user.erase",
        Outcome::Allowed,
        if by_self { Actor::User(&pseudonym) } else { Actor::of(by) },
        origin,
    )
    .target("user", &pseudonym)
    .intent(json!({"requested_by": if by_self { "self" } else { "admin" }, "records_pseudonymized": pseudonymized}));
    audit::record(&mut tx, event).await?;
    tx.commit().await?;
    tracing::info!(event_type = "user_erased", records = pseudonymized, "user erased");
    Ok(pseudonymized)
}

/// Replace everything personal in the user row; keep the id so references stay intact.
async fn scrub(conn: &mut AnyConnection, user_id: &str, pseudonym: &str) -> AppResult<()> {
    let suffix = pseudonym.trim_start_matches("deleted_user_");
    let now = now_ms();
    sqlx::query(
        "UPDATE users SET email = $1, name = 'Deleted user', handle = $2, disabled_at = $3, updated_at = $3, \
         scim_id = NULL, scim_external_id = NULL, scim_user_name = NULL, scim_email = NULL, scim_display_name = NULL, \
         scim_name_formatted = NULL, scim_given_name = NULL, scim_family_name = NULL WHERE id = $4",
    )
    .bind(format!("{pseudonym}@erased.invalid"))
    .bind(format!("deleted-{}", &suffix[..16]))
    .bind(now)
    .bind(user_id)
    .execute(&mut *conn)
    .await?;
    sqlx::query("DELETE FROM local_credentials WHERE user_id = $1").bind(user_id).execute(&mut *conn).await?;
    // The IdP's copy of them (names, addresses) goes too; SCIM groups no longer list them.
    sqlx::query("DELETE FROM scim_group_members WHERE user_id = $1").bind(user_id).execute(conn).await?;
    Ok(())
}

async fn denied(state: &AppState, auth: &Authenticated, origin: &Origin, target: &str, reason: &str) -> AppResult<()> {
    let event = Event::new("user.erase", Outcome::Denied, Actor::of(auth), origin)
        .target("user", target)
        .intent(json!({"reason": reason}));
    audit::record_alone(&state.db, event).await.map(|_| ())
}

/// `DELETE /api/v1/users/{id}`: an admin erases a user.
#[utoipa::path(delete, path = "/api/v1/users/{id}", tag = "gdpr",
    security(("token" = []), ("session" = [])),
    params(("id" = String, Path, description = "User id")),
    responses((status = 204, description = "Erased"), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody, description = "The last administrator")))]
pub async fn erase_user(
    State(state): State<AppState>,
    ApiUser(auth): ApiUser,
    ctx: RequestContext,
    Path(id): Path<String>,
) -> AppResult<StatusCode> {
    let origin = Origin::from(&ctx);
    let admin = match access::decide_org::<Administer>(&auth.user) {
        Ok(admin) => admin,
        Err(_) => {
            denied(&state, &auth, &origin, &id, "requires the admin role").await?;
            return Err(AppError::forbidden("erasing users requires the Admin role"));
        }
    };
    erase(&state.db, &state.keys, &id, &auth, Erasure::ByAdmin(&admin), &origin).await?;
    state.rooms.access_changed("*").await;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EraseMe {
    /// Your e-mail address, to confirm.
    pub confirm_email: String,
}

/// `DELETE /api/v1/me`: erase yourself. Irreversible.
#[utoipa::path(delete, path = "/api/v1/me", tag = "gdpr",
    security(("token" = []), ("session" = [])),
    request_body = EraseMe,
    responses((status = 204, description = "Erased; every session and token is gone"), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 409, body = ErrorBody, description = "The last administrator")))]
pub async fn erase_me(
    State(state): State<AppState>,
    ApiUser(auth): ApiUser,
    ctx: RequestContext,
    ApiJson(body): ApiJson<EraseMe>,
) -> AppResult<Response> {
    if users::normalize_email(&body.confirm_email).ok().as_deref() != Some(auth.user.email.as_str()) {
        return Err(AppError::field("confirm_email", "must be your e-mail address"));
    }
    erase(&state.db, &state.keys, &auth.user.id, &auth, Erasure::OwnAccount, &Origin::from(&ctx)).await?;
    state.rooms.access_changed("*").await;
    let mut response = StatusCode::NO_CONTENT.into_response();
    response.headers_mut().insert(header::SET_COOKIE, cookies::clear(&state.config, cookies::SESSION));
    Ok(response)
}

#[derive(Serialize, ToSchema)]
pub struct SessionInfo {
    pub created_at: String,
    pub last_seen_at: String,
    pub expires_at: String,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
}

/// `GET /api/v1/me/export`: everything Arno holds about you.
#[utoipa::path(get, path = "/api/v1/me/export", tag = "gdpr",
    security(("token" = []), ("session" = [])),
    responses((status = 200, description = "Your profile, sessions, API tokens (never their secrets), memberships, \
        spec versions, comments and your audit records", content_type = "application/json"),
        (status = 401, body = ErrorBody)))]
pub async fn export_me(
    State(state): State<AppState>,
    ApiUser(auth): ApiUser,
    ctx: RequestContext,
) -> AppResult<Response> {
    let user = &auth.user;
    let mut conn = state.db.pool().acquire().await?;
    let sessions: Vec<SessionInfo> = sessions::list_for_user(&mut conn, &user.id)
        .await?
        .into_iter()
        .map(|s| SessionInfo {
            created_at: rfc3339(s.created_at),
            last_seen_at: rfc3339(s.last_seen_at),
            expires_at: rfc3339(s.expires_at),
            ip: s.ip,
            user_agent: s.user_agent,
        })
        .collect();
    let tokens = tokens::list(&mut conn, &user.id).await?;
    let records = audit::records_of_actor(&mut conn, &user.id).await?;
    let spec_versions = crate::specs::versions::of_user(&mut conn, &user.id).await?;
    let comments = crate::projects::comments::of_user(&mut conn, &user.id).await?;
    let git_logins = crate::git::logins::list(&mut conn, &user.id).await?;
    let pending: Vec<serde_json::Value> = crate::projects::writeback::pending_of(&mut conn, &user.id)
        .await?
        .into_iter()
        .map(|(project_id, path, version)| json!({"project_id": project_id, "path": path, "version": version}))
        .collect();
    drop(conn);
    let origin = Origin::from(&ctx);
    let event = Event::new("user.export", Outcome::Allowed, Actor::of(&auth), &origin)
        .target("user", &user.id)
        .intent(json!({"audit_records": records.len()}));
    audit::record_alone(&state.db, event).await?;
    let body = json!({
        "exported_at": rfc3339(now_ms()),
        "profile": {
            "id": user.id, "email": user.email, "name": user.name, "handle": user.handle,
            "org_role": user.org_role, "created_at": rfc3339(user.created_at),
        },
        "sessions": sessions,
        "api_tokens": tokens,
        "memberships": crate::projects::memberships_of(&state.db, &auth.user.id).await?,
        "spec_versions": spec_versions,
        "comments": comments,
        "git_logins": git_logins,
        "pending_writebacks": pending,
        "audit_records": records,
    });
    let mut response = Json(body).into_response();
    response
        .headers_mut()
        .insert(header::CONTENT_DISPOSITION, HeaderValue::from_static("attachment; filename=\"arno-my-data.json\""));
    Ok(response)
}
