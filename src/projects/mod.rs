//! Projects: a named, access-controlled connection to one git repository, its members and roles,
//! its size against a quota, and the cache of its component specs.
//!
//! Every change goes through a function here that takes the capability (`Grant<…>`) proving the
//! caller may make it, changes the database in one transaction and appends its audit record in
//! that same transaction.

pub mod authoring;
pub mod catalog;
pub mod changes;
pub mod comments;
pub mod editor;
pub mod editor_form;
pub mod events;
pub mod github_roles;
pub mod github_roles_api;
pub mod impact;
pub mod listing;
pub mod model;
pub mod onboarding;
pub mod pages;
pub mod pulls;
pub mod removal;
pub mod routes;
pub mod scan;
pub mod specs_api;
pub mod store;
pub mod sync;
pub mod writeback;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde_json::json;

use crate::audit::{self, Actor, Event, Origin, Outcome};
use crate::auth::access::{self, Grant, ManageMembers, ManageSettings, Refusal, SetAuditRetention, SetQuota, Setup};
use crate::auth::{Authenticated, users};
use crate::config::Config;
use crate::db::{Db, now_ms};
use crate::error::{AppError, AppResult};
use crate::git::local::LocalProvider;
use crate::git::{Change, CommitRequest, GitError, GitProvider, Person};
use crate::specs::RepoConfig;
pub use model::{Member, Project, ProjectRole, ProjectState, Quota, QuotaState, Visibility};

/// Projects without changes for this long are archived automatically.
pub const ARCHIVE_AFTER_MS: i64 = 90 * 24 * 3600 * 1000;

/// Open repositories, by project id: opening one reads its config and refs, so it is done once.
pub struct Repos {
    /// The data directory, absolute: managed repositories' paths are relative to it.
    data_dir: PathBuf,
    open: Mutex<HashMap<String, Arc<dyn GitProvider>>>,
    /// Clients of hosted-provider connections (GitHub); `None` where the caller has no database.
    hosted: Option<Arc<crate::git::hosted::HostedClients>>,
    /// When each hosted project was last scheduled for reconciliation.
    reconciled: Mutex<HashMap<String, std::time::Instant>>,
    /// Each project's CODEOWNERS, and the default-branch commit it was read from.
    codeowners: Mutex<HashMap<String, (String, CodeOwnersFile)>>,
}

/// A repository's CODEOWNERS and where it is, if it has one.
pub type CodeOwnersFile = Arc<Option<(String, crate::git::codeowners::CodeOwners)>>;

impl std::fmt::Debug for Repos {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let open = self.open.lock().map(|m| m.len()).unwrap_or(0);
        f.debug_struct("Repos").field("open", &open).finish()
    }
}

impl Repos {
    pub fn new(data_dir: &Path) -> std::io::Result<Repos> {
        Ok(Repos {
            data_dir: std::path::absolute(data_dir)?,
            open: Mutex::default(),
            hosted: None,
            reconciled: Mutex::default(),
            codeowners: Mutex::default(),
        })
    }

    /// With the clients that reach hosted repositories (GitHub projects).
    pub fn with_hosted(mut self, hosted: Arc<crate::git::hosted::HostedClients>) -> Repos {
        self.hosted = Some(hosted);
        self
    }

    pub fn hosted(&self) -> Option<&Arc<crate::git::hosted::HostedClients>> {
        self.hosted.as_ref()
    }

    /// Forget a connection's client and every repository opened through any connection (they
    /// reopen on next use), after the connection changed or went away.
    pub fn forget_connection(&self, name: &str) {
        if let Some(hosted) = &self.hosted {
            hosted.forget(name);
        }
        self.open.lock().unwrap_or_else(|e| e.into_inner()).retain(|_, p| p.kind() == "local");
    }

    /// The GitHub repository `owner/name` through connection `connection`, for a new project
    /// (the errors name the request's fields).
    pub async fn open_github(&self, connection: &str, repository: &str) -> AppResult<Arc<dyn GitProvider>> {
        let hosted = self.hosted.as_ref().ok_or_else(|| AppError::Internal(anyhow::anyhow!("no hosted clients")))?;
        crate::git::github::provider::split_repository(repository).map_err(|_| {
            AppError::field("repository.repository", "is owner/name, as in the repository's GitHub URL")
        })?;
        let client = match hosted.get(connection).await {
            Ok(c) => c,
            Err(GitError::NotFound(_)) => {
                return Err(AppError::field("repository.connection", "names no git connection (see /admin/git)"));
            }
            Err(e) => return Err(git_error(e)),
        };
        match crate::git::github::provider::GitHubProvider::connect(client, repository).await {
            Ok(p) => Ok(Arc::new(p)),
            Err(GitError::NotFound(_)) => Err(AppError::field(
                "repository.repository",
                "is not a repository the connection's GitHub App is installed on (install the App on it first)",
            )),
            Err(e) => Err(git_error(e)),
        }
    }

