//! The workflow canvas page: a server-rendered shell the bundled client (static/src/workflow.js)
//! brings to life over the WebSocket.

use askama::Template;
use axum::extract::{Path, State};
use axum::response::Html;
use serde_json::json;

use crate::app::AppState;
use crate::audit::Origin;
use crate::auth::access::{self, ProjectRole, View};
use crate::auth::{OrgRole, PageUser};
use crate::error::AppResult;
use crate::http::RequestContext;
use crate::projects::model::{Project, ProjectState};
use crate::ui::{PageContext, render};

pub struct ComponentOption {
    pub id: String,
    pub name: String,
}

#[derive(Template)]
#[template(path = "workflow.html")]
struct WorkflowPage {
    page: PageContext,
    project: Project,
    can_edit: bool,
    can_edit_text: bool,
    user_name: String,
    user_handle: String,
    components: Vec<ComponentOption>,
    components_json: String,
    workflow_js: String,
}

/// `GET /projects/{slug}/workflow`
pub async fn page(
    State(state): State<AppState>,
    PageUser(auth): PageUser,
    ctx: RequestContext,
    Path(slug): Path<String>,
) -> AppResult<Html<String>> {
    let (project, grant) =
        crate::projects::authorize::<View>(&state.db, &auth, &Origin::from(&ctx), &slug, "project.view").await?;
    let role = grant.role();
    let writable = project.state != ProjectState::Archived;
    let can_edit = writable && (auth.user.org_role == OrgRole::Admin || role == Some(ProjectRole::Maker));
    let can_edit_text = writable && (can_edit || role == Some(ProjectRole::Editor));
    let _ = access::decide::<View>(&auth.user, &project.facts(role));
    let rows = {
        let mut conn = state.db.pool().acquire().await?;
        crate::projects::store::components(&mut conn, &project.id).await?
    };
    let mut components = vec![];
    let mut described = vec![];
    for row in rows {
        let Some(id) = row.component_id else { continue };
        let Ok(model) = serde_json::from_str::<crate::specs::Component>(&row.model_json) else { continue };
        described.push(json!({
            "id": id,
            "name": model.name,
            "props": model.props.iter().map(|p| json!({"id": p.id, "name": p.name, "default": p.default, "textEditable": p.text_editable})).collect::<Vec<_>>(),
            "events": model.events.iter().map(|e| json!({"id": e.id, "name": e.name})).collect::<Vec<_>>(),
        }));
        components.push(ComponentOption { id, name: model.name });
    }
    render(&WorkflowPage {
        page: PageContext::for_user(&auth, &state.keys.csrf),
        can_edit,
        can_edit_text,
        user_name: auth.user.name.clone(),
        user_handle: auth.user.handle.clone(),
        components,
        components_json: serde_json::to_string(&described).unwrap_or_else(|_| "[]".into()),
        workflow_js: crate::ui::asset_url("workflow.js"),
        project,
    })
}
