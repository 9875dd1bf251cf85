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
use crate::projects::model::{Project, ProjectState};
use crate::specs::SpecFile;
use crate::ui::{PageContext, render};

pub struct ComponentOption {
    pub id: String,
    pub name: String,
}

/// The project's components as the workflow uses them: their ids, names, props (with
/// `textEditable`) and events — from the text Arno holds now (a saved version, or the scanned
/// file), so a save changes what open screens show before it reaches git.
pub async fn components(state: &AppState, project: &Project) -> AppResult<Vec<Value>> {
    let rows = {
        let mut conn = state.db.pool().acquire().await?;
        crate::projects::store::components(&mut conn, &project.id).await?
    };
    let saved: std::collections::HashMap<String, String> =
        sqlx::query_as::<_, (String, String)>("SELECT path, content FROM spec_files WHERE project_id = $1")
            .bind(&project.id)
            .fetch_all(state.db.pool())
            .await?
            .into_iter()
            .collect();
    let described = tokio::task::spawn_blocking(move || {
        let mut out = vec![];
        for row in rows {
            let Some(id) = row.component_id else { continue };
            let model = match saved.get(&row.file_path) {
                Some(text) => Some(crate::specs::Component::from_spec(&SpecFile::parse(text.as_str()), &row.file_path)),
                None => serde_json::from_str::<crate::specs::Component>(&row.model_json).ok(),
            };
            let Some(model) = model else { continue };
            out.push(json!({
                "id": id,
                "name": model.name,
                "file_path": row.file_path,
                "props": model.props.iter().map(|p| json!({"id": p.id, "name": p.name, "default": p.default, "textEditable": p.text_editable})).collect::<Vec<_>>(),
                "events": model.events.iter().map(|e| json!({"id": e.id, "name": e.name})).collect::<Vec<_>>(),
            }));
        }
        out
    })
    .await
    .map_err(|e| crate::error::AppError::Internal(anyhow::anyhow!("components task: {e}")))?;
    Ok(described)
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
    Ok(Json(components(&state, &project).await?))
}

/// What both workflow pages know about the viewer and the project.
struct Shell {
    project: Project,
    can_edit: bool,
    can_edit_text: bool,
    user_name: String,
    user_handle: String,
    components: Vec<ComponentOption>,
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
    let described = components(state, &project).await?;
    let options = described
        .iter()
        .map(|c| ComponentOption {
            id: c["id"].as_str().unwrap_or_default().to_owned(),
            name: c["name"].as_str().unwrap_or_default().to_owned(),
        })
        .collect();
    Ok(Shell {
        can_edit,
        can_edit_text,
        user_name: auth.user.name.clone(),
        user_handle: auth.user.handle.clone(),
        components: options,
        components_json: serde_json::to_string(&described).unwrap_or_else(|_| "[]".into()),
        project,
    })
}

#[derive(Template)]
#[template(path = "workflow.html")]
struct WorkflowPage {
    page: PageContext,
    shell: Shell,
    workflow_js: String,
}

/// `GET /projects/{slug}/workflow`: the canvas.
pub async fn page(
    State(state): State<AppState>,
    PageUser(auth): PageUser,
    ctx: RequestContext,
    Path(slug): Path<String>,
) -> AppResult<Html<String>> {
    let shell = shell(&state, &auth, &ctx, &slug).await?;
    render(&WorkflowPage {
        page: PageContext::for_user(&auth, &state.keys.csrf),
        shell,
        workflow_js: crate::ui::asset_url("workflow.js"),
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
