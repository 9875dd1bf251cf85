//! The projects JSON API under `/api/v1/projects`. Handlers are thin: parse, authorize (a
//! capability from `auth::access`), call the domain, answer. `{id}` is a project id or its slug.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::routes;

use super::model::{ComponentRow, Member, Project, ProjectRole, ProjectState, Quota, Visibility};
use super::scan::ScanReport;
use super::{AdminGrants, RepositoryChoice, SettingsChange, store};
use crate::app::AppState;
use crate::audit::{Actor, Origin};
use crate::auth::access::{self, ManageMembers, ManageSettings, Scan, SetAuditRetention, SetQuota, Setup, View};
use crate::auth::{ApiUser, Authenticated};
use crate::db::rfc3339;
use crate::error::{AppError, AppResult, ErrorBody};
use crate::git::CommitInfo;
use crate::http::RequestContext;
use crate::http::api::{ApiJson, ApiRouter};
use crate::specs::{Component, Event, ParseError, Prop};

pub fn api() -> ApiRouter {
    ApiRouter::new()
        .routes(routes!(list_projects, create_project))
        .routes(routes!(get_project, update_project))
        .routes(routes!(list_members))
        .routes(routes!(put_member, delete_member))
        .routes(routes!(scan_project))
        .routes(routes!(setup_project))
        .routes(routes!(onboarding_status, open_onboarding))
        .routes(routes!(list_components, super::authoring::create_component))
        .routes(routes!(get_component))
}

/// `GET /api/v1/projects/{id}/onboarding`: a GitHub project's detected paths and its onboarding
/// pull request.
#[utoipa::path(get, path = "/api/v1/projects/{id}/onboarding", tag = "projects",
    security(("token" = []), ("session" = [])),
    params(("id" = String, Path, description = "Project id or slug")),
    responses((status = 200, body = super::onboarding::Onboarding), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody, description = "Not a GitHub project")))]
pub async fn onboarding_status(
    State(state): State<AppState>,
    ApiUser(auth): ApiUser,
    ctx: RequestContext,
    Path(id): Path<String>,
) -> AppResult<Json<super::onboarding::Onboarding>> {
    let (project, _) = super::authorize::<View>(&state.db, &auth, &Origin::from(&ctx), &id, "project.view").await?;
    Ok(Json(super::onboarding::status(&state.db, &state.repos, &project).await?))
}

/// `POST /api/v1/projects/{id}/onboarding`: open the pull request that adds `.arno/config.json`
/// (paths as given, else detected) and the `arno lint` check workflow.
#[utoipa::path(post, path = "/api/v1/projects/{id}/onboarding", tag = "projects",
    security(("token" = []), ("session" = [])),
    params(("id" = String, Path, description = "Project id or slug")),
    request_body = super::onboarding::SetupPaths,
    responses((status = 201, body = super::onboarding::PullRecord), (status = 400, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody, description = "Set up already, a pull request open already, or not a GitHub project"),
        (status = 502, body = ErrorBody, description = "GitHub failed")))]
pub async fn open_onboarding(
    State(state): State<AppState>,
    ApiUser(auth): ApiUser,
    ctx: RequestContext,
    Path(id): Path<String>,
    body: Result<Option<ApiJson<super::onboarding::SetupPaths>>, AppError>,
) -> AppResult<(StatusCode, Json<super::onboarding::PullRecord>)> {
    let origin = Origin::from(&ctx);
    // Who asks first: a refusal is audited whatever the body.
    let (project, grant) = super::authorize::<Setup>(&state.db, &auth, &origin, &id, "project.onboarding").await?;
    let paths = body?
        .map(|ApiJson(p)| p)
        .unwrap_or(super::onboarding::SetupPaths { components_md: None, components_code: None });
    let public_url = state.config.public_url.as_str();
    let record =
        super::onboarding::open(&state.db, public_url, &state.repos, &auth, &origin, &project, &grant, paths).await?;
    Ok((StatusCode::CREATED, Json(record)))
}

