//! The spec editor page, in two views of the same text: **Structured** (the prose pieces as
//! Markdown, the props and events as rows — add, remove, reorder, typed helpers, inline
//! validation, usage on screens, and what an edit breaks before it is saved) and **Source** (the
//! Markdown itself). Switching views carries the text, so nothing is lost. A preview, the
//! versions list, and — when someone else saved first — a conflict view that keeps both texts:
//! view the differences, save a merged text, or keep yours as a backup and take theirs. It works
//! without JavaScript (autosave and live updates build on the same save contract).

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::editor_form;
use super::impact::{Impact, Usage};
use super::model::Project;
use super::specs_api::{SaveSpec, backup_as, current_of, save_as};
use crate::app::AppState;
use crate::audit::Origin;
use crate::auth::access::EditSpecs;
use crate::auth::{Authenticated, PageUser};
use crate::error::{AppError, AppResult};
use crate::http::RequestContext;
use crate::http::api::PageForm;
use crate::specs::structured::{self, Draft, EventDraft, Problem, PropDraft, ProsePiece};
use crate::specs::versions::{self, Saved, VersionInfo};
use crate::specs::{Severity, SpecFile};
use crate::ui::{PageContext, render};

/// One line of a line-by-line comparison.
#[derive(Debug, Clone)]
pub struct DiffLine {
    /// `same`, `theirs` (only in theirs), `yours` (only in yours).
    pub side: &'static str,
    pub text: String,
}

/// Longest-common-subsequence line diff: small files, clear output.
pub fn line_diff(theirs: &str, yours: &str) -> Vec<DiffLine> {
    let a: Vec<&str> = theirs.lines().collect();
    let b: Vec<&str> = yours.lines().collect();
    // Guard the quadratic table: beyond this, show both whole.
    if a.len().saturating_mul(b.len()) > 4_000_000 {
        return a
            .iter()
            .map(|l| DiffLine { side: "theirs", text: (*l).into() })
            .chain(b.iter().map(|l| DiffLine { side: "yours", text: (*l).into() }))
            .collect();
    }
    let mut lcs = vec![vec![0u32; b.len() + 1]; a.len() + 1];
    for i in (0..a.len()).rev() {
        for j in (0..b.len()).rev() {
            lcs[i][j] = if a[i] == b[j] { lcs[i + 1][j + 1] + 1 } else { lcs[i + 1][j].max(lcs[i][j + 1]) };
        }
    }
    let (mut i, mut j, mut out) = (0, 0, vec![]);
    while i < a.len() || j < b.len() {
        if i < a.len() && j < b.len() && a[i] == b[j] {
            out.push(DiffLine { side: "same", text: a[i].into() });
            i += 1;
            j += 1;
        } else if j < b.len() && (i == a.len() || lcs[i][j + 1] >= lcs[i + 1][j]) {
            out.push(DiffLine { side: "yours", text: b[j].into() });
            j += 1;
        } else {
            out.push(DiffLine { side: "theirs", text: a[i].into() });
            i += 1;
        }
    }
    out
}

pub struct ConflictView {
    pub current_version: i64,
    pub current_content: String,
    pub diff: Vec<DiffLine>,
}

/// Errors of one structured row, by field.
#[derive(Default)]
pub struct RowErrors {
    pub row: Option<String>,
    pub name: Option<String>,
    pub options: Option<String>,
    pub custom: Option<String>,
    pub default: Option<String>,
}

impl RowErrors {
    fn any(&self) -> bool {
        [&self.row, &self.name, &self.options, &self.custom, &self.default].iter().any(|e| e.is_some())
    }
}

pub struct PropRow {
    pub kind: &'static str,
    pub n: usize,
    pub d: PropDraft,
    pub usage: Option<String>,
    pub err: RowErrors,
}

pub struct EventRow {
    pub kind: &'static str,
    pub n: usize,
    pub d: EventDraft,
    pub usage: Option<String>,
    pub err: RowErrors,
}

impl PropRow {
    /// The element id of one of the row's controls (`prop-3-up`).
    pub fn fid(&self, what: &str) -> String {
        format!("{}-{}-{what}", self.kind, self.n)
    }
}

impl EventRow {
    pub fn fid(&self, what: &str) -> String {
        format!("{}-{}-{what}", self.kind, self.n)
    }
}

pub struct ProseRow {
    pub p: ProsePiece,
    pub err: Option<String>,
}

