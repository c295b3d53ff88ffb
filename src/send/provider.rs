//! Provider clients behind one trait: Meta's Cloud API and UltraMsg.

use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use serde_json::{Value, json};

use crate::config::ProviderSettings;
use crate::error::{Error, Result};

/// A template message to send.
#[derive(Debug, Clone)]
pub struct Outbound {
    /// Recipient phone number (E.164 digits).
    pub to: String,
    pub template: String,
    pub language: String,
    /// Body text parameters, in order.
    pub body: Vec<String>,
    /// Quick-reply payloads, by button index.
    pub buttons: Vec<String>,
    /// Echoed back on every status webhook (`biz_opaque_callback_data`, UltraMsg `referenceId`).
    pub callback_data: String,
}

/// What a provider said when it took the message.
#[derive(Debug, Clone, PartialEq)]
pub struct Accepted {
    pub message_id: String,
    pub status: String,
}

/// A failed provider call, classified for the retry loop.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{provider} error {} (HTTP {}): {message}", code.map(|c| c.to_string()).unwrap_or_else(|| "none".into()), http_status.map(|s| s.to_string()).unwrap_or_else(|| "none".into()))]
pub struct ProviderError {
    pub provider: &'static str,
    pub http_status: Option<u16>,
    pub code: Option<i64>,
    pub message: String,
    /// Worth trying again (throttling, server errors, timeouts, the retryable Meta codes).
    pub retryable: bool,
    /// `Retry-After` the provider asked for.
    pub retry_after: Option<Duration>,
}

/// Meta error codes worth retrying (see `whatsapp-formats.md` §3.6): service errors,
/// throttling, maintenance. Everything else is permanent for this message.
pub const META_RETRYABLE: &[i64] = &[1, 2, 4, 80007, 130429, 131000, 131016, 131056, 131057];

/// A request to a provider may take this long before it counts as failed (and is retried):
/// both providers answer in well under a second when healthy.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// The provider client the settings name, or `None` when they name none.
pub fn client(settings: &ProviderSettings) -> Result<Option<Arc<dyn Provider>>> {
    let need =
        |v: &Option<String>, name: &str| v.clone().ok_or_else(|| Error::Config(format!("provider needs {name}")));
    Ok(match settings.provider.as_deref() {
        None | Some("") => None,
        Some("meta") => Some(Arc::new(MetaClient::new(
            &settings.meta_api_base,
            &settings.meta_api_version,
            &need(&settings.meta_phone_number_id, "meta_phone_number_id")?,
            &need(&settings.meta_access_token, "meta_access_token")?,
            REQUEST_TIMEOUT,
        ))),
        Some("ultramsg") => Some(Arc::new(UltraMsgClient::new(
            &settings.ultramsg_api_base,
            &need(&settings.ultramsg_instance, "ultramsg_instance")?,
            &need(&settings.ultramsg_api_token, "ultramsg_api_token")?,
            REQUEST_TIMEOUT,
        ))),
        Some(other) => return Err(Error::Config(format!("unknown provider {other:?}; use meta or ultramsg"))),
    })
}

/// Sends one message.
pub trait Provider: Send + Sync {
    /// Short name for metrics and logs.
    fn name(&self) -> &'static str;
    /// Sends; resolves when the provider has answered.
    fn send<'a>(&'a self, msg: &'a Outbound) -> BoxFuture<'a, Result<Accepted, ProviderError>>;
}

fn retry_after(resp: &reqwest::Response) -> Option<Duration> {
    resp.headers().get(reqwest::header::RETRY_AFTER)?.to_str().ok()?.trim().parse::<u64>().ok().map(Duration::from_secs)
}

fn transport(provider: &'static str, e: reqwest::Error) -> ProviderError {
    ProviderError {
        provider,
        http_status: e.status().map(|s| s.as_u16()),
        code: None,
        message: if e.is_timeout() { "timed out".into() } else { e.to_string() },
        retryable: true,
        retry_after: None,
    }
}

/// Meta WhatsApp Cloud API: `POST {base}/{version}/{phone_number_id}/messages`.
pub struct MetaClient {
    http: reqwest::Client,
    pub base_url: String,
    pub version: String,
    pub phone_number_id: String,
    token: String,
}

impl MetaClient {
    /// A client; `timeout` bounds one request.
    pub fn new(base_url: &str, version: &str, phone_number_id: &str, token: &str, timeout: Duration) -> Self {
        MetaClient {
            http: reqwest::Client::builder().timeout(timeout).build().unwrap_or_default(),
            base_url: base_url.trim_end_matches('/').to_string(),
            version: version.into(),
            phone_number_id: phone_number_id.into(),
            token: token.into(),
        }
    }