    /// The project's CODEOWNERS on default-branch commit `commit` (read once per commit).
    pub async fn codeowners(
        &self,
        project_id: &str,
        provider: &dyn GitProvider,
        commit: &str,
    ) -> Result<CodeOwnersFile, GitError> {
        let cached = self.codeowners.lock().unwrap_or_else(|e| e.into_inner()).get(project_id).cloned();
        if let Some((_, file)) = cached.filter(|(at, _)| at == commit) {
            return Ok(file);
        }
        let file: CodeOwnersFile = Arc::new(crate::git::codeowners::read(provider, commit).await?);
        let mut all = self.codeowners.lock().unwrap_or_else(|e| e.into_inner());
        all.insert(project_id.to_owned(), (commit.to_owned(), file.clone()));
        Ok(file)
    }

    /// Forget a project's opened repository (it reopens on next use), after it moved.
    pub fn forget_project(&self, project_id: &str) {
        self.open.lock().unwrap_or_else(|e| e.into_inner()).remove(project_id);
    }

    /// Whether a hosted project is due for reconciliation (at most once per `every` in this
    /// process; the job queue folds what several replicas schedule).
    pub fn reconcile_due(&self, project_id: &str, every: std::time::Duration) -> bool {
        let mut last = self.reconciled.lock().unwrap_or_else(|e| e.into_inner());
        let now = std::time::Instant::now();
        match last.get(project_id) {
            Some(at) if now.duration_since(*at) < every => false,
            _ => {
                last.insert(project_id.to_owned(), now);
                true
            }
        }
    }

    /// Remember the provider a new project was created with.
    pub fn remember(&self, project_id: &str, provider: Arc<dyn GitProvider>) {
        self.open.lock().unwrap_or_else(|e| e.into_inner()).insert(project_id.to_owned(), provider);
    }

    /// Where a project's repository is on this appliance.
    pub fn dir_of(&self, project: &Project) -> PathBuf {
        project.repo_dir(&self.data_dir)
    }

    /// The provider of a project's repository.
    pub async fn get(&self, project: &Project) -> AppResult<Arc<dyn GitProvider>> {
        if let Some(p) = self.open.lock().unwrap_or_else(|e| e.into_inner()).get(&project.id) {
            return Ok(p.clone());
        }
        let provider: Arc<dyn GitProvider> = match project.provider.as_str() {
            "local" => {
                let path = self.dir_of(project);
                let opened = tokio::task::spawn_blocking(move || LocalProvider::open(&path))
                    .await
                    .map_err(|e| AppError::Internal(e.into()))?;
                // A repository that vanished or broke is the provider failing, not the caller's mistake.
                Arc::new(
                    opened
                        .map_err(|e| AppError::Upstream(format!("the project's repository cannot be opened: {e}")))?,
                )
            }
            "github" => {
                let connection = project.git_connection.as_deref().unwrap_or_default();
                let hosted =
                    self.hosted.as_ref().ok_or_else(|| AppError::Internal(anyhow::anyhow!("no hosted clients")))?;
                let client = hosted.get(connection).await.map_err(|e| {
                    AppError::Upstream(format!("the project's git connection {connection:?} cannot be used: {e}"))
                })?;
                let provider = crate::git::github::provider::GitHubProvider::connect(client, &project.repo_path)
                    .await
                    .map_err(|e| match e {
                        GitError::NotFound(m) => {
                            AppError::Upstream(format!("the project's repository cannot be reached: {m}"))
                        }
                        other => git_error(other),
                    })?;
                Arc::new(provider)
            }
            other => return Err(AppError::Internal(anyhow::anyhow!("unknown git provider {other}"))),
        };
        self.open.lock().unwrap_or_else(|e| e.into_inner()).insert(project.id.clone(), provider.clone());
        Ok(provider)
    }
}

/// Where the repository of a new local project goes: `repos/{id}.git`, relative to the data
/// directory (how it is stored, so that the data directory can move).
pub fn managed_repo_path(project_id: &str) -> String {
    format!("repos/{project_id}.git")
}