/// The structured view: the draft laid out in rows, with each field's problem.
pub struct StructuredView {
    pub prose: Vec<ProseRow>,
    pub props: Vec<PropRow>,
    pub events: Vec<EventRow>,
    /// Every problem, for the summary at the top (field id, message).
    pub problems: Vec<(String, String)>,
    /// The field to focus after a row action (the page has no script to do it otherwise).
    pub focus: String,
    /// The component's name (None: the spec has no frontmatter to hold one).
    pub name: Option<String>,
    pub name_error: Option<String>,
}

#[derive(Template)]
#[template(path = "editor.html")]
struct EditorPage {
    page: PageContext,
    project: Project,
    path: String,
    /// The text being edited (in Structured, the text its fields were read from).
    content: String,
    base_version: i64,
    session_id: String,
    preview_html: String,
    problems: Vec<String>,
    message: Option<String>,
    conflict: Option<ConflictView>,
    editor_js: String,
    /// The caller's session branch, where their saves go.
    writeback: Option<super::writeback::SessionBranch>,
    /// Its pull request on a hosted repository, as Arno last saw it.
    pull_request: Option<super::onboarding::PullRecord>,
    /// Who reviews a change to this spec by the repository's CODEOWNERS (`None`: no file, or it
    /// could not be read; empty: nobody).
    owners: Option<Vec<String>>,
    structured: Option<StructuredView>,
    /// Why the structured view cannot show this text.
    unavailable: Option<String>,
    /// What saving would break, shown before saving anyway.
    impact: Option<Impact>,
    versions: Vec<VersionInfo>,
    compared: Option<Compared>,
    /// The current version deletes the spec (and no conflict is being shown): only undo (to its
    /// author) and the versions are offered.
    deleted: bool,
    deleted_by_you: bool,
    /// In a conflict: their version is a deletion.
    theirs_deleted: bool,
    delete_href: String,
}

impl EditorPage {
    /// The text for the structured form's hidden field, byte-exact (line endings included).
    fn content_json(&self) -> String {
        serde_json::to_string(&self.content).unwrap_or_default()
    }
}

/// A saved version compared with the text being edited.
pub struct Compared {
    pub version: i64,
    pub diff: Vec<DiffLine>,
}

fn problems(content: &str) -> Vec<String> {
    SpecFile::parse(content)
        .diagnostics
        .iter()
        .filter(|d| d.severity == Severity::Error)
        .map(|d| format!("line {}: {}", d.line, d.message))
        .collect()
}

/// What the editor page shows, besides the project and the path.
struct Shown {
    content: String,
    base_version: i64,
    session_id: String,
    message: Option<String>,
    conflict: Option<ConflictView>,
    /// Show the structured view of this draft (None: the Source view).
    draft: Option<Draft>,
    field_problems: Vec<Problem>,
    focus: String,
    impact: Option<Impact>,
    compared: Option<Compared>,
    status: StatusCode,
}

impl Shown {
    fn source(content: String, base_version: i64, session_id: String) -> Shown {
        Shown {
            content,
            base_version,
            session_id,
            message: None,
            conflict: None,
            draft: None,
            field_problems: vec![],
            focus: String::new(),
            impact: None,
            compared: None,
            status: StatusCode::OK,
        }
    }

    /// The structured view of `content` itself (when it can be shown).
    fn structured(content: String, base_version: i64, session_id: String) -> Shown {
        let spec = SpecFile::parse(content.as_str());
        let draft = structured::unavailable(&spec).is_none().then(|| structured::view(&spec));
        Shown { draft, ..Shown::source(content, base_version, session_id) }
    }
}

fn usage_text(u: &Usage) -> String {
    let s = |n: usize, one: &str, many: &str| format!("{n} {}", if n == 1 { one } else { many });
    match u.kind {
        "prop" if u.instances == 0 => "Not set on any screen".into(),
        "prop" => {
            format!("Set on {} on {}", s(u.instances, "instance", "instances"), s(u.screens, "screen", "screens"))
        }
        _ if u.edges == 0 => "No screen connects it".into(),
        _ => format!("{} on {}", s(u.edges, "edge starts", "edges start"), s(u.screens, "screen", "screens")),
    }
}

