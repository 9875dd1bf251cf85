//! Versions of spec files as the editor saves them, and the save contract.
//!
//! - The file as scanned from git is version 1 until someone saves.
//! - A save names the version it was based on. Equal to the current version → saved. Otherwise,
//!   when every version after the base was saved by the same user in the same editing session,
//!   the save fast-forwards (the same tab saving twice in quick succession). Otherwise it is a
//!   conflict and nothing is written; the client decides (overwrite with the new base, keep its
//!   text as a backup, merge by hand).
//! - The last [`KEEP`] versions of each file are kept, older ones purged in the transaction that
//!   adds a new one; backups (text a user chose to set aside in a conflict) are not counted and
//!   are kept, the newest [`KEEP_BACKUPS`] of them.
//!
//! The caller owns the transaction (one per save, with its audit record).

use serde::Serialize;
use sha2::{Digest, Sha256};
use sqlx::AnyConnection;
use utoipa::ToSchema;

use crate::db::{Backend, now_ms, rfc3339};
use crate::error::AppResult;

pub const KEEP: i64 = 20;
pub const KEEP_BACKUPS: i64 = 50;

pub fn sha256_hex(content: &str) -> String {
    hex::encode(Sha256::digest(content.as_bytes()))
}

/// The version of a file Arno holds now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct Current {
    pub path: String,
    pub content: String,
    pub version: i64,
    pub content_sha: String,
    /// The current version deletes the file (its content is empty); restoring an earlier
    /// version brings it back.
    pub deleted: bool,
}

/// One entry of a file's history (without its content).
#[derive(Debug, Clone, Serialize, ToSchema, sqlx::FromRow)]
pub struct VersionInfo {
    pub version: i64,
    /// `git` (as scanned), `save`, `restore` or `backup`.
    pub kind: String,
    pub parent_version: Option<i64>,
    pub content_sha: String,
    pub saved_by: Option<String>,
    pub session_id: Option<String>,
    pub label: Option<String>,
    #[serde(skip)]
    pub saved_at: i64,
    /// 1 for a version that deletes the file.
    #[serde(skip)]
    pub deleted: i64,
}

impl VersionInfo {
    pub fn is_deleted(&self) -> bool {
        self.deleted != 0
    }

    pub fn saved_at_text(&self) -> String {
        rfc3339(self.saved_at)
    }
}

/// A save as the editor sends it.
#[derive(Debug, Clone)]
pub struct Save<'a> {
    pub project_id: &'a str,
    pub path: &'a str,
    pub content: &'a str,
    pub base_version: i64,
    pub session_id: &'a str,
    pub user_id: &'a str,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Saved {
    Saved { version: i64, content_sha: String, fast_forward: bool },
    Conflict { current: Current },
}

/// The current version: the saved one, or (`scanned`) the file from git as version 1.
pub async fn current(
    conn: &mut AnyConnection,
    project_id: &str,
    path: &str,
    scanned: Option<&str>,
) -> AppResult<Option<Current>> {
    let row: Option<(i64, String, String, i64)> = sqlx::query_as(
        "SELECT current_version, content, content_sha, deleted FROM spec_files WHERE project_id = $1 AND path = $2",
    )
    .bind(project_id)
    .bind(path)
    .fetch_optional(conn)
    .await?;
    Ok(match row {
        Some((version, content, content_sha, deleted)) => {
            Some(Current { path: path.to_owned(), content, version, content_sha, deleted: deleted != 0 })
        }
        None => scanned.map(|c| Current {
            path: path.to_owned(),
            content: c.to_owned(),
            version: 1,
            content_sha: sha256_hex(c),
            deleted: false,
        }),
    })
}

/// Make sure the file has a row (version 1 = what git has), and lock it for this transaction.
/// Returns `(current_version, next_version, current content)`, `None` for a file with no row
/// and nothing scanned.
pub async fn materialize(
    conn: &mut AnyConnection,
    backend: Backend,
    project_id: &str,
    path: &str,
    scanned: Option<&str>,
) -> AppResult<Option<(i64, i64, String)>> {
    if let Some(content) = scanned {
        let now = now_ms();
        let inserted = sqlx::query(
            "INSERT INTO spec_files (project_id, path, current_version, next_version, content, content_sha, updated_at) \
             VALUES ($1, $2, 1, 2, $3, $4, $5) ON CONFLICT (project_id, path) DO NOTHING",
        )
        .bind(project_id)
        .bind(path)
        .bind(content)
        .bind(sha256_hex(content))
        .bind(now)
        .execute(&mut *conn)
        .await?;
        if inserted.rows_affected() == 1 {
            insert_version(conn, project_id, path, 1, "git", None, content, None, None, None).await?;
        }
    }
    locked_row(conn, backend, project_id, path).await
}

