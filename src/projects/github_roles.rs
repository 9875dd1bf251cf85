//! Permissions from GitHub (seed §I.1.1): a project on a GitHub repository may take its members'
//! roles from their repository permissions — by default admin, maintain, write and triage make a
//! Maker, read a Viewer — for users who linked their GitHub account ([`crate::git::logins`]).
//! A sync runs when the mapping is set, when a user links an account or signs in, and hourly.
//! It only ever changes memberships it granted itself (source `github:<connection>`): one given
//! by hand, or by the identity provider, is left as it is; an Admin changing a synced
//! membership by hand makes it manual. Each change is audited as done by the system.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use serde_json::json;
use sqlx::AnyConnection;
use utoipa::ToSchema;

use super::model::Project;
use super::{Repos, store};
use crate::audit::{self, Actor, Event, Origin, Outcome};
use crate::auth::access::{Grant, ManageMembers, ProjectRole};
use crate::auth::model::Authenticated;
use crate::db::{Db, now_ms, rfc3339};
use crate::error::{AppError, AppResult};
use crate::git::{GitError, RepoPermission};
use crate::jobs::{self, Job, JobError, NewJob};

pub const JOB_KIND: &str = "role_sync";
/// How often every mapped project is synced.
pub const SYNC_EVERY_MS: i64 = 3_600_000;
/// A sign-in syncs a project only if its last sync started longer ago than this.
const LOCK_TTL: std::time::Duration = std::time::Duration::from_secs(300);
const BUSY: std::time::Duration = std::time::Duration::from_secs(5);
pub const SIGN_IN_SYNC_AFTER_MS: i64 = 300_000;

/// The role each repository permission gives (`null`: none — no membership from GitHub).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RoleMap {
    #[serde(default = "maker")]
    pub admin: Option<ProjectRole>,
    #[serde(default = "maker")]
    pub maintain: Option<ProjectRole>,
    #[serde(default = "maker")]
    pub write: Option<ProjectRole>,
    #[serde(default = "maker")]
    pub triage: Option<ProjectRole>,
    #[serde(default = "viewer")]
    pub read: Option<ProjectRole>,
}

fn maker() -> Option<ProjectRole> {
    Some(ProjectRole::Maker)
}

fn viewer() -> Option<ProjectRole> {
    Some(ProjectRole::Viewer)
}

impl Default for RoleMap {
    fn default() -> Self {
        RoleMap { admin: maker(), maintain: maker(), write: maker(), triage: maker(), read: viewer() }
    }
}

impl RoleMap {
    pub fn role_for(&self, permission: RepoPermission) -> Option<ProjectRole> {
        match permission {
            RepoPermission::Admin => self.admin,
            RepoPermission::Maintain => self.maintain,
            RepoPermission::Write => self.write,
            RepoPermission::Triage => self.triage,
            RepoPermission::Read => self.read,
        }
    }

    /// The form's value for a permission (`none` for no role).
    pub fn value_for(&self, permission: &str) -> &'static str {
        let p = RepoPermission::ALL.into_iter().find(|p| p.as_str() == permission);
        p.and_then(|p| self.role_for(p)).map_or("none", ProjectRole::as_str)
    }
}

/// A project's mapping and how its last sync went.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct RoleSync {
    pub roles: RoleMap,
    /// RFC 3339; `null` before the first sync.
    pub synced_at: Option<String>,
    /// Why the last sync failed, if it did.
    pub last_error: Option<String>,
    /// Members whose role comes from GitHub now.
    pub synced_members: i64,
}

pub fn source_of(connection: &str) -> String {
    format!("github:{connection}")
}

/// The project's mapping, if it has one.
pub async fn get(conn: &mut AnyConnection, project: &Project) -> AppResult<Option<RoleSync>> {
    let row: Option<(String, Option<i64>, Option<String>)> =
        sqlx::query_as("SELECT roles, synced_at, last_error FROM project_role_sync WHERE project_id = $1")
            .bind(&project.id)
            .fetch_optional(&mut *conn)
            .await?;
    let Some((roles, synced_at, last_error)) = row else { return Ok(None) };
    let source = source_of(project.git_connection.as_deref().unwrap_or_default());
    let (synced_members,): (i64,) =
        sqlx::query_as("SELECT COUNT(*) FROM project_members WHERE project_id = $1 AND source = $2")
            .bind(&project.id)
            .bind(&source)
            .fetch_one(&mut *conn)
            .await?;
    Ok(Some(RoleSync {
        roles: serde_json::from_str(&roles).unwrap_or_default(),
        synced_at: synced_at.map(rfc3339),
        last_error,
        synced_members,
    }))
}

