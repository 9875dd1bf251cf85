//! The audit tables. Reads only: appending lives in `audit::record`; the only other writes
//! (retention, erasure) open the append-only gate explicitly.

use serde::Serialize;
use sqlx::{AnyConnection, FromRow};

use crate::error::AppResult;

#[derive(Clone, Debug, FromRow, Serialize, PartialEq, Eq)]
pub struct Row {
    pub seq: i64,
    pub id: String,
    pub occurred_at: i64,
    pub actor_kind: String,
    pub actor_id: Option<String>,
    pub personal: String,
    pub personal_salt: Option<String>,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    pub action: String,
    pub outcome: String,
    pub project_id: Option<String>,
    pub target_type: Option<String>,
    pub target_id: Option<String>,
    pub intent: String,
    pub request_id: Option<String>,
    pub trace_id: Option<String>,
    pub prev_hash: String,
    pub hash: String,
}

const COLUMNS: &str = "seq, id, occurred_at, actor_kind, actor_id, personal, personal_salt, ip, user_agent, action, \
                       outcome, project_id, target_type, target_id, intent, request_id, trace_id, prev_hash, hash";

#[derive(Clone, Debug, FromRow, Serialize, PartialEq, Eq)]
pub struct Checkpoint {
    pub seq: i64,
    pub hash: String,
    pub prev_seq: i64,
    pub prev_hash: String,
    pub signed_at: i64,
    pub key_id: String,
    pub signature: String,
}

const CHECKPOINT_COLUMNS: &str = "seq, hash, prev_seq, prev_hash, signed_at, key_id, signature";

/// The first and last seq of the records in `[from, to)` (ms). Record times never decrease with
/// seq, so the range is contiguous.
pub async fn seq_range(conn: &mut AnyConnection, from: i64, to: i64) -> AppResult<Option<(i64, i64)>> {
    let (first, last): (Option<i64>, Option<i64>) =
        sqlx::query_as("SELECT MIN(seq), MAX(seq) FROM audit_events WHERE occurred_at >= $1 AND occurred_at < $2")
            .bind(from)
            .bind(to)
            .fetch_one(conn)
            .await?;
    Ok(first.zip(last))
}

/// Up to `limit` records with `after < seq <= last`, in order.
pub async fn rows_between(conn: &mut AnyConnection, after: i64, last: i64, limit: i64) -> AppResult<Vec<Row>> {
    Ok(sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM audit_events WHERE seq > $1 AND seq <= $2 ORDER BY seq LIMIT $3"
    ))
    .bind(after)
    .bind(last)
    .bind(limit)
    .fetch_all(conn)
    .await?)
}

pub async fn checkpoints_between(conn: &mut AnyConnection, first: i64, last: i64) -> AppResult<Vec<Checkpoint>> {
    Ok(sqlx::query_as(&format!(
        "SELECT {CHECKPOINT_COLUMNS} FROM audit_checkpoints WHERE seq >= $1 AND seq <= $2 ORDER BY seq"
    ))
    .bind(first)
    .bind(last)
    .fetch_all(conn)
    .await?)
}

pub async fn last_checkpoint(conn: &mut AnyConnection) -> AppResult<Option<Checkpoint>> {
    Ok(sqlx::query_as(&format!("SELECT {CHECKPOINT_COLUMNS} FROM audit_checkpoints ORDER BY seq DESC LIMIT 1"))
        .fetch_optional(conn)
        .await?)
}

pub async fn insert_checkpoint(conn: &mut AnyConnection, c: &Checkpoint) -> AppResult<()> {
    sqlx::query(
        "INSERT INTO audit_checkpoints (seq, hash, prev_seq, prev_hash, signed_at, key_id, signature) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(c.seq)
    .bind(&c.hash)
    .bind(c.prev_seq)
    .bind(&c.prev_hash)
    .bind(c.signed_at)
    .bind(&c.key_id)
    .bind(&c.signature)
    .execute(conn)
    .await?;
    Ok(())
}

pub async fn count(conn: &mut AnyConnection) -> AppResult<i64> {
    let (n,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM audit_events").fetch_one(conn).await?;
    Ok(n)
}

pub async fn rows_of_actor(conn: &mut AnyConnection, actor_id: &str) -> AppResult<Vec<Row>> {
    Ok(sqlx::query_as(&format!("SELECT {COLUMNS} FROM audit_events WHERE actor_id = $1 ORDER BY seq"))
        .bind(actor_id)
        .fetch_all(conn)
        .await?)
}

/// A console search: exact-match filters, newest first, keyset-paged by `seq` so any page costs
/// the same however deep, over any number of records.
#[derive(Debug, Default, Clone)]
pub struct Search {
    pub from: Option<i64>,
    pub to: Option<i64>,
    pub actor: Option<String>,
    pub action: Option<String>,
    pub project: Option<String>,
    pub target: Option<String>,
    pub outcome: Option<String>,
    /// Only records older than this seq (the previous page's last).
    pub before: Option<i64>,
}

pub async fn search(conn: &mut AnyConnection, s: &Search, limit: i64) -> AppResult<Vec<Row>> {
    let mut clauses: Vec<String> = Vec::new();
    let mut texts: Vec<String> = Vec::new();
    let mut ints: Vec<(usize, i64)> = Vec::new();
    let mut n = 0;
    let mut next = || {
        n += 1;
        n
    };
    for (column, value) in
        [("actor_id", &s.actor), ("action", &s.action), ("project_id", &s.project), ("outcome", &s.outcome)]
    {
        if let Some(v) = value {
            clauses.push(format!("{column} = ${}", next()));
            texts.push(v.clone());
        }
    }
    if let Some(t) = &s.target {
        match t.split_once(':') {
            Some((ty, id)) => {
                clauses.push(format!("target_type = ${} AND target_id = ${}", next(), next()));
                texts.push(ty.to_owned());
                texts.push(id.to_owned());
            }
            None => {
                clauses.push(format!("target_id = ${}", next()));
                texts.push(t.clone());
            }
        }
    }
    // Integer parameters come after the text ones.
    let mut int_clauses = Vec::new();
    for (column, op, value) in [("occurred_at", ">=", s.from), ("occurred_at", "<", s.to), ("seq", "<", s.before)] {
        if let Some(v) = value {
            let i = next();
            int_clauses.push(format!("{column} {op} ${i}"));
            ints.push((i, v));
        }
    }
    clauses.extend(int_clauses);
    let limit_param = next();
    let where_clause = if clauses.is_empty() { String::new() } else { format!("WHERE {}", clauses.join(" AND ")) };
    let sql = format!("SELECT {COLUMNS} FROM audit_events {where_clause} ORDER BY seq DESC LIMIT ${limit_param}");
    let mut q = sqlx::query_as::<_, Row>(&sql);
    for t in texts {
        q = q.bind(t);
    }
    for (_, v) in ints {
        q = q.bind(v);
    }
    Ok(q.bind(limit).fetch_all(conn).await?)
}
