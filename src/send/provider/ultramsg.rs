//! UltraMsg's API.

use futures::future::BoxFuture;
use serde_json::Value;
use std::time::Duration;

use super::{Accepted, Outbound, Provider, ProviderError, retry_after, transport};

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