fn github_only(project: &Project) -> AppResult<&str> {
    match project.git_connection.as_deref() {
        Some(c) if project.provider == "github" => Ok(c),
        _ => Err(AppError::Conflict("roles come from GitHub only for projects on a GitHub repository".into())),
    }
}

/// Take roles from GitHub with `roles` (replacing an earlier mapping); a sync follows at once.
pub async fn set(
    db: &Db,
    auth: &Authenticated,
    origin: &Origin,
    grant: &Grant<ManageMembers>,
    project: &Project,
    roles: RoleMap,
) -> AppResult<RoleSync> {
    github_only(project)?;
    let json = serde_json::to_string(&roles).map_err(|e| AppError::Internal(e.into()))?;
    let mut tx = db.begin().await?;
    sqlx::query(
        "INSERT INTO project_role_sync (project_id, roles, updated_at) VALUES ($1, $2, $3) \
         ON CONFLICT (project_id) DO UPDATE SET roles = excluded.roles, updated_at = excluded.updated_at",
    )
    .bind(grant.project_id())
    .bind(&json)
    .bind(now_ms())
    .execute(&mut *tx)
    .await?;
    let event = Event::new("project.role_sync.set", Outcome::Allowed, Actor::of(auth), origin)
        .project(grant.project_id())
        .target("project", grant.project_id())
        .intent(json!({"roles": roles}));
    audit::record(&mut tx, event).await?;
    schedule(&mut tx, grant.project_id()).await?;
    tx.commit().await?;
    let mut conn = db.pool().acquire().await?;
    get(&mut conn, project).await?.ok_or(AppError::NotFound)
}

/// Stop taking roles from GitHub. The memberships it granted stay, as manual ones (removing
/// them at once could lock people out mid-work); whether there was a mapping.
pub async fn disable(
    db: &Db,
    auth: &Authenticated,
    origin: &Origin,
    grant: &Grant<ManageMembers>,
    project: &Project,
) -> AppResult<bool> {
    let connection = github_only(project)?;
    let mut tx = db.begin().await?;
    let done = sqlx::query("DELETE FROM project_role_sync WHERE project_id = $1")
        .bind(grant.project_id())
        .execute(&mut *tx)
        .await?;
    if done.rows_affected() == 0 {
        return Ok(false);
    }
    let kept = sqlx::query("UPDATE project_members SET source = 'manual' WHERE project_id = $1 AND source = $2")
        .bind(grant.project_id())
        .bind(source_of(connection))
        .execute(&mut *tx)
        .await?
        .rows_affected();
    let event = Event::new("project.role_sync.remove", Outcome::Allowed, Actor::of(auth), origin)
        .project(grant.project_id())
        .target("project", grant.project_id())
        .intent(json!({"memberships_kept": kept}));
    audit::record(&mut tx, event).await?;
    tx.commit().await?;
    Ok(true)
}

/// Schedule a project's sync (one pending per project).
pub async fn schedule(conn: &mut AnyConnection, project_id: &str) -> AppResult<()> {
    let key = format!("roles:{project_id}");
    jobs::enqueue(
        conn,
        &NewJob {
            kind: JOB_KIND,
            dedup_key: Some(&key),
            payload: json!({"project_id": project_id}),
            run_at: now_ms(),
            max_attempts: 6,
        },
    )
    .await
}

