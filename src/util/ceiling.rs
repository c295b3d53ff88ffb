//! The ingest benchmark's baseline: the fastest an HTTP handler on this machine can answer.
//!
//! `convoscope bench-ceiling` serves one axum handler that reads the whole request body and
//! answers 200, with no verification, parsing or durability. `scripts/bench_ingest.py` puts the
//! same load on it and on `convoscope serve`; the ratio says what the collector's work costs.

use std::future::Future;

use axum::Router;
use axum::body::Bytes;
use axum::extract::DefaultBodyLimit;
use axum::routing::any;
use tokio::net::TcpListener;

/// Bodies up to this size are read; the collector's default limit is lower, so the baseline
/// never refuses a request the collector would take.
const MAX_BODY: usize = 64 << 20;

async fn ok(body: Bytes) -> &'static str {
    // Reading the body is part of the baseline: the collector cannot answer before it has it.
    std::hint::black_box(body.len());
    "ok"
}

/// Serves the baseline handler on every path until `shutdown` resolves.
pub async fn serve(listener: TcpListener, shutdown: impl Future<Output = ()> + Send + 'static) -> std::io::Result<()> {
    let app = Router::new().fallback(any(ok)).layer(DefaultBodyLimit::max(MAX_BODY));
    axum::serve(listener, app).with_graceful_shutdown(shutdown).await
}
