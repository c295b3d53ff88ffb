//! Normalisation: provider webhooks and first-party events in, [`Event`]s out.
//!
//! One module per source: [`meta`] (Cloud API webhooks), [`dialog360`] and [`gupshup`]
//! (Meta's JSON relayed), [`twilio`], [`ultramsg`], and [`first_party`] (`POST /v1/events`).
//! Each turns a raw body into a [`Batch`]: the events to store, plus the items it refused
//! with a reason. A body that cannot be read at all is a [`ParseError`]. Verification
//! (signatures, tokens) happens before this, in the server; [`Provider`] names the webhook
//! sources for both.

pub mod dialog360;
pub mod first_party;
pub mod gupshup;
pub mod meta;
pub mod twilio;
pub mod ultramsg;

use serde::Deserialize;

use crate::event::{Event, now_micros};
use crate::pii::PiiKey;

/// A provider whose webhooks the collector reads: one module each, one arm here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Provider {
    Meta,
    Dialog360,
    Gupshup,
    Twilio,
    UltraMsg,
}

impl Provider {
    /// Every provider, in the order the docs list them.
    pub const ALL: [Provider; 5] =
        [Provider::Meta, Provider::Dialog360, Provider::Gupshup, Provider::Twilio, Provider::UltraMsg];

    /// Its name: the `source` of its events, its metric label and its path, `/webhooks/<name>`.
    pub fn name(self) -> &'static str {
        match self {
            Provider::Meta => "meta",
            Provider::Dialog360 => "360dialog",
            Provider::Gupshup => "gupshup",
            Provider::Twilio => "twilio",
            Provider::UltraMsg => "ultramsg",
        }
    }

    /// The provider of a name.
    pub fn of(name: &str) -> Option<Provider> {
        Provider::ALL.into_iter().find(|p| p.name() == name)
    }

    /// Normalises one verified webhook: its URL's query (Twilio's callback data) and body.
    pub fn parse(self, n: &Normalizer, query: &str, body: &[u8]) -> Result<Batch, ParseError> {
        match self {
            Provider::Meta => meta::parse(n, body),
            Provider::Dialog360 => dialog360::parse(n, body),
            Provider::Gupshup => gupshup::parse(n, body),
            Provider::Twilio => twilio::parse(n, query, body),
            Provider::UltraMsg => ultramsg::parse(n, body),
        }
    }
}

/// Settings and secrets normalisation needs.
#[derive(Debug, Clone)]
pub struct Normalizer {
    pii: PiiKey,
    opt_out_keywords: Vec<String>,
    store_message_text: bool,
    max_future_micros: i64,
}

/// Why one event or item was refused (a bounded set: it is a metric label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RejectReason {
    /// The item is not valid JSON or not of the expected shape.
    Malformed,
    /// Its timestamp is further in the future than allowed.
    FutureTimestamp,
    /// A required field is missing or a field has the wrong type or value.
    InvalidEvent,
    /// A provider's item of a kind convoscope does not store (a Meta webhook field such as
    /// `security` or `calls`): counted, never silently dropped.
    UnsupportedField,
}

impl RejectReason {
    /// The metric label of this reason.
    pub fn as_str(self) -> &'static str {
        match self {
            RejectReason::Malformed => "malformed",
            RejectReason::FutureTimestamp => "future_timestamp",
            RejectReason::InvalidEvent => "invalid_event",
            RejectReason::UnsupportedField => "unsupported_field",
        }
    }
}

/// One refused item of a batch.
#[derive(Debug, Clone, PartialEq)]
pub struct Rejected {
    /// Position of the item in the request (array index or NDJSON record).
    pub index: usize,
    pub reason: RejectReason,
    pub message: String,
}

/// What a body normalised into.
#[derive(Debug, Default, PartialEq)]
pub struct Batch {
    pub events: Vec<Event>,
    pub rejected: Vec<Rejected>,
}

/// A body that could not be read at all (answered with 400).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ParseError(pub String);

impl Normalizer {
    /// A normaliser with the given PII key, opt-out keywords (matched case-insensitively
    /// against the whole trimmed message), text storage switch, and future tolerance.
    pub fn new(pii: PiiKey, opt_out_keywords: &[String], store_message_text: bool, max_future_secs: i64) -> Self {
        Normalizer {
            pii,
            opt_out_keywords: opt_out_keywords.iter().map(|k| k.trim().to_uppercase()).collect(),
            store_message_text,
            max_future_micros: max_future_secs.saturating_mul(1_000_000),
        }
    }

