//! The HTTP error type: one enum, a status per variant, a JSON body
//! `{"error": code, "message": text}`. Internal errors are logged in full and answered with
//! a generic message, so nothing internal leaks to a caller.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::error::Error;

/// Seconds a client is told to wait when the log cannot take more, or every query slot is
/// taken.
pub const RETRY_AFTER_SECS: u64 = 5;

/// Every way a request can fail.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{message}")]
    BadRequest { code: &'static str, message: String },
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    /// Over a rate limit; `Retry-After` says when it has room again (at least 1 s), and the
    /// body's `limit` which limit it was (`per-number`, `per-recipient`), so a sender can tell a
    /// limit of the whole batch from one person's.
    #[error("{message}")]
    TooManyRequests { message: String, limit: &'static str, retry_after_secs: u64 },
    #[error("{0}")]
    BadGateway(String),
    #[error("request body is larger than {0} bytes")]
    TooLarge(usize),
    #[error("{0}")]
    Unavailable(String),
    #[error("internal error")]
    Internal(#[from] Error),
}

impl ApiError {
    /// A 400 with a machine-readable code.
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        ApiError::BadRequest { code, message: message.into() }
    }

    fn status_and_code(&self) -> (StatusCode, &'static str) {
        match self {
            ApiError::Unauthorized(_) => (StatusCode::UNAUTHORIZED, "unauthorized"),
            ApiError::Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden"),
            ApiError::BadRequest { code, .. } => (StatusCode::BAD_REQUEST, code),
            ApiError::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            ApiError::Conflict(_) => (StatusCode::CONFLICT, "conflict"),
            ApiError::TooManyRequests { .. } => (StatusCode::TOO_MANY_REQUESTS, "rate_limited"),
            ApiError::BadGateway(_) => (StatusCode::BAD_GATEWAY, "provider_failed"),
            ApiError::TooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, "too_large"),
            ApiError::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
            ApiError::Internal(Error::WalFull { .. } | Error::WalClosed(_)) => {
                (StatusCode::SERVICE_UNAVAILABLE, "unavailable")
            }
            ApiError::Internal(Error::NotFound(_)) => (StatusCode::NOT_FOUND, "not_found"),
            ApiError::Internal(Error::QueryBusy(_)) => (StatusCode::TOO_MANY_REQUESTS, "busy"),
            ApiError::Internal(Error::QueryTimeout(_)) => (StatusCode::GATEWAY_TIMEOUT, "query_timeout"),
            ApiError::Internal(Error::QueryMemory(_)) => (StatusCode::UNPROCESSABLE_ENTITY, "query_memory"),
            ApiError::Internal(Error::QueryRefused(_)) => (StatusCode::UNPROCESSABLE_ENTITY, "query_refused"),
            ApiError::Internal(Error::Invalid(_)) => (StatusCode::BAD_REQUEST, "invalid"),
            ApiError::Internal(Error::Forbidden(_)) => (StatusCode::FORBIDDEN, "forbidden"),
            ApiError::Internal(Error::Cluster(_)) => (StatusCode::SERVICE_UNAVAILABLE, "cluster_unavailable"),
            ApiError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = self.status_and_code();
        let (retry_after, limit) = match &self {
            ApiError::TooManyRequests { retry_after_secs, limit, .. } => ((*retry_after_secs).max(1), Some(*limit)),
            _ => (RETRY_AFTER_SECS, None),
        };
        let message = match &self {
            ApiError::Internal(
                e @ (Error::WalFull { .. }
                | Error::WalClosed(_)
                | Error::NotFound(_)
                | Error::Invalid(_)
                | Error::QueryBusy(_)
                | Error::QueryTimeout(_)
                | Error::QueryMemory(_)
                | Error::QueryRefused(_)
                | Error::Forbidden(_)),
            ) => e.to_string(),
            // The cluster's addresses are the deployment's inside, not the caller's business.
            ApiError::Internal(e @ Error::Cluster(_)) => {
                tracing::error!(error = %e, "request failed on the cluster");
                "the query cluster could not run this; the server log names the scheduler".to_string()
            }
            ApiError::Internal(e) => {
                tracing::error!(error = %e, "request failed");
                "internal error; the server log has the details".to_string()
            }
            other => other.to_string(),
        };
        let body = match limit {
            Some(limit) => json!({"error": code, "message": message, "limit": limit}),
            None => json!({"error": code, "message": message}),
        };
        let mut resp = (status, Json(body)).into_response();
        if status == StatusCode::SERVICE_UNAVAILABLE || status == StatusCode::TOO_MANY_REQUESTS {
            resp.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(retry_after));
        }
        resp
    }
}
