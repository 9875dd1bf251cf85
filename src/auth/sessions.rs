//! Server-side browser sessions. The cookie holds 128 random bits; the table holds only their
//! SHA-256, so a database leak does not yield live sessions. Each sign-in creates a new id
//! (no fixation); idle and absolute expiry are enforced on every lookup.

use std::time::Duration;

use sqlx::AnyConnection;

use super::model::User;
use super::users::{self, UserRow};
use crate::db::{ms, now_ms};
use crate::error::AppResult;
use crate::keys::{random_token, sha256_hex};

/// Write `last_seen_at` at most this often per session, not on every request.
const TOUCH_INTERVAL_MS: i64 = 60_000;

pub struct NewSession<'a> {
    pub user_id: &'a str,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    pub absolute_timeout: Duration,
    /// Signed in through this IdP, with this ID token (for RP-initiated logout).
    pub oidc: Option<(&'a str, &'a str)>,
}

/// Create a session; returns the cookie value (shown to no one but the browser).
pub async fn create(conn: &mut AnyConnection, new: NewSession<'_>) -> AppResult<String> {
    let cookie = random_token(16);
    let now = now_ms();
    sqlx::query(
        "INSERT INTO sessions (id_hash, user_id, created_at, last_seen_at, expires_at, ip, user_agent, oidc_provider, \
         id_token) VALUES ($1, $2, $3, $3, $4, $5, $6, $7, $8)",
    )
    .bind(sha256_hex(&cookie))
    .bind(new.user_id)
    .bind(now)
    .bind(now + ms(new.absolute_timeout))
    .bind(new.ip)
    .bind(new.user_agent)
    .bind(new.oidc.map(|(p, _)| p))
    .bind(new.oidc.map(|(_, t)| t))
    .execute(conn)
    .await?;
    Ok(cookie)
}

#[derive(sqlx::FromRow)]
struct LookupRow {
    #[sqlx(flatten)]
    user: UserRow,
    last_seen_at: i64,
}

/// The user of a live session, refreshing its idle timer.
pub async fn lookup(conn: &mut AnyConnection, cookie: &str, idle: Duration) -> AppResult<Option<User>> {
    lookup_hash(conn, &sha256_hex(cookie), idle).await
}

/// The hash a session is stored under.
pub fn id_hash(cookie: &str) -> String {
    sha256_hex(cookie)
}

/// [`lookup`] by the cookie's hash (live connections check their session again this way; a
/// connection in use keeps its session from going idle, like page requests do).
pub async fn lookup_hash(conn: &mut AnyConnection, hash: &str, idle: Duration) -> AppResult<Option<User>> {
    let now = now_ms();
    let row: Option<LookupRow> = sqlx::query_as(&format!(
        "SELECT {}, s.last_seen_at FROM sessions s JOIN users u ON u.id = s.user_id \
         WHERE s.id_hash = $1 AND s.expires_at > $2 AND s.last_seen_at > $3 AND u.disabled_at IS NULL",
        users::joined_columns()
    ))
    .bind(hash)
    .bind(now)
    .bind(now - ms(idle))
    .fetch_optional(&mut *conn)
    .await?;
    let Some(row) = row else { return Ok(None) };
    if now - row.last_seen_at > TOUCH_INTERVAL_MS {
        sqlx::query("UPDATE sessions SET last_seen_at = $1 WHERE id_hash = $2")
            .bind(now)
            .bind(hash)
            .execute(conn)
            .await?;
    }
    row.user.into_user().map(Some)
}

/// The IdP a session signed in through and its ID token, for RP-initiated logout.
pub async fn oidc_of(conn: &mut AnyConnection, cookie: &str) -> AppResult<Option<(String, Option<String>)>> {
    let row: Option<(Option<String>, Option<String>)> =
        sqlx::query_as("SELECT oidc_provider, id_token FROM sessions WHERE id_hash = $1")
            .bind(sha256_hex(cookie))
            .fetch_optional(conn)
            .await?;
    Ok(row.and_then(|(p, t)| Some((p?, t))))
}

pub async fn delete(conn: &mut AnyConnection, cookie: &str) -> AppResult<()> {
    sqlx::query("DELETE FROM sessions WHERE id_hash = $1").bind(sha256_hex(cookie)).execute(conn).await?;
    Ok(())
}

/// Sign a user out everywhere (admin revocation, erasure).
pub async fn delete_for_user(conn: &mut AnyConnection, user_id: &str) -> AppResult<u64> {
    let r = sqlx::query("DELETE FROM sessions WHERE user_id = $1").bind(user_id).execute(conn).await?;
    Ok(r.rows_affected())
}

/// Remove expired sessions; returns how many remain live.
pub async fn sweep(conn: &mut AnyConnection, idle: Duration) -> AppResult<i64> {
    let now = now_ms();
    sqlx::query("DELETE FROM sessions WHERE expires_at <= $1 OR last_seen_at <= $2")
        .bind(now)
        .bind(now - ms(idle))
        .execute(&mut *conn)
        .await?;
    let (n,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM sessions").fetch_one(conn).await?;
    Ok(n)
}

/// A session as its owner may see it (never its id).
#[derive(sqlx::FromRow)]
pub struct SessionRow {
    pub created_at: i64,
    pub last_seen_at: i64,
    pub expires_at: i64,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
}

pub async fn list_for_user(conn: &mut AnyConnection, user_id: &str) -> AppResult<Vec<SessionRow>> {
    Ok(sqlx::query_as(
        "SELECT created_at, last_seen_at, expires_at, ip, user_agent FROM sessions WHERE user_id = $1 ORDER BY created_at",
    )
    .bind(user_id)
    .fetch_all(conn)
    .await?)
}
