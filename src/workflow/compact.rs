//! Compaction: when a project's update log grows, fold it into one snapshot — fewer rows, the
//! same document. The new snapshot is verified before anything is deleted (its state vector and
//! its content equal those of the log it replaces), and copied to the object store first, as a
//! backup kept for `workflow.backup_retention`.

use std::time::Duration;

use serde_json::json;
use yrs::updates::decoder::Decode;
use yrs::updates::encoder::Encode;
use yrs::{ReadTxn, StateVector, Transact, Update};

use super::filter;
use crate::app::AppState;
use crate::db::now_ms;
use crate::error::AppResult;
use crate::jobs::lock::Lock;
use crate::jobs::{self, Job, JobError, NewJob};

pub const JOB_KIND: &str = "workflow_compact";
/// Log rows after which a compaction is scheduled.
pub const THRESHOLD: usize = 500;
/// Where backups live in the object store: `workflow/{project}/{created_ms}-{snapshot}.yjs`.
const BACKUP_PREFIX: &str = "workflow";

/// Schedule a compaction of a project's log (one pending job per project).
pub async fn schedule(db: &crate::db::Db, project_id: &str) -> AppResult<()> {
    let key = format!("{JOB_KIND}:{project_id}");
    let mut conn = db.pool().acquire().await?;
    jobs::enqueue(
        &mut conn,
        &NewJob {
            kind: JOB_KIND,
            dedup_key: Some(&key),
            payload: json!({"project_id": project_id}),
            run_at: now_ms(),
            max_attempts: 8,
        },
    )
    .await
}

/// What a compaction did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Compacted {
    pub rows: usize,
    pub bytes_before: usize,
    pub bytes_after: usize,
}

/// Run a compaction job.
pub async fn run(state: &AppState, job: &Job) -> Result<(), JobError> {
    let payload: serde_json::Value =
        serde_json::from_str(&job.payload).map_err(|e| JobError::Fatal(format!("bad compaction job: {e}")))?;
    let project_id = payload["project_id"].as_str().ok_or_else(|| JobError::Fatal("no project".into()))?;
    compact(state, project_id).await.map(|_| ())
}

/// Fold a project's log into a verified snapshot. `Ok(None)`: nothing worth folding.
pub async fn compact(state: &AppState, project_id: &str) -> Result<Option<Compacted>, JobError> {
    let db = &state.db;
    let retry = |e: &dyn std::fmt::Display| JobError::retry(e.to_string());
    let Some(lock) = Lock::try_acquire(db, &format!("workflow_compact:{project_id}"), Duration::from_secs(300))
        .await
        .map_err(|e| retry(&e))?
    else {
        return Err(JobError::Retry { error: "another compaction is running".into(), after: None });
    };
    let result = fold(state, project_id).await;
    if let Err(e) = lock.release(db).await {
        tracing::warn!(event_type = "lock_release_failed", error = %e, "could not release the compaction lock");
    }
    result
}

