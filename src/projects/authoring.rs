//! New components, from the project page and the API (`POST /api/v1/projects/{id}/components`):
//! Arno writes the spec — a new UUID in the frontmatter, the name, the description as prose, and
//! empty `props` and `events` blocks — in the repository's spec folder, through the same
//! versioned save as any edit (version 1, audited, written back to the author's branch).

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;
use utoipa::ToSchema;
use uuid::Uuid;

use super::specs_api::{self, SaveSpec};
use crate::app::AppState;
use crate::audit::Origin;
use crate::auth::access::EditSpecs;
use crate::auth::{ApiUser, Authenticated};
use crate::error::{AppError, AppResult, ErrorBody};
use crate::http::RequestContext;
use crate::http::api::ApiJson;
use crate::specs::SpecFile;
use crate::specs::versions::Saved;

/// Longest component name.
pub const MAX_NAME_CHARS: usize = crate::specs::structured::MAX_NAME_CHARS;
/// Longest description (it becomes Markdown prose; the spec itself is bounded by the quota).
pub const MAX_DESCRIPTION_CHARS: usize = 20_000;
/// Folders under the spec folder a new component may be put in.
const MAX_FOLDER_DEPTH: usize = 8;

/// What a Maker asks for.
#[derive(Debug, Clone)]
pub struct NewComponent {
    /// The display name, as typed ("Date picker"); the file is named after it (`DatePicker.md`).
    pub name: String,
    /// A folder under the spec folder (`forms/inputs`), or none.
    pub folder: Option<String>,
    /// Markdown prose.
    pub description: Option<String>,
}

/// What was created.
#[derive(Debug, Clone)]
pub struct Created {
    pub path: String,
    pub id: String,
    pub version: i64,
}

/// The file name a display name gets: its words run together, each capitalised, keeping letters
/// and digits of any script (`date picker` → `DatePicker`, `Кнопка` → `Кнопка`); `None` when
/// nothing usable is left or it does not start with a letter.
pub fn file_stem(name: &str) -> Option<String> {
    let mut stem = String::new();
    for word in name.split(|c: char| !c.is_alphanumeric()).filter(|w| !w.is_empty()) {
        let mut chars = word.chars();
        if let Some(first) = chars.next() {
            stem.extend(first.to_uppercase());
            stem.push_str(chars.as_str());
        }
    }
    stem.chars().next().filter(|c| c.is_alphabetic()).map(|_| stem)
}

fn clean_name(name: &str) -> AppResult<String> {
    let name = name.trim();
    if name.is_empty() {
        return Err(AppError::field("name", "give the component a name"));
    }
    if name.chars().count() > MAX_NAME_CHARS {
        return Err(AppError::field("name", format!("at most {MAX_NAME_CHARS} characters")));
    }
    if name.chars().any(char::is_control) {
        return Err(AppError::field("name", "one line of text, without control characters"));
    }
    Ok(name.to_owned())
}

/// The spec's path: `{componentsMd}{folder/}{Stem}.md`.
pub fn spec_path(components_md: &str, folder: Option<&str>, name: &str) -> AppResult<String> {
    let stem = file_stem(name)
        .ok_or_else(|| AppError::field("name", "the name needs a letter first (the file is named after it)"))?;
    let folder = folder.map(|f| f.trim().trim_matches('/')).filter(|f| !f.is_empty());
    let mut path = components_md.to_owned();
    if let Some(folder) = folder {
        let parts: Vec<&str> = folder.split('/').collect();
        if parts.len() > MAX_FOLDER_DEPTH {
            return Err(AppError::field("folder", format!("at most {MAX_FOLDER_DEPTH} folders deep")));
        }
        if parts.iter().any(|p| p.is_empty() || p.starts_with('.') || p.chars().any(|c| c.is_control() || c == '\\')) {
            return Err(AppError::field("folder", "folder names separated by `/`, none empty or starting with `.`"));
        }
        path.push_str(folder);
        path.push('/');
    }
    path.push_str(&stem);
    path.push_str(".md");
    if !crate::git::valid_path(&path) {
        return Err(AppError::field("folder", "is not a path Arno can write in the repository"));
    }
    if let Some(problem) = crate::git::path_limit_problem(&path) {
        return Err(AppError::field("folder", problem));
    }
    Ok(path)
}