    /// The PII key, for callers that pseudonymise numbers themselves (the send path).
    pub fn pii(&self) -> &PiiKey {
        &self.pii
    }

    /// Sets `contact_key` and `country` from a phone number; the number itself is dropped.
    pub(crate) fn set_contact(&self, e: &mut Event, phone: Option<&str>) {
        if let Some((key, country)) = phone.and_then(|p| self.pii.contact(p)) {
            e.contact_key = Some(key);
            e.country = country.map(str::to_string);
        }
    }

    /// [`Normalizer::set_contact`], or, without a phone number, the contact's business-scoped
    /// user id ([`PiiKey::contact_of_user`]): counted, not dropped.
    pub(crate) fn set_contact_or_user(&self, e: &mut Event, phone: Option<&str>, user_id: Option<&str>) {
        self.set_contact(e, phone);
        if e.contact_key.is_none() {
            e.contact_key = user_id.and_then(|u| self.pii.contact_of_user(u));
        }
    }

    /// Whether a message text is an opt-out keyword.
    pub(crate) fn is_opt_out(&self, text: &str) -> bool {
        let t = text.trim().to_uppercase();
        !t.is_empty() && self.opt_out_keywords.contains(&t)
    }

    pub(crate) fn store_text(&self) -> bool {
        self.store_message_text
    }

    /// Whether an event time lies further in the future than allowed (the one rule for every
    /// source).
    pub(crate) fn too_far_ahead(&self, occurred_at: i64, now: i64) -> bool {
        occurred_at > now.saturating_add(self.max_future_micros)
    }

    /// Splits events into those to keep and those too far in the future, appending the latter
    /// to `rejected` (indexed by position among the batch's events: webhook items have no
    /// request index a sender could use).
    pub(crate) fn check_times(&self, batch: &mut Batch, now: i64) {
        // In place: events are ~700 bytes, and nearly every batch keeps all of them.
        let Batch { events, rejected } = batch;
        let mut index = 0;
        events.retain(|e| {
            let keep = !self.too_far_ahead(e.occurred_at, now);
            if !keep {
                rejected.push(Rejected {
                    index,
                    reason: RejectReason::FutureTimestamp,
                    message: format!(
                        "event {} occurred_at is more than {}s in the future",
                        e.event_id,
                        self.max_future_micros / 1_000_000
                    ),
                });
            }
            index += 1;
            keep
        });
    }

    /// Builds the `consent.opt_out` of marketing that Meta's error 131050 on `failed` implies
    /// (the person stopped marketing messages from the business).
    pub(crate) fn stopped_marketing(&self, failed: &Event) -> Event {
        opt_out_of(failed, format!("{}:131050:opt_out", failed.event_id), Some("marketing"))
    }

    /// Builds the `consent.opt_out` event a STOP-like reply implies.
    pub(crate) fn opt_out_event(&self, from: &Event) -> Event {
        let id = from.event_id.rsplit_once(':').map(|(p, _)| p).unwrap_or(&from.event_id);
        opt_out_of(from, format!("{id}:opt_out"), None)
    }
}

/// The customer's `consent.opt_out` (of `category`, or of all) that `from` implies: its time,
/// source, owner, message and contact.
fn opt_out_of(from: &Event, event_id: String, category: Option<&str>) -> Event {
    let mut e = Event::new(event_id, "consent.opt_out", from.occurred_at, from.received_at, &from.source);
    e.account_id = from.account_id.clone();
    e.phone_number_id = from.phone_number_id.clone();
    e.message_id = from.message_id.clone();
    e.contact_key = from.contact_key.clone();
    e.country = from.country.clone();
    e.category = category.map(str::to_string);
    e.actor = Some("customer".into());
    e
}

/// Parses provider timestamps, which come as strings or numbers of Unix seconds.
#[derive(Debug, Clone, Default)]
pub(crate) enum UnixTime {
    Text(String),
    Number(f64),
    #[default]
    Missing,
}

// By hand rather than `#[serde(untagged)]`: an untagged enum buffers every value before trying
// its variants, and a webhook carries one timestamp per status.
impl<'de> Deserialize<'de> for UnixTime {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = UnixTime;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("Unix seconds as a string or a number")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<UnixTime, E> {
                Ok(UnixTime::Text(v.to_string()))
            }
            fn visit_string<E: serde::de::Error>(self, v: String) -> Result<UnixTime, E> {
                Ok(UnixTime::Text(v))
            }
            fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<UnixTime, E> {
                Ok(UnixTime::Number(v))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<UnixTime, E> {
                Ok(UnixTime::Number(v as f64))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<UnixTime, E> {
                Ok(UnixTime::Number(v as f64))
            }
        }
        d.deserialize_any(V)
    }
}

