//! The settings of the send path's provider client, taken from [`Config`] (the send path
//! builds the client; configuration builds nothing).

use super::Config;

/// The settings a provider client is built from ([`Config::provider`]).
#[derive(Debug, Clone, PartialEq)]
pub struct ProviderSettings {
    /// `meta`, `twilio` or `ultramsg`; `None`: no client, `/v1/send` answers 503.
    pub provider: Option<String>,
    pub meta_api_base: String,
    pub meta_api_version: String,
    pub meta_phone_number_id: Option<String>,
    pub meta_access_token: Option<String>,
    pub ultramsg_api_base: String,
    pub ultramsg_instance: Option<String>,
    pub ultramsg_api_token: Option<String>,
    pub twilio_api_base: String,
    pub twilio_account_sid: Option<String>,
    pub twilio_auth_token: Option<String>,
    pub twilio_from: Option<String>,
    /// Where Twilio posts a send's statuses: `public_url` + `/webhooks/twilio`.
    pub twilio_status_callback: Option<String>,
}

impl Config {
    /// What the send path needs to build its provider client.
    pub fn provider(&self) -> ProviderSettings {
        ProviderSettings {
            provider: self.provider.clone().filter(|p| !p.is_empty()),
            meta_api_base: self.meta_api_base.clone(),
            meta_api_version: self.meta_api_version.clone(),
            meta_phone_number_id: self.meta_phone_number_id.clone(),
            meta_access_token: self.meta_access_token.clone(),
            ultramsg_api_base: self.ultramsg_api_base.clone(),
            ultramsg_instance: self.ultramsg_instance.clone(),
            ultramsg_api_token: self.ultramsg_api_token.clone(),
            twilio_api_base: self.twilio_api_base.clone(),
            twilio_account_sid: self.twilio_account_sid.clone(),
            twilio_auth_token: self.twilio_auth_token.clone(),
            twilio_from: self.twilio_from.clone(),
            twilio_status_callback: self
                .public_url
                .as_deref()
                .map(|base| format!("{}/webhooks/twilio", base.trim_end_matches('/'))),
        }
    }
}
