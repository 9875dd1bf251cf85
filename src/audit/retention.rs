//! Retention: records older than `ARNO_AUDIT_RETENTION` (default 180 days) are purged, in a way
//! that keeps what remains verifiable.
//!
//! The purge only ever cuts at a signed checkpoint: it removes the records up to and including
//! the newest checkpoint whose record is older than the cutoff, and the checkpoints before it.
//! That checkpoint stays as the anchor: the first remaining record links to its hash, and its
//! signature proves the anchor is genuine. Retention is therefore "at least" the configured
//! period, give or take the checkpoint interval. The purge opens the append-only gate only inside
//! its own transaction, and is itself audited in that transaction.
//!
//! A project may keep its records longer than the instance ([`Hold`]). Because the log is only
//! ever cut at its start, such a project holds back the cut: nothing from its oldest record still
//! within its retention onwards is purged. (A shorter per-project retention would mean deleting
//! from the middle of the chain, which no verifier could tell from tampering; it is not offered.)

use std::time::Duration;

use serde_json::json;

use super::{Actor, Event, Origin, Outcome, store};
use crate::db::{Backend, Db, Tx, ms, now_ms, rfc3339};
use crate::error::AppResult;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Purged {
    pub records: u64,
    /// The anchor checkpoint's seq: every record up to it is gone.
    pub through_seq: i64,
}

/// Allow UPDATE/DELETE on the audit tables for the rest of this transaction only.
pub(super) async fn open_gate(tx: &mut Tx, backend: Backend) -> AppResult<()> {
    match backend {
        Backend::Postgres => sqlx::query("SET LOCAL arno.audit_maintenance = 'on'").execute(&mut **tx).await?,
        Backend::Sqlite => sqlx::query("UPDATE audit_gate SET open = 1 WHERE id = 1").execute(&mut **tx).await?,
    };
    Ok(())
}

/// Close it again before commit (SQLite; on PostgreSQL `SET LOCAL` ends with the transaction).
pub(super) async fn close_gate(tx: &mut Tx, backend: Backend) -> AppResult<()> {
    if backend == Backend::Sqlite {
        sqlx::query("UPDATE audit_gate SET open = 0 WHERE id = 1").execute(&mut **tx).await?;
    }
    Ok(())
}

/// A project whose records are kept longer than the instance's retention.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hold {
    pub project_id: String,
    pub retention: Duration,
}

/// Purge records older than `retention`, except what `holds` keep. `None` when there is nothing
/// to purge.
pub async fn purge(db: &Db, retention: Duration, holds: &[Hold], origin: &Origin) -> AppResult<Option<Purged>> {
    let now = now_ms();
    let cutoff = now - ms(retention);
    let mut tx = db.begin().await?;
    // The oldest record any hold still needs: the cut must stay before it.
    let mut keep_from = i64::MAX;
    let mut holding = 0;
    for hold in holds {
        let oldest: (Option<i64>,) =
            sqlx::query_as("SELECT MIN(seq) FROM audit_events WHERE project_id = $1 AND occurred_at >= $2")
                .bind(&hold.project_id)
                .bind(now - ms(hold.retention))
                .fetch_one(&mut *tx)
                .await?;
        if let (Some(seq),) = oldest
            && seq < keep_from
        {
            keep_from = seq;
            holding += 1;
        }
    }
    // The newest checkpoint whose record is older than the cutoff (and before any held record).
    let anchor: Option<(i64,)> = sqlx::query_as(
        "SELECT c.seq FROM audit_checkpoints c JOIN audit_events e ON e.seq = c.seq \
         WHERE e.occurred_at < $1 AND c.seq < $2 ORDER BY c.seq DESC LIMIT 1",
    )
    .bind(cutoff)
    .bind(keep_from)
    .fetch_optional(&mut *tx)
    .await?;
    let Some((through_seq,)) = anchor else {
        tx.rollback().await?;
        return Ok(None);
    };
    open_gate(&mut tx, db.backend()).await?;
    let deleted = sqlx::query("DELETE FROM audit_events WHERE seq <= $1").bind(through_seq).execute(&mut *tx).await?;
    sqlx::query("DELETE FROM audit_checkpoints WHERE seq < $1").bind(through_seq).execute(&mut *tx).await?;
    close_gate(&mut tx, db.backend()).await?;
    let purged = Purged { records: deleted.rows_affected(), through_seq };
    let event = Event::new("audit.purge", Outcome::Allowed, Actor::System, origin).intent(json!({
        "older_than": rfc3339(cutoff),
        "through_seq": through_seq,
        "records": purged.records,
        "held_by_projects": holding,
    }));
    super::record(&mut tx, event).await?;
    tx.commit().await?;
    tracing::info!(event_type = "audit_purged", records = purged.records, through_seq, "purged old audit records");
    Ok(Some(purged))
}

/// The checkpoint a range starting at `first_seq` links to, if its predecessor was purged.
pub async fn anchor_for(conn: &mut sqlx::AnyConnection, first_seq: i64) -> AppResult<Option<store::Checkpoint>> {
    let cps = store::checkpoints_between(conn, first_seq - 1, first_seq - 1).await?;
    Ok(cps.into_iter().next())
}
