//! Named locks in the database, with an expiry: they work across replicas, and a holder that
//! died frees its lock by time instead of forever.

use std::time::Duration;

use crate::db::{Db, ms, now_ms};
use crate::error::AppResult;

/// A held lock. Release it with [`Lock::release`]; if the holder dies it expires by itself.
#[derive(Debug)]
pub struct Lock {
    pub name: String,
    owner: String,
    expires_at: i64,
}

impl Lock {
    /// Take `name` for `ttl` unless someone else holds it and it has not expired.
    pub async fn try_acquire(db: &Db, name: &str, ttl: Duration) -> AppResult<Option<Lock>> {
        let now = now_ms();
        let owner = uuid::Uuid::new_v4().to_string();
        let expires_at = now + ms(ttl);
        let taken = sqlx::query(
            "INSERT INTO locks (name, owner, expires_at) VALUES ($1, $2, $3) \
             ON CONFLICT (name) DO UPDATE SET owner = excluded.owner, expires_at = excluded.expires_at \
             WHERE locks.expires_at < $4",
        )
        .bind(name)
        .bind(&owner)
        .bind(expires_at)
        .bind(now)
        .execute(db.pool())
        .await?;
        Ok((taken.rows_affected() == 1).then(|| Lock { name: name.to_owned(), owner, expires_at }))
    }

    /// Whether the lock is still ours with at least `margin` left (check before an irreversible step).
    pub async fn still_held(&self, db: &Db, margin: Duration) -> AppResult<bool> {
        if now_ms() + ms(margin) >= self.expires_at {
            return Ok(false);
        }
        let row: Option<(String,)> = sqlx::query_as("SELECT owner FROM locks WHERE name = $1")
            .bind(&self.name)
            .fetch_optional(db.pool())
            .await?;
        Ok(row.is_some_and(|(owner,)| owner == self.owner))
    }

    /// Give the lock up (only if it is still ours).
    pub async fn release(self, db: &Db) -> AppResult<()> {
        sqlx::query("DELETE FROM locks WHERE name = $1 AND owner = $2")
            .bind(&self.name)
            .bind(&self.owner)
            .execute(db.pool())
            .await?;
        Ok(())
    }
}