fn layout(draft: Draft, problems: &[Problem], usage: &[Usage], focus: String, spec: &SpecFile) -> StructuredView {
    let find = |field: String| problems.iter().find(|p| p.field == field).map(|p| p.message.clone());
    let name_error = find("component.name".into());
    let errors = |kind: &str, n: usize| RowErrors {
        row: find(format!("{kind}.{n}")),
        name: find(format!("{kind}.{n}.name")),
        options: find(format!("{kind}.{n}.options")),
        custom: find(format!("{kind}.{n}.custom")),
        default: find(format!("{kind}.{n}.default")),
    };
    let used = |id: &str| usage.iter().find(|u| !id.is_empty() && u.id == id).map(usage_text);
    let labels = structured::view(spec).prose;
    let draft_name = draft.name.clone();
    StructuredView {
        prose: draft
            .prose
            .into_iter()
            .map(|mut p| {
                if p.label.is_empty() {
                    p.label = labels.iter().find(|l| l.index == p.index).map_or("Text".into(), |l| l.label.clone());
                }
                ProseRow { err: find(format!("prose.{}", p.index)), p }
            })
            .collect(),
        props: draft
            .props
            .into_iter()
            .enumerate()
            .map(|(n, d)| PropRow { kind: "prop", n, usage: used(&d.id), err: errors("prop", n), d })
            .collect(),
        events: draft
            .events
            .into_iter()
            .enumerate()
            .map(|(n, d)| EventRow { kind: "event", n, usage: used(&d.id), err: errors("event", n), d })
            .collect(),
        problems: problems.iter().map(|p| (p.field.replace('.', "-"), p.message.clone())).collect(),
        focus,
        name: draft_name,
        name_error,
    }
}

async fn editor_page(
    state: &AppState,
    auth: &Authenticated,
    project: &Project,
    path: &str,
    shown: Shown,
) -> AppResult<Response> {
    let spec = SpecFile::parse(shown.content.as_str());
    let component = crate::specs::Component::from_spec(&spec, path);
    let prose = spec.prose();
    let preview_html = tokio::task::spawn_blocking(move || crate::specs::render::preview_html(&prose, &component))
        .await
        .map_err(|e| AppError::Internal(e.into()))?
        .map_err(|e| AppError::Internal(e.into()))?;
    let (writeback, versions, pull_request) = {
        let mut conn = state.db.pool().acquire().await?;
        let writeback = super::writeback::branch_of(&mut conn, &project.id, &auth.user.handle).await?;
        let pull = match &writeback {
            Some(w) => super::onboarding::pull_for_branch(&mut conn, &project.id, &w.branch).await?,
            None => None,
        };
        (writeback, versions::list(&mut conn, &project.id, path).await?, pull)
    };
    let owners = owners_of(state, project, path).await;
    let latest = versions.iter().find(|v| v.kind != "backup").filter(|v| v.is_deleted());
    let deleted = latest.is_some() && shown.conflict.is_none();
    let theirs_deleted = latest.is_some() && shown.conflict.is_some();
    let deleted_by_you = latest.and_then(|v| v.saved_by.as_deref()) == Some(auth.user.id.as_str());
    let unavailable = structured::unavailable(&spec);
    let structured = match shown.draft {
        Some(draft) => {
            let (_, git) = super::specs_api::scanned(state, project, path).await?;
            let usage = super::specs_api::impact_of(state, project, path, git.as_deref(), &shown.content, true)
                .await?
                .map(|i| i.usage)
                .unwrap_or_default();
            Some(layout(draft, &shown.field_problems, &usage, shown.focus, &spec))
        }
        None => None,
    };
    let html = render(&EditorPage {
        writeback,
        pull_request,
        owners,
        page: PageContext::for_user(auth, &state.keys.csrf),
        project: project.clone(),
        path: path.to_owned(),
        problems: problems(&shown.content),
        content: shown.content,
        base_version: shown.base_version,
        session_id: shown.session_id,
        preview_html,
        message: shown.message,
        conflict: shown.conflict,
        editor_js: crate::ui::asset_url("editor.js"),
        structured,
        unavailable,
        impact: shown.impact,
        versions,
        compared: shown.compared,
        deleted,
        deleted_by_you,
        theirs_deleted,
        delete_href: super::authoring::delete_url(&project.slug, path),
    })?;
    Ok((shown.status, html).into_response())
}

