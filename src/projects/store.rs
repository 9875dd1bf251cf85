//! SQL of the projects domain. The caller owns the transaction.

use sqlx::AnyConnection;

use super::model::{ComponentRow, Member, Project, ProjectRole, ProjectState, Visibility};
use crate::db::{self, now_ms};
use crate::error::{AppError, AppResult};

const COLUMNS: &str = "id, slug, name, owner_id, visibility, state, size_bytes, quota_bytes, audit_retention_ms, \
    provider, repo_path, repo_managed, default_branch, scanned_commit, config_json, config_present, scan_error, scanned_at, created_at, \
    updated_at, last_activity_at, git_connection";

#[derive(sqlx::FromRow)]
struct ProjectRow {
    id: String,
    slug: String,
    name: String,
    owner_id: Option<String>,
    visibility: String,
    state: String,
    size_bytes: i64,
    quota_bytes: Option<i64>,
    audit_retention_ms: Option<i64>,
    provider: String,
    repo_path: String,
    repo_managed: i64,
    default_branch: Option<String>,
    scanned_commit: Option<String>,
    config_json: Option<String>,
    config_present: i64,
    scan_error: Option<String>,
    scanned_at: Option<i64>,
    created_at: i64,
    updated_at: i64,
    last_activity_at: i64,
    git_connection: Option<String>,
}

impl ProjectRow {
    fn into_project(self) -> AppResult<Project> {
        let bad = |what: &str, v: &str| AppError::Internal(anyhow::anyhow!("project {}: bad {what} {v:?}", self.id));
        Ok(Project {
            visibility: Visibility::parse(&self.visibility).ok_or_else(|| bad("visibility", &self.visibility))?,
            state: ProjectState::parse(&self.state).ok_or_else(|| bad("state", &self.state))?,
            repo_managed: self.repo_managed != 0,
            config_present: self.config_present != 0,
            id: self.id,
            slug: self.slug,
            name: self.name,
            owner_id: self.owner_id,
            size_bytes: self.size_bytes,
            quota_bytes: self.quota_bytes,
            audit_retention_ms: self.audit_retention_ms,
            provider: self.provider,
            repo_path: self.repo_path,
            default_branch: self.default_branch,
            scanned_commit: self.scanned_commit,
            config_json: self.config_json,
            scan_error: self.scan_error,
            scanned_at: self.scanned_at,
            created_at: self.created_at,
            updated_at: self.updated_at,
            last_activity_at: self.last_activity_at,
            git_connection: self.git_connection,
        })
    }
}

/// The slug of the project on a hosted repository, if one is.
pub async fn find_by_repository(
    conn: &mut AnyConnection,
    provider: &str,
    connection: &str,
    repository: &str,
) -> AppResult<Option<String>> {
    let row: Option<(String,)> = sqlx::query_as(
        "SELECT slug FROM projects WHERE provider = $1 AND git_connection = $2 AND lower(repo_path) = lower($3)",
    )
    .bind(provider)
    .bind(connection)
    .bind(repository)
    .fetch_optional(conn)
    .await?;
    Ok(row.map(|(slug,)| slug))
}

/// Managed repositories (`repo_managed`) by project id, with their stored paths.
pub async fn managed_paths(conn: &mut AnyConnection) -> AppResult<Vec<(String, String)>> {
    Ok(sqlx::query_as("SELECT id, repo_path FROM projects WHERE repo_managed <> 0 ORDER BY id").fetch_all(conn).await?)
}

pub async fn set_repo_path(conn: &mut AnyConnection, id: &str, repo_path: &str) -> AppResult<()> {
    sqlx::query("UPDATE projects SET repo_path = $1 WHERE id = $2").bind(repo_path).bind(id).execute(conn).await?;
    Ok(())
}

pub async fn insert(conn: &mut AnyConnection, p: &Project) -> AppResult<()> {
    let result = sqlx::query(&format!(
        "INSERT INTO projects ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, \
         $16, $17, $18, $19, $20, $21, $22)"
    ))
    .bind(&p.id)
    .bind(&p.slug)
    .bind(&p.name)
    .bind(&p.owner_id)
    .bind(p.visibility.as_str())
    .bind(p.state.as_str())
    .bind(p.size_bytes)
    .bind(p.quota_bytes)
    .bind(p.audit_retention_ms)
    .bind(&p.provider)
    .bind(&p.repo_path)
    .bind(i64::from(p.repo_managed))
    .bind(&p.default_branch)
    .bind(&p.scanned_commit)
    .bind(&p.config_json)
    .bind(i64::from(p.config_present))
    .bind(&p.scan_error)
    .bind(p.scanned_at)
    .bind(p.created_at)
    .bind(p.updated_at)
    .bind(p.last_activity_at)
    .bind(&p.git_connection)
    .execute(conn)
    .await;
    match result {
        Ok(_) => Ok(()),
        Err(e) if db::is_unique_violation(&e) => {
            Err(AppError::Conflict(format!("the URL name {:?} is taken by another project", p.slug)))
        }
        Err(e) => Err(e.into()),
    }
}

