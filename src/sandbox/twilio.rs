//! The sandbox as Twilio: its Messages API (`POST /2010-04-01/Accounts/{sid}/Messages.json`,
//! form-encoded, basic auth, a Content SID) and its webhooks: a form per status to the status
//! callback URL the send gave, and a form per customer message to `/webhooks/twilio`, each
//! signed with `X-Twilio-Signature` over the URL it is posted to.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde_json::{Value, json};

use super::{Refusal, Sandbox, SandboxConfig, Shared, admit, deliver_as, simulate};
use crate::experiments::CALLBACK_QUERY_PARAM;
use crate::signature::{TWILIO_HEADER, sign_twilio};

/// The WhatsApp sender the sandbox's Twilio account sends from.
const SENDER: &str = "whatsapp:+15550000000";

fn twilio_error(status: StatusCode, code: i64, message: &str) -> Response {
    let body = json!({"code": code, "message": message,
        "more_info": format!("https://www.twilio.com/docs/errors/{code}"), "status": status.as_u16()});
    let mut r = (status, Json(body)).into_response();
    if status == StatusCode::TOO_MANY_REQUESTS {
        r.headers_mut().insert(header::RETRY_AFTER, axum::http::HeaderValue::from_static("0"));
    }
    r
}

pub(super) async fn send(
    State(sb): State<Arc<Sandbox>>,
    Path(account_sid): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    sb.shared.requests.fetch_add(1, Ordering::SeqCst);
    if headers.get(header::AUTHORIZATION).is_none() {
        return twilio_error(StatusCode::UNAUTHORIZED, 20003, "Authenticate");
    }
    let form: HashMap<String, String> = url::form_urlencoded::parse(&body).into_owned().collect();
    let to = form.get("To").map(|t| t.trim_start_matches("whatsapp:").trim_start_matches('+')).unwrap_or_default();
    if to.is_empty() {
        return twilio_error(StatusCode::BAD_REQUEST, 21211, "The 'To' number is not a valid phone number.");
    }
    if form.get("ContentSid").is_none_or(|c| !c.starts_with("HX")) {
        return twilio_error(StatusCode::BAD_REQUEST, 21655, "The ContentSid is Invalid");
    }
    match admit(&sb, to) {
        Err(Refusal::ServerError) => {
            return twilio_error(StatusCode::INTERNAL_SERVER_ERROR, 20500, "Internal Server Error");
        }
        Err(Refusal::NoTemplate) => return twilio_error(StatusCode::BAD_REQUEST, 21655, "The ContentSid is Invalid"),
        Err(Refusal::Throttled) => return twilio_error(StatusCode::TOO_MANY_REQUESTS, 20429, "Too Many Requests"),
        Ok(()) => {}
    }
    let n = sb.shared.counter.fetch_add(1, Ordering::SeqCst) + 1;
    let sid = format!("SM{:016x}{:016x}", sb.cfg.seed, n);
    let callback_url = form.get("StatusCallback").cloned();
    let callback = callback_url
        .as_deref()
        .and_then(|u| u.split_once('?'))
        .and_then(|(_, q)| {
            url::form_urlencoded::parse(q.as_bytes())
                .find(|(k, _)| k == CALLBACK_QUERY_PARAM)
                .map(|(_, v)| v.into_owned())
        })
        .unwrap_or_default();
    if let Some(url) = callback_url
        && let Ok(mut urls) = sb.shared.status_urls.lock()
    {
        urls.insert(sid.clone(), url);
    }
    simulate(&sb, sid.clone(), to.to_string(), callback, "marketing");
    let created = json!({"account_sid": account_sid, "api_version": "2010-04-01", "sid": sid, "status": "queued",
        "to": form.get("To"), "from": form.get("From"), "direction": "outbound-api", "error_code": null, "error_message": null});
    (StatusCode::CREATED, Json(created)).into_response()
}

/// Twilio's code for a failure the simulation drew as Meta's.
fn error_code(meta: i64) -> (&'static str, i64) {
    match meta {
        131049 => ("failed", 63049),
        _ => ("undelivered", 63024),
    }
}

/// Posts every status and customer message of a batch as Twilio does: one signed form each.
pub(super) async fn deliver_all(
    http: &reqwest::Client,
    cfg: &SandboxConfig,
    shared: &Shared,
    statuses: Vec<Value>,
    messages: Vec<Value>,
) {
    let inbound_url = format!("{}/webhooks/twilio", cfg.collector_url);
    let account = format!("AC{:032x}", cfg.seed);
    for s in statuses {
        let sid = s["id"].as_str().unwrap_or_default();
        let mut status = s["status"].as_str().unwrap_or_default().to_string();
        let to = format!("whatsapp:+{}", s["recipient_id"].as_str().unwrap_or_default());
        let mut form = vec![
            ("MessageSid", sid.to_string()),
            ("AccountSid", account.clone()),
            ("From", SENDER.to_string()),
            ("To", to),
            ("ChannelPrefix", "whatsapp".to_string()),
            ("ApiVersion", "2010-04-01".to_string()),
        ];
        if let Some(code) = s["errors"][0]["code"].as_i64() {
            let (name, twilio_code) = error_code(code);
            status = name.to_string();
            form.push(("ErrorCode", twilio_code.to_string()));
        }
        form.push(("MessageStatus", status.clone()));
        form.push(("SmsStatus", status));
        let url =
            shared.status_urls.lock().ok().and_then(|u| u.get(sid).cloned()).unwrap_or_else(|| inbound_url.clone());
        post_form(http, cfg, &url, &form).await;
    }
    for m in messages {
        let from = m["from"].as_str().unwrap_or_default();
        let text = m["button"]["text"].as_str().unwrap_or_default().to_string();
        let form = vec![
            ("MessageSid", format!("SM{}", m["id"].as_str().unwrap_or_default().trim_start_matches("SM"))),
            ("AccountSid", account.clone()),
            ("From", format!("whatsapp:+{from}")),
            ("To", SENDER.to_string()),
            ("WaId", from.to_string()),
            ("ProfileName", "Sandbox Customer".to_string()),
            ("Body", text.clone()),
            ("NumMedia", "0".to_string()),
            ("MessageType", "button".to_string()),
            ("ButtonText", text),
            ("ButtonPayload", m["button"]["payload"].as_str().unwrap_or_default().to_string()),
            ("OriginalRepliedMessageSid", m["context"]["id"].as_str().unwrap_or_default().to_string()),
            ("SmsStatus", "received".to_string()),
            ("ApiVersion", "2010-04-01".to_string()),
        ];
        post_form(http, cfg, &inbound_url, &form).await;
    }
}

async fn post_form(http: &reqwest::Client, cfg: &SandboxConfig, url: &str, form: &[(&str, String)]) {
    let body = url::form_urlencoded::Serializer::new(String::new()).extend_pairs(form).finish();
    let sig = sign_twilio(&cfg.app_secret, url, body.as_bytes());
    deliver_as(http, url, "application/x-www-form-urlencoded", body, Some((TWILIO_HEADER, sig)), None).await
}