#[derive(Serialize, ToSchema)]
pub struct RepositoryView {
    /// `local` or `github`.
    pub provider: String,
    /// A hosted repository's git connection (see `/api/v1/admin/git/connections`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub connection: Option<String>,
    /// A hosted repository's name there (`owner/name`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub repository: Option<String>,
    pub default_branch: Option<String>,
    /// The commit the component cache reflects.
    pub scanned_commit: Option<String>,
    /// The repository's path on the appliance (shown to Admins only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct ProjectView {
    pub id: String,
    pub slug: String,
    pub name: String,
    pub visibility: Visibility,
    pub state: ProjectState,
    /// The caller's role (`null` for Admins, Auditors and visitors who are not members).
    pub my_role: Option<ProjectRole>,
    pub repository: RepositoryView,
    pub quota: Quota,
    /// How long this project's audit records are kept, when longer than the instance's
    /// retention (`null`: the instance's).
    pub audit_retention_days: Option<i64>,
    /// Whether `.arno/config.json` exists on the default branch.
    pub config_present: bool,
    /// The effective repository configuration at the last scan.
    #[schema(value_type = Object)]
    pub config: Option<serde_json::Value>,
    /// Why the last scan failed, if it did.
    pub scan_error: Option<String>,
    pub scanned_at: Option<String>,
    pub created_at: String,
    pub updated_at: String,
}

pub(crate) fn project_view(
    state: &AppState,
    auth: &Authenticated,
    p: &Project,
    my_role: Option<ProjectRole>,
) -> ProjectView {
    ProjectView {
        id: p.id.clone(),
        slug: p.slug.clone(),
        name: p.name.clone(),
        visibility: p.visibility,
        state: p.state,
        my_role,
        repository: RepositoryView {
            provider: p.provider.clone(),
            connection: p.git_connection.clone(),
            repository: p.git_connection.as_ref().map(|_| p.repo_path.clone()),
            default_branch: p.default_branch.clone(),
            scanned_commit: p.scanned_commit.clone(),
            path: (p.git_connection.is_none() && access::holds_org::<access::Administer>(&auth.user))
                .then(|| state.repos.dir_of(p).display().to_string()),
        },
        quota: super::quota(&state.config, p),
        audit_retention_days: p.audit_retention_ms.map(|ms| ms / 86_400_000),
        config_present: p.config_present,
        config: p.config_json.as_deref().and_then(|c| serde_json::from_str(c).ok()),
        scan_error: p.scan_error.clone(),
        scanned_at: p.scanned_at.map(rfc3339),
        created_at: rfc3339(p.created_at),
        updated_at: rfc3339(p.updated_at),
    }
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RepositoryInput {
    /// `local` or `github`.
    pub provider: String,
    /// `local`: an existing repository on the appliance (Admins only; must be under
    /// `ARNO_GIT_LOCAL_ROOTS`). Without it Arno creates a new repository.
    pub path: Option<String>,
    /// `github`: the git connection (its name in `/admin/git`) whose App reaches the repository.
    pub connection: Option<String>,
    /// `github`: `owner/name`.
    pub repository: Option<String>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateProject {
    pub name: String,
    /// The URL name; derived from `name` when omitted.
    pub slug: Option<String>,
    /// Default `private`.
    pub visibility: Option<Visibility>,
    /// Default: a new local repository.
    pub repository: Option<RepositoryInput>,
}

/// `GET /api/v1/projects`
#[utoipa::path(get, path = "/api/v1/projects", tag = "projects",
    security(("token" = []), ("session" = [])),
    responses((status = 200, body = [ProjectView]), (status = 401, body = ErrorBody)))]
pub async fn list_projects(State(state): State<AppState>, ApiUser(auth): ApiUser) -> AppResult<Json<Vec<ProjectView>>> {
    let everything = access::holds_org::<access::SeeAllProjects>(&auth.user);
    let mut conn = state.db.pool().acquire().await?;
    let list = store::list_visible(&mut conn, &auth.user.id, everything).await?;
    Ok(Json(list.iter().map(|(p, role)| project_view(&state, &auth, p, *role)).collect()))
}

