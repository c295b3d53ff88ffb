//! `POST /v1/send` (role `send`): one template message for an experiment variant.

use axum::extract::State;
use axum::extract::rejection::JsonRejection;
use axum::http::HeaderMap;
use axum::routing::post;
use axum::{Extension, Json, Router};

use super::audit::Note;
use super::auth::Role;
use super::{ApiError, App, AppState, sending_account, sending_number};
use crate::send::{SendError, SendRequest, SendResult};

pub fn router() -> Router<AppState> {
    Router::new().route("/v1/send", post(send))
}

async fn send(
    State(app): State<AppState>,
    Extension(note): Extension<Note>,
    headers: HeaderMap,
    body: Result<Json<SendRequest>, JsonRejection>,
) -> Result<Json<SendResult>, ApiError> {
    let caller = app.tokens.authorize(&headers, Role::Send)?;
    note.caller(&caller);
    let Json(req) = body.map_err(|e| ApiError::bad_request("malformed", e.body_text()))?;
    note.target(&req.experiment);
    if let Some(tenant) = &caller.tenant {
        app.may_send_for(tenant, &req.experiment)?;
    }
    let sent = app.send(&req).await?;
    note.detail(format!("variant {}", sent.variant));
    note.count(1);
    Ok(Json(sent))
}

impl App {
    /// 403 unless `tenant` owns the experiment and the number the send path sends from.
    pub fn may_send_for(&self, tenant: &crate::config::Tenant, experiment: &str) -> Result<(), ApiError> {
        let owns_experiment =
            self.analytics.experiments.get(experiment).is_some_and(|e| e.tenant.as_deref() == Some(&tenant.name));
        if !owns_experiment {
            return Err(ApiError::Forbidden(format!(
                "experiment {experiment:?} is not tenant {:?}'s (experiments.toml names its tenant)",
                tenant.name
            )));
        }
        let (account, number) = (sending_account(&self.config), sending_number(&self.config));
        if !tenant.owns(account.as_deref(), number.as_deref()) {
            return Err(ApiError::Forbidden(format!(
                "the send path's number is not tenant {:?}'s: it sends only through its own numbers",
                tenant.name
            )));
        }
        Ok(())
    }

    /// Sends through the send path and records what it produced in the write-ahead log.
    pub async fn send(&self, req: &SendRequest) -> Result<SendResult, ApiError> {
        let sender = self.sender.as_ref().ok_or_else(|| {
            ApiError::Unavailable("no provider is configured; set provider in convoscope.toml".into())
        })?;
        let out = sender.send(req).await;
        if !out.events.is_empty()
            && let Err(e) = self.store("sender", out.events).await
        {
            // The provider has the message already: answer with it, but say loudly that the
            // record is missing (receipts still attribute through the callback data).
            tracing::error!(error = %e, "a send succeeded or was refused but could not be recorded");
        }
        out.result.map_err(|e| match e {
            SendError::UnknownExperiment(_) => ApiError::NotFound(e.to_string()),
            SendError::NotRunning(_) | SendError::Erased | SendError::OptedOut | SendError::NoOptIn(_) => {
                ApiError::Conflict(e.to_string())
            }
            SendError::BadRequest(m) => ApiError::bad_request("invalid", m),
            SendError::RateLimited { limit, retry_after } => ApiError::TooManyRequests {
                message: e.to_string(),
                limit,
                retry_after_secs: retry_after.as_secs_f64().ceil() as u64,
            },
            SendError::CircuitOpen(_) => ApiError::Unavailable(e.to_string()),
            SendError::Provider(_) => ApiError::BadGateway(e.to_string()),
        })
    }
}