    /// The request body Meta expects for a template with body and quick-reply parameters.
    pub fn body(msg: &Outbound) -> Value {
        let mut components = Vec::new();
        if !msg.body.is_empty() {
            let params: Vec<Value> = msg.body.iter().map(|t| json!({"type": "text", "text": t})).collect();
            components.push(json!({"type": "body", "parameters": params}));
        }
        for (i, p) in msg.buttons.iter().enumerate() {
            components.push(json!({"type": "button", "sub_type": "quick_reply", "index": i.to_string(),
                "parameters": [{"type": "payload", "payload": p}]}));
        }
        json!({
            "messaging_product": "whatsapp",
            "recipient_type": "individual",
            "to": msg.to,
            "type": "template",
            "template": {"name": msg.template, "language": {"code": msg.language}, "components": components},
            "biz_opaque_callback_data": msg.callback_data,
        })
    }
}

impl Provider for MetaClient {
    fn name(&self) -> &'static str {
        "meta"
    }

    fn send<'a>(&'a self, msg: &'a Outbound) -> BoxFuture<'a, Result<Accepted, ProviderError>> {
        Box::pin(async move {
            let url = format!("{}/{}/{}/messages", self.base_url, self.version, self.phone_number_id);
            let resp = self
                .http
                .post(&url)
                .bearer_auth(&self.token)
                .json(&Self::body(msg))
                .send()
                .await
                .map_err(|e| transport("meta", e))?;
            let status = resp.status();
            let after = retry_after(&resp);
            let v: Value = resp.json().await.unwrap_or(Value::Null);
            if status.is_success() {
                let m = &v["messages"][0];
                return match m["id"].as_str() {
                    Some(id) => Ok(Accepted {
                        message_id: id.to_string(),
                        status: m["message_status"].as_str().unwrap_or("accepted").to_string(),
                    }),
                    None => Err(ProviderError {
                        provider: "meta",
                        http_status: Some(status.as_u16()),
                        code: None,
                        message: "success without a message id".into(),
                        retryable: false,
                        retry_after: None,
                    }),
                };
            }
            let code = v["error"]["code"].as_i64();
            let retryable =
                status.as_u16() == 429 || status.is_server_error() || code.is_some_and(|c| META_RETRYABLE.contains(&c));
            Err(ProviderError {
                provider: "meta",
                http_status: Some(status.as_u16()),
                code,
                message: v["error"]["message"].as_str().unwrap_or("no error message").to_string(),
                retryable,
                retry_after: after,
            })
        })
    }
}

/// UltraMsg: `POST {base}/{instance}/messages/chat` (form-encoded). UltraMsg has no templates;
/// the body parameters are sent as the text, one per line.
pub struct UltraMsgClient {
    http: reqwest::Client,
    pub base_url: String,
    pub instance: String,
    token: String,
}

impl UltraMsgClient {
    /// A client; `timeout` bounds one request.
    pub fn new(base_url: &str, instance: &str, token: &str, timeout: Duration) -> Self {
        UltraMsgClient {
            http: reqwest::Client::builder().timeout(timeout).build().unwrap_or_default(),
            base_url: base_url.trim_end_matches('/').to_string(),
            instance: instance.into(),
            token: token.into(),
        }
    }
}

impl Provider for UltraMsgClient {
    fn name(&self) -> &'static str {
        "ultramsg"
    }

    fn send<'a>(&'a self, msg: &'a Outbound) -> BoxFuture<'a, Result<Accepted, ProviderError>> {
        Box::pin(async move {
            let url = format!("{}/{}/messages/chat", self.base_url, self.instance);
            let to = format!("+{}", msg.to.trim_start_matches('+'));
            let body = msg.body.join("\n");
            let form =
                [("token", self.token.as_str()), ("to", &to), ("body", &body), ("referenceId", &msg.callback_data)];
            let resp = self.http.post(&url).form(&form).send().await.map_err(|e| transport("ultramsg", e))?;
            let status = resp.status();
            let after = retry_after(&resp);
            let v: Value = resp.json().await.unwrap_or(Value::Null);
            // UltraMsg reports errors with HTTP 200 and an `error` field.
            let sent = matches!(&v["sent"], Value::String(s) if s == "true") || v["sent"] == Value::Bool(true);
            if status.is_success() && sent {
                let id = match &v["id"] {
                    Value::String(s) => s.clone(),
                    Value::Number(n) => n.to_string(),
                    _ => String::new(),
                };
                return Ok(Accepted { message_id: format!("ultramsg:{}", id), status: "queued".into() });
            }
            Err(ProviderError {
                provider: "ultramsg",
                http_status: Some(status.as_u16()),
                code: None,
                message: v["error"].as_str().map(str::to_string).unwrap_or_else(|| v.to_string()),
                retryable: status.as_u16() == 429 || status.is_server_error(),
                retry_after: after,
            })
        })
    }
}
