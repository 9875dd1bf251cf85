//! The server-rendered UI shell: page context shared by every template, embedded static
//! files served under content-hashed names, and the home page.

use std::sync::LazyLock;

use askama::Template;
use axum::extract::Path;
use axum::http::{HeaderValue, header};
use axum::response::{Html, IntoResponse, Response};
use sha2::{Digest, Sha256};

use crate::auth::{Authenticated, PageUser, access};
use crate::error::{AppError, AppResult};
use crate::http::csrf;

struct Asset {
    /// `app.3f2a1b9c0d4e.css`
    hashed_name: String,
    logical_name: &'static str,
    content_type: &'static str,
    bytes: &'static [u8],
}

/// Every static file, embedded in the binary: the appliance never fetches anything.
static ASSETS: LazyLock<Vec<Asset>> = LazyLock::new(|| {
    let files: [(&str, &str, &[u8]); 4] = [
        ("app.css", "text/css; charset=utf-8", include_bytes!("../../static/app.css")),
        ("favicon.svg", "image/svg+xml", include_bytes!("../../static/favicon.svg")),
        ("editor.js", "text/javascript; charset=utf-8", include_bytes!("../../static/editor.js")),
        // Bundled by build.rs from static/src (with yjs and y-websocket).
        ("workflow.js", "text/javascript; charset=utf-8", include_bytes!("../../static/dist/workflow.js")),
    ];
    files
        .into_iter()
        .map(|(name, content_type, bytes)| {
            let digest = hex::encode(&Sha256::digest(bytes)[..6]);
            let (stem, ext) = name.rsplit_once('.').unwrap_or((name, ""));
            Asset { hashed_name: format!("{stem}.{digest}.{ext}"), logical_name: name, content_type, bytes }
        })
        .collect()
});

/// The URL of an embedded asset by its logical name.
pub fn asset_url(logical: &str) -> String {
    ASSETS.iter().find(|a| a.logical_name == logical).map(|a| format!("/static/{}", a.hashed_name)).unwrap_or_default()
}

/// `GET /static/{file}`: hashed names never change content, so they are cached forever.
pub async fn static_file(Path(file): Path<String>) -> Result<Response, AppError> {
    let asset = ASSETS.iter().find(|a| a.hashed_name == file).ok_or(AppError::NotFound)?;
    let mut response = asset.bytes.into_response();
    let h = response.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(asset.content_type));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=31536000, immutable"));
    Ok(response)
}

/// `GET /downloads/arno`: the `arno` executable this server runs, for CI runners (the
/// onboarding pull request's check fetches it here, so an air-gapped runner needs no internet).
/// Public: the binary holds no secret, and the same file ships in the .deb and the image.
pub async fn download_binary() -> Result<Response, AppError> {
    use futures_util::StreamExt as _;
    use tokio::io::AsyncReadExt as _;
    let path = std::env::current_exe().map_err(|e| AppError::Internal(e.into()))?;
    let file = tokio::fs::File::open(&path).await.map_err(|e| AppError::Internal(e.into()))?;
    let length = file.metadata().await.map_err(|e| AppError::Internal(e.into()))?.len();
    let chunks = futures_util::stream::unfold(file, |mut file| async move {
        let mut buf = vec![0u8; 256 * 1024];
        match file.read(&mut buf).await {
            Ok(0) => None,
            Ok(n) => {
                buf.truncate(n);
                Some((Ok::<_, std::io::Error>(bytes::Bytes::from(buf)), file))
            }
            Err(e) => Some((Err(e), file)),
        }
    })
    .boxed();
    let mut response = axum::body::Body::from_stream(chunks).into_response();
    let h = response.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/octet-stream"));
    h.insert(header::CONTENT_DISPOSITION, HeaderValue::from_static("attachment; filename=\"arno\""));
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(length));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert("x-arno-version", HeaderValue::from_static(env!("CARGO_PKG_VERSION")));
    Ok(response)
}

pub struct UserView {
    pub name: String,
    pub handle: String,
    pub is_admin: bool,
    /// Auditors and admins see the Audit page.
    pub can_audit: bool,
}

/// What the base layout needs on every page.
pub struct PageContext {
    pub css_href: String,
    pub icon_href: String,
    pub user: Option<UserView>,
    /// The CSRF token for forms on this page (empty when the page has none).
    pub csrf_token: String,
}

impl PageContext {
    pub fn anonymous() -> Self {
        PageContext {
            css_href: asset_url("app.css"),
            icon_href: asset_url("favicon.svg"),
            user: None,
            csrf_token: String::new(),
        }
    }

    pub fn with_csrf(csrf_token: String) -> Self {
        PageContext { csrf_token, ..Self::anonymous() }
    }

    /// The signed-in user's handle (empty for anonymous pages).
    pub fn user_handle(&self) -> &str {
        self.user.as_ref().map_or("", |u| u.handle.as_str())
    }

    pub fn for_user(auth: &Authenticated, csrf_key: &[u8; 32]) -> Self {
        let csrf_token = auth.session_cookie.as_deref().map(|c| csrf::token_for(csrf_key, c)).unwrap_or_default();
        PageContext {
            user: Some(UserView {
                name: auth.user.name.clone(),
                handle: auth.user.handle.clone(),
                is_admin: access::holds_org::<access::Administer>(&auth.user),
                can_audit: access::holds_org::<access::ReadAudit>(&auth.user),
            }),
            csrf_token,
            ..Self::anonymous()
        }
    }
}

pub fn render(t: &impl Template) -> AppResult<Html<String>> {
    t.render().map(Html).map_err(|e| AppError::Internal(e.into()))
}

#[derive(Template)]
#[template(path = "home.html")]
struct HomePage {
    page: PageContext,
    org_role: &'static str,
}

/// `GET /`
pub async fn home(
    axum::extract::State(state): axum::extract::State<crate::app::AppState>,
    PageUser(auth): PageUser,
) -> AppResult<Html<String>> {
    render(&HomePage { page: PageContext::for_user(&auth, &state.keys.csrf), org_role: auth.user.org_role.as_str() })
}
