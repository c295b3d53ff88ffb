//! Provider webhooks, `POST /webhooks/<provider>`: Meta (`X-Hub-Signature-256`, and its `GET`
//! handshake), 360dialog (`x-360dialog-signature`), Twilio (`X-Twilio-Signature`), Gupshup and
//! UltraMsg (a URL token). A body is verified before it is parsed, and answered 200 only after
//! its events are in the fsynced log; a provider is refused until its secret is configured.

use std::collections::HashMap;

use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use bytes::Bytes;
use serde_json::json;
use tracing::Instrument;

use super::auth::secret_eq;
use super::{ApiError, AppState};
use crate::config::Config;
use crate::ingest::Provider;
use crate::signature;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/webhooks/meta", get(meta_verify).post(|s, h, u, b| post(s, Path("meta".into()), h, u, b)))
        .route("/webhooks/{provider}", axum::routing::post(post))
}

/// Reads a body, turning the limit's rejection into a counted 413.
pub(super) fn body(app: &AppState, source: &str, body: Result<Bytes, BytesRejection>) -> Result<Bytes, ApiError> {
    body.map_err(|rej| {
        if rej.status() == StatusCode::PAYLOAD_TOO_LARGE {
            app.metrics.refused(source, "too_large");
            ApiError::TooLarge(app.config.max_body_bytes)
        } else {
            app.metrics.refused(source, "malformed");
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
            app.metrics.refused("meta", "bad_verify_token");
            ApiError::Forbidden("hub.verify_token does not match the configured verify token".into()).into_response()
        }
    }
}

async fn post(
    State(app): State<AppState>,
    Path(name): Path<String>,
    headers: HeaderMap,
    uri: Uri,
    raw: Result<Bytes, BytesRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let Some(provider) = Provider::of(&name) else {
        return Err(ApiError::NotFound(format!("no provider {name:?}; webhooks are /webhooks/<provider>")));
    };
    let source = provider.name();
    // A trace of the acknowledgement, exported where a trace layer is on (util::traces).
    let span = tracing::debug_span!("webhook", source);
    acknowledge(app, provider, headers, uri, raw).instrument(span).await
}

async fn acknowledge(
    app: AppState,
    provider: Provider,
    headers: HeaderMap,
    uri: Uri,
    raw: Result<Bytes, BytesRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let source = provider.name();
    let raw = body(&app, source, raw)?;
    let verified = tracing::debug_span!("verify").in_scope(|| verify(&app.config, provider, &headers, &uri, &raw));
    if let Err(refusal) = verified {
        let (reason, message) = match refusal {
            Refusal::NotConfigured(setting) => {
                // Said once per request at warn: a provider pointed at a collector that was
                // never given its secret loses every event until someone reads this.
                tracing::warn!(provider = source, setting, "refused a webhook: its secret is not configured");
                ("not_configured", format!("{source} webhooks are refused until {setting} is configured"))
            }
            Refusal::BadSignature(what) => ("bad_signature", format!("missing or wrong {what}")),
            Refusal::BadToken => ("bad_token", "missing or wrong ?token=".to_string()),
        };
        app.metrics.refused(source, reason);
        return Err(ApiError::Unauthorized(message));
    }
    let parsed =
        tracing::debug_span!("parse").in_scope(|| provider.parse(&app.normalizer, uri.query().unwrap_or(""), &raw));
    let batch = parsed.map_err(|e| {
        app.metrics.refused(source, "malformed");
        ApiError::bad_request("malformed", e.0)
    })?;
    let rejected = batch.rejected.len();
    let done = app.ingest(source, batch).instrument(tracing::debug_span!("wal.append")).await?;
    Ok(Json(
        json!({"accepted": done.accepted(), "duplicates": done.duplicate.len() - done.accepted(), "rejected": rejected}),
    ))
}

/// Why a webhook was not let through.
enum Refusal {
    /// The provider's secret setting is not set.
    NotConfigured(&'static str),
    /// The signature, named, is missing or wrong.
    BadSignature(&'static str),
    /// The URL token is missing or wrong.
    BadToken,
}

/// Checks a webhook's signature or token with the provider's secret.
fn verify(config: &Config, provider: Provider, headers: &HeaderMap, uri: &Uri, raw: &[u8]) -> Result<(), Refusal> {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let token = |expected: &str| {
        url::form_urlencoded::parse(uri.query().unwrap_or("").as_bytes())
            .any(|(k, v)| k == "token" && secret_eq(expected, &v))
    };
    let ok = match provider {
        Provider::Meta => signature::verify_meta(
            secret(&config.meta_app_secret, "meta_app_secret")?,
            raw,
            header(signature::META_HEADER),
        ),
        Provider::Dialog360 => signature::verify_360dialog(
            secret(&config.dialog360_secret, "dialog360_secret")?,
            raw,
            header(signature::DIALOG360_HEADER),
        ),
        Provider::Twilio => {
            let auth = secret(&config.twilio_auth_token, "twilio_auth_token")?;
            signature::verify_twilio(auth, &signed_url(config, headers, uri), raw, header(signature::TWILIO_HEADER))
        }
        Provider::Gupshup => token(secret(&config.gupshup_token, "gupshup_token")?),
        Provider::UltraMsg => token(secret(&config.ultramsg_token, "ultramsg_token")?),
    };
    if ok {
        return Ok(());
    }
    Err(match provider {
        Provider::Meta => Refusal::BadSignature("X-Hub-Signature-256"),
        Provider::Dialog360 => Refusal::BadSignature("x-360dialog-signature"),
        Provider::Twilio => Refusal::BadSignature("X-Twilio-Signature"),
        Provider::Gupshup | Provider::UltraMsg => Refusal::BadToken,
    })
}

/// A provider's secret, or the refusal that names its setting.
fn secret<'c>(value: &'c Option<String>, setting: &'static str) -> Result<&'c str, Refusal> {
    value.as_deref().ok_or(Refusal::NotConfigured(setting))
}

/// The URL Twilio signed: `public_url` plus the request's path and query, or without it the
/// request's own URL (`Host`, over plain HTTP: a collector behind TLS sets `public_url`).
fn signed_url(config: &Config, headers: &HeaderMap, uri: &Uri) -> String {
    let path = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    match &config.public_url {
        Some(base) => format!("{}{path}", base.trim_end_matches('/')),
        None => {
            let host = headers.get(axum::http::header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("localhost");
            format!("http://{host}{path}")
        }
    }
}
