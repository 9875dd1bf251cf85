//! First-run setup: while no admin exists, each start issues a one-time token (logged as a
//! `/setup?token=…` URL and written to `{data}/setup-token`). Whoever holds it creates the
//! first admin; that consumes every outstanding token.

use std::path::{Path, PathBuf};

use super::model::{OrgRole, User};
use super::{password, users};
use crate::db::{Db, now_ms};
use crate::error::{AppError, AppResult};
use crate::keys::{random_token, sha256_hex, write_private};

/// How long a start's token stays valid; restart Arno (or use `arno admin create-user`) after.
const TOKEN_TTL_MS: i64 = 24 * 3600 * 1000;

pub fn token_file(data_dir: &Path) -> PathBuf {
    data_dir.join("setup-token")
}

/// Issue a token if setup is still needed; returns it. Tokens issued by other replicas stay
/// valid, so any of the URLs they logged works.
pub async fn issue_if_needed(db: &Db, data_dir: &Path) -> AppResult<Option<String>> {
    let mut tx = db.begin().await?;
    if users::admin_exists(&mut tx).await? {
        tx.commit().await?;
        remove_token_file(data_dir).await;
        return Ok(None);
    }
    let token = random_token(32);
    let now = now_ms();
    sqlx::query("DELETE FROM setup_tokens WHERE expires_at <= $1").bind(now).execute(&mut *tx).await?;
    sqlx::query("INSERT INTO setup_tokens (token_hash, created_at, expires_at) VALUES ($1, $2, $3)")
        .bind(sha256_hex(&token))
        .bind(now)
        .bind(now + TOKEN_TTL_MS)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    let path = token_file(data_dir);
    let contents = format!("{token}\n");
    tokio::task::spawn_blocking(move || write_private(&path, contents.as_bytes()))
        .await
        .map_err(|e| AppError::Internal(e.into()))?
        .map_err(|e| AppError::Internal(anyhow::Error::new(e).context("writing the setup token file")))?;
    Ok(Some(token))
}

pub enum SetupState {
    /// An admin exists: setup is over.
    Complete,
    InvalidToken,
    Open,
}

pub async fn state(db: &Db, token: Option<&str>) -> AppResult<SetupState> {
    let mut conn = db.pool().acquire().await?;
    if users::admin_exists(&mut conn).await? {
        return Ok(SetupState::Complete);
    }
    let Some(token) = token.filter(|t| !t.is_empty() && t.len() <= 200) else { return Ok(SetupState::InvalidToken) };
    let row: Option<(String,)> =
        sqlx::query_as("SELECT token_hash FROM setup_tokens WHERE token_hash = $1 AND expires_at > $2")
            .bind(sha256_hex(token))
            .bind(now_ms())
            .fetch_optional(&mut *conn)
            .await?;
    Ok(if row.is_some() { SetupState::Open } else { SetupState::InvalidToken })
}

pub struct FirstAdmin<'a> {
    pub token: &'a str,
    pub email: &'a str,
    pub name: &'a str,
    pub password: String,
}

/// Create the first admin and consume the token, in one transaction.
pub async fn complete(
    db: &Db,
    data_dir: &Path,
    form: FirstAdmin<'_>,
    origin: &crate::audit::Origin,
) -> AppResult<User> {
    let email = users::normalize_email(form.email)?;
    users::validate_name(form.name)?;
    password::check_policy(&form.password, &email)?;
    let phc = password::hash(form.password).await?;

    let mut tx = db.begin().await?;
    // Deleting the row first makes a concurrent second attempt with the same token wait on
    // the row lock and then find nothing.
    let consumed = sqlx::query("DELETE FROM setup_tokens WHERE token_hash = $1 AND expires_at > $2")
        .bind(sha256_hex(form.token))
        .bind(now_ms())
        .execute(&mut *tx)
        .await?;
    if consumed.rows_affected() != 1 {
        return Err(AppError::forbidden("the setup token is invalid or expired"));
    }
    if users::admin_exists(&mut tx).await? {
        return Err(AppError::forbidden("setup is already complete"));
    }
    let user = users::create(
        &mut tx,
        users::NewUser { email: &email, name: form.name, org_role: OrgRole::Admin, handle_source: None },
    )
    .await?;
    users::set_password_hash(&mut tx, &user.id, &phc).await?;
    sqlx::query("DELETE FROM setup_tokens").execute(&mut *tx).await?;
    let event = crate::audit::Event::new(
        "setup.complete",
        crate::audit::Outcome::Allowed,
        crate::audit::Actor::User(&user.id),
        origin,
    )
    .target("user", &user.id)
    .intent(serde_json::json!({"org_role": "admin"}));
    crate::audit::record(&mut tx, event).await?;
    tx.commit().await?;
    remove_token_file(data_dir).await;
    tracing::info!(event_type = "setup_completed", user_id = %user.id, "first admin created");
    Ok(user)
}

async fn remove_token_file(data_dir: &Path) {
    let _ = tokio::fs::remove_file(token_file(data_dir)).await;
}
