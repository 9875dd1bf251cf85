//! The workflow canvas page: a server-rendered shell the bundled client (static/src/workflow.js)
//! brings to life over the WebSocket.

use askama::Template;
use axum::Json;
use axum::extract::{Path, State};
use axum::response::Html;
use serde_json::{Value, json};

use crate::app::AppState;
use crate::audit::Origin;
use crate::auth::access::View;
use crate::auth::{ApiUser, PageUser};
use crate::error::AppResult;
use crate::http::RequestContext;
use crate::projects::catalog::{Author, Mark, Source};
use crate::projects::model::{Project, ProjectState};
use crate::specs::Component;
use crate::ui::{PageContext, render};

/// The project's components as the workflow shows them to `reader` (branch-aware, see
/// `projects::catalog`): ids, names, props (with `textEditable`) and events; `source` is
/// `default_branch` or `yours`, or `unmerged` for a component someone else is creating (drawn
/// where it is placed, not offered to place, like one the reader deleted); `unmerged_by` names others with unmerged changes.
pub async fn components(state: &AppState, project: &Project, reader: &str) -> AppResult<Vec<Value>> {
    let catalog = {
        let mut conn = state.db.pool().acquire().await?;
        crate::projects::catalog::catalog(&mut conn, &project.id, reader).await?
    };
    let describe = |id: &str, path: &str, c: &Component, source: &str, mark: Option<Mark>, by: &[Author]| {
        json!({
            "id": id,
            "name": c.name,
            "file_path": path,
            "source": source,
            "mark": mark,
            "placeable": source != "unmerged" && mark != Some(Mark::Deleted),
            "unmerged_by": by.iter().map(|a| a.name.as_str()).collect::<Vec<_>>(),
            "props": c.props.iter().map(|p| json!({"id": p.id, "name": p.name, "default": p.default, "textEditable": p.text_editable})).collect::<Vec<_>>(),
            "events": c.events.iter().map(|e| json!({"id": e.id, "name": e.name})).collect::<Vec<_>>(),
        })
    };
    let mut out = vec![];
    for e in &catalog.entries {
        let Some(id) = &e.component_id else { continue };
        let source = if e.source == Source::Yours { "yours" } else { "default_branch" };
        out.push(describe(id, &e.file_path, &e.component, source, e.mark, &e.others));
    }
    for p in &catalog.others_new {
        let Some(id) = &p.component_id else { continue };
        out.push(describe(id, &p.file_path, &p.component, "unmerged", None, &p.by));
    }
    Ok(out)
}

/// `GET /api/v1/projects/{id}/workflow/components`: what open canvases render instances with.
#[utoipa::path(get, path = "/api/v1/projects/{id}/workflow/components", tag = "workflow",
    security(("token" = []), ("session" = [])),
    params(("id" = String, Path, description = "Project id or slug")),
    responses((status = 200, description = "`[{\"id\", \"name\", \"file_path\", \"props\": [{\"id\", \"name\", \"default\", \"textEditable\"}], \"events\": [{\"id\", \"name\"}]}]`"),
        (status = 404, body = crate::error::ErrorBody)))]
pub async fn components_api(
    State(state): State<AppState>,
    ApiUser(auth): ApiUser,
    ctx: RequestContext,
    Path(id): Path<String>,
) -> AppResult<Json<Vec<Value>>> {
    let (project, _) =
        crate::projects::authorize::<View>(&state.db, &auth, &Origin::from(&ctx), &id, "project.view").await?;
    Ok(Json(components(&state, &project, &auth.user.id).await?))
}

/// JSON to put inside `<script type="application/json">` as it is (`|safe`): `<`, `>` and `&`
/// (which JSON has only inside strings) as `\u` escapes, so no text can end the element. Half
/// the size of the same JSON in an attribute, where every quote is `&quot;`.
fn script_json(value: &impl serde::Serialize) -> String {
    let text = serde_json::to_string(value).unwrap_or_else(|_| "[]".into());
    text.replace('<', "\\u003c").replace('>', "\\u003e").replace('&', "\\u0026")
}

