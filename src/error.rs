//! One error type for every handler, rendered as the JSON error contract under `/api/` (or
//! when the client asks for JSON) and as an accessible HTML page otherwise.
//!
//! Internal errors are logged with their cause and the request's trace id; the client only
//! ever sees a generic message and that trace id.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use crate::http::context;

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("{message}")]
    Validation { message: String, details: Option<serde_json::Value> },
    #[error("authentication required")]
    Unauthorized,
    #[error("{0}")]
    Forbidden(String),
    #[error("not found")]
    NotFound,
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    TooLarge(String),
    #[error("too many attempts")]
    RateLimited { retry_after_ms: u64 },
    #[error("{0}")]
    Unavailable(String),
    #[error("upstream failed: {0}")]
    Upstream(String),
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

pub type AppResult<T> = Result<T, AppError>;

impl AppError {
    pub fn validation(message: impl Into<String>) -> Self {
        AppError::Validation { message: message.into(), details: None }
    }

    /// A validation error about one named field.
    pub fn field(field: &str, message: impl Into<String>) -> Self {
        let message = message.into();
        AppError::Validation {
            details: Some(serde_json::json!({ "field": field, "message": message })),
            message: format!("{field}: {message}"),
        }
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        AppError::Forbidden(message.into())
    }

    pub fn status(&self) -> StatusCode {
        match self {
            AppError::Validation { .. } => StatusCode::BAD_REQUEST,
            AppError::Unauthorized => StatusCode::UNAUTHORIZED,
            AppError::Forbidden(_) => StatusCode::FORBIDDEN,
            AppError::NotFound => StatusCode::NOT_FOUND,
            AppError::Conflict(_) => StatusCode::CONFLICT,
            AppError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            AppError::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            AppError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            AppError::Upstream(_) => StatusCode::BAD_GATEWAY,
            AppError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            AppError::Validation { .. } => "validation",
            AppError::Unauthorized => "unauthorized",
            AppError::Forbidden(_) => "forbidden",
            AppError::NotFound => "not_found",
            AppError::Conflict(_) => "conflict",
            AppError::TooLarge(_) => "too_large",
            AppError::RateLimited { .. } => "rate_limited",
            AppError::Unavailable(_) => "service_unavailable",
            AppError::Upstream(_) => "upstream_failed",
            AppError::Internal(_) => "internal",
        }
    }

    /// What the client may read. Server-side failures never expose their cause.
    fn public_message(&self) -> String {
        match self {
            AppError::Internal(_) => "internal error; quote the trace id to your administrator".into(),
            AppError::Upstream(_) => "an upstream service failed".into(),
            AppError::RateLimited { retry_after_ms } => {
                format!("too many attempts; try again in {} s", retry_after_ms.div_ceil(1000))
            }
            other => other.to_string(),
        }
    }
}

impl From<sqlx::Error> for AppError {
    fn from(e: sqlx::Error) -> Self {
        AppError::Internal(e.into())
    }
}

/// The JSON error body of every `/api/v1` error (contract).
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    /// One of `validation`, `unauthorized`, `forbidden`, `not_found`, `conflict`, `too_large`,
    /// `rate_limited`, `internal`, `upstream_failed`, `service_unavailable`.
    pub code: &'static str,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub details: Option<serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_after_ms: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trace_id: Option<String>,
}

#[derive(askama::Template)]
#[template(path = "error.html")]
struct ErrorPage<'a> {
    page: crate::ui::PageContext,
    status: u16,
    title: &'a str,
    message: &'a str,
    trace_id: Option<&'a str>,
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let status = self.status();
        let ctx = context::current();
        let trace_id = ctx.as_ref().map(|c| c.trace_id.clone());
        match &self {
            AppError::Internal(e) => {
                tracing::error!(event_type = "internal_error", error = format!("{e:#}"), "request failed");
            }
            AppError::Upstream(e) => {
                tracing::warn!(event_type = "upstream_error", error = %e, "upstream failed");
            }
            _ => {}
        }
        let message = self.public_message();
        let retry_after_ms = match self {
            AppError::RateLimited { retry_after_ms } => Some(retry_after_ms),
            _ => None,
        };
        let wants_json = ctx.as_ref().is_none_or(|c| c.wants_json);
        let code = self.code();
        let mut response = if wants_json {
            let details = match self {
                AppError::Validation { details, .. } => details,
                _ => None,
            };
            let body = ErrorBody { code, message, details, retry_after_ms, trace_id };
            (status, axum::Json(body)).into_response()
        } else {
            let title = status.canonical_reason().unwrap_or("Error");
            let page = ErrorPage {
                page: crate::ui::PageContext::anonymous(),
                status: status.as_u16(),
                title,
                message: &message,
                trace_id: trace_id.as_deref(),
            };
            match askama::Template::render(&page) {
                Ok(html) => (status, Html(html)).into_response(),
                Err(_) => (status, message).into_response(),
            }
        };
        if let Some(ms) = retry_after_ms {
            response.headers_mut().insert(header::RETRY_AFTER, retry_after(ms));
        }
        response
    }
}

/// `Retry-After` in whole seconds (RFC 9110 §10.2.3), rounded up, at least 1.
pub fn retry_after(ms: u64) -> HeaderValue {
    HeaderValue::from(ms.div_ceil(1000).max(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_errors_hide_their_cause() {
        let e = AppError::Internal(anyhow::anyhow!("password=hunter2 at db"));
        assert_eq!(e.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert!(!e.public_message().contains("hunter2"));
        assert_eq!(e.code(), "internal");
    }

    #[test]
    fn every_variant_maps_to_the_contract() {
        let cases = [
            (AppError::validation("x"), 400, "validation"),
            (AppError::Unauthorized, 401, "unauthorized"),
            (AppError::forbidden("x"), 403, "forbidden"),
            (AppError::NotFound, 404, "not_found"),
            (AppError::Conflict("x".into()), 409, "conflict"),
            (AppError::TooLarge("x".into()), 413, "too_large"),
            (AppError::RateLimited { retry_after_ms: 5 }, 429, "rate_limited"),
            (AppError::Upstream("x".into()), 502, "upstream_failed"),
            (AppError::Unavailable("x".into()), 503, "service_unavailable"),
        ];
        for (e, status, code) in cases {
            assert_eq!(e.status().as_u16(), status);
            assert_eq!(e.code(), code);
        }
    }
}