pub(crate) fn repository_choice(input: Option<RepositoryInput>) -> AppResult<RepositoryChoice> {
    match input {
        None => Ok(RepositoryChoice::NewLocal),
        Some(RepositoryInput { provider, path, connection, repository }) => match provider.as_str() {
            "local" if connection.is_some() || repository.is_some() => {
                Err(AppError::field("repository", "a local repository takes only `path`"))
            }
            "local" => Ok(path.map_or(RepositoryChoice::NewLocal, RepositoryChoice::ExistingLocal)),
            "github" if path.is_some() => {
                Err(AppError::field("repository.path", "a GitHub repository takes `connection` and `repository`"))
            }
            "github" => match (connection, repository) {
                (Some(connection), Some(repository)) => Ok(RepositoryChoice::GitHub { connection, repository }),
                (None, _) => Err(AppError::field("repository.connection", "is required for a GitHub repository")),
                (_, None) => Err(AppError::field("repository.repository", "is required (owner/name)")),
            },
            _ => Err(AppError::field("repository.provider", "is `local` or `github` (GitLab is coming)")),
        },
    }
}

/// `POST /api/v1/projects`
#[utoipa::path(post, path = "/api/v1/projects", tag = "projects",
    security(("token" = []), ("session" = [])),
    request_body = CreateProject,
    responses((status = 201, body = ProjectView), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn create_project(
    State(state): State<AppState>,
    ApiUser(auth): ApiUser,
    ctx: RequestContext,
    ApiJson(body): ApiJson<CreateProject>,
) -> AppResult<(StatusCode, Json<ProjectView>)> {
    let new = super::NewProject {
        name: body.name,
        slug: body.slug,
        visibility: body.visibility.unwrap_or(Visibility::Private),
        repository: repository_choice(body.repository)?,
    };
    let origin = Origin::from(&ctx);
    let project = super::create(&state.db, &state.config, &state.repos, &auth, &origin, new).await?;
    Ok((StatusCode::CREATED, Json(project_view(&state, &auth, &project, Some(ProjectRole::Maker)))))
}

/// `GET /api/v1/projects/{id}`
#[utoipa::path(get, path = "/api/v1/projects/{id}", tag = "projects",
    security(("token" = []), ("session" = [])),
    params(("id" = String, Path, description = "Project id or slug")),
    responses((status = 200, body = ProjectView), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn get_project(
    State(state): State<AppState>,
    ApiUser(auth): ApiUser,
    ctx: RequestContext,
    Path(id): Path<String>,
) -> AppResult<Json<ProjectView>> {
    let (project, grant) = super::authorize::<View>(&state.db, &auth, &Origin::from(&ctx), &id, "project.view").await?;
    Ok(Json(project_view(&state, &auth, &project, grant.role())))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateProject {
    pub name: Option<String>,
    pub visibility: Option<Visibility>,
    /// `true` archives (read-only), `false` restores.
    pub archived: Option<bool>,
    /// Admins only: the size limit in bytes (at least 1 MiB), or `null` for the instance default.
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<i64>)]
    pub quota_bytes: Option<Option<i64>>,
    /// Admins only: keep this project's audit records this many days (longer than the instance's
    /// retention), or `null` for the instance's retention.
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<i64>)]
    pub audit_retention_days: Option<Option<i64>>,
}

/// Distinguishes a missing field (no change) from an explicit `null` (reset).
fn double_option<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Option<i64>>, D::Error> {
    Ok(Some(Option::deserialize(d)?))
}

/// `PATCH /api/v1/projects/{id}`
#[utoipa::path(patch, path = "/api/v1/projects/{id}", tag = "projects",
    security(("token" = []), ("session" = [])),
    params(("id" = String, Path, description = "Project id or slug")),
    request_body = UpdateProject,
    responses((status = 200, body = ProjectView), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody)))]
pub async fn update_project(
    State(state): State<AppState>,
    ApiUser(auth): ApiUser,
    ctx: RequestContext,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<UpdateProject>,
) -> AppResult<Json<ProjectView>> {
    let origin = Origin::from(&ctx);
    let mut admin = AdminGrants::default();
    if body.quota_bytes.is_some() {
        admin.quota = Some(super::authorize::<SetQuota>(&state.db, &auth, &origin, &id, "project.update").await?.1);
    }
    if body.audit_retention_days.is_some() {
        admin.audit_retention =
            Some(super::authorize::<SetAuditRetention>(&state.db, &auth, &origin, &id, "project.update").await?.1);
    }
    let (_, grant) = super::authorize::<ManageSettings>(&state.db, &auth, &origin, &id, "project.update").await?;
    let change = SettingsChange {
        name: body.name,
        visibility: body.visibility,
        archived: body.archived,
        quota_bytes: body.quota_bytes,
        audit_retention_days: body.audit_retention_days,
    };
    let retention = state.config.audit_retention;
    let access = change.archived.is_some();
    let project = super::change_settings(&state.db, &auth, &origin, &grant, &admin, retention, change).await?;
    if access {
        state.rooms.access_changed(&project.id).await;
    }
    Ok(Json(project_view(&state, &auth, &project, grant.role())))
}

