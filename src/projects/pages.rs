//! Project pages: the list with a "new project" form, the project page (components, state,
//! size), members, and a component's page. Same domain calls and checks as the API; refusals
//! render the HTML error page.

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Redirect, Response};
use serde::Deserialize;

use super::model::{Member, Project, ProjectRole, ProjectState, Quota, QuotaState, Visibility, human_bytes};
use super::routes::ComponentDetail;
use super::scan::ScanReport;
use super::{NewProject, RepositoryChoice, store};
use crate::app::AppState;
use crate::audit::{Actor, Origin};
use crate::auth::access::{self, EditSpecs, ManageMembers, Scan, Setup, View};
use crate::auth::{Authenticated, PageUser, users};
use crate::error::{AppError, AppResult};
use crate::http::RequestContext;
use crate::http::api::PageForm;
use crate::ui::{PageContext, render};

pub struct ProjectRowView {
    pub slug: String,
    pub name: String,
    pub visibility: &'static str,
    pub state: &'static str,
    pub role: &'static str,
    pub components_href: String,
}

#[derive(Template)]
#[template(path = "projects.html")]
struct ProjectsPage {
    page: PageContext,
    projects: Vec<ProjectRowView>,
    can_create: bool,
    is_admin: bool,
    error: Option<String>,
    form: CreateForm,
    /// GitHub repositories the connections' Apps reach, by installation.
    github: Vec<RepoGroup>,
    /// Connections that could not be asked, and why.
    github_unreachable: Vec<String>,
}

#[derive(Deserialize, Default)]
pub struct CreateForm {
    #[serde(default)]
    name: String,
    #[serde(default)]
    slug: String,
    #[serde(default)]
    visibility: String,
    #[serde(default)]
    repository_path: String,
    /// `new`, `github` or `path` (empty: `path` when one is given, else `new`).
    #[serde(default)]
    source: String,
    /// `connection/owner/name`.
    #[serde(default)]
    github_repository: String,
}

pub struct RepoGroup {
    pub label: String,
    /// (`connection/owner/name`, `owner/name`)
    pub options: Vec<(String, String)>,
}

async fn projects_page(
    state: &AppState,
    auth: &Authenticated,
    error: Option<String>,
    form: CreateForm,
) -> AppResult<Response> {
    let everything = access::holds_org::<access::SeeAllProjects>(&auth.user);
    let mut conn = state.db.pool().acquire().await?;
    let list = store::list_visible(&mut conn, &auth.user.id, everything).await?;
    let projects = list
        .into_iter()
        .map(|(p, role)| ProjectRowView {
            components_href: format!("/projects/{}", p.slug),
            slug: p.slug,
            name: p.name,
            visibility: p.visibility.as_str(),
            state: p.state.label(),
            role: role.map_or("—", ProjectRole::label),
        })
        .collect();
    let can_create = access::holds_org::<access::CreateProject>(&auth.user);
    let mut github = vec![];
    let mut github_unreachable = vec![];
    if let (true, Some(hosted)) = (can_create, state.repos.hosted()) {
        let timeout = crate::admin::git::LIST_TIMEOUT;
        let reached = match hosted.reachable(timeout, std::time::Duration::from_secs(60)).await {
            Ok(r) => r,
            Err(e) => vec![("connections".into(), Err(e.to_string()))],
        };
        for (connection, result) in reached {
            match result {
                Ok(installations) => {
                    for i in installations.into_iter().filter(|i| !i.suspended && !i.repositories.is_empty()) {
                        github.push(RepoGroup {
                            label: format!("{} — {connection}", i.account),
                            options: i.repositories.into_iter().map(|r| (format!("{connection}/{r}"), r)).collect(),
                        });
                    }
                }
                Err(e) => github_unreachable.push(format!("{connection}: {e}")),
            }
        }
    }
    let status = if error.is_some() { StatusCode::BAD_REQUEST } else { StatusCode::OK };
    let html = render(&ProjectsPage {
        page: PageContext::for_user(auth, &state.keys.csrf),
        projects,
        can_create,
        is_admin: access::holds_org::<access::Administer>(&auth.user),
        error,
        form,
        github,
        github_unreachable,
    })?;
    Ok((status, html).into_response())
}

