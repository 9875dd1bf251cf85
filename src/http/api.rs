//! Plumbing for the JSON API under `/api/v1`: a router that only accepts documented routes,
//! extractors that answer with the error contract, and the OpenAPI document.

use axum::extract::rejection::{FormRejection, JsonRejection};
use axum::extract::{FromRequest, OptionalFromRequest, Request};
use axum::http::StatusCode;
use axum::http::header::{CONTENT_LENGTH, CONTENT_TYPE, TRANSFER_ENCODING};
use serde::de::DeserializeOwned;
use utoipa::openapi::OpenApi as OpenApiDoc;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_axum::router::{OpenApiRouter, UtoipaMethodRouter};

use crate::app::AppState;
use crate::error::{AppError, ErrorBody};

#[derive(OpenApi)]
#[openapi(
    info(title = "Arno API", description = "The JSON API of an Arno appliance. Authenticate with a personal API token (`Authorization: Bearer arno_…`) or, from the browser, the session cookie plus `X-CSRF-Token` on writes."),
    components(schemas(ErrorBody)),
    modifiers(&Security),
)]
struct ApiDoc;

struct Security;

impl Modify for Security {
    fn modify(&self, openapi: &mut OpenApiDoc) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "token",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
        components
            .add_security_scheme("session", SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::new("arno_session"))));
    }
}

/// A router for `/api/v1` that can only grow by documented handlers (`routes!(…)` of
/// functions annotated with `#[utoipa::path]`), so the OpenAPI document cannot miss a route.
pub struct ApiRouter(OpenApiRouter<AppState>);

impl Default for ApiRouter {
    fn default() -> Self {
        Self::new()
    }
}

impl ApiRouter {
    pub fn new() -> Self {
        let mut doc = ApiDoc::openapi();
        doc.info.version = env!("CARGO_PKG_VERSION").to_owned();
        ApiRouter(OpenApiRouter::with_openapi(doc))
    }

    pub fn routes(self, routes: UtoipaMethodRouter<AppState>) -> Self {
        ApiRouter(self.0.routes(routes))
    }

    pub fn merge(self, other: ApiRouter) -> Self {
        ApiRouter(self.0.merge(other.0))
    }

    pub fn split(self) -> (axum::Router<AppState>, OpenApiDoc) {
        self.0.split_for_parts()
    }
}

/// `Json<T>` whose rejections follow the error contract: 413 `too_large` for oversized
/// bodies, 400 `validation` for anything else malformed.
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = AppError;

    async fn from_request(req: Request, state: &S) -> Result<Self, AppError> {
        match <axum::Json<T> as FromRequest<S>>::from_request(req, state).await {
            Ok(axum::Json(v)) => Ok(ApiJson(v)),
            Err(rejection) => Err(json_rejection(rejection)),
        }
    }
}

/// `Option<ApiJson<T>>`: `None` for a request without a body (no `Content-Type`, no length or a
/// zero one, not chunked), otherwise parsed as `ApiJson<T>` is. For `DELETE`, whose body some
/// clients and proxies drop.
impl<T: DeserializeOwned, S: Send + Sync> OptionalFromRequest<S> for ApiJson<T> {
    type Rejection = AppError;

    async fn from_request(req: Request, state: &S) -> Result<Option<Self>, AppError> {
        // Over HTTP/2 a body may come without a length header: what the body itself says counts.
        use axum::body::HttpBody as _;
        let h = req.headers();
        let empty = !h.contains_key(CONTENT_TYPE)
            && !h.contains_key(TRANSFER_ENCODING)
            && h.get(CONTENT_LENGTH).is_none_or(|v| v.as_bytes() == b"0")
            && req.body().size_hint().exact() == Some(0);
        if empty {
            return Ok(None);
        }
        <Self as FromRequest<S>>::from_request(req, state).await.map(Some)
    }
}

fn json_rejection(r: JsonRejection) -> AppError {
    match r.status() {
        StatusCode::PAYLOAD_TOO_LARGE => AppError::TooLarge("request body too large".into()),
        StatusCode::UNSUPPORTED_MEDIA_TYPE => AppError::validation("expected Content-Type: application/json"),
        _ => AppError::validation(r.body_text()),
    }
}

/// `Form<T>` for pages, with the same error mapping.
pub struct PageForm<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for PageForm<T> {
    type Rejection = AppError;

    async fn from_request(req: Request, state: &S) -> Result<Self, AppError> {
        match axum::Form::<T>::from_request(req, state).await {
            Ok(axum::Form(v)) => Ok(PageForm(v)),
            Err(r) => Err(match r {
                FormRejection::BytesRejection(b) if b.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                    AppError::TooLarge("request body too large".into())
                }
                other => AppError::validation(other.body_text()),
            }),
        }
    }
}

/// `GET /api/v1/openapi.json`
#[utoipa::path(get, path = "/api/v1/openapi.json", tag = "meta",
    responses((status = 200, description = "This OpenAPI 3.1 document", content_type = "application/json")))]
pub async fn openapi_json(
    axum::extract::State(state): axum::extract::State<AppState>,
) -> axum::Json<serde_json::Value> {
    axum::Json(state.openapi.as_ref().clone())
}