/// The code owners of `path` on the last scanned default-branch commit; `None` without a
/// CODEOWNERS file, or when the repository cannot be read just now (the editor works without).
async fn owners_of(state: &AppState, project: &Project, path: &str) -> Option<Vec<String>> {
    let commit = project.scanned_commit.as_deref()?;
    let provider = state.repos.get(project).await.ok()?;
    match state.repos.codeowners(&project.id, provider.as_ref(), commit).await {
        Ok(file) => file.as_ref().as_ref().map(|(_, owners)| owners.owners_of(path).to_vec()),
        Err(e) => {
            tracing::warn!(project = %project.id, error = %e, "CODEOWNERS could not be read");
            None
        }
    }
}

fn spec_path(raw: &str) -> AppResult<String> {
    let path = raw.trim_start_matches('/');
    if path.ends_with(".md") && crate::git::valid_path(path) { Ok(path.to_owned()) } else { Err(AppError::NotFound) }
}

#[derive(Deserialize)]
pub struct EditQuery {
    /// `source` for the Markdown source; the structured view otherwise (when the spec allows).
    #[serde(default)]
    view: String,
    /// A version to compare with the current text.
    compare: Option<i64>,
}

/// `GET /projects/{slug}/edit/{*path}`
pub async fn edit(
    State(state): State<AppState>,
    PageUser(auth): PageUser,
    ctx: RequestContext,
    Path((slug, path)): Path<(String, String)>,
    Query(query): Query<EditQuery>,
) -> AppResult<Response> {
    let path = spec_path(&path)?;
    let (project, _) = super::authorize::<EditSpecs>(&state.db, &auth, &Origin::from(&ctx), &slug, "spec.save").await?;
    let current = current_of(&state, &project, &path).await?.ok_or(AppError::NotFound)?;
    // Each page load is its own editing session: two tabs conflict rather than overwrite.
    let session = uuid::Uuid::new_v4().to_string();
    let compared = match query.compare {
        Some(n) => {
            let old = {
                let mut conn = state.db.pool().acquire().await?;
                versions::content_of(&mut conn, &project.id, &path, n).await?
            };
            let old = match old {
                Some(text) => text,
                None if n == 1 => {
                    super::specs_api::scanned(&state, &project, &path).await?.1.ok_or(AppError::NotFound)?
                }
                None => return Err(AppError::NotFound),
            };
            let now = current.content.clone();
            let diff = tokio::task::spawn_blocking(move || line_diff(&old, &now))
                .await
                .map_err(|e| AppError::Internal(e.into()))?;
            Some(Compared { version: n, diff })
        }
        None => None,
    };
    let mut shown = if query.view == "source" {
        Shown::source(current.content, current.version, session)
    } else {
        Shown::structured(current.content, current.version, session)
    };
    shown.compared = compared;
    editor_page(&state, &auth, &project, &path, shown).await
}