/// `GET /projects`
pub async fn list(State(state): State<AppState>, PageUser(auth): PageUser) -> AppResult<Response> {
    let form = CreateForm { visibility: "private".into(), source: "new".into(), ..Default::default() };
    projects_page(&state, &auth, None, form).await
}

/// `POST /projects`
pub async fn create(
    State(state): State<AppState>,
    PageUser(auth): PageUser,
    ctx: RequestContext,
    PageForm(form): PageForm<CreateForm>,
) -> AppResult<Response> {
    let Some(visibility) = Visibility::parse(&form.visibility) else {
        return projects_page(&state, &auth, Some("Choose a visibility.".into()), form).await;
    };
    let new = NewProject {
        name: form.name.clone(),
        slug: Some(form.slug.trim()).filter(|s| !s.is_empty()).map(str::to_owned),
        visibility,
        repository: match (form.source.as_str(), form.repository_path.trim()) {
            ("github", _) => match form.github_repository.split_once('/') {
                Some((connection, repository)) => {
                    RepositoryChoice::GitHub { connection: connection.to_owned(), repository: repository.to_owned() }
                }
                None => return projects_page(&state, &auth, Some("Choose a GitHub repository.".into()), form).await,
            },
            ("path", "") => {
                return projects_page(&state, &auth, Some("Enter the repository's path.".into()), form).await;
            }
            // A path typed in wins over the default choice of a new repository.
            (_, "") => RepositoryChoice::NewLocal,
            (_, path) => RepositoryChoice::ExistingLocal(path.to_owned()),
        },
    };
    match super::create(&state.db, &state.config, &state.repos, &auth, &Origin::from(&ctx), new).await {
        Ok(project) => Ok(Redirect::to(&format!("/projects/{}", project.slug)).into_response()),
        Err(e @ (AppError::Validation { .. } | AppError::Conflict(_))) => {
            projects_page(&state, &auth, Some(e.to_string()), form).await
        }
        Err(e) => Err(e),
    }
}

pub struct QuotaView {
    pub used: String,
    pub limit: String,
    pub percent: i64,
    pub warning: bool,
    pub full: bool,
}

fn quota_view(q: &Quota) -> QuotaView {
    QuotaView {
        used: human_bytes(q.used_bytes),
        limit: human_bytes(q.limit_bytes),
        percent: q.percent(),
        warning: q.state == QuotaState::Warning,
        full: q.state == QuotaState::Full,
    }
}

pub struct ComponentItem {
    pub href: Option<String>,
    pub edit_href: String,
    pub name: String,
    pub file_path: String,
    pub props: usize,
    pub events: usize,
    pub error: Option<String>,
    /// The reader's own unmerged text: "new", "changed by you" or "deleted by you".
    pub mark: Option<&'static str>,
    /// Deleted by the reader (not merged yet): offered "Undo delete" (a form to this URL).
    pub deleted: bool,
    pub delete_href: String,
    /// Others with unmerged changes: name and their change request.
    pub others: Vec<(String, String)>,
}

#[derive(Template)]
#[template(path = "project.html")]
struct ProjectPage {
    page: PageContext,
    project: Project,
    role: &'static str,
    state_label: &'static str,
    pending: bool,
    archived: bool,
    quota: QuotaView,
    can_scan: bool,
    can_setup: bool,
    /// On a hosted provider (GitHub): set up by pull request, merged there.
    hosted: bool,
    /// A hosted project not set up yet: the detected paths and the set-up pull request.
    onboarding: Option<super::onboarding::Onboarding>,
    /// May open the set-up pull request (none open yet).
    can_open_onboarding: bool,
    /// The page of the component list asked for (search, filter, page).
    list: super::listing::Page<ComponentItem>,
    /// Components others are creating (not on the default branch, not the reader's).
    others_new: Vec<ComponentItem>,
    /// The newest entries of the activity list (write-backs, merges, divergences).
    activity: Vec<super::writeback::Activity>,
    broken: usize,
    report: Option<String>,
    error: Option<String>,
    /// The "New component" form, for those who may edit specs.
    can_create_component: bool,
    new_component: NewComponentForm,
}