/// `(current_version, next_version, content)` of a file's row, locked for the transaction
/// (PostgreSQL row lock; SQLite's write transaction already excludes other writers).
async fn locked_row(
    conn: &mut AnyConnection,
    backend: Backend,
    project_id: &str,
    path: &str,
) -> AppResult<Option<(i64, i64, String)>> {
    let lock = if backend == Backend::Postgres { " FOR UPDATE" } else { "" };
    let row: Option<(i64, i64, String)> = sqlx::query_as(&format!(
        "SELECT current_version, next_version, content FROM spec_files WHERE project_id = $1 AND path = $2{lock}"
    ))
    .bind(project_id)
    .bind(path)
    .fetch_optional(&mut *conn)
    .await?;
    Ok(row)
}

/// Make `version` (with this text) the file's current version; the next one gets `version + 1`.
/// A version with text brings a deleted file back; [`delete`] marks it deleted afterwards.
async fn make_current(
    conn: &mut AnyConnection,
    project_id: &str,
    path: &str,
    version: i64,
    content: &str,
    sha: &str,
    by: Option<&str>,
) -> AppResult<()> {
    sqlx::query(
        "UPDATE spec_files SET current_version = $3, next_version = $4, content = $5, content_sha = $6, updated_by = $7, \
         updated_at = $8, deleted = 0 WHERE project_id = $1 AND path = $2",
    )
    .bind(project_id)
    .bind(path)
    .bind(version)
    .bind(version + 1)
    .bind(content)
    .bind(sha)
    .bind(by)
    .bind(now_ms())
    .execute(conn)
    .await?;
    Ok(())
}

#[allow(clippy::too_many_arguments)]
async fn insert_version(
    conn: &mut AnyConnection,
    project_id: &str,
    path: &str,
    version: i64,
    kind: &str,
    parent: Option<i64>,
    content: &str,
    saved_by: Option<&str>,
    session_id: Option<&str>,
    label: Option<&str>,
) -> AppResult<()> {
    sqlx::query(
        "INSERT INTO spec_versions (project_id, path, version, kind, parent_version, content, content_sha, saved_by, \
         session_id, label, saved_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
    )
    .bind(project_id)
    .bind(path)
    .bind(version)
    .bind(kind)
    .bind(parent)
    .bind(content)
    .bind(sha256_hex(content))
    .bind(saved_by)
    .bind(session_id)
    .bind(label)
    .bind(now_ms())
    .execute(conn)
    .await?;
    Ok(())
}