/// `POST /projects/{slug}/edit/{*path}`: save, switch views, or change the structured rows.
pub async fn submit(
    State(state): State<AppState>,
    PageUser(auth): PageUser,
    ctx: RequestContext,
    Path((slug, path)): Path<(String, String)>,
    PageForm(pairs): PageForm<Vec<(String, String)>>,
) -> AppResult<Response> {
    let path = spec_path(&path)?;
    let origin = Origin::from(&ctx);
    let on = super::authorize_on::<EditSpecs>(&state.db, &auth, &origin, &slug, "spec.save").await?;
    let project = on.project();
    let mut form = editor_form::parse(pairs)?;
    // Browsers send CRLF from textareas; specs keep the line endings they had.
    let existing = current_of(&state, project, &path).await?.map(|c| c.content).unwrap_or_default();
    let content = if form.exact { form.content.clone() } else { normalize_newlines(&form.content, &existing) };
    let (base, session) = (form.base_version, form.session_id.clone());
    let page = |shown: Shown| editor_page(&state, &auth, project, &path, shown);

    if let Some(n) = form.action.strip_prefix("restore:").and_then(|n| n.parse::<i64>().ok()) {
        let v = super::specs_api::restore_as(&state, &auth, &origin, &on, &path, n, &session).await?;
        let current = current_of(&state, project, &path).await?.ok_or(AppError::NotFound)?;
        let mut shown = Shown::structured(current.content, current.version, session);
        shown.message = Some(format!("Version {n} is the current text again, as version {v}."));
        return page(shown).await;
    }
    if form.view == "structured" {
        if form.action == "autosave" {
            return autosave(&state, &auth, &origin, &on, &path, &content, &form.draft, base, session).await;
        }
        if let Some(focus) = editor_form::row_action(&mut form.draft, &form.action) {
            let shown = Shown { draft: Some(form.draft), focus, ..Shown::source(content, base, session) };
            return page(shown).await;
        }
        let text = match apply_checked(&state, project, &auth.user.id, &path, &content, &form.draft).await? {
            Ok(text) => text,
            Err(field_problems) => {
                let focus = field_problems.first().map(|p| p.field.replace('.', "-")).unwrap_or_default();
                let shown = Shown {
                    draft: Some(form.draft),
                    field_problems,
                    focus,
                    status: StatusCode::BAD_REQUEST,
                    ..Shown::source(content, base, session)
                };
                return page(shown).await;
            }
        };
        if form.action == "view_source" {
            return page(Shown::source(text, base, session)).await;
        }
        // Removing or retyping what screens use: show what breaks first, save only when confirmed.
        let confirmed = form.action == "save_confirmed";
        if !confirmed {
            let (_, git) = super::specs_api::scanned(&state, project, &path).await?;
            let impact = super::specs_api::impact_of(&state, project, &path, git.as_deref(), &text, false).await?;
            if let Some(impact) = impact.filter(|i| i.needs_confirmation) {
                let shown = Shown {
                    draft: Some(form.draft),
                    impact: Some(impact),
                    focus: "impact-title".into(),
                    status: StatusCode::CONFLICT,
                    ..Shown::source(content, base, session)
                };
                return page(shown).await;
            }
        }
        return save_and_show(&state, &auth, &origin, &on, &path, text, base, session, confirmed, true).await;
    }

    match form.action.as_str() {
        "view_structured" => {
            let spec = SpecFile::parse(content.as_str());
            let mut shown = Shown::structured(content, base, session);
            if let Some(why) = structured::unavailable(&spec) {
                shown.message = Some(format!("The structured view cannot show this text: {why}. Fix it here first."));
            }
            page(shown).await
        }
        "discard_mine" => {
            let v = backup_as(&state, &auth, &origin, &on, &path, &content, &session).await?;
            let current = current_of(&state, project, &path).await?.ok_or(AppError::NotFound)?;
            let message =
                format!("Your text was kept as backup version {v}; this is the current version {}.", current.version);
            let shown = Shown { message: Some(message), ..Shown::source(current.content, current.version, session) };
            page(shown).await
        }
        _ => save_and_show(&state, &auth, &origin, &on, &path, content, base, session, false, false).await,
    }
}

/// [`structured::apply`], and a new name must not be another component's.
async fn apply_checked(
    state: &AppState,
    project: &Project,
    reader: &str,
    path: &str,
    content: &str,
    draft: &Draft,
) -> AppResult<Result<String, Vec<Problem>>> {
    let spec = SpecFile::parse(content);
    let text = match structured::apply(&spec, draft) {
        Ok(text) => text,
        Err(problems) => return Ok(Err(problems)),
    };
    let current = spec.frontmatter.as_ref().and_then(|f| f.name.clone()).unwrap_or_default();
    if let Some(name) = draft.name.as_deref().map(str::trim).filter(|n| *n != current)
        && let Some(taken) = super::authoring::name_taken(state, project, reader, name, Some(path)).await?
    {
        return Ok(Err(vec![Problem { field: "component.name".into(), message: taken }]));
    }
    Ok(Ok(text))
}

