//! Meta's WhatsApp Cloud API.

use futures::future::BoxFuture;
use serde_json::{Value, json};
use std::time::Duration;

use super::{Accepted, META_RETRYABLE, Outbound, Provider, ProviderError, retry_after, transport};

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