/// Keep the newest [`KEEP`] versions and [`KEEP_BACKUPS`] backups of a file.
async fn purge(conn: &mut AnyConnection, project_id: &str, path: &str) -> AppResult<()> {
    for (condition, keep) in [("kind <> 'backup'", KEEP), ("kind = 'backup'", KEEP_BACKUPS)] {
        sqlx::query(&format!(
            "DELETE FROM spec_versions WHERE project_id = $1 AND path = $2 AND {condition} AND version NOT IN \
             (SELECT version FROM spec_versions WHERE project_id = $1 AND path = $2 AND {condition} \
              ORDER BY version DESC LIMIT {keep})"
        ))
        .bind(project_id)
        .bind(path)
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

/// Apply the save contract (see the module docs). `scanned` is the file from git, for version 1;
/// `None` for a file git does not have (then `base_version` 0 creates it).
pub async fn save(conn: &mut AnyConnection, backend: Backend, s: &Save<'_>, scanned: Option<&str>) -> AppResult<Saved> {
    let row = materialize(conn, backend, s.project_id, s.path, scanned).await?;
    let (current, next, current_content) = row.unwrap_or((0, 1, String::new()));
    let mut fast_forward = false;
    if s.base_version != current {
        // Same user, same editing session, and the base is still in the history.
        let base_known: (i64,) = sqlx::query_as(
            "SELECT COUNT(*) FROM spec_versions WHERE project_id = $1 AND path = $2 AND version = $3 AND kind <> 'backup'",
        )
        .bind(s.project_id)
        .bind(s.path)
        .bind(s.base_version)
        .fetch_one(&mut *conn)
        .await?;
        let others: (i64,) = sqlx::query_as(
            "SELECT COUNT(*) FROM spec_versions WHERE project_id = $1 AND path = $2 AND version > $3 AND kind <> 'backup' \
             AND (saved_by IS NULL OR saved_by <> $4 OR session_id IS NULL OR session_id <> $5)",
        )
        .bind(s.project_id)
        .bind(s.path)
        .bind(s.base_version)
        .bind(s.user_id)
        .bind(s.session_id)
        .fetch_one(&mut *conn)
        .await?;
        // A deletion is never skipped over, even by its own session.
        let deletions: (i64,) = sqlx::query_as(
            "SELECT COUNT(*) FROM spec_versions WHERE project_id = $1 AND path = $2 AND version > $3 AND deleted <> 0",
        )
        .bind(s.project_id)
        .bind(s.path)
        .bind(s.base_version)
        .fetch_one(&mut *conn)
        .await?;
        if s.base_version > current || base_known.0 == 0 || others.0 > 0 || deletions.0 > 0 || s.session_id.is_empty() {
            let held = self::current(conn, s.project_id, s.path, scanned).await?;
            let deleted = held.is_some_and(|c| c.deleted);
            let content_sha = sha256_hex(&current_content);
            return Ok(Saved::Conflict {
                current: Current {
                    path: s.path.to_owned(),
                    content: current_content,
                    version: current,
                    content_sha,
                    deleted,
                },
            });
        }
        fast_forward = true;
    }
    let version = next;
    let content_sha = sha256_hex(s.content);
    let now = now_ms();
    if current == 0 {
        let created = sqlx::query(
            "INSERT INTO spec_files (project_id, path, current_version, next_version, content, content_sha, updated_by, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(s.project_id)
        .bind(s.path)
        .bind(version)
        .bind(version + 1)
        .bind(s.content)
        .bind(&content_sha)
        .bind(s.user_id)
        .bind(now)
        .execute(&mut *conn)
        .await;
        match created {
            Ok(_) => {}
            // Someone created the same new file a moment earlier (PostgreSQL; SQLite serialises):
            // their version is current now, and this save is a conflict with it.
            Err(e) if crate::db::is_unique_violation(&e) => {
                return Err(crate::error::AppError::Conflict(format!(
                    "{} was created at the same moment; reload it",
                    s.path
                )));
            }
            Err(e) => return Err(e.into()),
        }
    } else {
        make_current(conn, s.project_id, s.path, version, s.content, &content_sha, Some(s.user_id)).await?;
    }
    let parent = (current > 0).then_some(current);
    insert_version(
        conn,
        s.project_id,
        s.path,
        version,
        "save",
        parent,
        s.content,
        Some(s.user_id),
        Some(s.session_id),
        None,
    )
    .await?;
    purge(conn, s.project_id, s.path).await?;
    Ok(Saved::Saved { version, content_sha, fast_forward })
}

/// Keep a user's text as a backup version ("discard mine" in a conflict): it does not become
/// current, and it is not purged with ordinary versions.
pub async fn backup(
    conn: &mut AnyConnection,
    backend: Backend,
    s: &Save<'_>,
    label: &str,
    scanned: Option<&str>,
) -> AppResult<Option<i64>> {
    let Some((current, next, _)) = materialize(conn, backend, s.project_id, s.path, scanned).await? else {
        return Ok(None);
    };
    sqlx::query("UPDATE spec_files SET next_version = $3 WHERE project_id = $1 AND path = $2")
        .bind(s.project_id)
        .bind(s.path)
        .bind(next + 1)
        .execute(&mut *conn)
        .await?;
    insert_version(
        conn,
        s.project_id,
        s.path,
        next,
        "backup",
        Some(current),
        s.content,
        Some(s.user_id),
        Some(s.session_id),
        Some(label),
    )
    .await?;
    purge(conn, s.project_id, s.path).await?;
    Ok(Some(next))
}

/// The history of a file, newest first.
pub async fn list(conn: &mut AnyConnection, project_id: &str, path: &str) -> AppResult<Vec<VersionInfo>> {
    Ok(sqlx::query_as(
        "SELECT version, kind, parent_version, content_sha, saved_by, session_id, label, saved_at, deleted \
         FROM spec_versions WHERE project_id = $1 AND path = $2 ORDER BY version DESC",
    )
    .bind(project_id)
    .bind(path)
    .fetch_all(conn)
    .await?)
}

/// One version's content.
pub async fn content_of(
    conn: &mut AnyConnection,
    project_id: &str,
    path: &str,
    version: i64,
) -> AppResult<Option<String>> {
    let row: Option<(String,)> =
        sqlx::query_as("SELECT content FROM spec_versions WHERE project_id = $1 AND path = $2 AND version = $3")
            .bind(project_id)
            .bind(path)
            .bind(version)
            .fetch_optional(conn)
            .await?;
    Ok(row.map(|(c,)| c))
}

/// Whether `version` of the file is a deletion.
async fn deletes(conn: &mut AnyConnection, project_id: &str, path: &str, version: i64) -> AppResult<bool> {
    let row: Option<(i64,)> =
        sqlx::query_as("SELECT deleted FROM spec_versions WHERE project_id = $1 AND path = $2 AND version = $3")
            .bind(project_id)
            .bind(path)
            .bind(version)
            .fetch_optional(conn)
            .await?;
    Ok(row.is_some_and(|(d,)| d != 0))
}

/// Delete the file: under the save contract (`s.content` is ignored; the base must be current or
/// a fast-forward of the same session), a new version with no text that marks the file deleted.
/// A file already deleted is a conflict with its current (deleted) version.
pub async fn delete(
    conn: &mut AnyConnection,
    backend: Backend,
    s: &Save<'_>,
    scanned: Option<&str>,
) -> AppResult<Saved> {
    // Locked first: a second deletion waiting here sees the first one.
    if materialize(conn, backend, s.project_id, s.path, scanned).await?.is_none() {
        return Err(crate::error::AppError::NotFound);
    }
    match current(conn, s.project_id, s.path, scanned).await? {
        Some(held) if held.deleted => return Ok(Saved::Conflict { current: held }),
        Some(_) => {}
        None => return Err(crate::error::AppError::NotFound),
    }
    let empty = Save { content: "", ..s.clone() };
    let saved = save(conn, backend, &empty, scanned).await?;
    if let Saved::Saved { version, .. } = &saved {
        sqlx::query("UPDATE spec_files SET deleted = 1 WHERE project_id = $1 AND path = $2")
            .bind(s.project_id)
            .bind(s.path)
            .execute(&mut *conn)
            .await?;
        sqlx::query(
            "UPDATE spec_versions SET deleted = 1, label = 'deleted' WHERE project_id = $1 AND path = $2 AND version = $3",
        )
        .bind(s.project_id)
        .bind(s.path)
        .bind(version)
        .execute(&mut *conn)
        .await?;
    }
    Ok(saved)
}

/// The files of a project whose current version deletes them.
pub async fn deleted_paths(conn: &mut AnyConnection, project_id: &str) -> AppResult<std::collections::HashSet<String>> {
    let rows: Vec<(String,)> = sqlx::query_as("SELECT path FROM spec_files WHERE project_id = $1 AND deleted <> 0")
        .bind(project_id)
        .fetch_all(conn)
        .await?;
    Ok(rows.into_iter().map(|(p,)| p).collect())
}

/// For undoing a deletion: when the current version deletes the file (checked under the row lock,
/// held for the caller's transaction), the version it was based on; `None` when it is not deleted.
pub async fn deleted_from(
    conn: &mut AnyConnection,
    backend: Backend,
    project_id: &str,
    path: &str,
) -> AppResult<Option<i64>> {
    let Some((current_version, _, _)) = locked_row(conn, backend, project_id, path).await? else { return Ok(None) };
    let row: Option<(i64, Option<i64>)> = sqlx::query_as(
        "SELECT deleted, parent_version FROM spec_versions WHERE project_id = $1 AND path = $2 AND version = $3",
    )
    .bind(project_id)
    .bind(path)
    .bind(current_version)
    .fetch_optional(&mut *conn)
    .await?;
    Ok(match row {
        Some((1, parent)) => parent,
        _ => None,
    })
}

/// Restore an old version (or a backup) as a new current version.
pub async fn restore(
    conn: &mut AnyConnection,
    backend: Backend,
    project_id: &str,
    path: &str,
    version: i64,
    user_id: &str,
    session_id: &str,
) -> AppResult<Option<(i64, String)>> {
    let Some((current, next, _)) = materialize(conn, backend, project_id, path, None).await? else { return Ok(None) };
    let Some(content) = content_of(conn, project_id, path, version).await? else { return Ok(None) };
    if deletes(conn, project_id, path, version).await? {
        return Err(crate::error::AppError::field(
            "version",
            format!("version {version} deletes the file; restore a version with its text"),
        ));
    }
    let sha = sha256_hex(&content);
    make_current(conn, project_id, path, next, &content, &sha, Some(user_id)).await?;
    let label = format!("restored from version {version}");
    insert_version(
        conn,
        project_id,
        path,
        next,
        "restore",
        Some(current),
        &content,
        Some(user_id),
        Some(session_id),
        Some(&label),
    )
    .await?;
    purge(conn, project_id, path).await?;
    Ok(Some((next, sha)))
}

/// The default branch brought a new text of a file (a merge, a push). When Arno holds no edits
/// of it that git lacks — its current text is the previous git text — the new text becomes a new
/// version (kind `git`), so readers and editors move with the repository. Otherwise Arno's edits
/// stay current (they are still on their way to git). Returns the new version and its SHA.
pub async fn sync_from_git(
    conn: &mut AnyConnection,
    backend: Backend,
    project_id: &str,
    path: &str,
    previous_git: Option<&str>,
    new_git: &str,
) -> AppResult<Option<(i64, String)>> {
    let Some((current, next, content)) = locked_row(conn, backend, project_id, path).await? else { return Ok(None) };
    // A deletion's text is empty: only then is the flag read.
    let deleted = content.is_empty() && self::current(conn, project_id, path, None).await?.is_some_and(|c| c.deleted);
    let follows = if deleted {
        // A deletion the default branch has (the file was absent) follows the file back; one it
        // does not have yet stays (it is on its way to git).
        previous_git.is_none()
    } else {
        content != new_git && previous_git == Some(content.as_str())
    };
    if !follows {
        return Ok(None);
    }
    let sha = sha256_hex(new_git);
    make_current(conn, project_id, path, next, new_git, &sha, None).await?;
    let label = "from the default branch";
    insert_version(conn, project_id, path, next, "git", Some(current), new_git, None, None, Some(label)).await?;
    purge(conn, project_id, path).await?;
    Ok(Some((next, sha)))
}

/// For the GDPR export: the versions a user saved (without the design content itself).
pub async fn of_user(conn: &mut AnyConnection, user_id: &str) -> AppResult<Vec<serde_json::Value>> {
    let rows: Vec<(String, String, i64, String, String, i64, i64)> = sqlx::query_as(
        "SELECT project_id, path, version, kind, content_sha, saved_at, deleted FROM spec_versions \
         WHERE saved_by = $1 ORDER BY saved_at",
    )
    .bind(user_id)
    .fetch_all(conn)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(project_id, path, version, kind, sha, at, deleted)| {
            serde_json::json!({"project_id": project_id, "path": path, "version": version, "kind": kind,
                               "deleted": deleted != 0, "content_sha": sha, "saved_at": rfc3339(at)})
        })
        .collect())
}

/// For erasure, inside its transaction: versions stay (they are the project's design), but no
/// longer say who saved them or from which editing session.
pub async fn forget_user(conn: &mut AnyConnection, user_id: &str) -> AppResult<u64> {
    let done = sqlx::query("UPDATE spec_versions SET saved_by = NULL, session_id = NULL WHERE saved_by = $1")
        .bind(user_id)
        .execute(&mut *conn)
        .await?;
    sqlx::query("UPDATE spec_files SET updated_by = NULL WHERE updated_by = $1").bind(user_id).execute(conn).await?;
    Ok(done.rows_affected())
}