/// The editor's URL for a spec, percent-encoded (folder names may hold any character).
pub fn edit_url(slug: &str, path: &str) -> String {
    spec_url(slug, "edit", path)
}

/// The delete (and undo) page of a spec.
pub fn delete_url(slug: &str, path: &str) -> String {
    spec_url(slug, "delete", path)
}

fn spec_url(slug: &str, page: &str, path: &str) -> String {
    let mut url = format!("/projects/{slug}/{page}/");
    for b in path.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'/' | b'-' | b'_' | b'.' | b'~') {
            url.push(b as char);
        } else {
            url.push_str(&format!("%{b:02X}"));
        }
    }
    url
}

/// A YAML double-quoted scalar.
/// The text of a new spec.
pub fn spec_text(id: Uuid, name: &str, description: &str) -> String {
    let mut text = format!(
        "---\nid: {id}\nname: {}\nstatus: draft\n---\n# {name}\n\n",
        crate::specs::structured::yaml_string(name)
    );
    let description = description.trim();
    if !description.is_empty() {
        text.push_str(&description.replace("\r\n", "\n"));
        text.push_str("\n\n");
    }
    text.push_str(
        "<!-- arno:props v1 -->\n\
         | id | name | type | default | textEditable | description |\n\
         | --- | --- | --- | --- | --- | --- |\n\
         <!-- /arno:props -->\n\n\
         <!-- arno:events v1 -->\n\
         | id | name | payload | description |\n\
         | --- | --- | --- | --- |\n\
         <!-- /arno:events -->\n",
    );
    text
}

/// Create a component on `on`'s project. `409` when a spec exists at its path or a component
/// has the same name; field errors name `name`, `folder` or `description`.
pub(crate) async fn create(
    state: &AppState,
    auth: &Authenticated,
    origin: &Origin,
    on: &super::Granted<EditSpecs>,
    new: &NewComponent,
) -> AppResult<Created> {
    let project = on.project();
    let name = clean_name(&new.name)?;
    let description = new.description.as_deref().unwrap_or_default();
    if description.chars().count() > MAX_DESCRIPTION_CHARS {
        return Err(AppError::field("description", format!("at most {MAX_DESCRIPTION_CHARS} characters")));
    }
    let config = project.repo_config();
    let path = spec_path(&config.components_md, new.folder.as_deref(), &name)?;
    // A deleted spec's path may be used again: the new text is the next version of the file.
    let base_version = match specs_api::current_of(state, project, &path).await? {
        Some(c) if c.deleted => c.version,
        Some(_) => return Err(AppError::Conflict(format!("a component spec already exists at {path}"))),
        None => 0,
    };
    if let Some(taken) = name_taken(state, project, &auth.user.id, &name, None).await? {
        return Err(AppError::Conflict(taken));
    }
    let id = Uuid::new_v4();
    let content = spec_text(id, &name, description);
    debug_assert!(!SpecFile::parse(content.as_str()).has_errors(), "a new spec reads cleanly");
    let body =
        SaveSpec { content, base_version, session_id: format!("new-{}", Uuid::new_v4()), confirmed_impact: false };
    match specs_api::save_as(state, auth, origin, on, &path, &body).await? {
        Saved::Saved { version, .. } => Ok(Created { path, id: id.to_string(), version }),
        Saved::Conflict { .. } => Err(AppError::Conflict(format!("a component spec was just created at {path}"))),
    }
}

/// Whether another component (than the one at `except`) has this name, ignoring case — among
/// what `reader` sees and what others are creating: the message saying which.
pub(crate) async fn name_taken(
    state: &AppState,
    project: &super::model::Project,
    reader: &str,
    name: &str,
    except: Option<&str>,
) -> AppResult<Option<String>> {
    let mut conn = state.db.pool().acquire().await?;
    let catalog = super::catalog::catalog(&mut conn, &project.id, reader).await?;
    Ok(catalog.named(name, except).map(|(other, path)| format!("a component named {other:?} exists already ({path})")))
}

