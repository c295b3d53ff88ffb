//! `POST /v1/query` (role `read`) and `POST /v1/admin/flush` (role `admin`).

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Extension, Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

use super::audit::Note;
use super::auth::Role;
use super::{ApiError, AppState};
use crate::error::Error;

pub fn router() -> Router<AppState> {
    Router::new().route("/v1/query", post(query)).route("/v1/admin/flush", post(flush))
}

#[derive(Deserialize)]
struct QueryBody {
    sql: String,
}

/// `{"sql": "..."}` → `{"columns": [...], "rows": [[...]]}`. Anything but a read-only query
/// is a 400.
async fn query(
    State(app): State<AppState>,
    Extension(note): Extension<Note>,
    headers: HeaderMap,
    body: Result<Json<QueryBody>, axum::extract::rejection::JsonRejection>,
) -> Result<Response, ApiError> {
    let caller = app.tokens.authorize(&headers, Role::Read)?;
    note.caller(&caller);
    let Json(body) = body
        .map_err(|e| ApiError::bad_request("malformed", format!("expected {{\"sql\": \"...\"}}: {}", e.body_text())))?;
    note.detail(&body.sql);
    // Dropping this handler (the client went away) drops the query's task with it: the query
    // is cancelled, not left running for nobody. The answer is written on the query threads.
    let answer = app.analytics_for(&caller).query_json(&body.sql).await.map_err(|e| match e {
        Error::Query(q) => ApiError::bad_request("bad_query", q.to_string()),
        other => ApiError::Internal(other),
    })?;
    Ok(([(axum::http::header::CONTENT_TYPE, "application/json")], answer).into_response())
}

/// Seals the log and writes everything in it to object storage now.
async fn flush(
    State(app): State<AppState>,
    Extension(note): Extension<Note>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    let caller = app.tokens.authorize(&headers, Role::Admin)?;
    note.caller(&caller);
    caller.operator_only("flushing the log")?;
    let n = app.flush_now().await?;
    note.count(n);
    note.flush_after();
    Ok(Json(json!({"flushed": n})))
}
