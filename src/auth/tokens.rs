//! Personal API tokens: `arno_` + 256 random bits, shown once; only the SHA-256 is stored.

use serde::Serialize;
use sqlx::{AnyConnection, FromRow};
use utoipa::ToSchema;

use super::model::User;
use super::users::{self, UserRow};
use crate::db::{now_ms, rfc3339};
use crate::error::{AppError, AppResult};
use crate::keys::{random_token, sha256_hex};

pub const PREFIX: &str = "arno_";
pub const MAX_EXPIRES_DAYS: i64 = 365;
pub const DEFAULT_EXPIRES_DAYS: i64 = 90;
const DAY_MS: i64 = 86_400_000;
const TOUCH_INTERVAL_MS: i64 = 60_000;

/// A token as listed: never the secret.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct TokenInfo {
    pub id: String,
    pub name: String,
    /// RFC 3339, UTC.
    pub created_at: String,
    pub expires_at: Option<String>,
    pub last_used_at: Option<String>,
}

#[derive(FromRow)]
struct TokenRow {
    id: String,
    name: String,
    created_at: i64,
    expires_at: Option<i64>,
    last_used_at: Option<i64>,
}

impl From<TokenRow> for TokenInfo {
    fn from(r: TokenRow) -> Self {
        TokenInfo {
            id: r.id,
            name: r.name,
            created_at: rfc3339(r.created_at),
            expires_at: r.expires_at.map(rfc3339),
            last_used_at: r.last_used_at.map(rfc3339),
        }
    }
}

pub fn validate_name(raw: &str) -> AppResult<String> {
    let name = raw.trim();
    if name.is_empty() || name.chars().count() > 100 || name.chars().any(char::is_control) {
        return Err(AppError::field("name", "must be 1 to 100 printable characters"));
    }
    Ok(name.to_owned())
}

/// Create a token; returns its description and the secret (to show exactly once).
pub async fn create(
    conn: &mut AnyConnection,
    user_id: &str,
    name: &str,
    expires_days: Option<i64>,
) -> AppResult<(TokenInfo, String)> {
    let name = validate_name(name)?;
    let days = expires_days.unwrap_or(DEFAULT_EXPIRES_DAYS);
    if !(1..=MAX_EXPIRES_DAYS).contains(&days) {
        return Err(AppError::field("expires_days", format!("must be between 1 and {MAX_EXPIRES_DAYS}")));
    }
    let secret = format!("{PREFIX}{}", random_token(32));
    let id = uuid::Uuid::now_v7().to_string();
    let now = now_ms();
    let expires_at = now + days * DAY_MS;
    sqlx::query(
        "INSERT INTO api_tokens (id, user_id, name, token_hash, created_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(&id)
    .bind(user_id)
    .bind(&name)
    .bind(sha256_hex(&secret))
    .bind(now)
    .bind(expires_at)
    .execute(conn)
    .await?;
    let info =
        TokenInfo { id, name, created_at: rfc3339(now), expires_at: Some(rfc3339(expires_at)), last_used_at: None };
    Ok((info, secret))
}

/// The caller's live tokens, newest first.
pub async fn list(conn: &mut AnyConnection, user_id: &str) -> AppResult<Vec<TokenInfo>> {
    let rows: Vec<TokenRow> = sqlx::query_as(
        "SELECT id, name, created_at, expires_at, last_used_at FROM api_tokens \
         WHERE user_id = $1 AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > $2) ORDER BY id DESC",
    )
    .bind(user_id)
    .bind(now_ms())
    .fetch_all(conn)
    .await?;
    Ok(rows.into_iter().map(TokenInfo::from).collect())
}

/// Revoke one of the caller's tokens; `false` if they have no such live token.
pub async fn revoke(conn: &mut AnyConnection, user_id: &str, id: &str) -> AppResult<bool> {
    let r = sqlx::query("UPDATE api_tokens SET revoked_at = $1 WHERE id = $2 AND user_id = $3 AND revoked_at IS NULL")
        .bind(now_ms())
        .bind(id)
        .bind(user_id)
        .execute(conn)
        .await?;
    Ok(r.rows_affected() == 1)
}

#[derive(FromRow)]
struct AuthRow {
    #[sqlx(flatten)]
    user: UserRow,
    token_id: String,
    last_used_at: Option<i64>,
}

/// The user a bearer secret belongs to, if the token is live.
pub async fn authenticate(conn: &mut AnyConnection, secret: &str) -> AppResult<Option<User>> {
    Ok(authenticate_with_id(conn, secret).await?.map(|(user, _)| user))
}

/// Whether the token with this id is still live (not revoked, not expired, its user active).
pub async fn is_live(conn: &mut AnyConnection, id: &str) -> AppResult<bool> {
    let row: Option<(String,)> = sqlx::query_as(
        "SELECT t.id FROM api_tokens t JOIN users u ON u.id = t.user_id \
         WHERE t.id = $1 AND t.revoked_at IS NULL AND (t.expires_at IS NULL OR t.expires_at > $2) \
         AND u.disabled_at IS NULL",
    )
    .bind(id)
    .bind(now_ms())
    .fetch_optional(conn)
    .await?;
    Ok(row.is_some())
}

/// [`authenticate`], with the token's id.
pub async fn authenticate_with_id(conn: &mut AnyConnection, secret: &str) -> AppResult<Option<(User, String)>> {
    if !secret.starts_with(PREFIX) || secret.len() > 200 {
        return Ok(None);
    }
    let now = now_ms();
    let row: Option<AuthRow> = sqlx::query_as(&format!(
        "SELECT {}, t.id AS token_id, t.last_used_at FROM api_tokens t JOIN users u ON u.id = t.user_id \
         WHERE t.token_hash = $1 AND t.revoked_at IS NULL AND (t.expires_at IS NULL OR t.expires_at > $2) \
         AND u.disabled_at IS NULL",
        users::joined_columns()
    ))
    .bind(sha256_hex(secret))
    .bind(now)
    .fetch_optional(&mut *conn)
    .await?;
    let Some(row) = row else { return Ok(None) };
    if row.last_used_at.is_none_or(|t| now - t > TOUCH_INTERVAL_MS) {
        sqlx::query("UPDATE api_tokens SET last_used_at = $1 WHERE id = $2")
            .bind(now)
            .bind(&row.token_id)
            .execute(conn)
            .await?;
    }
    let id = row.token_id;
    row.user.into_user().map(|u| Some((u, id)))
}

/// Delete every token of a user (erasure).
pub async fn delete_for_user(conn: &mut AnyConnection, user_id: &str) -> AppResult<u64> {
    let r = sqlx::query("DELETE FROM api_tokens WHERE user_id = $1").bind(user_id).execute(conn).await?;
    Ok(r.rows_affected())
}