/// What both workflow pages know about the viewer and the project.
struct Shell {
    project: Project,
    can_edit: bool,
    can_edit_text: bool,
    user_name: String,
    user_handle: String,
    components_json: String,
}

async fn shell(
    state: &AppState,
    auth: &crate::auth::Authenticated,
    ctx: &RequestContext,
    slug: &str,
) -> AppResult<Shell> {
    let (project, grant) =
        crate::projects::authorize::<View>(&state.db, auth, &Origin::from(ctx), slug, "project.view").await?;
    let role = grant.role();
    // What the page offers; the server checks every update again (ws.rs, filter.rs).
    let writable = project.state != ProjectState::Archived;
    let facts = project.facts(role);
    let can_edit = writable && crate::auth::access::holds::<crate::auth::access::EditWorkflow>(&auth.user, &facts);
    let can_edit_text =
        writable && crate::auth::access::holds::<crate::auth::access::EditWorkflowText>(&auth.user, &facts);
    let described = components(state, &project, &auth.user.id).await?;
    Ok(Shell {
        can_edit,
        can_edit_text,
        user_name: auth.user.name.clone(),
        user_handle: auth.user.handle.clone(),
        components_json: script_json(&described),
        project,
    })
}

#[derive(Template)]
#[template(path = "workflow.html")]
struct WorkflowPage {
    page: PageContext,
    shell: Shell,
    workflow_js: String,
    /// The workflow as it is now, drawn at once while the live canvas loads.
    picture: Option<super::picture::Picture>,
}

/// `GET /projects/{slug}/workflow`: the canvas.
pub async fn page(
    State(state): State<AppState>,
    PageUser(auth): PageUser,
    ctx: RequestContext,
    Path(slug): Path<String>,
) -> AppResult<Html<String>> {
    let shell = shell(&state, &auth, &ctx, &slug).await?;
    let room = state.rooms.open(&shell.project.id).await?;
    let content = room.content().await?;
    let picture = tokio::task::spawn_blocking(move || super::picture::picture(&content))
        .await
        .map_err(|e| crate::error::AppError::Internal(e.into()))?;
    render(&WorkflowPage {
        page: PageContext::for_user(&auth, &state.keys.csrf),
        shell,
        workflow_js: crate::ui::asset_url("workflow.js"),
        picture,
    })
}

#[derive(Template)]
#[template(path = "workflow_screen.html")]
struct ScreenPage {
    page: PageContext,
    shell: Shell,
    screen_id: String,
    screen_name: String,
    workflow_js: String,
}

/// `GET /projects/{slug}/workflow/screens/{screen_id}`: one screen, where it is edited.
pub async fn screen_page(
    State(state): State<AppState>,
    PageUser(auth): PageUser,
    ctx: RequestContext,
    Path((slug, screen_id)): Path<(String, String)>,
) -> AppResult<Html<String>> {
    let shell = shell(&state, &auth, &ctx, &slug).await?;
    let room = state.rooms.open(&shell.project.id).await?;
    let content = room.content().await?;
    let screen =
        content["screens"].get(&screen_id).filter(|s| s.is_object()).ok_or(crate::error::AppError::NotFound)?;
    let screen_name = screen["name"].as_str().filter(|n| !n.is_empty()).unwrap_or("Untitled").to_owned();
    render(&ScreenPage {
        page: PageContext::for_user(&auth, &state.keys.csrf),
        shell,
        screen_id,
        screen_name,
        workflow_js: crate::ui::asset_url("workflow.js"),
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn script_json_cannot_end_its_element_and_reads_back_the_same() {
        let value = serde_json::json!([{"name": "</script><script>alert(1)</script> & <!--"}]);
        let text = super::script_json(&value);
        assert!(!text.contains('<') && !text.contains('>') && !text.contains('&'), "{text}");
        assert_eq!(serde_json::from_str::<serde_json::Value>(&text).unwrap(), value);
    }
}