/// A project by id, or by slug when `key` is not a UUID.
pub async fn find(conn: &mut AnyConnection, key: &str) -> AppResult<Option<Project>> {
    let column = if uuid::Uuid::try_parse(key).is_ok() { "id" } else { "slug" };
    let row: Option<ProjectRow> = sqlx::query_as(&format!("SELECT {COLUMNS} FROM projects WHERE {column} = $1"))
        .bind(key)
        .fetch_optional(conn)
        .await?;
    row.map(ProjectRow::into_project).transpose()
}

/// Same as [`find`], holding the row for the rest of the transaction on PostgreSQL (SQLite's
/// `BEGIN IMMEDIATE` already serialises writers).
pub async fn find_for_update(conn: &mut AnyConnection, backend: db::Backend, id: &str) -> AppResult<Option<Project>> {
    let lock = if backend == db::Backend::Postgres { " FOR UPDATE" } else { "" };
    let row: Option<ProjectRow> = sqlx::query_as(&format!("SELECT {COLUMNS} FROM projects WHERE id = $1{lock}"))
        .bind(id)
        .fetch_optional(conn)
        .await?;
    row.map(ProjectRow::into_project).transpose()
}

/// Projects a user may see in lists: all of them (`everything`), or their memberships plus public ones.
pub async fn list_visible(
    conn: &mut AnyConnection,
    user_id: &str,
    everything: bool,
) -> AppResult<Vec<(Project, Option<ProjectRole>)>> {
    #[derive(sqlx::FromRow)]
    struct Row {
        #[sqlx(flatten)]
        project: ProjectRow,
        my_role: Option<String>,
    }
    let filter = if everything { "" } else { "WHERE m.role IS NOT NULL OR p.visibility = 'public'" };
    let columns = COLUMNS.split(", ").map(|c| format!("p.{c}")).collect::<Vec<_>>().join(", ");
    let rows: Vec<Row> = sqlx::query_as(&format!(
        "SELECT {columns}, m.role AS my_role FROM projects p \
         LEFT JOIN project_members m ON m.project_id = p.id AND m.user_id = $1 {filter} ORDER BY p.name, p.slug"
    ))
    .bind(user_id)
    .fetch_all(conn)
    .await?;
    rows.into_iter()
        .map(|r| Ok((r.project.into_project()?, r.my_role.as_deref().and_then(ProjectRole::parse))))
        .collect()
}

pub async fn role_of(conn: &mut AnyConnection, project_id: &str, user_id: &str) -> AppResult<Option<ProjectRole>> {
    let row: Option<(String,)> =
        sqlx::query_as("SELECT role FROM project_members WHERE project_id = $1 AND user_id = $2")
            .bind(project_id)
            .bind(user_id)
            .fetch_optional(conn)
            .await?;
    Ok(row.and_then(|(r,)| ProjectRole::parse(&r)))
}

pub async fn members(conn: &mut AnyConnection, project_id: &str) -> AppResult<Vec<Member>> {
    #[derive(sqlx::FromRow)]
    struct Row {
        user_id: String,
        name: String,
        handle: String,
        email: String,
        role: String,
        source: String,
    }
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT m.user_id, u.name, u.handle, u.email, m.role, m.source FROM project_members m \
         JOIN users u ON u.id = m.user_id \
         WHERE m.project_id = $1 ORDER BY u.name, u.handle",
    )
    .bind(project_id)
    .fetch_all(conn)
    .await?;
    Ok(rows
        .into_iter()
        .filter_map(|r| {
            Some(Member {
                role: ProjectRole::parse(&r.role)?,
                user_id: r.user_id,
                name: r.name,
                handle: r.handle,
                email: r.email,
                source: r.source,
            })
        })
        .collect())
}

