//! The WhatsApp side's health as metrics: each template's current status and quality, each
//! account's messaging limit, and the account changes Meta reports, from the `template.status`
//! and `account.*` events this process ingests.
//!
//! A process knows only what it ingested since it started: after a restart a template shows
//! no status until its next change (the `template.status` events in the store keep the whole
//! history). A template's status series is valued by the time of the change that set it, so
//! where several collectors each saw some changes, the latest across them is the status now.

use std::collections::HashMap;
use std::sync::Mutex;

use prometheus::core::Collector;
use prometheus::{IntCounterVec, IntGaugeVec, Opts, Registry};
use serde_json::Value;

use crate::event::Event;

/// Templates (name and language) with series; past this a new template is not shown, so a
/// sender inventing template names cannot blow up the series.
const MAX_TEMPLATES: usize = 1000;
/// Business accounts with a messaging limit series, for the same reason.
const MAX_ACCOUNTS: usize = 200;

/// The account events with their own series (Meta's documented values); others count as
/// `other`.
const ACCOUNT_EVENTS: &[&str] = &[
    "ACCOUNT_VIOLATION",
    "ACCOUNT_RESTRICTION",
    "DISABLED_UPDATE",
    "ACCOUNT_DELETED",
    "VOLUME_BASED_PRICING_TIER_UPDATE",
    "AUTH_INTL_PRICE_ELIGIBILITY_UPDATE",
    "BUSINESS_PRIMARY_LOCATION_COUNTRY_UPDATE",
    "MM_LITE_TERMS_SIGNED",
    "PARTNER_ADDED",
    "PARTNER_REMOVED",
    "FLAGGED",
    "UNFLAGGED",
    "UPGRADE",
    "DOWNGRADE",
    "ONBOARDING",
    "THROUGHPUT_UPGRADE",
    "alert",
    "capability",
];

/// The `account.*` event types, as the `type` label.
const ACCOUNT_TYPES: &[&str] = &["account.update", "account.alert", "account.phone_quality", "account.capability"];

/// A template by name and language.
type TemplateKey = (String, String);

/// A template's current status and quality rating, where known.
#[derive(Default)]
struct Current(Option<String>, Option<String>);

/// Template status and quality, messaging limits and account events.
pub struct WhatsAppState {
    template_status: IntGaugeVec,
    template_quality: IntGaugeVec,
    messaging_limit: IntGaugeVec,
    account_events_total: IntCounterVec,
    /// Current status and quality by (template, language), to clear the previous series.
    current: Mutex<HashMap<TemplateKey, Current>>,
}

impl WhatsAppState {
    pub(super) fn new(r: &Registry) -> Self {
        let gauge = |name: &str, help: &str, labels: &[&str]| {
            let g = IntGaugeVec::new(Opts::new(name, help), labels).expect("static metric definition");
            r.register(Box::new(g.clone())).expect("metric registered once");
            g
        };
        let template_status = gauge(
            "convoscope_template_status",
            "A template's current status (APPROVED, PAUSED, DISABLED, REJECTED, ...) as this process last saw it, \
             valued by the Unix time of that change (the latest across collectors is the status now).",
            &["template", "language", "status"],
        );
        let template_quality = gauge(
            "convoscope_template_quality",
            "1 for a template's current quality rating (GREEN, YELLOW, RED, UNKNOWN), by template and language.",
            &["template", "language", "quality"],
        );
        let messaging_limit = gauge(
            "convoscope_messaging_limit",
            "Business-initiated conversations an account may open per day, as Meta last reported it \
             (unlimited: 1000000000).",
            &["account_id"],
        );
        let account_events_total = IntCounterVec::new(
            Opts::new(
                "convoscope_account_events_total",
                "Account and number changes Meta reported, by type and event.",
            ),
            &["type", "event"],
        )
        .expect("static metric definition");
        r.register(Box::new(account_events_total.clone())).expect("metric registered once");
        for t in ACCOUNT_TYPES {
            for e in ACCOUNT_EVENTS.iter().chain(&["other"]) {
                account_events_total.with_label_values(&[t, e]).reset();
            }
        }
        WhatsAppState {
            template_status,
            template_quality,
            messaging_limit,
            account_events_total,
            current: Mutex::new(HashMap::new()),
        }
    }

    pub(super) fn collectors(&self) -> Vec<&dyn Collector> {
        vec![&self.template_status, &self.template_quality, &self.messaging_limit, &self.account_events_total]
    }