/// Managed repositories' paths stored absolute (as Arno did before it stored them relative) and
/// under the data directory become relative to it, so that the data directory can move. Runs at
/// start; returns how many were rewritten.
pub async fn relativize_managed_paths(db: &Db, data_dir: &Path) -> AppResult<usize> {
    let mut bases = vec![std::path::absolute(data_dir).map_err(|e| AppError::Internal(e.into()))?];
    // The path may have been recorded through a symbolic link, or around one.
    if let Ok(real) = tokio::fs::canonicalize(data_dir).await
        && !bases.contains(&real)
    {
        bases.push(real);
    }
    let mut tx = db.begin().await?;
    let mut rewritten = 0;
    for (id, stored) in store::managed_paths(&mut tx).await? {
        let path = Path::new(&stored);
        let Some(relative) = bases.iter().find_map(|base| path.strip_prefix(base).ok()) else { continue };
        let plain = relative.components().all(|c| matches!(c, std::path::Component::Normal(_)));
        if path.is_absolute() && plain && relative.to_str().is_some() {
            store::set_repo_path(&mut tx, &id, &relative.display().to_string()).await?;
            rewritten += 1;
        }
    }
    tx.commit().await?;
    Ok(rewritten)
}

/// A git failure as the API reports it.
pub fn git_error(e: GitError) -> AppError {
    match e {
        GitError::NotFound(m) => AppError::Conflict(format!("the repository has no {m}")),
        GitError::Conflict(m) => AppError::Conflict(m),
        e @ GitError::MergeConflict(_) => AppError::Conflict(format!("{e}; merge them in git")),
        // Not the caller's mistake (their request was fine) but the repository's state.
        GitError::Limit(m) => AppError::Conflict(m),
        GitError::Invalid(m) => AppError::validation(m),
        GitError::RateLimited { retry_after_ms } => AppError::RateLimited { retry_after_ms },
        GitError::Unauthorized(m) | GitError::Upstream(m) => AppError::Upstream(m),
    }
}

/// The limit that applies to a project.
pub fn quota(config: &Config, project: &Project) -> Quota {
    let limit = project.quota_bytes.unwrap_or(i64::try_from(config.projects_quota).unwrap_or(i64::MAX));
    Quota::new(project.size_bytes, limit)
}

/// Writes that add content are refused once a project is full.
pub fn ensure_room(config: &Config, project: &Project, adding: usize) -> AppResult<()> {
    let q = quota(config, project);
    if q.used_bytes.saturating_add(adding as i64) > q.limit_bytes || q.state == QuotaState::Full {
        return Err(AppError::TooLarge(format!(
            "the project uses {} of its {} limit; remove content or ask an administrator to raise the limit",
            model::human_bytes(q.used_bytes),
            model::human_bytes(q.limit_bytes)
        )));
    }
    Ok(())
}

/// A project together with the caller's capability `C` on it, as [`authorize`] found them: what
/// a domain function that changes the project takes, so the grant cannot be for another project.
#[derive(Debug)]
pub struct Granted<C> {
    project: Project,
    grant: Grant<C>,
}

impl<C: access::Capability> Granted<C> {
    pub fn project(&self) -> &Project {
        &self.project
    }

    pub fn grant(&self) -> &Grant<C> {
        &self.grant
    }

    pub fn into_parts(self) -> (Project, Grant<C>) {
        (self.project, self.grant)
    }
}

/// Look a project up and decide a capability for the caller; refusals are audited under `action`.
/// Unknown projects and projects the caller may not see are both "not found".
pub async fn authorize<C: access::Capability>(
    db: &Db,
    auth: &Authenticated,
    origin: &Origin,
    key: &str,
    action: &str,
) -> AppResult<(Project, Grant<C>)> {
    Ok(authorize_on::<C>(db, auth, origin, key, action).await?.into_parts())
}

/// [`authorize`], keeping the project and the grant bound together for a domain function.
pub async fn authorize_on<C: access::Capability>(
    db: &Db,
    auth: &Authenticated,
    origin: &Origin,
    key: &str,
    action: &str,
) -> AppResult<Granted<C>> {
    let mut conn = db.pool().acquire().await?;
    let project = store::find(&mut conn, key).await?.ok_or(AppError::NotFound)?;
    let role = store::role_of(&mut conn, &project.id, &auth.user.id).await?;
    drop(conn);
    let facts = project.facts(role);
    match access::decide::<C>(&auth.user, &facts) {
        Ok(grant) => Ok(Granted { project, grant }),
        Err(refusal) => {
            let (reason, error) = match refusal {
                Refusal::Hidden => ("not visible to the caller".to_owned(), AppError::NotFound),
                Refusal::Forbidden(m) => (m.clone(), AppError::Forbidden(m)),
            };
            let event = Event::new(action, Outcome::Denied, Actor::of(auth), origin)
                .project(&project.id)
                .target("project", &project.id)
                .intent(json!({"capability": C::NAME, "reason": reason}));
            audit::record_alone(db, event).await?;
            Err(error)
        }
    }
}