/// The "New component" form's fields (kept when it is shown again with an error).
#[derive(Deserialize, Default, Clone)]
pub struct NewComponentForm {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub folder: String,
    #[serde(default)]
    pub description: String,
    /// Why it was refused, and which field that is about.
    #[serde(skip)]
    pub error: Option<String>,
    #[serde(skip)]
    pub error_field: Option<String>,
}

impl NewComponentForm {
    pub fn invalid(&self, field: &str) -> bool {
        self.error_field.as_deref() == Some(field)
    }
}

impl super::listing::Listed for ComponentItem {
    fn name(&self) -> &str {
        &self.name
    }
    fn file_path(&self) -> &str {
        &self.file_path
    }
    fn has_problem(&self) -> bool {
        self.error.is_some()
    }
    fn is_yours(&self) -> bool {
        self.mark.is_some()
    }
}

fn others(slug: &str, authors: &[super::catalog::Author]) -> Vec<(String, String)> {
    authors.iter().map(|a| (a.name.clone(), a.change_href(slug))).collect()
}

fn problem(c: &crate::specs::Component) -> Option<String> {
    c.errors.first().map(|e| format!("line {}: {}", e.line, e.message))
}

fn item(slug: &str, e: &super::catalog::Entry) -> ComponentItem {
    ComponentItem {
        href: e.component_id.as_ref().map(|id| format!("/projects/{slug}/components/{id}")),
        edit_href: super::authoring::edit_url(slug, &e.file_path),
        name: e.component.name.clone(),
        file_path: e.file_path.clone(),
        props: e.component.props.len(),
        events: e.component.events.len(),
        error: problem(&e.component),
        mark: e.mark.map(super::catalog::Mark::label),
        deleted: e.mark == Some(super::catalog::Mark::Deleted),
        delete_href: super::authoring::delete_url(slug, &e.file_path),
        others: others(slug, &e.others),
    }
}

/// A component someone else is creating.
fn pending_item(slug: &str, p: &super::catalog::Pending) -> ComponentItem {
    ComponentItem {
        href: None,
        edit_href: super::authoring::edit_url(slug, &p.file_path),
        name: p.component.name.clone(),
        file_path: p.file_path.clone(),
        props: p.component.props.len(),
        events: p.component.events.len(),
        error: problem(&p.component),
        mark: None,
        deleted: false,
        delete_href: super::authoring::delete_url(slug, &p.file_path),
        others: others(slug, &p.by),
    }
}

pub(crate) async fn project_page(
    state: &AppState,
    auth: &Authenticated,
    project: &Project,
    role: Option<ProjectRole>,
    report: Option<String>,
    error: Option<String>,
) -> AppResult<Response> {
    let list = super::listing::ListQuery::default();
    project_page_with(state, auth, project, role, report, error, NewComponentForm::default(), &list).await
}

