//! `/healthz`, `/readyz` and `/metrics`.

use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;

use super::{ApiError, AppState};

/// How long the readiness probe waits for the object store.
const PROBE_TIMEOUT: Duration = Duration::from_secs(3);

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
}

/// 200 when the log takes writes and the object store answers, else 503 saying which not.
async fn readyz(State(app): State<AppState>) -> Result<&'static str, ApiError> {
    if !app.wal.shared().healthy() {
        let wal = app.wal.clone();
        // A failed probe leaves the log unhealthy; status() below says why.
        let _ = tokio::task::spawn_blocking(move || wal.probe_disk()).await;
    }
    app.wal.shared().status().map_err(ApiError::Unavailable)?;
    match tokio::time::timeout(PROBE_TIMEOUT, app.storage.probe()).await {
        Ok(Ok(())) => Ok("ready"),
        Ok(Err(e)) => Err(ApiError::Unavailable(format!("object store is not writable: {e}"))),
        Err(_) => Err(ApiError::Unavailable("object store did not answer in time".into())),
    }
}

async fn metrics(State(app): State<AppState>) -> impl IntoResponse {
    let wal = app.wal.shared();
    app.metrics.wal_bytes.set(wal.bytes.load(std::sync::atomic::Ordering::Relaxed) as i64);
    app.metrics.wal_oldest_segment_age_seconds.set(wal.oldest_segment_age().as_secs_f64());
    // Counted where the index fails (below the metrics), carried over here.
    let dedup = crate::wal::DEDUP_ERRORS.load(std::sync::atomic::Ordering::Relaxed);
    let counted = app.metrics.errors_total.with_label_values(&["dedup_index"]);
    if dedup > counted.get() {
        counted.inc_by(dedup - counted.get());
    }
    (StatusCode::OK, [(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], app.metrics.render())
}