/// Schedule the sync of every mapped project on a connection where `user_id` linked an account
/// and whose last sync started over `min_age_ms` ago (at sign-in: their roles may have changed
/// since the hourly sync; on linking, at once).
pub async fn schedule_for_user(conn: &mut AnyConnection, user_id: &str, min_age_ms: i64) -> AppResult<usize> {
    let ids: Vec<(String,)> = sqlx::query_as(
        "SELECT s.project_id FROM project_role_sync s JOIN projects p ON p.id = s.project_id \
         JOIN user_git_logins l ON l.connection = p.git_connection AND l.user_id = $1 \
         WHERE COALESCE(s.attempted_at, 0) < $2 ORDER BY s.project_id",
    )
    .bind(user_id)
    .bind(now_ms() - min_age_ms)
    .fetch_all(&mut *conn)
    .await?;
    for (id,) in &ids {
        schedule(conn, id).await?;
    }
    Ok(ids.len())
}

/// Schedule every mapped project whose last sync started over an hour ago (the worker's watch
/// tick); a failed one is retried by the job queue's back-off, not by this.
pub async fn schedule_due(db: &Db) -> AppResult<usize> {
    let mut conn = db.pool().acquire().await?;
    let ids: Vec<(String,)> = sqlx::query_as(
        "SELECT project_id FROM project_role_sync WHERE COALESCE(attempted_at, 0) < $1 ORDER BY project_id",
    )
    .bind(now_ms() - SYNC_EVERY_MS)
    .fetch_all(&mut *conn)
    .await?;
    for (id,) in &ids {
        schedule(&mut conn, id).await?;
    }
    Ok(ids.len())
}

/// What one sync changed.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize)]
pub struct SyncReport {
    pub granted: usize,
    pub changed: usize,
    pub removed: usize,
    /// Linked users whose membership was given by hand or by the identity provider.
    pub left_alone: usize,
}

/// Bring the project's GitHub-granted memberships in line with the repository's permissions.
pub async fn sync(db: &Db, repos: &Repos, project: &Project) -> Result<SyncReport, GitError> {
    let database = |e: AppError| GitError::Upstream(format!("database: {e}"));
    let connection = github_only(project).map_err(|e| GitError::Invalid(e.to_string()))?.to_owned();
    let roles = {
        let mut conn = db.pool().acquire().await.map_err(|e| database(e.into()))?;
        match get(&mut conn, project).await.map_err(database)? {
            Some(s) => s.roles,
            None => return Ok(SyncReport::default()),
        }
    };
    let provider = repos.get(project).await.map_err(|e| GitError::Upstream(e.to_string()))?;
    let permissions = provider.permissions().ok_or_else(|| GitError::Invalid("no repository permissions".into()))?;
    let collaborators = permissions.collaborators().await?;
    let by_id: HashMap<i64, RepoPermission> = collaborators.iter().map(|c| (c.id, c.permission)).collect();
    let source = source_of(&connection);
    let apply = async {
        let mut tx = db.begin().await?;
        // Stopped (or changed) while GitHub was asked: this sync's view is stale.
        let still: Option<(String,)> = sqlx::query_as("SELECT roles FROM project_role_sync WHERE project_id = $1")
            .bind(&project.id)
            .fetch_optional(&mut *tx)
            .await?;
        if still.map(|(r,)| serde_json::from_str::<RoleMap>(&r).ok()) != Some(Some(roles)) {
            return AppResult::Ok(SyncReport::default());
        }
        let linked = crate::git::logins::linked_on(&mut tx, &connection).await?;
        let current: Vec<(String, String, String)> =
            sqlx::query_as("SELECT user_id, role, source FROM project_members WHERE project_id = $1")
                .bind(&project.id)
                .fetch_all(&mut *tx)
                .await?;
        let current: HashMap<String, (String, String)> = current.into_iter().map(|(u, r, s)| (u, (r, s))).collect();
        let mut report = SyncReport::default();
        let origin = Origin::system();
        let mut wanted: HashMap<&str, (ProjectRole, RepoPermission)> = HashMap::new();
        for (user_id, _, github_id) in &linked {
            if let Some(permission) = by_id.get(github_id)
                && let Some(role) = roles.role_for(*permission)
            {
                wanted.insert(user_id.as_str(), (role, *permission));
            }
        }
        for (user_id, _, _) in &linked {
            let now = current.get(user_id);
            if now.is_some_and(|(_, s)| *s != source) {
                report.left_alone += 1;
                continue;
            }
            let Some((role, permission)) = wanted.get(user_id.as_str()).copied() else { continue };
            if now.is_some_and(|(r, _)| r == role.as_str()) {
                continue;
            }
            if !store::set_member_from(&mut tx, &project.id, user_id, role, &source).await? {
                report.left_alone += 1;
                continue;
            }
            let event = Event::new("project.member.set", Outcome::Allowed, Actor::System, &origin)
                .project(&project.id)
                .target("user", user_id)
                .intent(json!({"role": role.as_str(), "previous_role": now.map(|(r, _)| r),
                               "source": source, "github_permission": permission.as_str()}));
            audit::record(&mut tx, event).await?;
            if now.is_some() {
                report.changed += 1;
            } else {
                report.granted += 1;
            }
        }
        // Granted before, not wanted now: access gone on GitHub, the mapping changed, or the
        // account was unlinked.
        for (user_id, (role, src)) in &current {
            if *src == source && !wanted.contains_key(user_id.as_str()) {
                if !store::remove_member_from(&mut tx, &project.id, user_id, &source).await? {
                    continue;
                }
                let event = Event::new("project.member.remove", Outcome::Allowed, Actor::System, &origin)
                    .project(&project.id)
                    .target("user", user_id)
                    .intent(json!({"previous_role": role, "source": source}));
                audit::record(&mut tx, event).await?;
                report.removed += 1;
            }
        }
        sqlx::query("UPDATE project_role_sync SET synced_at = $2, last_error = NULL WHERE project_id = $1")
            .bind(&project.id)
            .bind(now_ms())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        AppResult::Ok(report)
    };
    apply.await.map_err(database)
}