#[allow(clippy::too_many_arguments)]
async fn project_page_with(
    state: &AppState,
    auth: &Authenticated,
    project: &Project,
    role: Option<ProjectRole>,
    report: Option<String>,
    error: Option<String>,
    new_component: NewComponentForm,
    list: &super::listing::ListQuery,
) -> AppResult<Response> {
    let mut conn = state.db.pool().acquire().await?;
    let catalog = super::catalog::catalog(&mut conn, &project.id, &auth.user.id).await?;
    let components: Vec<ComponentItem> = catalog.entries.iter().map(|e| item(&project.slug, e)).collect();
    let others_new: Vec<ComponentItem> = catalog.others_new.iter().map(|p| pending_item(&project.slug, p)).collect();
    let report = report.or_else(|| done_report(&components, list));
    let activity = super::writeback::recent_activity(&mut conn, &project.id, 5).await?;
    drop(conn);
    let facts = project.facts(role);
    let hosted = project.git_connection.is_some();
    let onboarding = if hosted && !project.config_present {
        // Asked of GitHub (the tree, for the paths): a page that cannot ask still shows the rest.
        super::onboarding::status(&state.db, &state.repos, project).await.ok()
    } else {
        None
    };
    let can_setup = access::decide::<Setup>(&auth.user, &facts).is_ok() && !project.config_present;
    let can_open_onboarding =
        can_setup && onboarding.as_ref().is_some_and(|o| o.pull_request.as_ref().is_none_or(|p| p.state == "closed"));
    let status = if error.is_some() { StatusCode::CONFLICT } else { StatusCode::OK };
    let html = render(&ProjectPage {
        hosted,
        onboarding,
        can_open_onboarding,
        page: PageContext::for_user(auth, &state.keys.csrf),
        role: role.map_or("none", ProjectRole::label),
        state_label: project.state.label(),
        pending: project.state == ProjectState::PendingSetup,
        archived: project.state == ProjectState::Archived,
        quota: quota_view(&super::quota(&state.config, project)),
        can_scan: access::decide::<Scan>(&auth.user, &facts).is_ok(),
        can_setup,
        can_create_component: access::holds::<EditSpecs>(&auth.user, &facts),
        new_component,
        broken: components.iter().filter(|c| c.error.is_some()).count(),
        list: super::listing::page(components, list),
        others_new,
        activity,
        project: project.clone(),
        report,
        error,
    })?;
    Ok((status, html).into_response())
}

/// What the page reports after the delete form redirected to it (`?deleted=` or `?restored=`):
/// only what is true of the file now, so a link made up by someone else says nothing false.
fn done_report(components: &[ComponentItem], list: &super::listing::ListQuery) -> Option<String> {
    let find = |path: &str| components.iter().find(|c| !path.is_empty() && c.file_path == path);
    if let Some(c) = find(&list.deleted).filter(|c| c.deleted) {
        return Some(format!(
            "Deleted {}. It will be removed from your session branch; others see it until your change request is \
             merged. Undo delete brings it back.",
            c.file_path
        ));
    }
    find(&list.restored).filter(|c| !c.deleted).map(|c| format!("{} is in the list again (not deleted).", c.file_path))
}

/// `GET /projects/{slug}`
pub async fn show(
    State(state): State<AppState>,
    PageUser(auth): PageUser,
    ctx: RequestContext,
    Path(slug): Path<String>,
    Query(list): Query<super::listing::ListQuery>,
) -> AppResult<Response> {
    let (project, grant) =
        super::authorize::<View>(&state.db, &auth, &Origin::from(&ctx), &slug, "project.view").await?;
    let form = NewComponentForm::default();
    project_page_with(&state, &auth, &project, grant.role(), None, None, form, &list).await
}

fn report_text(r: &ScanReport) -> String {
    match &r.error {
        Some(e) => format!("The scan stopped: {e}"),
        None => {
            let mut text = format!(
                "Scanned {}: {} spec(s) read, {} removed, {} in total ({} with problems).",
                r.commit.as_deref().map_or("an empty repository", |c| &c[..c.len().min(12)]),
                r.parsed,
                r.removed,
                r.components,
                r.with_errors
            );
            if r.skipped_paths > 0 {
                text.push_str(&format!(
                    " {} path(s) were not read: deeper than {} folders or longer than {} bytes.",
                    r.skipped_paths,
                    crate::git::MAX_TREE_DEPTH,
                    crate::git::MAX_PATH_BYTES
                ));
            }
            text
        }
    }
}

