//! Sign-in throttling per client address and per account, in the database so every replica
//! sees the same counts. After `max` failures within the window, further attempts wait:
//! 30 s, doubling with each further failure, capped at 15 min — a delay, never a lockout.
//! Account keys are HMACs of the e-mail address, so the table holds no addresses.

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::db::{Db, now_ms};
use crate::error::AppResult;

const WINDOW_MS: i64 = 15 * 60 * 1000;
const BASE_DELAY_MS: i64 = 30_000;
const MAX_DELAY_MS: i64 = 15 * 60 * 1000;

pub struct Key {
    pub key: String,
    pub max_failures: u32,
}

pub fn ip_key(ip: &str, max_failures: u32) -> Key {
    Key { key: format!("ip:{ip}"), max_failures }
}

pub fn account_key(secret: &[u8; 32], email_normalized: &str, max_failures: u32) -> Key {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("any key length");
    mac.update(email_normalized.as_bytes());
    Key { key: format!("account:{}", hex::encode(mac.finalize().into_bytes())), max_failures }
}

/// Milliseconds until the longest-blocked key may try again, if any is blocked.
pub async fn blocked_for(db: &Db, keys: &[Key]) -> AppResult<Option<u64>> {
    let now = now_ms();
    let mut longest = 0i64;
    for k in keys {
        let row: Option<(i64,)> = sqlx::query_as("SELECT blocked_until FROM login_throttle WHERE key = $1")
            .bind(&k.key)
            .fetch_optional(db.pool())
            .await?;
        if let Some((until,)) = row {
            longest = longest.max(until - now);
        }
    }
    Ok((longest > 0).then_some(longest as u64))
}

/// Count a failure against every key, blocking those over their limit.
pub async fn record_failure(db: &Db, keys: &[Key]) -> AppResult<()> {
    let now = now_ms();
    let mut tx = db.begin().await?;
    for k in keys {
        let (failures,): (i64,) = sqlx::query_as(
            "INSERT INTO login_throttle (key, failures, window_start, blocked_until) VALUES ($1, 1, $2, 0) \
             ON CONFLICT (key) DO UPDATE SET \
               failures = CASE WHEN login_throttle.window_start < $3 AND login_throttle.blocked_until <= $2 \
                               THEN 1 ELSE login_throttle.failures + 1 END, \
               window_start = CASE WHEN login_throttle.window_start < $3 AND login_throttle.blocked_until <= $2 \
                               THEN $2 ELSE login_throttle.window_start END \
             RETURNING failures",
        )
        .bind(&k.key)
        .bind(now)
        .bind(now - WINDOW_MS)
        .fetch_one(&mut *tx)
        .await?;
        let over = failures - i64::from(k.max_failures);
        if over >= 0 {
            let delay = (BASE_DELAY_MS << over.min(10)).min(MAX_DELAY_MS);
            sqlx::query("UPDATE login_throttle SET blocked_until = $1 WHERE key = $2")
                .bind(now + delay)
                .bind(&k.key)
                .execute(&mut *tx)
                .await?;
        }
    }
    tx.commit().await?;
    Ok(())
}

/// A successful sign-in clears the account's count (the address's count decays on its own).
pub async fn record_success(db: &Db, account: &Key) -> AppResult<()> {
    sqlx::query("DELETE FROM login_throttle WHERE key = $1").bind(&account.key).execute(db.pool()).await?;
    Ok(())
}

/// Forget counts that no longer matter.
pub async fn sweep(db: &Db) -> AppResult<()> {
    let now = now_ms();
    sqlx::query("DELETE FROM login_throttle WHERE window_start < $1 AND blocked_until < $2")
        .bind(now - WINDOW_MS)
        .bind(now)
        .execute(db.pool())
        .await?;
    Ok(())
}