/// `GET /api/v1/projects/{id}/members`
#[utoipa::path(get, path = "/api/v1/projects/{id}/members", tag = "projects",
    security(("token" = []), ("session" = [])),
    params(("id" = String, Path, description = "Project id or slug")),
    responses((status = 200, body = [Member]), (status = 404, body = ErrorBody)))]
pub async fn list_members(
    State(state): State<AppState>,
    ApiUser(auth): ApiUser,
    ctx: RequestContext,
    Path(id): Path<String>,
) -> AppResult<Json<Vec<Member>>> {
    let (project, _) = super::authorize::<View>(&state.db, &auth, &Origin::from(&ctx), &id, "project.view").await?;
    let mut conn = state.db.pool().acquire().await?;
    Ok(Json(store::members(&mut conn, &project.id).await?))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetMember {
    pub role: ProjectRole,
}

/// `PUT /api/v1/projects/{id}/members/{user_id}`: add a member or change their role.
#[utoipa::path(put, path = "/api/v1/projects/{id}/members/{user_id}", tag = "projects",
    security(("token" = []), ("session" = [])),
    params(("id" = String, Path, description = "Project id or slug"), ("user_id" = String, Path, description = "User id")),
    request_body = SetMember,
    responses((status = 200, body = Member, description = "Role changed"), (status = 201, body = Member, description = "Added"),
        (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody)))]
pub async fn put_member(
    State(state): State<AppState>,
    ApiUser(auth): ApiUser,
    ctx: RequestContext,
    Path((id, user_id)): Path<(String, String)>,
    ApiJson(body): ApiJson<SetMember>,
) -> AppResult<(StatusCode, Json<Member>)> {
    let origin = Origin::from(&ctx);
    let (_, grant) = super::authorize::<ManageMembers>(&state.db, &auth, &origin, &id, "project.member.set").await?;
    let (member, added) = super::set_member(&state.db, &auth, &origin, &grant, &user_id, body.role).await?;
    state.rooms.access_changed(grant.project_id()).await;
    Ok((if added { StatusCode::CREATED } else { StatusCode::OK }, Json(member)))
}

/// `DELETE /api/v1/projects/{id}/members/{user_id}`
#[utoipa::path(delete, path = "/api/v1/projects/{id}/members/{user_id}", tag = "projects",
    security(("token" = []), ("session" = [])),
    params(("id" = String, Path, description = "Project id or slug"), ("user_id" = String, Path, description = "User id")),
    responses((status = 204, description = "Removed"), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody)))]