impl UnixTime {
    /// Microseconds since the epoch, if present and numeric.
    pub(crate) fn micros(&self) -> Option<i64> {
        let secs = match self {
            UnixTime::Text(s) => s.trim().parse::<f64>().ok()?,
            UnixTime::Number(n) => *n,
            UnixTime::Missing => return None,
        };
        // Seconds past the year 5138 are milliseconds (Gupshup, some BSPs, send them so);
        // read as seconds, they would be refused as future and replaced by the receive time.
        let secs = if secs > 100_000_000_000.0 { secs / 1000.0 } else { secs };
        // Beyond year 9999 is not a timestamp but garbage; refuse rather than overflow.
        if !secs.is_finite() || !(0.0..=253_402_300_799.0).contains(&secs) {
            return None;
        }
        Some((secs * 1_000_000.0).round() as i64)
    }
}

/// Bytes reserved for a JSON object of attributes: a status with callback data and pricing
/// takes ~90.
const ATTRIBUTES_CAPACITY: usize = 128;

/// Attributes written as JSON while they are collected, for callers that add their keys in
/// ascending order: the same bytes `attrs_json` writes for a `serde_json::Map` of the same
/// entries (that map sorts its keys), without building the map. The status webhook, the
/// busiest path, spent ~3% of `serve`'s CPU on that map and its keys.
#[derive(Default)]
pub(crate) struct Attributes {
    json: Vec<u8>,
    last: &'static str,
    failed: bool,
}

impl Attributes {
    /// Adds `key`, which must sort after every key added before it.
    pub(crate) fn add(&mut self, key: &'static str, value: &(impl serde::Serialize + ?Sized)) {
        debug_assert!(self.json.is_empty() || self.last < key, "attribute {key} added after {}", self.last);
        // Written as they are, so they must need no escaping.
        debug_assert!(key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'), "attribute key {key:?}");
        self.last = key;
        if self.json.is_empty() {
            // Room for the usual few attributes at once, rather than growing from 8 bytes.
            self.json.reserve(ATTRIBUTES_CAPACITY);
            self.json.push(b'{');
        } else {
            self.json.push(b',');
        }
        self.json.push(b'"');
        self.json.extend_from_slice(key.as_bytes());
        self.json.extend_from_slice(b"\":");
        self.failed |= serde_json::to_writer(&mut self.json, value).is_err();
    }

    /// The object, or `None` when nothing was added (or a value could not be written, which
    /// `attrs_json` also answers with `None`).
    pub(crate) fn finish(mut self) -> Option<String> {
        if self.json.is_empty() || self.failed {
            return None;
        }
        self.json.push(b'}');
        String::from_utf8(self.json).ok()
    }
}

/// Current time for `received_at`.
pub(crate) fn received_now() -> i64 {
    now_micros()
}

#[cfg(test)]
pub(crate) fn test_normalizer() -> Normalizer {
    Normalizer::new(
        PiiKey::from_secret("test-key"),
        &["STOP".into(), "UNSUBSCRIBE".into(), "CANCEL".into()],
        false,
        crate::config::Config::default().max_future_secs,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unix_time_forms() {
        assert_eq!(UnixTime::Text("1767254400".into()).micros(), Some(1_767_254_400_000_000));
        assert_eq!(UnixTime::Number(1.5).micros(), Some(1_500_000));
        assert_eq!(UnixTime::Text("soon".into()).micros(), None);
        assert_eq!(UnixTime::Number(1e300).micros(), None);
        assert_eq!(UnixTime::Missing.micros(), None);
    }

    #[test]
    fn opt_out_is_whole_message_case_insensitive() {
        let n = test_normalizer();
        assert!(n.is_opt_out(" stop "));
        assert!(n.is_opt_out("Unsubscribe"));
        assert!(!n.is_opt_out("please don't stop"));
        assert!(!n.is_opt_out(""));
    }

    #[test]
    fn millisecond_timestamps_are_read_as_milliseconds() {
        assert_eq!(UnixTime::Number(1_767_255_000_123.0).micros(), Some(1_767_255_000_123_000));
        assert_eq!(UnixTime::Text("1767255000123".into()).micros(), Some(1_767_255_000_123_000));
        assert_eq!(UnixTime::Number(1_767_255_000.0).micros(), Some(1_767_255_000_000_000), "seconds stay seconds");
        assert_eq!(UnixTime::Number(1e20).micros(), None);
    }
}
