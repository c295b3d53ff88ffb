//! `GET /v1/experiments` (the definitions a caller may see) and
//! `GET /v1/experiments/{name}/plan` (the sample an experiment needs), both role `read`.

use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::routing::get;
use axum::{Extension, Json, Router};
use serde::Deserialize;

use super::audit::Note;
use super::pages::authorize_read;
use super::{ApiError, AppState};
use crate::analytics::stats::power::PlanInput;

pub fn router() -> Router<AppState> {
    Router::new().route("/v1/experiments", get(list)).route("/v1/experiments/{name}/plan", get(plan))
}

async fn list(
    State(app): State<AppState>,
    Extension(note): Extension<Note>,
    headers: HeaderMap,
) -> Result<Json<serde_json::Value>, ApiError> {
    let caller = authorize_read(&app, &headers)?;
    note.caller(&caller);
    // A tenant's analytics hold its own experiments only.
    Ok(Json(serde_json::to_value(&*app.analytics_for(&caller).experiments).unwrap_or_default()))
}

#[derive(Deserialize)]
struct PlanQuery {
    baseline: f64,
    mde: f64,
    #[serde(default)]
    relative: bool,
    alpha: Option<f64>,
    power: Option<f64>,
    /// Contacts available (a recipients list's size), for the power at that size.
    recipients: Option<u64>,
    /// Sends a day.
    rate: Option<f64>,
}

async fn plan(
    State(app): State<AppState>,
    Extension(note): Extension<Note>,
    headers: HeaderMap,
    Path(name): Path<String>,
    query: Result<Query<PlanQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let caller = authorize_read(&app, &headers)?;
    note.caller(&caller);
    note.target(&name);
    let Query(q) = query.map_err(|e| ApiError::bad_request("bad_parameter", e.body_text()))?;
    let analytics = app.analytics_for(&caller);
    let e = analytics.experiments.get(&name).ok_or_else(|| ApiError::NotFound(format!("no experiment {name:?}")))?;
    let order = e.control_first();
    let input = PlanInput {
        baseline: q.baseline,
        mde: q.mde,
        relative: q.relative,
        alpha: q.alpha.unwrap_or(0.05),
        power: q.power.unwrap_or(0.8),
        weights: order.iter().map(|v| v.weight).collect(),
    };
    let plan = input.plan(q.recipients).map_err(|e| ApiError::bad_request("bad_parameter", e.to_string()))?;
    let arms: Vec<String> = order.iter().map(|v| v.name.clone()).collect();
    Ok(Json(plan.to_json(Some(&arms), q.rate)))
}