/// `POST /api/v1/projects/{id}/components`: the request.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateComponent {
    /// The display name ("Date picker"); the file is named after it (`DatePicker.md`).
    pub name: String,
    /// A folder under the spec folder (`forms/inputs`).
    pub folder: Option<String>,
    /// Markdown prose for the spec.
    pub description: Option<String>,
}

/// `POST /api/v1/projects/{id}/components`: create a component (a new spec, version 1).
#[utoipa::path(post, path = "/api/v1/projects/{id}/components", tag = "specs",
    security(("token" = []), ("session" = [])),
    params(("id" = String, Path, description = "Project id or slug")),
    request_body = CreateComponent,
    responses((status = 201, description = "`{\"path\",\"id\",\"version\",\"edit_url\"}`; `Location` is the spec's API URL"),
        (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody, description = "a spec exists at the path, or a component has the name"),
        (status = 413, body = ErrorBody)))]
pub async fn create_component(
    State(state): State<AppState>,
    ApiUser(auth): ApiUser,
    ctx: RequestContext,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<CreateComponent>,
) -> AppResult<Response> {
    let origin = Origin::from(&ctx);
    let on = super::authorize_on::<EditSpecs>(&state.db, &auth, &origin, &id, "component.create").await?;
    let new = NewComponent { name: body.name, folder: body.folder, description: body.description };
    let created = create(&state, &auth, &origin, &on, &new).await?;
    let project = on.project();
    let location = format!("/api/v1/projects/{}/specs/{}", project.id, created.path);
    let body = json!({
        "path": created.path, "id": created.id, "version": created.version,
        "edit_url": edit_url(&project.slug, &created.path),
    });
    Ok((StatusCode::CREATED, [(header::LOCATION, location)], Json(body)).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_become_file_names() {
        assert_eq!(file_stem("Button").as_deref(), Some("Button"));
        assert_eq!(file_stem("date picker").as_deref(), Some("DatePicker"));
        assert_eq!(file_stem("  Nav-bar (v2) ").as_deref(), Some("NavBarV2"));
        assert_eq!(file_stem("Кнопка").as_deref(), Some("Кнопка"));
        assert_eq!(file_stem("2 columns"), None);
        assert_eq!(file_stem("!!!"), None);
    }

    #[test]
    fn paths_stay_in_the_spec_folder() {
        assert_eq!(spec_path("Design_system/", None, "Date picker").unwrap(), "Design_system/DatePicker.md");
        assert_eq!(
            spec_path("Design_system/", Some("/forms/inputs/"), "Field").unwrap(),
            "Design_system/forms/inputs/Field.md"
        );
        for bad in ["../x", "a/../b", ".git", "a//b", "a\\b", "a/.hidden"] {
            assert!(spec_path("Design_system/", Some(bad), "Field").is_err(), "{bad}");
        }
        assert!(spec_path("Design_system/", Some(&"a/".repeat(9)), "Field").is_err());
    }

    #[test]
    fn edit_urls_are_encoded() {
        assert_eq!(
            edit_url("p", "Design_system/My forms/Кн.md"),
            "/projects/p/edit/Design_system/My%20forms/%D0%9A%D0%BD.md"
        );
    }

    #[test]
    fn a_new_spec_reads_cleanly() {
        let id = Uuid::new_v4();
        for (name, description) in
            [("Button", ""), ("Say \"hi\" \\ now", "Some **prose**.\r\nTwo lines."), ("Кнопка: main", "")]
        {
            let text = spec_text(id, name, description);
            let spec = SpecFile::parse(text.as_str());
            assert!(!spec.has_errors(), "{:?}\n{text}", spec.diagnostics);
            let c = crate::specs::Component::from_spec(&spec, "Design_system/X.md");
            assert_eq!(c.name, name);
            assert_eq!(c.id.as_deref(), Some(id.to_string().as_str()));
            assert!(c.props.is_empty() && c.events.is_empty());
            assert!(
                spec.table(crate::specs::document::PROPS).is_some()
                    && spec.table(crate::specs::document::EVENTS).is_some()
            );
            assert!(!text.contains('\r'));
        }
    }
}
