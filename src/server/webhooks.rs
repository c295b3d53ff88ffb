//! Provider webhooks: Meta (`GET` handshake, `POST` signed with `X-Hub-Signature-256`) and
//! UltraMsg (URL token). The body is verified before it is parsed, and answered 200 only
//! after its events are in the fsynced log.

use std::collections::HashMap;

use axum::extract::rejection::BytesRejection;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use bytes::Bytes;
use serde_json::json;

use super::auth::secret_eq;
use super::{ApiError, AppState};
use crate::ingest;
use crate::signature;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/webhooks/meta", get(meta_verify).post(meta_post))
        .route("/webhooks/ultramsg", axum::routing::post(ultramsg_post))
}

/// Reads a body, turning the limit's rejection into a counted 413.
pub(super) fn body(app: &AppState, source: &str, body: Result<Bytes, BytesRejection>) -> Result<Bytes, ApiError> {
    body.map_err(|rej| {
        if rej.status() == StatusCode::PAYLOAD_TOO_LARGE {
            app.metrics.rejected(source, "too_large", 1);
            ApiError::TooLarge(app.config.max_body_bytes)
        } else {
            app.metrics.rejected(source, "malformed", 1);
            ApiError::bad_request("malformed", rej.body_text())
        }
    })
}

/// Meta's subscription handshake: echo `hub.challenge` when `hub.verify_token` matches.
async fn meta_verify(State(app): State<AppState>, Query(q): Query<HashMap<String, String>>) -> impl IntoResponse {
    let ok = match (&app.config.meta_verify_token, q.get("hub.verify_token"), q.get("hub.mode")) {
        (Some(expected), Some(got), Some(mode)) => mode == "subscribe" && secret_eq(expected, got),
        _ => false,
    };
    match (ok, q.get("hub.challenge")) {
        (true, Some(ch)) => (StatusCode::OK, ch.clone()).into_response(),
        _ => {
            app.metrics.rejected("meta", "bad_verify_token", 1);
            ApiError::Forbidden("hub.verify_token does not match the configured verify token".into()).into_response()
        }
    }
}

async fn meta_post(
    State(app): State<AppState>,
    headers: HeaderMap,
    raw: Result<Bytes, BytesRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let raw = body(&app, "meta", raw)?;
    let Some(secret) = app.config.meta_app_secret.as_deref() else {
        app.metrics.rejected("meta", "not_configured", 1);
        return Err(ApiError::Unauthorized("Meta webhooks are refused until meta_app_secret is configured".into()));
    };
    let sig = headers.get(signature::META_HEADER).and_then(|v| v.to_str().ok());
    if !signature::verify_meta(secret, &raw, sig) {
        app.metrics.rejected("meta", "bad_signature", 1);
        return Err(ApiError::Unauthorized("missing or wrong X-Hub-Signature-256".into()));
    }
    let n = app.normalizer.clone();
    let batch = ingest::meta::parse(&n, &raw).map_err(|e| {
        app.metrics.rejected("meta", "malformed", 1);
        ApiError::bad_request("malformed", e.0)
    })?;
    let rejected = batch.rejected.len();
    let done = app.ingest("meta", batch).await?;
    Ok(Json(
        json!({"accepted": done.accepted(), "duplicates": done.duplicate.len() - done.accepted(), "rejected": rejected}),
    ))
}

async fn ultramsg_post(
    State(app): State<AppState>,
    Query(q): Query<HashMap<String, String>>,
    raw: Result<Bytes, BytesRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let raw = body(&app, "ultramsg", raw)?;
    let ok = match (&app.config.ultramsg_token, q.get("token")) {
        (Some(expected), Some(got)) => secret_eq(expected, got),
        _ => false,
    };
    if !ok {
        app.metrics.rejected("ultramsg", "bad_token", 1);
        return Err(ApiError::Unauthorized("missing or wrong ?token= (or ultramsg_token is not configured)".into()));
    }
    let batch = ingest::ultramsg::parse(&app.normalizer, &raw).map_err(|e| {
        app.metrics.rejected("ultramsg", "malformed", 1);
        ApiError::bad_request("malformed", e.0)
    })?;
    let rejected = batch.rejected.len();
    let done = app.ingest("ultramsg", batch).await?;
    Ok(Json(
        json!({"accepted": done.accepted(), "duplicates": done.duplicate.len() - done.accepted(), "rejected": rejected}),
    ))
}