async fn fold(state: &AppState, project_id: &str) -> Result<Option<Compacted>, JobError> {
    let db = &state.db;
    let retry = |e: &dyn std::fmt::Display| JobError::retry(e.to_string());
    let (snapshot, rows) = {
        let mut conn = db.pool().acquire().await.map_err(|e| retry(&e))?;
        let snapshot: Option<(String, Vec<u8>)> = sqlx::query_as(
            "SELECT id, state FROM workflow_snapshots WHERE project_id = $1 AND kind = 'compaction' \
             ORDER BY upto_id DESC LIMIT 1",
        )
        .bind(project_id)
        .fetch_optional(&mut *conn)
        .await
        .map_err(|e| retry(&e))?;
        let rows: Vec<(i64, Vec<u8>)> =
            sqlx::query_as("SELECT id, data FROM workflow_updates WHERE project_id = $1 ORDER BY id")
                .bind(project_id)
                .fetch_all(&mut *conn)
                .await
                .map_err(|e| retry(&e))?;
        (snapshot, rows)
    };
    if rows.len() < 2 {
        return Ok(None);
    }
    let bytes_before = rows.iter().map(|r| r.1.len()).sum::<usize>() + snapshot.as_ref().map_or(0, |s| s.1.len());
    let upto = rows.iter().map(|r| r.0).max().unwrap_or(0);
    let ids: Vec<i64> = rows.iter().map(|r| r.0).collect();
    // Rebuild and re-encode off the async runtime, then prove the result is the same document.
    let pieces: Vec<Vec<u8>> = snapshot.iter().map(|s| s.1.clone()).chain(rows.into_iter().map(|r| r.1)).collect();
    let folded = tokio::task::spawn_blocking(move || -> Result<Vec<u8>, String> {
        let original = filter::new_doc();
        {
            let mut txn = original.transact_mut();
            for piece in &pieces {
                let update = Update::decode_v1(piece).map_err(|e| format!("a stored update does not decode: {e}"))?;
                txn.apply_update(update).map_err(|e| format!("a stored update does not apply: {e}"))?;
            }
        }
        let state = original.transact().encode_state_as_update_v1(&StateVector::default());
        let copy = filter::new_doc();
        copy.transact_mut()
            .apply_update(Update::decode_v1(&state).map_err(|e| e.to_string())?)
            .map_err(|e| e.to_string())?;
        let same_vector = original.transact().state_vector().encode_v1() == copy.transact().state_vector().encode_v1();
        let same_content = filter::content(&original) == filter::content(&copy);
        if !(same_vector && same_content) {
            return Err("the folded snapshot differs from the log; nothing was changed".into());
        }
        Ok(state)
    })
    .await
    .map_err(|e| JobError::Fatal(format!("compaction task failed: {e}")))?
    .map_err(JobError::Fatal)?;

    // The backup first: if the object store is down, nothing changes and the job retries.
    let snapshot_id = uuid::Uuid::now_v7().to_string();
    let created = now_ms();
    let key = format!("{BACKUP_PREFIX}/{project_id}/{created}-{snapshot_id}.yjs");
    state.storage.put(&key, bytes::Bytes::from(folded.clone())).await.map_err(|e| retry(&e))?;

    let write = async {
        let mut tx = db.begin().await?;
        sqlx::query(
            "INSERT INTO workflow_snapshots (id, project_id, kind, upto_id, state, created_at) \
             VALUES ($1, $2, 'compaction', $3, $4, $5)",
        )
        .bind(&snapshot_id)
        .bind(project_id)
        .bind(upto)
        .bind(&folded)
        .bind(created)
        .execute(&mut *tx)
        .await?;
        // Exactly the rows folded in (a row that commits late stays and is applied on load).
        for chunk in ids.chunks(500) {
            let list = chunk.iter().map(i64::to_string).collect::<Vec<_>>().join(",");
            sqlx::query(&format!("DELETE FROM workflow_updates WHERE project_id = $1 AND id IN ({list})"))
                .bind(project_id)
                .execute(&mut *tx)
                .await?;
        }
        sqlx::query("DELETE FROM workflow_snapshots WHERE project_id = $1 AND kind = 'compaction' AND id <> $2")
            .bind(project_id)
            .bind(&snapshot_id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        AppResult::Ok(())
    };
    write.await.map_err(|e| retry(&e))?;
    let done = Compacted { rows: ids.len(), bytes_before, bytes_after: folded.len() };
    tracing::info!(
        event_type = "workflow_compacted",
        project_id,
        rows = done.rows,
        bytes_before = done.bytes_before,
        bytes_after = done.bytes_after,
        "workflow log folded into a snapshot"
    );
    Ok(Some(done))
}

/// Remove backups older than `retention`, always keeping each project's newest one.
pub async fn prune_backups(state: &AppState, retention: Duration) -> AppResult<usize> {
    let objects = state.storage.list(&format!("{BACKUP_PREFIX}/")).await.map_err(|e| anyhow::anyhow!(e))?;
    let cutoff = now_ms() - crate::db::ms(retention);
    let mut newest: std::collections::HashMap<String, i64> = std::collections::HashMap::new();
    let mut parsed = vec![];
    for o in objects {
        let mut parts = o.key.splitn(3, '/');
        let (Some(_), Some(project), Some(file)) = (parts.next(), parts.next(), parts.next()) else { continue };
        let Some(created) = file.split('-').next().and_then(|t| t.parse::<i64>().ok()) else { continue };
        let entry = newest.entry(project.to_owned()).or_insert(created);
        *entry = (*entry).max(created);
        parsed.push((o.key.clone(), project.to_owned(), created));
    }
    let mut removed = 0;
    for (key, project, created) in parsed {
        if created < cutoff && newest.get(&project) != Some(&created) {
            state.storage.delete(&key).await.map_err(|e| anyhow::anyhow!(e))?;
            removed += 1;
        }
    }
    Ok(removed)
}

/// The backups of a project, oldest first (`(key, created_ms)`).
pub async fn backups(state: &AppState, project_id: &str) -> AppResult<Vec<(String, i64)>> {
    let objects =
        state.storage.list(&format!("{BACKUP_PREFIX}/{project_id}/")).await.map_err(|e| anyhow::anyhow!(e))?;
    let mut out: Vec<(String, i64)> = objects
        .into_iter()
        .filter_map(|o| {
            let created = o.key.rsplit('/').next()?.split('-').next()?.parse().ok()?;
            Some((o.key, created))
        })
        .collect();
    out.sort_by_key(|o| o.1);
    Ok(out)
}