/// Insert or change a membership by hand (it is then manual: no sync changes it); returns the
/// previous role.
pub async fn set_member(
    conn: &mut AnyConnection,
    project_id: &str,
    user_id: &str,
    role: ProjectRole,
) -> AppResult<Option<ProjectRole>> {
    let previous = role_of(conn, project_id, user_id).await?;
    let now = now_ms();
    sqlx::query(
        "INSERT INTO project_members (project_id, user_id, role, created_at, updated_at) VALUES ($1, $2, $3, $4, $4) \
         ON CONFLICT (project_id, user_id) DO UPDATE SET role = excluded.role, updated_at = excluded.updated_at, \
         source = 'manual'",
    )
    .bind(project_id)
    .bind(user_id)
    .bind(role.as_str())
    .bind(now)
    .execute(conn)
    .await?;
    Ok(previous)
}

/// `(project id, slug, role, source)` of every membership of a user.
pub async fn memberships_with_source(
    conn: &mut AnyConnection,
    user_id: &str,
) -> AppResult<Vec<(String, String, String, String)>> {
    Ok(sqlx::query_as(
        "SELECT p.id, p.slug, m.role, m.source FROM project_members m JOIN projects p ON p.id = m.project_id \
         WHERE m.user_id = $1",
    )
    .bind(user_id)
    .fetch_all(conn)
    .await?)
}

/// Insert or change a membership granted by an identity provider (`source` = `oidc:<id>`) or a
/// git provider's permissions (`github:<connection>`) — never one from another source (given
/// by hand meanwhile); whether it was written.
pub async fn set_member_from(
    conn: &mut AnyConnection,
    project_id: &str,
    user_id: &str,
    role: ProjectRole,
    source: &str,
) -> AppResult<bool> {
    let now = now_ms();
    let done = sqlx::query(
        "INSERT INTO project_members (project_id, user_id, role, created_at, updated_at, source) \
         VALUES ($1, $2, $3, $4, $4, $5) \
         ON CONFLICT (project_id, user_id) DO UPDATE SET role = excluded.role, updated_at = excluded.updated_at \
         WHERE project_members.source = excluded.source",
    )
    .bind(project_id)
    .bind(user_id)
    .bind(role.as_str())
    .bind(now)
    .bind(source)
    .execute(conn)
    .await?;
    Ok(done.rows_affected() > 0)
}

/// Remove a membership only if `source` granted it; whether it was removed.
pub async fn remove_member_from(
    conn: &mut AnyConnection,
    project_id: &str,
    user_id: &str,
    source: &str,
) -> AppResult<bool> {
    let done = sqlx::query("DELETE FROM project_members WHERE project_id = $1 AND user_id = $2 AND source = $3")
        .bind(project_id)
        .bind(user_id)
        .bind(source)
        .execute(conn)
        .await?;
    Ok(done.rows_affected() > 0)
}

pub async fn remove_member(conn: &mut AnyConnection, project_id: &str, user_id: &str) -> AppResult<bool> {
    let done = sqlx::query("DELETE FROM project_members WHERE project_id = $1 AND user_id = $2")
        .bind(project_id)
        .bind(user_id)
        .execute(conn)
        .await?;
    Ok(done.rows_affected() > 0)
}

pub async fn count_makers(conn: &mut AnyConnection, project_id: &str) -> AppResult<i64> {
    let (n,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM project_members WHERE project_id = $1 AND role = 'maker'")
        .bind(project_id)
        .fetch_one(conn)
        .await?;
    Ok(n)
}

/// A user's memberships (for their GDPR export): project id, slug, name, role.
pub async fn memberships_of(
    conn: &mut AnyConnection,
    user_id: &str,
) -> AppResult<Vec<(String, String, String, String)>> {
    Ok(sqlx::query_as(
        "SELECT p.id, p.slug, p.name, m.role FROM project_members m JOIN projects p ON p.id = m.project_id \
         WHERE m.user_id = $1 ORDER BY p.slug",
    )
    .bind(user_id)
    .fetch_all(conn)
    .await?)
}

pub async fn remove_all_memberships(conn: &mut AnyConnection, user_id: &str) -> AppResult<u64> {
    let done = sqlx::query("DELETE FROM project_members WHERE user_id = $1").bind(user_id).execute(conn).await?;
    Ok(done.rows_affected())
}

/// Settings a Maker or an Admin changes.
pub async fn update_settings(conn: &mut AnyConnection, p: &Project) -> AppResult<()> {
    sqlx::query(
        "UPDATE projects SET name = $2, visibility = $3, state = $4, quota_bytes = $5, audit_retention_ms = $7, \
         updated_at = $6, last_activity_at = $6 WHERE id = $1",
    )
    .bind(&p.id)
    .bind(&p.name)
    .bind(p.visibility.as_str())
    .bind(p.state.as_str())
    .bind(p.quota_bytes)
    .bind(now_ms())
    .bind(p.audit_retention_ms)
    .execute(conn)
    .await?;
    Ok(())
}

/// The outcome of a scan, written with the component changes in one transaction.
pub struct ScanUpdate<'a> {
    pub state: ProjectState,
    pub size_bytes: i64,
    pub default_branch: Option<&'a str>,
    pub scanned_commit: Option<&'a str>,
    pub config_json: Option<&'a str>,
    pub config_present: bool,
    pub scan_error: Option<&'a str>,
    /// Something changed: counts as activity (postpones automatic archiving).
    pub changed: bool,
}