/// `POST /projects/{slug}/components`: the "New component" form; on success, to the editor.
pub async fn create_component(
    State(state): State<AppState>,
    PageUser(auth): PageUser,
    ctx: RequestContext,
    Path(slug): Path<String>,
    PageForm(form): PageForm<NewComponentForm>,
) -> AppResult<Response> {
    let origin = Origin::from(&ctx);
    let on = super::authorize_on::<EditSpecs>(&state.db, &auth, &origin, &slug, "component.create").await?;
    let new = super::authoring::NewComponent {
        name: form.name.clone(),
        folder: Some(form.folder.clone()).filter(|f| !f.trim().is_empty()),
        description: Some(form.description.clone()).filter(|d| !d.trim().is_empty()),
    };
    match super::authoring::create(&state, &auth, &origin, &on, &new).await {
        Ok(created) => Ok(Redirect::to(&super::authoring::edit_url(&on.project().slug, &created.path)).into_response()),
        Err(e @ (AppError::Validation { .. } | AppError::Conflict(_) | AppError::TooLarge(_))) => {
            let status = e.status();
            let mut form = form;
            form.error_field = match &e {
                AppError::Validation { details: Some(d), .. } => d["field"].as_str().map(str::to_owned),
                _ => Some("name".into()),
            };
            form.error = Some(match &e {
                AppError::Validation { details: Some(d), .. } => d["message"].as_str().unwrap_or_default().to_owned(),
                other => other.to_string(),
            });
            let (project, grant) = on.into_parts();
            let mut response =
                project_page_with(&state, &auth, &project, grant.role(), None, None, form, &Default::default()).await?;
            *response.status_mut() = status;
            Ok(response)
        }
        Err(e) => Err(e),
    }
}

/// `POST /projects/{slug}/scan`
pub async fn scan(
    State(state): State<AppState>,
    PageUser(auth): PageUser,
    ctx: RequestContext,
    Path(slug): Path<String>,
) -> AppResult<Response> {
    let origin = Origin::from(&ctx);
    let on = super::authorize_on::<Scan>(&state.db, &auth, &origin, &slug, "project.scan").await?;
    let provider = state.repos.get(on.project()).await?;
    let result = super::scan::scan(&state.db, provider.as_ref(), &on, Actor::of(&auth), &origin).await;
    let (project, grant) = on.into_parts();
    if let Ok(report) = &result {
        super::changes::announce_scan(&state, &project, report).await?;
    }
    let fresh = reload(&state, &project.id).await?;
    match result {
        Ok(report) => project_page(&state, &auth, &fresh, grant.role(), Some(report_text(&report)), None).await,
        Err(e @ (AppError::Conflict(_) | AppError::Upstream(_))) => {
            project_page(&state, &auth, &fresh, grant.role(), None, Some(e.to_string())).await
        }
        Err(e) => Err(e),
    }
}

/// `POST /projects/{slug}/setup`
pub async fn setup(
    State(state): State<AppState>,
    PageUser(auth): PageUser,
    ctx: RequestContext,
    Path(slug): Path<String>,
) -> AppResult<Response> {
    let origin = Origin::from(&ctx);
    let (project, grant) = super::authorize::<Setup>(&state.db, &auth, &origin, &slug, "project.setup").await?;
    let result = super::setup(&state.db, &state.config, &state.repos, &auth, &origin, &project, &grant).await;
    let fresh = reload(&state, &project.id).await?;
    match result {
        Ok(report) => project_page(&state, &auth, &fresh, grant.role(), Some(report_text(&report)), None).await,
        Err(e @ AppError::TooLarge(_)) => {
            let mut response = project_page(&state, &auth, &fresh, grant.role(), None, Some(e.to_string())).await?;
            *response.status_mut() = StatusCode::PAYLOAD_TOO_LARGE;
            Ok(response)
        }
        Err(e @ AppError::Conflict(_)) => {
            project_page(&state, &auth, &fresh, grant.role(), None, Some(e.to_string())).await
        }
        Err(e) => Err(e),
    }
}

#[derive(Deserialize, Default)]
pub struct OnboardingForm {
    #[serde(default)]
    components_md: String,
    #[serde(default)]
    components_code: String,
}