    /// Takes in a `template.status` or `account.*` event.
    pub(super) fn observe(&self, e: &Event) {
        let attrs: Value = e.attributes.as_deref().and_then(|a| serde_json::from_str(a).ok()).unwrap_or(Value::Null);
        let text = |k: &str| attrs.get(k).and_then(Value::as_str).map(str::to_string);
        if e.event_type == "template.status" {
            let (Some(template), language) = (e.template.clone(), e.locale.clone().unwrap_or_default()) else {
                return;
            };
            let status =
                (text("field").as_deref() == Some("message_template_status_update")).then(|| text("event")).flatten();
            self.template(template, language, status, text("new_quality_score"), e.occurred_at / 1_000_000);
            return;
        }
        let Some(kind) = ACCOUNT_TYPES.iter().copied().find(|t| *t == e.event_type) else { return };
        let event = match kind {
            "account.alert" => "alert".to_string(),
            "account.capability" => "capability".to_string(),
            _ => text("event").unwrap_or_default(),
        };
        let event = ACCOUNT_EVENTS.iter().copied().find(|k| *k == event).unwrap_or("other");
        self.account_events_total.with_label_values(&[kind, event]).inc();
        // The limit: `max_daily_conversations_per_business` (a number or a tier), else the
        // tier of a number's quality update.
        let limit =
            attrs.get("max_daily_conversations_per_business").or_else(|| attrs.get("current_limit")).and_then(limit_of);
        if let (Some(limit), Some(account)) = (limit, e.account_id.as_deref()) {
            let known = self.messaging_limit.get_metric_with_label_values(&[account]).is_ok();
            if known || self.accounts() < MAX_ACCOUNTS {
                self.messaging_limit.with_label_values(&[account]).set(limit);
            }
        }
    }

    fn accounts(&self) -> usize {
        self.messaging_limit.collect().first().map_or(0, |f| f.get_metric().len())
    }

    fn template(&self, template: String, language: String, status: Option<String>, quality: Option<String>, at: i64) {
        let Ok(mut current) = self.current.lock() else { return };
        if !current.contains_key(&(template.clone(), language.clone())) && current.len() >= MAX_TEMPLATES {
            return;
        }
        let entry = current.entry((template.clone(), language.clone())).or_default();
        if let Some(new) = status {
            if let Some(old) = entry.0.replace(new.clone()) {
                let _ = self.template_status.remove_label_values(&[&template, &language, &old]);
            }
            self.template_status.with_label_values(&[&template, &language, &new]).set(at);
        }
        if let Some(new) = quality {
            if let Some(old) = entry.1.replace(new.clone()) {
                let _ = self.template_quality.remove_label_values(&[&template, &language, &old]);
            }
            self.template_quality.with_label_values(&[&template, &language, &new]).set(1);
        }
    }
}

/// A messaging limit as a number: Meta sends a count (`2000`, `-1` for unlimited) or a tier
/// (`TIER_2K`, `TIER_UNLIMITED`).
fn limit_of(v: &Value) -> Option<i64> {
    const UNLIMITED: i64 = 1_000_000_000;
    match v {
        Value::Number(n) => n.as_i64().map(|n| if n < 0 { UNLIMITED } else { n }),
        Value::String(s) => Some(match s.trim_start_matches("TIER_") {
            "UNLIMITED" => UNLIMITED,
            "NOT_SET" => return None,
            t => {
                let (digits, scale) = match t.strip_suffix('K') {
                    Some(d) => (d, 1000),
                    None => (t, 1),
                };
                digits.parse::<i64>().ok()? * scale
            }
        }),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus::Encoder;

    #[test]
    fn limits_from_counts_and_tiers() {
        assert_eq!(limit_of(&serde_json::json!(2000)), Some(2000));
        assert_eq!(limit_of(&serde_json::json!(-1)), Some(1_000_000_000));
        assert_eq!(limit_of(&serde_json::json!("TIER_2K")), Some(2000));
        assert_eq!(limit_of(&serde_json::json!("TIER_250")), Some(250));
        assert_eq!(limit_of(&serde_json::json!("TIER_UNLIMITED")), Some(1_000_000_000));
        assert_eq!(limit_of(&serde_json::json!("TIER_NOT_SET")), None);
    }

    #[test]
    fn a_template_shows_its_current_status_only() {
        let r = Registry::new();
        let w = WhatsAppState::new(&r);
        let mut e = Event::new("t1".into(), "template.status", 1_767_254_400_000_000, 0, "meta");
        e.template = Some("spring".into());
        e.locale = Some("en".into());
        e.attributes = Some(r#"{"field":"message_template_status_update","event":"APPROVED"}"#.into());
        w.observe(&e);
        e.attributes = Some(r#"{"field":"message_template_status_update","event":"PAUSED"}"#.into());
        w.observe(&e);
        let mut enc = Vec::new();
        prometheus::TextEncoder::new().encode(&r.gather(), &mut enc).unwrap();
        let text = String::from_utf8(enc).unwrap();
        assert!(
            text.contains(r#"convoscope_template_status{language="en",status="PAUSED",template="spring"} 1767254400"#),
            "{text}"
        );
        assert!(!text.contains(r#"status="APPROVED""#), "{text}");
        let mut q = Event::new("a1".into(), "account.phone_quality", 0, 0, "meta");
        q.account_id = Some("waba1".into());
        q.attributes =
            Some(r#"{"event":"DOWNGRADE","current_limit":"TIER_1K","field":"phone_number_quality_update"}"#.into());
        w.observe(&q);
        let mut enc = Vec::new();
        prometheus::TextEncoder::new().encode(&r.gather(), &mut enc).unwrap();
        let text = String::from_utf8(enc).unwrap();
        assert!(text.contains(r#"convoscope_messaging_limit{account_id="waba1"} 1000"#), "{text}");
        assert!(text.contains(r#"convoscope_account_events_total{event="DOWNGRADE",type="account.phone_quality"} 1"#));
    }
}