pub async fn record_scan(conn: &mut AnyConnection, project_id: &str, u: &ScanUpdate<'_>) -> AppResult<()> {
    let now = now_ms();
    sqlx::query(
        "UPDATE projects SET state = $2, size_bytes = $3, default_branch = $4, scanned_commit = $5, config_json = $6, \
         config_present = $7, scan_error = $8, scanned_at = $9, updated_at = $9, \
         last_activity_at = CASE WHEN $10 = 1 THEN $9 ELSE last_activity_at END WHERE id = $1",
    )
    .bind(project_id)
    .bind(u.state.as_str())
    .bind(u.size_bytes)
    .bind(u.default_branch)
    .bind(u.scanned_commit)
    .bind(u.config_json)
    .bind(i64::from(u.config_present))
    .bind(u.scan_error)
    .bind(now)
    .bind(i64::from(u.changed))
    .execute(conn)
    .await?;
    Ok(())
}

/// Record a failed scan without touching the cache.
pub async fn record_scan_error(conn: &mut AnyConnection, project_id: &str, error: &str) -> AppResult<()> {
    sqlx::query("UPDATE projects SET scan_error = $2, scanned_at = $3 WHERE id = $1")
        .bind(project_id)
        .bind(error)
        .bind(now_ms())
        .execute(conn)
        .await?;
    Ok(())
}

/// `(project id, audit retention ms)` of projects that keep audit records longer than `longer_than`.
pub async fn audit_retentions(conn: &mut AnyConnection, longer_than: i64) -> AppResult<Vec<(String, i64)>> {
    Ok(sqlx::query_as("SELECT id, audit_retention_ms FROM projects WHERE audit_retention_ms > $1")
        .bind(longer_than)
        .fetch_all(conn)
        .await?)
}

/// Active projects with no activity since `before`: candidates for automatic archiving.
pub async fn idle_projects(conn: &mut AnyConnection, before: i64) -> AppResult<Vec<String>> {
    let rows: Vec<(String,)> =
        sqlx::query_as("SELECT id FROM projects WHERE state <> 'archived' AND last_activity_at < $1")
            .bind(before)
            .fetch_all(conn)
            .await?;
    Ok(rows.into_iter().map(|(id,)| id).collect())
}

/// Count as activity now (postpones automatic archiving).
pub async fn touch(conn: &mut AnyConnection, project_id: &str) -> AppResult<()> {
    sqlx::query("UPDATE projects SET last_activity_at = $2 WHERE id = $1")
        .bind(project_id)
        .bind(now_ms())
        .execute(conn)
        .await?;
    Ok(())
}

pub async fn set_state(conn: &mut AnyConnection, project_id: &str, state: ProjectState) -> AppResult<()> {
    sqlx::query("UPDATE projects SET state = $2, updated_at = $3 WHERE id = $1")
        .bind(project_id)
        .bind(state.as_str())
        .bind(now_ms())
        .execute(conn)
        .await?;
    Ok(())
}

// ---- components -------------------------------------------------------------------------------

const COMPONENT_COLUMNS: &str = "file_path, declared_id, component_id, name, blob_id, content_sha, raw_text, \
    model_json, error_line, error_message, size_bytes, scanned_at";

#[derive(sqlx::FromRow)]
struct ComponentDbRow {
    file_path: String,
    declared_id: Option<String>,
    component_id: Option<String>,
    name: String,
    blob_id: String,
    content_sha: String,
    raw_text: String,
    model_json: String,
    error_line: Option<i64>,
    error_message: Option<String>,
    size_bytes: i64,
    scanned_at: i64,
}

impl From<ComponentDbRow> for ComponentRow {
    fn from(r: ComponentDbRow) -> Self {
        ComponentRow {
            file_path: r.file_path,
            declared_id: r.declared_id,
            component_id: r.component_id,
            name: r.name,
            blob_id: r.blob_id,
            content_sha: r.content_sha,
            raw_text: r.raw_text,
            model_json: r.model_json,
            error_line: r.error_line,
            error_message: r.error_message,
            size_bytes: r.size_bytes,
            scanned_at: r.scanned_at,
        }
    }
}