/// `POST /projects/{slug}/onboarding`: open the set-up pull request of a GitHub project.
pub async fn onboarding(
    State(state): State<AppState>,
    PageUser(auth): PageUser,
    ctx: RequestContext,
    Path(slug): Path<String>,
    PageForm(form): PageForm<OnboardingForm>,
) -> AppResult<Response> {
    let origin = Origin::from(&ctx);
    let (project, grant) = super::authorize::<Setup>(&state.db, &auth, &origin, &slug, "project.onboarding").await?;
    let paths = super::onboarding::SetupPaths {
        components_md: Some(form.components_md.trim().to_owned()).filter(|p| !p.is_empty()),
        components_code: Some(form.components_code.trim().to_owned()).filter(|p| !p.is_empty()),
    };
    let public_url = state.config.public_url.as_str();
    let result =
        super::onboarding::open(&state.db, public_url, &state.repos, &auth, &origin, &project, &grant, paths).await;
    let fresh = reload(&state, &project.id).await?;
    match result {
        Ok(pull) => {
            let report = format!(
                "Set-up pull request #{} opened on GitHub. The project becomes active once it is merged there.",
                pull.number
            );
            project_page(&state, &auth, &fresh, grant.role(), Some(report), None).await
        }
        Err(e @ (AppError::Validation { .. } | AppError::Conflict(_) | AppError::Upstream(_))) => {
            project_page(&state, &auth, &fresh, grant.role(), None, Some(e.to_string())).await
        }
        Err(e) => Err(e),
    }
}

async fn reload(state: &AppState, id: &str) -> AppResult<Project> {
    let mut conn = state.db.pool().acquire().await?;
    store::find(&mut conn, id).await?.ok_or(AppError::NotFound)
}

pub struct MemberView {
    pub member: Member,
    pub role_label: &'static str,
}

#[derive(Template)]
#[template(path = "members.html")]
struct MembersPage {
    page: PageContext,
    project: Project,
    members: Vec<MemberView>,
    can_manage: bool,
    roles: Vec<(&'static str, &'static str)>,
    message: Option<String>,
    error: Option<String>,
    /// On a GitHub project: whether roles come from GitHub, and how.
    github_roles: Option<GitHubRolesView>,
}

/// The members page's "Roles from GitHub" card.
pub struct GitHubRolesView {
    pub sync: Option<super::github_roles::RoleSync>,
    /// `(permission, its label)` in order, highest first.
    pub permissions: Vec<(&'static str, &'static str)>,
    /// The mapping shown in the form (the defaults before there is one).
    pub roles: super::github_roles::RoleMap,
}

fn permission_label(p: crate::git::RepoPermission) -> &'static str {
    match p {
        crate::git::RepoPermission::Admin => "Admin",
        crate::git::RepoPermission::Maintain => "Maintain",
        crate::git::RepoPermission::Write => "Write",
        crate::git::RepoPermission::Triage => "Triage",
        crate::git::RepoPermission::Read => "Read",
    }
}

async fn members_page(
    state: &AppState,
    auth: &Authenticated,
    project: &Project,
    role: Option<ProjectRole>,
    message: Option<String>,
    error: Option<(StatusCode, String)>,
) -> AppResult<Response> {
    let mut conn = state.db.pool().acquire().await?;
    let members = store::members(&mut conn, &project.id).await?;
    let github_roles = if project.provider == "github" {
        let sync = super::github_roles::get(&mut conn, project).await?;
        let roles = sync.as_ref().map(|s| s.roles).unwrap_or_default();
        let permissions = crate::git::RepoPermission::ALL.iter().map(|p| (p.as_str(), permission_label(*p))).collect();
        Some(GitHubRolesView { sync, permissions, roles })
    } else {
        None
    };
    let facts = project.facts(role);
    let status = error.as_ref().map_or(StatusCode::OK, |(s, _)| *s);
    let html = render(&MembersPage {
        page: PageContext::for_user(auth, &state.keys.csrf),
        project: project.clone(),
        members: members.into_iter().map(|m| MemberView { role_label: m.role.label(), member: m }).collect(),
        can_manage: access::decide::<ManageMembers>(&auth.user, &facts).is_ok(),
        roles: ProjectRole::ALL.iter().map(|r| (r.as_str(), r.label())).collect(),
        message,
        error: error.map(|(_, m)| m),
        github_roles,
    })?;
    Ok((status, html).into_response())
}