pub async fn delete_member(
    State(state): State<AppState>,
    ApiUser(auth): ApiUser,
    ctx: RequestContext,
    Path((id, user_id)): Path<(String, String)>,
) -> AppResult<StatusCode> {
    let origin = Origin::from(&ctx);
    let (_, grant) = super::authorize::<ManageMembers>(&state.db, &auth, &origin, &id, "project.member.remove").await?;
    super::remove_member(&state.db, &auth, &origin, &grant, &user_id).await?;
    state.rooms.access_changed(grant.project_id()).await;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /api/v1/projects/{id}/scan`: re-read the default branch now.
#[utoipa::path(post, path = "/api/v1/projects/{id}/scan", tag = "projects",
    security(("token" = []), ("session" = [])),
    params(("id" = String, Path, description = "Project id or slug")),
    responses((status = 200, body = ScanReport), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 502, body = ErrorBody)))]
pub async fn scan_project(
    State(state): State<AppState>,
    ApiUser(auth): ApiUser,
    ctx: RequestContext,
    Path(id): Path<String>,
) -> AppResult<Json<ScanReport>> {
    let origin = Origin::from(&ctx);
    let on = super::authorize_on::<Scan>(&state.db, &auth, &origin, &id, "project.scan").await?;
    let provider = state.repos.get(on.project()).await?;
    let report = super::scan::scan(&state.db, provider.as_ref(), &on, Actor::of(&auth), &origin).await?;
    super::changes::announce_scan(&state, on.project(), &report).await?;
    Ok(Json(report))
}

/// `POST /api/v1/projects/{id}/setup`: commit the default `.arno/config.json` to the default branch.
#[utoipa::path(post, path = "/api/v1/projects/{id}/setup", tag = "projects",
    security(("token" = []), ("session" = [])),
    params(("id" = String, Path, description = "Project id or slug")),
    responses((status = 200, body = ScanReport), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody), (status = 413, body = ErrorBody)))]
pub async fn setup_project(
    State(state): State<AppState>,
    ApiUser(auth): ApiUser,
    ctx: RequestContext,
    Path(id): Path<String>,
) -> AppResult<Json<ScanReport>> {
    let origin = Origin::from(&ctx);
    let (project, grant) = super::authorize::<Setup>(&state.db, &auth, &origin, &id, "project.setup").await?;
    Ok(Json(super::setup(&state.db, &state.config, &state.repos, &auth, &origin, &project, &grant).await?))
}

#[derive(Serialize, ToSchema)]
pub struct ComponentSummary {
    /// The component's id (its frontmatter `id`); `null` when the spec has none or another file
    /// claims it first.
    pub id: Option<String>,
    pub name: String,
    pub file_path: String,
    /// SHA-256 of the file, hex.
    pub content_sha: String,
    pub props: Vec<Prop>,
    pub events: Vec<Event>,
    /// The first problem in the file, if any.
    pub error: Option<ParseError>,
    /// Which text is served: the default branch's, or the caller's own unmerged one
    /// (branch-aware view, docs/projects.md).
    pub source: super::catalog::Source,
    /// With `source: yours`: `new` (not on the default branch) or `changed`.
    pub mark: Option<super::catalog::Mark>,
    /// Others with unmerged changes of this component (their text is not served here).
    pub unmerged_by: Vec<super::catalog::Author>,
}

#[derive(Serialize, ToSchema)]
pub struct PairedCode {
    /// Path from the repository root, with `#Export` when an override names one.
    pub path: String,
    /// Whether the file exists on the default branch.
    pub exists: bool,
}

#[derive(Serialize, ToSchema)]
pub struct LastCommit {
    pub id: String,
    /// The first line of the message.
    pub summary: String,
    pub author_name: String,
    pub time: String,
}

#[derive(Serialize, ToSchema)]
pub struct ComponentDetail {
    #[serde(flatten)]
    pub summary: ComponentSummary,
    pub status: Option<String>,
    /// The prose rendered to sanitized HTML.
    pub description_html: String,
    /// Every problem in the file.
    pub errors: Vec<ParseError>,
    pub paired_code: Option<PairedCode>,
    pub last_commit: Option<LastCommit>,
}

/// The component as cached, with duplicate ids turned into an error naming the first file.
pub fn summarize(row: &ComponentRow, all: &[ComponentRow]) -> (ComponentSummary, Component) {
    let mut component: Component = serde_json::from_str(&row.model_json).unwrap_or(Component {
        id: None,
        name: row.name.clone(),
        status: None,
        props: vec![],
        events: vec![],
        errors: vec![ParseError { line: 1, message: "cached spec is unreadable; scan again".into() }],
    });
    if let (Some(declared), None) = (&row.declared_id, &row.component_id) {
        let first = all.iter().find(|o| o.component_id.as_deref() == Some(declared)).map(|o| o.file_path.as_str());
        let holder = first.unwrap_or("another file");
        component.errors.insert(
            0,
            ParseError { line: 2, message: format!("duplicate component id {declared}: {holder} declares it first") },
        );
    }
    let summary = ComponentSummary {
        id: row.component_id.clone(),
        name: row.name.clone(),
        file_path: row.file_path.clone(),
        content_sha: row.content_sha.clone(),
        props: component.props.clone(),
        events: component.events.clone(),
        error: component.errors.first().cloned(),
        source: super::catalog::Source::DefaultBranch,
        mark: None,
        unmerged_by: vec![],
    };
    (summary, component)
}