/// Every cached spec of a project, in path order.
pub async fn components(conn: &mut AnyConnection, project_id: &str) -> AppResult<Vec<ComponentRow>> {
    let rows: Vec<ComponentDbRow> =
        sqlx::query_as(&format!("SELECT {COMPONENT_COLUMNS} FROM components WHERE project_id = $1 ORDER BY file_path"))
            .bind(project_id)
            .fetch_all(conn)
            .await?;
    Ok(rows.into_iter().map(Into::into).collect())
}

pub async fn component(
    conn: &mut AnyConnection,
    project_id: &str,
    component_id: &str,
) -> AppResult<Option<ComponentRow>> {
    let row: Option<ComponentDbRow> = sqlx::query_as(&format!(
        "SELECT {COMPONENT_COLUMNS} FROM components WHERE project_id = $1 AND component_id = $2"
    ))
    .bind(project_id)
    .bind(component_id)
    .fetch_optional(conn)
    .await?;
    Ok(row.map(Into::into))
}

/// The cached text of one spec file, as scanned from git.
pub async fn component_raw(conn: &mut AnyConnection, project_id: &str, file_path: &str) -> AppResult<Option<String>> {
    let row: Option<(String,)> =
        sqlx::query_as("SELECT raw_text FROM components WHERE project_id = $1 AND file_path = $2")
            .bind(project_id)
            .bind(file_path)
            .fetch_optional(conn)
            .await?;
    Ok(row.map(|(r,)| r))
}

/// `(file_path, blob_id)` of every cached spec: what a scan compares the repository with.
pub async fn component_blobs(conn: &mut AnyConnection, project_id: &str) -> AppResult<Vec<(String, String)>> {
    Ok(sqlx::query_as("SELECT file_path, blob_id FROM components WHERE project_id = $1")
        .bind(project_id)
        .fetch_all(conn)
        .await?)
}

pub async fn upsert_component(conn: &mut AnyConnection, project_id: &str, c: &ComponentRow) -> AppResult<()> {
    // component_id is assigned afterwards for the whole project (ids must stay unique).
    sqlx::query(
        "INSERT INTO components (project_id, file_path, declared_id, component_id, name, blob_id, content_sha, \
         raw_text, model_json, error_line, error_message, size_bytes, scanned_at) \
         VALUES ($1, $2, $3, NULL, $4, $5, $6, $7, $8, $9, $10, $11, $12) \
         ON CONFLICT (project_id, file_path) DO UPDATE SET declared_id = excluded.declared_id, component_id = NULL, \
         name = excluded.name, blob_id = excluded.blob_id, content_sha = excluded.content_sha, \
         raw_text = excluded.raw_text, model_json = excluded.model_json, error_line = excluded.error_line, \
         error_message = excluded.error_message, size_bytes = excluded.size_bytes, scanned_at = excluded.scanned_at",
    )
    .bind(project_id)
    .bind(&c.file_path)
    .bind(&c.declared_id)
    .bind(&c.name)
    .bind(&c.blob_id)
    .bind(&c.content_sha)
    .bind(&c.raw_text)
    .bind(&c.model_json)
    .bind(c.error_line)
    .bind(&c.error_message)
    .bind(c.size_bytes)
    .bind(c.scanned_at)
    .execute(conn)
    .await?;
    Ok(())
}

pub async fn delete_component(conn: &mut AnyConnection, project_id: &str, file_path: &str) -> AppResult<()> {
    sqlx::query("DELETE FROM components WHERE project_id = $1 AND file_path = $2")
        .bind(project_id)
        .bind(file_path)
        .execute(conn)
        .await?;
    Ok(())
}

/// `(file_path, declared_id, component_id)` of every spec, in path order.
pub async fn component_ids(
    conn: &mut AnyConnection,
    project_id: &str,
) -> AppResult<Vec<(String, Option<String>, Option<String>)>> {
    Ok(sqlx::query_as(
        "SELECT file_path, declared_id, component_id FROM components WHERE project_id = $1 ORDER BY file_path",
    )
    .bind(project_id)
    .fetch_all(conn)
    .await?)
}

/// Set the id a spec is known by (`None` when another file claims its declared id first).
pub async fn assign_component_id(
    conn: &mut AnyConnection,
    project_id: &str,
    file_path: &str,
    component_id: Option<&str>,
) -> AppResult<()> {
    sqlx::query("UPDATE components SET component_id = $3 WHERE project_id = $1 AND file_path = $2")
        .bind(project_id)
        .bind(file_path)
        .bind(component_id)
        .execute(conn)
        .await?;
    Ok(())
}
