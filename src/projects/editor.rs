//! The spec editor page: the Markdown source in a form, a preview, and — when someone else saved
//! first — a conflict view that keeps both texts: view the differences, save a merged text, or
//! keep yours as a backup and take theirs. It works without JavaScript (autosave and live
//! updates build on the same save contract).

use askama::Template;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::model::Project;
use super::specs_api::{SaveSpec, backup_as, current_of, save_as};
use crate::app::AppState;
use crate::audit::Origin;
use crate::auth::access::EditSpecs;
use crate::auth::{Authenticated, PageUser};
use crate::error::{AppError, AppResult};
use crate::http::RequestContext;
use crate::http::api::PageForm;
use crate::specs::versions::Saved;
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

#[derive(Template)]
#[template(path = "editor.html")]
struct EditorPage {
    page: PageContext,
    project: Project,
    path: String,
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
}

fn problems(content: &str) -> Vec<String> {
    SpecFile::parse(content)
        .diagnostics
        .iter()
        .filter(|d| d.severity == Severity::Error)
        .map(|d| format!("line {}: {}", d.line, d.message))
        .collect()
}

#[allow(clippy::too_many_arguments)]
async fn editor_page(
    state: &AppState,
    auth: &Authenticated,
    project: &Project,
    path: &str,
    content: String,
    base_version: i64,
    session_id: String,
    message: Option<String>,
    conflict: Option<ConflictView>,
    status: StatusCode,
) -> AppResult<Response> {
    let prose = SpecFile::parse(content.as_str()).prose();
    let preview_html = tokio::task::spawn_blocking(move || crate::specs::render::prose_to_html(&prose))
        .await
        .map_err(|e| AppError::Internal(e.into()))?;
    let writeback = {
        let mut conn = state.db.pool().acquire().await?;
        super::writeback::branch_of(&mut conn, &project.id, &auth.user.handle).await?
    };
    let html = render(&EditorPage {
        writeback,
        page: PageContext::for_user(auth, &state.keys.csrf),
        project: project.clone(),
        path: path.to_owned(),
        problems: problems(&content),
        content,
        base_version,
        session_id,
        preview_html,
        message,
        conflict,
        editor_js: crate::ui::asset_url("editor.js"),
    })?;
    Ok((status, html).into_response())
}

fn spec_path(raw: &str) -> AppResult<String> {
    let path = raw.trim_start_matches('/');
    if path.ends_with(".md") && crate::git::valid_path(path) { Ok(path.to_owned()) } else { Err(AppError::NotFound) }
}

/// `GET /projects/{slug}/edit/{*path}`
pub async fn edit(
    State(state): State<AppState>,
    PageUser(auth): PageUser,
    ctx: RequestContext,
    Path((slug, path)): Path<(String, String)>,
) -> AppResult<Response> {
    let path = spec_path(&path)?;
    let (project, _) = super::authorize::<EditSpecs>(&state.db, &auth, &Origin::from(&ctx), &slug, "spec.save").await?;
    let current = current_of(&state, &project, &path).await?.ok_or(AppError::NotFound)?;
    // Each page load is its own editing session: two tabs conflict rather than overwrite.
    let session = uuid::Uuid::new_v4().to_string();
    editor_page(&state, &auth, &project, &path, current.content, current.version, session, None, None, StatusCode::OK)
        .await
}

#[derive(Deserialize)]
pub struct EditForm {
    #[serde(default)]
    content: String,
    #[serde(default)]
    base_version: i64,
    #[serde(default)]
    session_id: String,
    /// `save` (default) or `discard_mine`.
    #[serde(default)]
    action: String,
}

/// `POST /projects/{slug}/edit/{*path}`
pub async fn submit(
    State(state): State<AppState>,
    PageUser(auth): PageUser,
    ctx: RequestContext,
    Path((slug, path)): Path<(String, String)>,
    PageForm(form): PageForm<EditForm>,
) -> AppResult<Response> {
    let path = spec_path(&path)?;
    let origin = Origin::from(&ctx);
    let on = super::authorize_on::<EditSpecs>(&state.db, &auth, &origin, &slug, "spec.save").await?;
    let project = on.project();
    // Browsers send CRLF from textareas; specs keep the line endings they had.
    let content = normalize_newlines(
        &form.content,
        &current_of(&state, project, &path).await?.map(|c| c.content).unwrap_or_default(),
    );
    if form.action == "discard_mine" {
        let v = backup_as(&state, &auth, &origin, &on, &path, &content, &form.session_id).await?;
        let current = current_of(&state, project, &path).await?.ok_or(AppError::NotFound)?;
        let message =
            format!("Your text was kept as backup version {v}; this is the current version {}.", current.version);
        return editor_page(
            &state,
            &auth,
            project,
            &path,
            current.content,
            current.version,
            form.session_id,
            Some(message),
            None,
            StatusCode::OK,
        )
        .await;
    }
    let body = SaveSpec {
        content: content.clone(),
        base_version: form.base_version,
        session_id: form.session_id.clone(),
        confirmed_impact: false,
    };
    match save_as(&state, &auth, &origin, &on, &path, &body).await? {
        Saved::Saved { version, fast_forward, .. } => {
            let message = if fast_forward {
                format!("Saved as version {version} (after your own earlier save).")
            } else {
                format!("Saved as version {version}.")
            };
            editor_page(
                &state,
                &auth,
                project,
                &path,
                content,
                version,
                form.session_id,
                Some(message),
                None,
                StatusCode::OK,
            )
            .await
        }
        Saved::Conflict { current } => {
            // Quadratic in the file's lines: off the async runtime.
            let (theirs, yours) = (current.content.clone(), content.clone());
            let diff = tokio::task::spawn_blocking(move || line_diff(&theirs, &yours))
                .await
                .map_err(|e| AppError::Internal(e.into()))?;
            let conflict = ConflictView { current_version: current.version, diff, current_content: current.content };
            // The form now bases on their version: saving it is a deliberate overwrite or merge.
            editor_page(
                &state,
                &auth,
                project,
                &path,
                content,
                conflict.current_version,
                form.session_id,
                None,
                Some(conflict),
                StatusCode::CONFLICT,
            )
            .await
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
