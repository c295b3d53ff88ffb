//! Provider clients behind one trait, one file each: Meta's Cloud API ([`meta`]), Twilio's
//! Messages API ([`twilio`]) and UltraMsg ([`ultramsg`]).

mod meta;
mod twilio;
mod ultramsg;

pub use meta::MetaClient;
pub use twilio::TwilioClient;
pub use ultramsg::UltraMsgClient;

use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;

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
    /// Echoed back on every status webhook (`biz_opaque_callback_data`, UltraMsg `referenceId`,
    /// Twilio's status callback URL).
    pub callback_data: String,
    /// Twilio's Content template of the variant (`HX…`); the other providers name templates.
    pub content_sid: Option<String>,
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
        Some("twilio") => Some(Arc::new(TwilioClient::new(
            &settings.twilio_api_base,
            &need(&settings.twilio_account_sid, "twilio_account_sid")?,
            &need(&settings.twilio_auth_token, "twilio_auth_token")?,
            &need(&settings.twilio_from, "twilio_from")?,
            settings.twilio_status_callback.clone(),
            REQUEST_TIMEOUT,
        ))),
        Some(other) => return Err(Error::Config(format!("unknown provider {other:?}; use meta, twilio or ultramsg"))),
    })
}

/// Sends one message.
pub trait Provider: Send + Sync {
    /// Short name for metrics and logs.
    fn name(&self) -> &'static str;
    /// Sends; resolves when the provider has answered.
    fn send<'a>(&'a self, msg: &'a Outbound) -> BoxFuture<'a, Result<Accepted, ProviderError>>;
}

pub(super) fn retry_after(resp: &reqwest::Response) -> Option<Duration> {
    resp.headers().get(reqwest::header::RETRY_AFTER)?.to_str().ok()?.trim().parse::<u64>().ok().map(Duration::from_secs)
}

pub(super) fn transport(provider: &'static str, e: reqwest::Error) -> ProviderError {
    ProviderError {
        provider,
        http_status: e.status().map(|s| s.as_u16()),
        code: None,
        message: if e.is_timeout() { "timed out".into() } else { e.to_string() },
        retryable: true,
        retry_after: None,
    }
}