/// `GET /projects/{slug}/members`
pub async fn members(
    State(state): State<AppState>,
    PageUser(auth): PageUser,
    ctx: RequestContext,
    Path(slug): Path<String>,
) -> AppResult<Response> {
    let (project, grant) =
        super::authorize::<View>(&state.db, &auth, &Origin::from(&ctx), &slug, "project.view").await?;
    members_page(&state, &auth, &project, grant.role(), None, None).await
}

#[derive(Deserialize)]
pub struct MemberForm {
    #[serde(default)]
    email: String,
    #[serde(default)]
    role: String,
}

/// `POST /projects/{slug}/members`: add by e-mail, or change the role of an existing member.
pub async fn set_member(
    State(state): State<AppState>,
    PageUser(auth): PageUser,
    ctx: RequestContext,
    Path(slug): Path<String>,
    PageForm(form): PageForm<MemberForm>,
) -> AppResult<Response> {
    let origin = Origin::from(&ctx);
    let (project, grant) =
        super::authorize::<ManageMembers>(&state.db, &auth, &origin, &slug, "project.member.set").await?;
    let bad = |m: &str| Some((StatusCode::BAD_REQUEST, m.to_owned()));
    let Some(role) = ProjectRole::parse(&form.role) else {
        return members_page(&state, &auth, &project, grant.role(), None, bad("Choose a role.")).await;
    };
    let user = {
        let mut conn = state.db.pool().acquire().await?;
        users::find_by_email(&mut conn, &form.email).await?
    };
    let Some(user) = user else {
        let message = "No user has that e-mail address. They need to sign in to Arno once, or an administrator creates their account.";
        return members_page(&state, &auth, &project, grant.role(), None, bad(message)).await;
    };
    match super::set_member(&state.db, &auth, &origin, &grant, &user.id, role).await {
        Ok((member, added)) => {
            state.rooms.access_changed(&project.id).await;
            let verb = if added { "added as" } else { "is now" };
            let message = format!("{} {verb} {}.", member.name, role.label());
            members_page(&state, &auth, &project, grant.role(), Some(message), None).await
        }
        Err(AppError::Conflict(m)) => {
            members_page(&state, &auth, &project, grant.role(), None, Some((StatusCode::CONFLICT, m))).await
        }
        Err(e) => Err(e),
    }
}

/// `POST /projects/{slug}/members/{user_id}/remove`
pub async fn remove_member(
    State(state): State<AppState>,
    PageUser(auth): PageUser,
    ctx: RequestContext,
    Path((slug, user_id)): Path<(String, String)>,
) -> AppResult<Response> {
    let origin = Origin::from(&ctx);
    let (project, grant) =
        super::authorize::<ManageMembers>(&state.db, &auth, &origin, &slug, "project.member.remove").await?;
    match super::remove_member(&state.db, &auth, &origin, &grant, &user_id).await {
        Ok(()) => {
            state.rooms.access_changed(&project.id).await;
            members_page(&state, &auth, &project, grant.role(), Some("Member removed.".into()), None).await
        }
        Err(AppError::Conflict(m)) => {
            members_page(&state, &auth, &project, grant.role(), None, Some((StatusCode::CONFLICT, m))).await
        }
        Err(e) => Err(e),
    }
}

#[derive(Template)]
#[template(path = "component.html")]
struct ComponentPage {
    page: PageContext,
    project: Project,
    detail: ComponentDetail,
    can_edit: bool,
    /// The reader deleted it (not merged yet).
    deleted: bool,
    edit_href: String,
    delete_href: String,
}

