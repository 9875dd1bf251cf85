//! Per-request context: ids for correlating logs, the client's address, and whether errors
//! should be rendered as JSON. Set by [`super::observe`] for the whole request, readable from
//! handlers (as an extractor) and from error rendering (as a task-local).

use std::convert::Infallible;
use std::net::IpAddr;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;

#[derive(Clone, Debug)]
pub struct RequestContext {
    pub request_id: String,
    pub trace_id: String,
    pub client_ip: Option<IpAddr>,
    pub user_agent: Option<String>,
    pub wants_json: bool,
}

tokio::task_local! {
    static CURRENT: RequestContext;
}

/// Run `f` with `ctx` as the current request context.
pub async fn scope<F: Future>(ctx: RequestContext, f: F) -> F::Output {
    CURRENT.scope(ctx, f).await
}

/// The context of the request being served, if any.
pub fn current() -> Option<RequestContext> {
    CURRENT.try_with(Clone::clone).ok()
}

impl<S: Send + Sync> FromRequestParts<S> for RequestContext {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(parts.extensions.get::<RequestContext>().cloned().unwrap_or_else(|| RequestContext {
            request_id: String::new(),
            trace_id: String::new(),
            client_ip: None,
            user_agent: None,
            wants_json: true,
        }))
    }
}
