//! The edge's metrics: every webhook and `/v1` request counted by status code and timed, by
//! provider or by route as declared, so "webhooks made durable" and their acknowledgement
//! latency can be measured where Meta measures them.

use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::Response;

use super::AppState;

/// The `/v1` routes as declared: each gets its series at zero from the start.
pub const API_ROUTES: &[&str] = &[
    "/v1/events",
    "/v1/query",
    "/v1/send",
    "/v1/reports/{name}",
    "/v1/experiments",
    "/v1/experiments/{name}/plan",
    "/v1/consent/{phone}",
    "/v1/admin/flush",
    "/v1/admin/erase",
];

/// Times a request and counts its answer.
pub async fn requests(State(app): State<AppState>, req: Request, next: Next) -> Response {
    let route = req.extensions().get::<MatchedPath>().map(|m| m.as_str().to_string());
    // The provider is the path's last segment (`/webhooks/twilio`); the route as declared
    // (`/webhooks/{provider}`) would not say which.
    let webhook = (req.method() == Method::POST)
        .then(|| req.uri().path().strip_prefix("/webhooks/").map(str::to_string))
        .flatten();
    let started = Instant::now();
    let response = next.run(req).await;
    let seconds = started.elapsed().as_secs_f64();
    let code = response.status().as_u16();
    match (webhook, route.as_deref()) {
        (Some(source), Some(_)) => app.metrics.webhook_answered(&source, code, seconds),
        (None, Some(r)) if r.starts_with("/v1/") => app.metrics.api_answered(r, code, seconds),
        _ => {}
    }
    response
}