/// What a new project connects to.
#[derive(Debug, Clone)]
pub enum RepositoryChoice {
    /// A new repository Arno creates under `{data}/repos/`.
    NewLocal,
    /// An existing repository on the appliance, under `ARNO_GIT_LOCAL_ROOTS` (Admins only).
    ExistingLocal(String),
    /// A GitHub repository (`owner/name`) the App of `connection` is installed on.
    GitHub { connection: String, repository: String },
}

#[derive(Debug, Clone)]
pub struct NewProject {
    pub name: String,
    pub slug: Option<String>,
    pub visibility: Visibility,
    pub repository: RepositoryChoice,
}

pub fn validate_name(raw: &str) -> AppResult<String> {
    let name = raw.trim();
    if name.is_empty() || name.chars().count() > 100 || name.chars().any(char::is_control) {
        return Err(AppError::field("name", "must be 1–100 characters without control characters"));
    }
    Ok(name.to_owned())
}

/// A URL name: 2–64 of `a-z 0-9 -`, starting and ending with a letter or digit.
pub fn validate_slug(raw: &str) -> AppResult<String> {
    let slug = raw.trim();
    let ok = (2..=64).contains(&slug.len())
        && slug.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !slug.starts_with('-')
        && !slug.ends_with('-')
        && !slug.contains("--")
        && uuid::Uuid::try_parse(slug).is_err();
    if !ok {
        return Err(AppError::field(
            "slug",
            "must be 2–64 lower-case letters, digits and single hyphens, starting and ending with a letter or digit",
        ));
    }
    Ok(slug.to_owned())
}