/// Run one sync job; the project whose members changed, if they did (open sessions are told).
pub async fn run(db: &Db, repos: &Repos, job: &Job) -> Result<Option<String>, JobError> {
    let project_id = serde_json::from_str::<serde_json::Value>(&job.payload)
        .ok()
        .and_then(|p| p["project_id"].as_str().map(str::to_owned))
        .ok_or_else(|| JobError::Fatal("bad role-sync job".into()))?;
    let retry = |e: AppError| JobError::retry(e);
    let project = {
        let mut conn = db.pool().acquire().await.map_err(|e| retry(e.into()))?;
        match store::find(&mut conn, &project_id).await.map_err(retry)? {
            Some(p) => p,
            None => return Ok(None),
        }
    };
    // One sync of a project at a time; a busy project's job follows the running one.
    let Some(lock) =
        crate::jobs::lock::Lock::try_acquire(db, &format!("roles:{}", project.id), LOCK_TTL).await.map_err(retry)?
    else {
        return Err(JobError::Retry { error: "another sync of this project is running".into(), after: Some(BUSY) });
    };
    let attempted = async {
        let mut conn = db.pool().acquire().await?;
        sqlx::query("UPDATE project_role_sync SET attempted_at = $2 WHERE project_id = $1")
            .bind(&project.id)
            .bind(now_ms())
            .execute(&mut *conn)
            .await?;
        AppResult::Ok(())
    };
    attempted.await.map_err(retry)?;
    let result = sync(db, repos, &project).await;
    if let Err(e) = lock.release(db).await {
        tracing::warn!(event_type = "lock_release_failed", error = %e, "could not release a role-sync lock");
    }
    match result {
        Ok(r) if r.granted + r.changed + r.removed > 0 => Ok(Some(project.id)),
        Ok(_) => Ok(None),
        Err(e) => {
            let message = e.to_string();
            let mut conn = db.pool().acquire().await.map_err(|e| retry(e.into()))?;
            sqlx::query("UPDATE project_role_sync SET last_error = $2 WHERE project_id = $1")
                .bind(&project.id)
                .bind(&message)
                .execute(&mut *conn)
                .await
                .map_err(|e| retry(e.into()))?;
            match e {
                GitError::RateLimited { retry_after_ms } => Err(JobError::Retry {
                    error: "the git provider asked us to slow down".into(),
                    after: Some(std::time::Duration::from_millis(retry_after_ms)),
                }),
                GitError::Invalid(m) => Err(JobError::Fatal(m)),
                other => Err(JobError::retry(other)),
            }
        }
    }
}