/// A component as its reader sees it (branch-aware).
pub fn summary_of(e: &super::catalog::Entry) -> ComponentSummary {
    ComponentSummary {
        id: e.component_id.clone(),
        name: e.component.name.clone(),
        file_path: e.file_path.clone(),
        content_sha: e.content_sha.clone(),
        props: e.component.props.clone(),
        events: e.component.events.clone(),
        error: e.component.errors.first().cloned(),
        source: e.source,
        mark: e.mark,
        unmerged_by: e.others.clone(),
    }
}

/// `GET /api/v1/projects/{id}/components`
#[utoipa::path(get, path = "/api/v1/projects/{id}/components", tag = "projects",
    security(("token" = []), ("session" = [])),
    params(("id" = String, Path, description = "Project id or slug")),
    responses((status = 200, body = [ComponentSummary]), (status = 404, body = ErrorBody)))]
pub async fn list_components(
    State(state): State<AppState>,
    ApiUser(auth): ApiUser,
    ctx: RequestContext,
    Path(id): Path<String>,
) -> AppResult<Json<Vec<ComponentSummary>>> {
    let (project, _) = super::authorize::<View>(&state.db, &auth, &Origin::from(&ctx), &id, "project.view").await?;
    let mut conn = state.db.pool().acquire().await?;
    let catalog = super::catalog::catalog(&mut conn, &project.id, &auth.user.id).await?;
    Ok(Json(catalog.entries.iter().map(summary_of).collect()))
}

/// Everything the component page and API show about one component.
pub(crate) async fn component_detail(
    state: &AppState,
    project: &Project,
    reader: &str,
    component_id: &str,
) -> AppResult<ComponentDetail> {
    let mut conn = state.db.pool().acquire().await?;
    let catalog = super::catalog::catalog(&mut conn, &project.id, reader).await?;
    drop(conn);
    let entry = catalog.by_id(component_id).ok_or(AppError::NotFound)?;
    let summary = summary_of(entry);
    let component = entry.component.clone();
    let file_path = entry.file_path.clone();
    let prose = crate::specs::SpecFile::parse(entry.text.as_str()).prose();
    let description_html = tokio::task::spawn_blocking(move || crate::specs::render::prose_to_html(&prose))
        .await
        .map_err(|e| AppError::Internal(e.into()))?;
    let repo_config = project.repo_config();
    let (mut paired_code, mut last_commit) = (None, None);
    if let Some(commit) = &project.scanned_commit {
        let provider = state.repos.get(project).await?;
        if let Some(path) = repo_config.paired_code(&file_path) {
            let file = path.split('#').next().unwrap_or_default().to_owned();
            let exists = provider.read_file(commit, &file).await.is_ok();
            paired_code = Some(PairedCode { path, exists });
        }
        last_commit = provider.last_commit(commit, &file_path).await.ok().flatten().map(last_commit_view);
    }
    Ok(ComponentDetail {
        summary,
        status: component.status.clone(),
        description_html,
        errors: component.errors,
        paired_code,
        last_commit,
    })
}

fn last_commit_view(c: CommitInfo) -> LastCommit {
    LastCommit {
        summary: c.message.lines().next().unwrap_or_default().to_owned(),
        id: c.id,
        author_name: c.author.name,
        time: rfc3339(c.time_ms),
    }
}

/// `GET /api/v1/projects/{id}/components/{component_id}`
#[utoipa::path(get, path = "/api/v1/projects/{id}/components/{component_id}", tag = "projects",
    security(("token" = []), ("session" = [])),
    params(("id" = String, Path, description = "Project id or slug"), ("component_id" = String, Path, description = "Component id")),
    responses((status = 200, body = ComponentDetail), (status = 404, body = ErrorBody)))]
pub async fn get_component(
    State(state): State<AppState>,
    ApiUser(auth): ApiUser,
    ctx: RequestContext,
    Path((id, component_id)): Path<(String, String)>,
) -> AppResult<Json<ComponentDetail>> {
    let (project, _) = super::authorize::<View>(&state.db, &auth, &Origin::from(&ctx), &id, "project.view").await?;
    Ok(Json(component_detail(&state, &project, &auth.user.id, &component_id).await?))
}
