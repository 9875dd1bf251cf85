//! SQL of the workflow document: the update log, snapshots and connect tickets.

use sha2::{Digest, Sha256};
use sqlx::AnyConnection;

use crate::db::{Db, ms, now_ms};
use crate::error::AppResult;

/// One accepted update waiting to be stored.
pub struct NewUpdate<'a> {
    pub data: &'a [u8],
    pub user_id: Option<&'a str>,
}

/// Append updates in one transaction (one `fsync` for the batch); returns their log ids in order.
pub async fn append(db: &Db, project_id: &str, replica: u64, updates: &[NewUpdate<'_>]) -> AppResult<Vec<i64>> {
    let now = now_ms();
    let mut tx = db.begin().await?;
    let mut ids = Vec::with_capacity(updates.len());
    for u in updates {
        let (id,): (i64,) = sqlx::query_as(
            "INSERT INTO workflow_updates (project_id, data, user_id, created_at) VALUES ($1, $2, $3, $4) RETURNING id",
        )
        .bind(project_id)
        .bind(u.data)
        .bind(u.user_id)
        .bind(now)
        .fetch_one(&mut *tx)
        .await?;
        ids.push(id);
    }
    if db.backend() == crate::db::Backend::Postgres {
        // Other replicas fetch exactly these rows when the transaction commits (this one, which
        // already has them, recognises its own id).
        let payload =
            format!("{project_id}:{replica}:{}", ids.iter().map(i64::to_string).collect::<Vec<_>>().join(","));
        sqlx::query("SELECT pg_notify('arno_workflow', $1)").bind(payload).execute(&mut *tx).await?;
    }
    tx.commit().await?;
    Ok(ids)
}

/// Everything needed to rebuild a document: the newest compaction snapshot, then every update
/// row (rows older than the snapshot that committed late are included too; applying an update
/// twice changes nothing). Returns the pieces in order and the highest row id.
pub async fn load(conn: &mut AnyConnection, project_id: &str) -> AppResult<(Vec<Vec<u8>>, i64)> {
    let mut pieces = vec![];
    let snapshot: Option<(Vec<u8>, i64)> = sqlx::query_as(
        "SELECT state, upto_id FROM workflow_snapshots WHERE project_id = $1 AND kind = 'compaction' \
         ORDER BY upto_id DESC LIMIT 1",
    )
    .bind(project_id)
    .fetch_optional(&mut *conn)
    .await?;
    let mut max = 0;
    if let Some((state, upto)) = snapshot {
        pieces.push(state);
        max = upto;
    }
    let rows: Vec<(i64, Vec<u8>)> =
        sqlx::query_as("SELECT id, data FROM workflow_updates WHERE project_id = $1 ORDER BY id")
            .bind(project_id)
            .fetch_all(&mut *conn)
            .await?;
    for (id, data) in rows {
        max = max.max(id);
        pieces.push(data);
    }
    Ok((pieces, max))
}

/// Specific log rows (announced by another replica).
pub async fn updates_by_id(db: &Db, project_id: &str, ids: &[i64]) -> AppResult<Vec<Vec<u8>>> {
    let mut out = Vec::with_capacity(ids.len());
    for chunk in ids.chunks(200) {
        let list = chunk.iter().map(i64::to_string).collect::<Vec<_>>().join(",");
        let rows: Vec<(Vec<u8>,)> = sqlx::query_as(&format!(
            "SELECT data FROM workflow_updates WHERE project_id = $1 AND id IN ({list}) ORDER BY id"
        ))
        .bind(project_id)
        .fetch_all(db.pool())
        .await?;
        out.extend(rows.into_iter().map(|(d,)| d));
    }
    Ok(out)
}

/// Log rows after `after` (catching up after a lost notification).
pub async fn updates_after(db: &Db, project_id: &str, after: i64) -> AppResult<Vec<(i64, Vec<u8>)>> {
    Ok(sqlx::query_as("SELECT id, data FROM workflow_updates WHERE project_id = $1 AND id > $2 ORDER BY id")
        .bind(project_id)
        .bind(after)
        .fetch_all(db.pool())
        .await?)
}

fn ticket_hash(ticket: &str) -> String {
    hex::encode(Sha256::digest(ticket.as_bytes()))
}

/// Issue a single-use connect ticket for `user_id` on `project_id`, valid for `ttl`.
pub async fn issue_ticket(
    db: &Db,
    user_id: &str,
    credential: &str,
    project_id: &str,
    ttl: std::time::Duration,
) -> AppResult<String> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| anyhow::anyhow!("no randomness: {e}"))?;
    let ticket = format!("wst_{}", hex::encode(bytes));
    let now = now_ms();
    let mut conn = db.pool().acquire().await?;
    sqlx::query("DELETE FROM workflow_tickets WHERE expires_at < $1").bind(now).execute(&mut *conn).await?;
    sqlx::query(
        "INSERT INTO workflow_tickets (ticket_hash, user_id, project_id, expires_at, credential) VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(ticket_hash(&ticket))
    .bind(user_id)
        .bind(project_id)
        .bind(now + ms(ttl))
        .bind(credential)
        .execute(&mut *conn)
        .await?;
    Ok(ticket)
}

/// A consumed ticket: who it was issued to, for which project, against which credential.
pub struct Ticket {
    pub user_id: String,
    pub project_id: String,
    pub credential: Option<String>,
}

/// Use a ticket up, if it was valid (it is gone either way).
pub async fn consume_ticket(db: &Db, ticket: &str) -> AppResult<Option<Ticket>> {
    let row: Option<(String, String, i64, Option<String>)> = sqlx::query_as(
        "DELETE FROM workflow_tickets WHERE ticket_hash = $1 RETURNING user_id, project_id, expires_at, credential",
    )
    .bind(ticket_hash(ticket))
    .fetch_optional(db.pool())
    .await?;
    Ok(row.filter(|(_, _, expires, _)| *expires >= now_ms()).map(|(user_id, project_id, _, credential)| Ticket {
        user_id,
        project_id,
        credential,
    }))
}
