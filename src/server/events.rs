//! `POST /v1/events`: first-party events as a JSON array or NDJSON, role `ingest`.

use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::HeaderMap;
use axum::routing::post;
use axum::{Json, Router};
use bytes::Bytes;
use serde_json::{Value, json};

use super::auth::Role;
use super::{ApiError, AppState};
use crate::ingest;

pub fn router() -> Router<AppState> {
    Router::new().route("/v1/events", post(post_events))
}

/// Keeps every valid item, reports the others by index:
/// `{"accepted": n, "duplicates": d, "rejected": [{"index": i, "error": "..."}]}`.
async fn post_events(
    State(app): State<AppState>,
    headers: HeaderMap,
    raw: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    if let Err(e) = app.tokens.authorize(&headers, Role::Ingest) {
        app.metrics.rejected("api", "unauthorized", 1);
        return Err(e);
    }
    let raw = super::webhooks::body(&app, "api", raw)?;
    let batch = ingest::first_party::parse(&app.normalizer, &raw, "api").map_err(|e| {
        app.metrics.rejected("api", "malformed", 1);
        ApiError::bad_request("malformed", e.0)
    })?;
    let rejected: Vec<Value> = batch
        .rejected
        .iter()
        .map(|r| json!({"index": r.index, "error": r.message, "reason": r.reason.as_str()}))
        .collect();
    let done = app.ingest("api", batch).await?;
    Ok(Json(json!({
        "accepted": done.accepted(),
        "duplicates": done.duplicate.len() - done.accepted(),
        "rejected": rejected,
    })))
}