/// `GET /projects/{slug}/components/{component_id}`
pub async fn component(
    State(state): State<AppState>,
    PageUser(auth): PageUser,
    ctx: RequestContext,
    Path((slug, component_id)): Path<(String, String)>,
) -> AppResult<Html<String>> {
    let (project, grant) =
        super::authorize::<View>(&state.db, &auth, &Origin::from(&ctx), &slug, "project.view").await?;
    let detail = super::routes::component_detail(&state, &project, &auth.user.id, &component_id).await?;
    let facts = project.facts(grant.role());
    let can_edit = access::decide::<access::EditSpecs>(&auth.user, &facts).is_ok();
    let deleted = detail.summary.mark == Some(super::catalog::Mark::Deleted);
    let edit_href = super::authoring::edit_url(&project.slug, &detail.summary.file_path);
    let delete_href = super::authoring::delete_url(&project.slug, &detail.summary.file_path);
    render(&ComponentPage {
        page: PageContext::for_user(&auth, &state.keys.csrf),
        project,
        detail,
        can_edit,
        deleted,
        edit_href,
        delete_href,
    })
}

#[derive(Deserialize)]
pub struct GitHubRolesForm {
    #[serde(default)]
    admin: String,
    #[serde(default)]
    maintain: String,
    #[serde(default)]
    write: String,
    #[serde(default)]
    triage: String,
    #[serde(default)]
    read: String,
    /// `save`, `sync` or `stop`.
    #[serde(default)]
    action: String,
}

/// `POST /projects/{slug}/members/github`: take roles from GitHub (save the mapping), sync now,
/// or stop.
pub async fn github_roles(
    State(state): State<AppState>,
    PageUser(auth): PageUser,
    ctx: RequestContext,
    Path(slug): Path<String>,
    PageForm(form): PageForm<GitHubRolesForm>,
) -> AppResult<Response> {
    let origin = Origin::from(&ctx);
    let on = super::authorize_on::<ManageMembers>(&state.db, &auth, &origin, &slug, "project.role_sync.set").await?;
    let (project, role) = (on.project().clone(), on.grant().role());
    let result = match form.action.as_str() {
        "stop" => super::github_roles::disable(&state.db, &auth, &origin, on.grant(), &project)
            .await
            .map(|_| "Roles no longer come from GitHub; the memberships it gave stay, as manual ones.".to_owned()),
        "sync" => {
            let mut conn = state.db.pool().acquire().await?;
            super::github_roles::schedule(&mut conn, &project.id)
                .await
                .map(|_| "Syncing with GitHub now; reload in a moment.".to_owned())
        }
        _ => {
            let pick = |raw: &str| -> Result<Option<ProjectRole>, String> {
                match raw {
                    "none" => Ok(None),
                    other => {
                        ProjectRole::parse(other).map(Some).ok_or_else(|| "Choose a role for each permission.".into())
                    }
                }
            };
            let roles = (|| -> Result<super::github_roles::RoleMap, String> {
                Ok(super::github_roles::RoleMap {
                    admin: pick(&form.admin)?,
                    maintain: pick(&form.maintain)?,
                    write: pick(&form.write)?,
                    triage: pick(&form.triage)?,
                    read: pick(&form.read)?,
                })
            })();
            match roles {
                Err(m) => {
                    let error = Some((StatusCode::BAD_REQUEST, m));
                    return members_page(&state, &auth, &project, role, None, error).await;
                }
                Ok(roles) => {
                    super::github_roles::set(&state.db, &auth, &origin, on.grant(), &project, roles).await.map(|_| {
                        "Roles now come from GitHub for members who linked their GitHub account; syncing now.".into()
                    })
                }
            }
        }
    };
    match result {
        Ok(m) => members_page(&state, &auth, &project, role, Some(m), None).await,
        Err(AppError::Conflict(m)) => {
            members_page(&state, &auth, &project, role, None, Some((StatusCode::CONFLICT, m))).await
        }
        Err(e) => Err(e),
    }
}