/// The structured view's autosave (its script posts the form with `action=autosave`): the same
/// checks and save as the Save button, answered in JSON. Never saves what needs a confirmation
/// (`409 impact`: the person presses Save to see what breaks); a conflict (`409 conflict`) is
/// resolved on the page. On success: the new version, the exact text the next edit is based on,
/// each row's position and id in it (new rows got their ids), and the preview.
#[allow(clippy::too_many_arguments)]
async fn autosave(
    state: &AppState,
    auth: &Authenticated,
    origin: &Origin,
    on: &super::Granted<EditSpecs>,
    path: &str,
    content: &str,
    draft: &Draft,
    base_version: i64,
    session_id: String,
) -> AppResult<Response> {
    use axum::Json;
    use serde_json::json;
    let project = on.project();
    let text = match apply_checked(state, project, &auth.user.id, path, content, draft).await? {
        Ok(text) => text,
        Err(problems) => {
            let list: Vec<_> =
                problems.iter().map(|p| json!({"field": p.field.replace('.', "-"), "message": p.message})).collect();
            return Ok((StatusCode::BAD_REQUEST, Json(json!({"code": "validation", "problems": list}))).into_response());
        }
    };
    if text == content {
        return Ok(Json(json!({"unchanged": true})).into_response());
    }
    let (_, git) = super::specs_api::scanned(state, project, path).await?;
    let impact = super::specs_api::impact_of(state, project, path, git.as_deref(), &text, false).await?;
    if let Some(impact) = impact.filter(|i| i.needs_confirmation) {
        return Ok((StatusCode::CONFLICT, Json(json!({"code": "impact", "counts": impact.counts}))).into_response());
    }
    let body = SaveSpec { content: text.clone(), base_version, session_id, confirmed_impact: false };
    match save_as(state, auth, origin, on, path, &body).await? {
        Saved::Saved { version, .. } => {
            let file = path.to_owned();
            let saved = text.clone();
            let (rows, preview) = tokio::task::spawn_blocking(move || {
                let spec = SpecFile::parse(saved.as_str());
                let view = structured::view(&spec);
                let component = crate::specs::Component::from_spec(&spec, &file);
                let rows = json!({
                    "props": view.props.iter().map(|p| json!({"src": p.src, "id": p.id})).collect::<Vec<_>>(),
                    "events": view.events.iter().map(|e| json!({"src": e.src, "id": e.id})).collect::<Vec<_>>(),
                });
                (rows, crate::specs::render::preview_html(&spec.prose(), &component))
            })
            .await
            .map_err(|e| AppError::Internal(e.into()))?;
            let preview = preview.map_err(|e| AppError::Internal(e.into()))?;
            Ok(Json(json!({"version": version, "content": text, "rows": rows, "preview_html": preview}))
                .into_response())
        }
        Saved::Conflict { current } => {
            Ok((StatusCode::CONFLICT, Json(json!({"code": "conflict", "current_version": current.version})))
                .into_response())
        }
    }
}

/// Save `content` and show the editor again: the view it came from on success, the conflict
/// view (Source, both texts kept) when someone saved first.
#[allow(clippy::too_many_arguments)]
async fn save_and_show(
    state: &AppState,
    auth: &Authenticated,
    origin: &Origin,
    on: &super::Granted<EditSpecs>,
    path: &str,
    content: String,
    base_version: i64,
    session_id: String,
    confirmed_impact: bool,
    structured_view: bool,
) -> AppResult<Response> {
    let project = on.project();
    let body = SaveSpec { content: content.clone(), base_version, session_id: session_id.clone(), confirmed_impact };
    match save_as(state, auth, origin, on, path, &body).await? {
        Saved::Saved { version, fast_forward, .. } => {
            let message = if fast_forward {
                format!("Saved as version {version} (after your own earlier save).")
            } else {
                format!("Saved as version {version}.")
            };
            let mut shown = if structured_view {
                Shown::structured(content, version, session_id)
            } else {
                Shown::source(content, version, session_id)
            };
            shown.message = Some(message);
            editor_page(state, auth, project, path, shown).await
        }
        Saved::Conflict { current } => {
            // Quadratic in the file's lines: off the async runtime.
            let (theirs, yours) = (current.content.clone(), content.clone());
            let diff = tokio::task::spawn_blocking(move || line_diff(&theirs, &yours))
                .await
                .map_err(|e| AppError::Internal(e.into()))?;
            let conflict = ConflictView { current_version: current.version, diff, current_content: current.content };
            // The form now bases on their version: saving it is a deliberate overwrite or merge.
            let shown = Shown {
                conflict: Some(conflict),
                status: StatusCode::CONFLICT,
                ..Shown::source(content, current.version, session_id)
            };
            editor_page(state, auth, project, path, shown).await
        }
    }
}

/// Keep the file's own line endings: a textarea always sends CRLF.
fn normalize_newlines(submitted: &str, existing: &str) -> String {
    let lf = submitted.replace("\r\n", "\n");
    if existing.contains("\r\n") { lf.replace('\n', "\r\n") } else { lf }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn diff_marks_each_side() {
        let d = line_diff("a\nb\nc\n", "a\nB\nc\nd\n");
        let sides: Vec<(&str, &str)> = d.iter().map(|l| (l.side, l.text.as_str())).collect();
        assert_eq!(sides, [("same", "a"), ("yours", "B"), ("theirs", "b"), ("same", "c"), ("yours", "d")]);
        assert_eq!(normalize_newlines("x\r\ny", "a\nb"), "x\ny");
        assert_eq!(normalize_newlines("x\r\ny", "a\r\nb"), "x\r\ny");
    }
}
