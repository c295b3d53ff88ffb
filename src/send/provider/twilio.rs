//! Twilio's Messages API: `POST {base}/2010-04-01/Accounts/{AccountSid}/Messages.json`,
//! form-encoded, with basic auth. A WhatsApp template is a Content template (`ContentSid`,
//! set per variant as `content_sid`); its variables are numbered from 1: the body parameters
//! first, then the quick-reply payloads. Twilio has no callback data: it goes into the status
//! callback URL's query (`?cb=…`), which Twilio signs and calls back with every status.

use futures::future::BoxFuture;
use serde_json::{Map, Value};
use std::time::Duration;

use super::{Accepted, Outbound, Provider, ProviderError, retry_after, transport};
use crate::experiments::CALLBACK_QUERY_PARAM;

/// Twilio's error for too many requests: worth trying again after the wait it asks for.
const TOO_MANY_REQUESTS: i64 = 20429;

pub struct TwilioClient {
    http: reqwest::Client,
    pub base_url: String,
    pub account_sid: String,
    auth_token: String,
    /// `whatsapp:+E164` of the sender, or a Messaging Service (`MG…`).
    pub from: String,
    /// Where Twilio posts the statuses (`public_url` + `/webhooks/twilio`); none: the
    /// sender's or Messaging Service's own setting in Twilio applies.
    pub status_callback: Option<String>,
}

impl TwilioClient {
    /// A client; `timeout` bounds one request.
    pub fn new(
        base_url: &str,
        account_sid: &str,
        auth_token: &str,
        from: &str,
        status_callback: Option<String>,
        timeout: Duration,
    ) -> Self {
        TwilioClient {
            http: reqwest::Client::builder().timeout(timeout).build().unwrap_or_default(),
            base_url: base_url.trim_end_matches('/').to_string(),
            account_sid: account_sid.into(),
            auth_token: auth_token.into(),
            from: from.into(),
            status_callback,
        }
    }

    /// The form Twilio expects for a Content template send.
    pub fn form(&self, msg: &Outbound, content_sid: &str) -> Vec<(&'static str, String)> {
        let mut vars = Map::new();
        for (i, v) in msg.body.iter().chain(&msg.buttons).enumerate() {
            vars.insert((i + 1).to_string(), Value::String(v.clone()));
        }
        let mut form =
            vec![("To", format!("whatsapp:+{}", msg.to.trim_start_matches('+'))), ("ContentSid", content_sid.into())];
        if self.from.starts_with("MG") {
            form.push(("MessagingServiceSid", self.from.clone()));
        } else {
            form.push(("From", self.from.clone()));
        }
        if !vars.is_empty() {
            form.push(("ContentVariables", Value::Object(vars).to_string()));
        }
        if let Some(cb) = &self.status_callback {
            let query: String = url::form_urlencoded::Serializer::new(String::new())
                .append_pair(CALLBACK_QUERY_PARAM, &msg.callback_data)
                .finish();
            form.push(("StatusCallback", format!("{cb}?{query}")));
        }
        form
    }
}

fn refused(http_status: Option<u16>, code: Option<i64>, message: String, retryable: bool) -> ProviderError {
    ProviderError { provider: "twilio", http_status, code, message, retryable, retry_after: None }
}

impl Provider for TwilioClient {
    fn name(&self) -> &'static str {
        "twilio"
    }

    fn send<'a>(&'a self, msg: &'a Outbound) -> BoxFuture<'a, Result<Accepted, ProviderError>> {
        Box::pin(async move {
            let Some(content_sid) = msg.content_sid.as_deref() else {
                return Err(refused(
                    None,
                    None,
                    format!("variant of template {} has no content_sid, which Twilio sends by", msg.template),
                    false,
                ));
            };
            let url = format!("{}/2010-04-01/Accounts/{}/Messages.json", self.base_url, self.account_sid);
            let resp = self
                .http
                .post(&url)
                .basic_auth(&self.account_sid, Some(&self.auth_token))
                .form(&self.form(msg, content_sid))
                .send()
                .await
                .map_err(|e| transport("twilio", e))?;
            let status = resp.status();
            let after = retry_after(&resp);
            let v: Value = resp.json().await.unwrap_or(Value::Null);
            if status.is_success() {
                return match v["sid"].as_str() {
                    Some(sid) => Ok(Accepted {
                        message_id: sid.to_string(),
                        status: v["status"].as_str().unwrap_or("queued").to_string(),
                    }),
                    None => Err(refused(Some(status.as_u16()), None, "success without a message sid".into(), false)),
                };
            }
            let code = v["code"].as_i64();
            let retryable = status.as_u16() == 429 || status.is_server_error() || code == Some(TOO_MANY_REQUESTS);
            let mut e = refused(
                Some(status.as_u16()),
                code,
                v["message"].as_str().unwrap_or("no error message").to_string(),
                retryable,
            );
            e.retry_after = after;
            Err(e)
        })
    }
}