/// A slug from a name: `Design System (web)` → `design-system-web`.
pub fn slug_from(name: &str) -> String {
    let mut slug = String::new();
    for c in name.chars().flat_map(char::to_lowercase) {
        if c.is_ascii_alphanumeric() {
            slug.push(c);
        } else if !slug.ends_with('-') && !slug.is_empty() {
            slug.push('-');
        }
    }
    let slug = slug.trim_end_matches('-').chars().take(64).collect::<String>();
    let slug = slug.trim_end_matches('-').to_owned();
    if slug.len() < 2 { format!("project-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]) } else { slug }
}

/// The canonical path of an existing repository if it lies under one of the allowed roots.
async fn allowed_local_path(config: &Config, raw: &str) -> AppResult<PathBuf> {
    let path = Path::new(raw);
    if !path.is_absolute() {
        return Err(AppError::field("repository.path", "must be an absolute path"));
    }
    let canonical = tokio::fs::canonicalize(path)
        .await
        .map_err(|_| AppError::field("repository.path", "does not exist or cannot be read by the server"))?;
    if config.git_local_roots.is_empty() {
        return Err(AppError::field(
            "repository.path",
            "connecting existing repositories is disabled: the operator sets ARNO_GIT_LOCAL_ROOTS to allow it",
        ));
    }
    if !config.git_local_roots.iter().any(|root| canonical.starts_with(root)) {
        return Err(AppError::field("repository.path", "is not under one of the folders in ARNO_GIT_LOCAL_ROOTS"));
    }
    Ok(canonical)
}

/// Create a project; the creator becomes its Maker. A new repository gets a first commit with
/// the default `.arno/config.json`, so the project is active at once.
pub async fn create(
    db: &Db,
    config: &Config,
    repos: &Repos,
    auth: &Authenticated,
    origin: &Origin,
    new: NewProject,
) -> AppResult<Project> {
    let name = validate_name(&new.name)?;
    let slug = match &new.slug {
        Some(s) => validate_slug(s)?,
        None => slug_from(&name),
    };
    let refuse = |reason: String| {
        Event::new("project.create", Outcome::Denied, Actor::of(auth), origin).intent(json!({"reason": reason}))
    };
    if !access::holds_org::<access::CreateProject>(&auth.user) {
        audit::record_alone(db, refuse("auditors have a read-only role".into())).await?;
        return Err(AppError::forbidden("Auditors cannot create projects"));
    }
    {
        let mut conn = db.pool().acquire().await?;
        if store::find(&mut conn, &slug).await?.is_some() {
            return Err(AppError::Conflict(format!("the URL name {slug:?} is taken by another project")));
        }
    }
    let id = uuid::Uuid::now_v7().to_string();
    if let RepositoryChoice::GitHub { connection, repository } = &new.repository {
        return create_hosted(db, repos, auth, origin, id, name, slug, new.visibility, connection, repository).await;
    }
    let (repo_path, managed) = match &new.repository {
        RepositoryChoice::ExistingLocal(raw) => {
            if !access::holds_org::<access::Administer>(&auth.user) {
                audit::record_alone(db, refuse("only administrators connect existing repositories".into())).await?;
                return Err(AppError::forbidden("only administrators can connect an existing repository"));
            }
            let path = allowed_local_path(config, raw).await?;
            let check = path.clone();
            tokio::task::spawn_blocking(move || LocalProvider::open(&check))
                .await
                .map_err(|e| AppError::Internal(e.into()))?
                .map_err(|_| AppError::field("repository.path", "is not a git repository"))?;
            (path, false)
        }
        RepositoryChoice::NewLocal => (repos.data_dir.join(managed_repo_path(&id)), true),
        RepositoryChoice::GitHub { .. } => unreachable!("handled above"),
    };
    let repo_path = std::path::absolute(&repo_path).map_err(|e| AppError::Internal(e.into()))?;
    if managed {
        init_managed_repo(&repo_path, &auth.user).await?;
    }
    let now = now_ms();
    let project = Project {
        id: id.clone(),
        slug,
        name,
        owner_id: Some(auth.user.id.clone()),
        visibility: new.visibility,
        state: ProjectState::PendingSetup,
        size_bytes: 0,
        quota_bytes: None,
        audit_retention_ms: None,
        provider: "local".into(),
        // Managed: relative to the data directory, which may move (a restore elsewhere).
        repo_path: if managed { managed_repo_path(&id) } else { repo_path.display().to_string() },
        repo_managed: managed,
        git_connection: None,
        default_branch: None,
        scanned_commit: None,
        config_json: None,
        config_present: false,
        scan_error: None,
        scanned_at: None,
        created_at: now,
        updated_at: now,
        last_activity_at: now,
    };
    let written = async {
        let mut tx = db.begin().await?;
        store::insert(&mut tx, &project).await?;
        store::set_member(&mut tx, &id, &auth.user.id, ProjectRole::Maker).await?;
        let event = Event::new("project.create", Outcome::Allowed, Actor::of(auth), origin)
            .project(&id)
            .target("project", &id)
            .intent(json!({
                "visibility": project.visibility.as_str(),
                "repository": if managed { "new_local" } else { "existing_local" },
            }));
        audit::record(&mut tx, event).await?;
        tx.commit().await?;
        AppResult::Ok(())
    }
    .await;
    if let Err(e) = written {
        if managed {
            // Nothing refers to the new repository: don't leave it behind.
            let _ = tokio::fs::remove_dir_all(&repo_path).await;
        }
        return Err(e);
    }
    tracing::info!(event_type = "project_created", project_id = %id, "project created");
    // The first scan's failure is shown on the project; creating it still succeeded.
    let provider = repos.get(&project).await?;
    if let Err(e) = scan::refresh(db, provider.as_ref(), &project).await {
        tracing::warn!(event_type = "scan_failed", project_id = %id, error = %e, "first scan failed");
    }
    let mut conn = db.pool().acquire().await?;
    store::find(&mut conn, &id).await?.ok_or(AppError::NotFound)
}

/// A project on a GitHub repository: the App must reach it, and no other project may have it
/// (webhooks and reconciliation find the project by repository). Scanned at once; without an
/// `.arno/config.json` it stays pending setup until the onboarding pull request is merged.
#[allow(clippy::too_many_arguments)]
async fn create_hosted(
    db: &Db,
    repos: &Repos,
    auth: &Authenticated,
    origin: &Origin,
    id: String,
    name: String,
    slug: String,
    visibility: Visibility,
    connection: &str,
    repository: &str,
) -> AppResult<Project> {
    let provider = repos.open_github(connection, repository).await?;
    {
        let mut conn = db.pool().acquire().await?;
        if let Some(other) = store::find_by_repository(&mut conn, "github", connection, repository).await? {
            return Err(AppError::Conflict(format!(
                "the repository {repository} is already the project {:?}; open that one",
                other
            )));
        }
    }
    let now = now_ms();
    let project = Project {
        id: id.clone(),
        slug,
        name,
        owner_id: Some(auth.user.id.clone()),
        visibility,
        state: ProjectState::PendingSetup,
        size_bytes: 0,
        quota_bytes: None,
        audit_retention_ms: None,
        provider: "github".into(),
        repo_path: repository.to_owned(),
        repo_managed: false,
        git_connection: Some(connection.to_owned()),
        default_branch: None,
        scanned_commit: None,
        config_json: None,
        config_present: false,
        scan_error: None,
        scanned_at: None,
        created_at: now,
        updated_at: now,
        last_activity_at: now,
    };
    let mut tx = db.begin().await?;
    store::insert(&mut tx, &project).await?;
    store::set_member(&mut tx, &id, &auth.user.id, ProjectRole::Maker).await?;
    let event = Event::new("project.create", Outcome::Allowed, Actor::of(auth), origin)
        .project(&id)
        .target("project", &id)
        .intent(json!({
            "visibility": project.visibility.as_str(),
            "repository": "github",
            "connection": connection,
            "full_name": repository,
        }));
    audit::record(&mut tx, event).await?;
    tx.commit().await?;
    tracing::info!(event_type = "project_created", project_id = %id, provider = "github", "project created");
    repos.remember(&id, provider.clone());
    if let Err(e) = scan::refresh(db, provider.as_ref(), &project).await {
        tracing::warn!(event_type = "scan_failed", project_id = %id, error = %e, "first scan failed");
    }
    let mut conn = db.pool().acquire().await?;
    store::find(&mut conn, &id).await?.ok_or(AppError::NotFound)
}

async fn init_managed_repo(path: &Path, user: &crate::auth::User) -> AppResult<()> {
    if let Some(parent) = path.parent() {
        tokio::fs::create_dir_all(parent).await.map_err(|e| AppError::Internal(e.into()))?;
    }
    let owned = path.to_owned();
    let provider = tokio::task::spawn_blocking(move || LocalProvider::init(&owned, "main"))
        .await
        .map_err(|e| AppError::Internal(e.into()))?
        .map_err(git_error)?;
    let request = CommitRequest {
        branch: "main".into(),
        parent: String::new(),
        message: "Set up Arno\n\nAdds .arno/config.json with the default paths.".into(),
        author: Person { name: user.name.clone(), email: user.email.clone() },
        changes: vec![Change::Upsert {
            path: crate::specs::config::PATH.into(),
            content: RepoConfig::default().to_file().into_bytes(),
        }],
    };
    if let Err(e) = provider.commit(request).await {
        let _ = tokio::fs::remove_dir_all(path).await;
        return Err(git_error(e));
    }
    Ok(())
}

/// Write the default `.arno/config.json` to the default branch of a project still pending
/// setup, then scan it.
pub async fn setup(
    db: &Db,
    config: &Config,
    repos: &Repos,
    auth: &Authenticated,
    origin: &Origin,
    project: &Project,
    grant: &Grant<Setup>,
) -> AppResult<scan::ScanReport> {
    if project.state != ProjectState::PendingSetup || project.config_present {
        return Err(AppError::Conflict("the project is already set up".into()));
    }
    if project.provider != "local" {
        return Err(AppError::Conflict(
            "a GitHub repository is set up by a pull request: open it with POST …/onboarding (or on the project page)"
                .into(),
        ));
    }
    let content = RepoConfig::default().to_file().into_bytes();
    ensure_room(config, project, content.len())?;
    let provider = repos.get(project).await?;
    let head = provider.default_branch().await.map_err(git_error)?;
    let request = CommitRequest {
        branch: head.name.clone(),
        parent: head.commit.clone().unwrap_or_default(),
        message: "Set up Arno\n\nAdds .arno/config.json with the default paths.".into(),
        author: Person { name: auth.user.name.clone(), email: auth.user.email.clone() },
        changes: vec![Change::Upsert { path: crate::specs::config::PATH.into(), content }],
    };
    let commit = provider.commit(request).await.map_err(git_error)?;
    let event = Event::new("project.setup", Outcome::Allowed, Actor::of(auth), origin)
        .project(grant.project_id())
        .target("project", grant.project_id())
        .intent(json!({"branch": head.name, "commit": commit.id}));
    audit::record_alone(db, event).await?;
    scan::refresh(db, provider.as_ref(), project).await
}

/// Add a member or change their role.
pub async fn set_member(
    db: &Db,
    auth: &Authenticated,
    origin: &Origin,
    grant: &Grant<ManageMembers>,
    user_id: &str,
    role: ProjectRole,
) -> AppResult<(Member, bool)> {
    let project_id = grant.project_id();
    let mut tx = db.begin().await?;
    let user = users::find_by_id(&mut tx, user_id).await?.ok_or_else(|| AppError::field("user_id", "no such user"))?;
    let previous = store::set_member(&mut tx, project_id, user_id, role).await?;
    store::touch(&mut tx, project_id).await?;
    if previous == Some(ProjectRole::Maker)
        && role != ProjectRole::Maker
        && store::count_makers(&mut tx, project_id).await? == 0
    {
        return Err(AppError::Conflict("a project needs at least one Maker; make someone else a Maker first".into()));
    }
    let event = Event::new("project.member.set", Outcome::Allowed, Actor::of(auth), origin)
        .project(project_id)
        .target("user", user_id)
        .intent(json!({"role": role.as_str(), "previous_role": previous.map(|r| r.as_str())}));
    audit::record(&mut tx, event).await?;
    tx.commit().await?;
    let member = Member {
        user_id: user.id,
        name: user.name,
        handle: user.handle,
        email: user.email,
        role,
        source: "manual".into(),
    };
    Ok((member, previous.is_none()))
}

pub async fn remove_member(
    db: &Db,
    auth: &Authenticated,
    origin: &Origin,
    grant: &Grant<ManageMembers>,
    user_id: &str,
) -> AppResult<()> {
    let project_id = grant.project_id();
    let mut tx = db.begin().await?;
    let previous = store::role_of(&mut tx, project_id, user_id).await?.ok_or(AppError::NotFound)?;
    store::remove_member(&mut tx, project_id, user_id).await?;
    store::touch(&mut tx, project_id).await?;
    if previous == ProjectRole::Maker && store::count_makers(&mut tx, project_id).await? == 0 {
        return Err(AppError::Conflict("a project needs at least one Maker; make someone else a Maker first".into()));
    }
    let event = Event::new("project.member.remove", Outcome::Allowed, Actor::of(auth), origin)
        .project(project_id)
        .target("user", user_id)
        .intent(json!({"previous_role": previous.as_str()}));
    audit::record(&mut tx, event).await?;
    tx.commit().await?;
    Ok(())
}

/// A settings change; `None` fields stay as they are.
#[derive(Debug, Default, Clone)]
pub struct SettingsChange {
    pub name: Option<String>,
    pub visibility: Option<Visibility>,
    /// `Some(true)` archives, `Some(false)` restores.
    pub archived: Option<bool>,
    /// `Some(None)` returns to the instance default.
    pub quota_bytes: Option<Option<i64>>,
    /// Days to keep the project's audit records; `Some(None)` returns to the instance's retention.
    pub audit_retention_days: Option<Option<i64>>,
}

/// Admin-only parts of a settings change, each with its capability.
#[derive(Default)]
pub struct AdminGrants {
    pub quota: Option<Grant<SetQuota>>,
    pub audit_retention: Option<Grant<SetAuditRetention>>,
}

pub async fn change_settings(
    db: &Db,
    auth: &Authenticated,
    origin: &Origin,
    grant: &Grant<ManageSettings>,
    admin: &AdminGrants,
    instance_audit_retention: std::time::Duration,
    change: SettingsChange,
) -> AppResult<Project> {
    let mut tx = db.begin().await?;
    let mut project =
        store::find_for_update(&mut tx, db.backend(), grant.project_id()).await?.ok_or(AppError::NotFound)?;
    let mut changed = serde_json::Map::new();
    if let Some(name) = &change.name {
        project.name = validate_name(name)?;
        changed.insert("name".into(), json!(true));
    }
    if let Some(v) = change.visibility {
        changed.insert("visibility".into(), json!(v.as_str()));
        project.visibility = v;
    }
    if let Some(archive) = change.archived {
        project.state = match (archive, project.state) {
            (true, _) => ProjectState::Archived,
            (false, ProjectState::Archived) if project.config_present => ProjectState::Active,
            (false, ProjectState::Archived) => ProjectState::PendingSetup,
            (false, state) => state,
        };
        changed.insert("state".into(), json!(project.state.as_str()));
    }
    if let Some(quota) = change.quota_bytes {
        if admin.quota.as_ref().is_none_or(|q| q.project_id() != grant.project_id()) {
            return Err(AppError::forbidden("only administrators change a project's size limit"));
        }
        if let Some(bytes) = quota
            && bytes < 1 << 20
        {
            return Err(AppError::field("quota_bytes", "must be at least 1 MiB (1048576), or null for the default"));
        }
        project.quota_bytes = quota;
        changed.insert("quota_bytes".into(), json!(quota));
    }
    if let Some(days) = change.audit_retention_days {
        if admin.audit_retention.as_ref().is_none_or(|g| g.project_id() != grant.project_id()) {
            return Err(AppError::forbidden("only administrators change a project's audit retention"));
        }
        const DAY_MS: i64 = 86_400_000;
        let instance_days = crate::db::ms(instance_audit_retention) / DAY_MS;
        if let Some(d) = days
            && (d <= instance_days || d > 36_500)
        {
            return Err(AppError::field(
                "audit_retention_days",
                format!(
                    "must be longer than the instance's retention ({instance_days} days) and at most 36500; \
                     records are only ever purged from the start of the log, so a shorter per-project retention \
                     is not possible"
                ),
            ));
        }
        project.audit_retention_ms = days.map(|d| d * DAY_MS);
        changed.insert("audit_retention_days".into(), json!(days));
    }
    if changed.is_empty() {
        return Err(AppError::validation("nothing to change"));
    }
    store::update_settings(&mut tx, &project).await?;
    let event = Event::new("project.update", Outcome::Allowed, Actor::of(auth), origin)
        .project(&project.id)
        .target("project", &project.id)
        .intent(serde_json::Value::Object(changed));
    audit::record(&mut tx, event).await?;
    tx.commit().await?;
    Ok(project)
}

/// Archive projects without activity for [`ARCHIVE_AFTER_MS`] (run by the maintenance loop).
pub async fn archive_idle(db: &Db, now: i64) -> AppResult<usize> {
    let ids = {
        let mut conn = db.pool().acquire().await?;
        store::idle_projects(&mut conn, now - ARCHIVE_AFTER_MS).await?
    };
    let origin = Origin::system();
    for id in &ids {
        let mut tx = db.begin().await?;
        store::set_state(&mut tx, id, ProjectState::Archived).await?;
        let event = Event::new("project.archive", Outcome::Allowed, Actor::System, &origin)
            .project(id)
            .target("project", id)
            .intent(json!({"reason": "no activity for 90 days"}));
        audit::record(&mut tx, event).await?;
        tx.commit().await?;
    }
    Ok(ids.len())
}

/// Projects that keep their audit records longer than the instance: the purge must not cut
/// into what they keep.
pub async fn audit_holds(db: &Db, instance: std::time::Duration) -> AppResult<Vec<crate::audit::retention::Hold>> {
    let mut conn = db.pool().acquire().await?;
    Ok(store::audit_retentions(&mut conn, crate::db::ms(instance))
        .await?
        .into_iter()
        .map(|(project_id, ms)| crate::audit::retention::Hold {
            project_id,
            retention: std::time::Duration::from_millis(u64::try_from(ms).unwrap_or(0)),
        })
        .collect())
}

/// Bring a user's IdP-granted memberships in line with what their groups grant now (called at
/// every SSO sign-in, inside its transaction). Memberships added by hand are never touched;
/// grants for projects that do not exist are ignored. Each change is audited as done by the system.
pub async fn apply_idp_grants(
    tx: &mut crate::db::Tx,
    user_id: &str,
    source: &str,
    grants: &[(String, ProjectRole)],
    origin: &Origin,
) -> AppResult<usize> {
    let current = store::memberships_with_source(tx, user_id).await?;
    let mut changes = 0;
    for (slug, role) in grants {
        let existing = current.iter().find(|(_, s, _, _)| s == slug);
        if existing.is_some_and(|(_, _, r, src)| src != source || r == role.as_str()) {
            continue;
        }
        let Some(project) = store::find(tx, slug).await? else { continue };
        store::set_member_from(tx, &project.id, user_id, *role, source).await?;
        let event = Event::new("project.member.set", Outcome::Allowed, Actor::System, origin)
            .project(&project.id)
            .target("user", user_id)
            .intent(json!({"role": role.as_str(), "previous_role": existing.map(|e| &e.2), "source": source}));
        audit::record(tx, event).await?;
        changes += 1;
    }
    for (project_id, slug, role, src) in &current {
        if src == source && !grants.iter().any(|(s, _)| s == slug) {
            store::remove_member(tx, project_id, user_id).await?;
            let event = Event::new("project.member.remove", Outcome::Allowed, Actor::System, origin)
                .project(project_id)
                .target("user", user_id)
                .intent(json!({"previous_role": role, "source": source}));
            audit::record(tx, event).await?;
            changes += 1;
        }
    }
    Ok(changes)
}

/// For the GDPR export: the user's memberships.
pub async fn memberships_of(db: &Db, user_id: &str) -> AppResult<Vec<Membership>> {
    let mut conn = db.pool().acquire().await?;
    Ok(store::memberships_of(&mut conn, user_id)
        .await?
        .into_iter()
        .map(|(project_id, slug, name, role)| Membership { project_id, slug, name, role })
        .collect())
}

/// One of a user's memberships, as their data export and the admin console show it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Membership {
    pub project_id: String,
    pub slug: String,
    pub name: String,
    pub role: String,
}

/// For erasure, inside its transaction: the user's memberships end.
pub async fn end_memberships(conn: &mut sqlx::AnyConnection, user_id: &str) -> AppResult<u64> {
    store::remove_all_memberships(conn, user_id).await
}
