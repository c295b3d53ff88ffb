//! Every field of Meta's webhook besides `messages` and the echoes: template status, quality,
//! category and components; the customer's marketing preference; the ad events that follow a
//! click-to-WhatsApp ad; and the business account's and number's changes (`account.*`).

use serde_json::{Map, Value, json};

use super::wire::{AutomaticEvent, ErrorObj, TemplateUpdate, UserPreference};
use super::{Ctx, attrs_json};
use crate::event::Event;
use crate::ids::hash64;

/// The event type of a field about the business account or its numbers, or `None` for a field
/// that is not one.
pub(super) fn event_type(field: &str) -> Option<&'static str> {
    Some(match field {
        // Volume pricing tier, violations, restrictions, bans, partner and eligibility changes.
        "account_update" => "account.update",
        "account_alerts" => "account.alert",
        // A number's quality rating, messaging limit (tier) and throughput.
        "phone_number_quality_update" => "account.phone_quality",
        // Conversation and number limits of the business.
        "business_capability_update" => "account.capability",
        _ => return None,
    })
}

/// Most bytes of a value stored whole as attributes: the documented ones are a few hundred,
/// and a larger one is not an account change but something to refuse rather than store.
const MAX_ACCOUNT_VALUE_BYTES: usize = 16 * 1024;

impl Ctx<'_> {
    /// The entry's time for an event id: empty where Meta sends none, so a retry of the same
    /// change still gets the same id (the receive time would differ).
    fn stamp(&self) -> String {
        self.entry_time.map(|t| t.to_string()).unwrap_or_default()
    }

    /// An `account.*` event: the value whole as its attributes (these fields name the business
    /// and its numbers, never a customer), with `field` beside it.
    pub(super) fn account(&self, field: &str, event_type: &str, value: &Value) -> Result<Event, String> {
        let text = value.to_string();
        if text.len() > MAX_ACCOUNT_VALUE_BYTES {
            return Err(format!("{field} value of {} bytes is larger than {MAX_ACCOUNT_VALUE_BYTES}", text.len()));
        }
        // Meta sends each change to every subscribed app and retries: the same change must
        // get the same id, so it is the change itself (and its entry's time) that names it.
        let id = format!("meta:account:{}:{field}:{:016x}:{}", self.account.unwrap_or(""), hash64(&text), self.stamp());
        let pnid = value.get("phone_number_id").and_then(Value::as_str);
        let mut e = self.base(id, event_type, None, pnid);
        let mut attrs = value.as_object().cloned().unwrap_or_default();
        // The number shown to customers: the phone number id and the account name it already,
        // and a number is kept out of the store whosever it is.
        attrs.remove("display_phone_number");
        attrs.insert("field".into(), json!(field));
        e.attributes = attrs_json(attrs);
        Ok(e)
    }

    /// An error of the app, account or number (`value.errors[]`), not of one message: Meta's
    /// throughput limit (130429) and its like.
    pub(super) fn value_error(&self, pnid: Option<&str>, index: usize, err: ErrorObj) -> Event {
        let code = err.code.unwrap_or(0);
        let id =
            format!("meta:error:{}:{}:{code}:{index}:{}", self.account.unwrap_or(""), pnid.unwrap_or(""), self.stamp());
        let mut e = self.base(id, "account.error", None, pnid);
        e.error_code = i32::try_from(code).ok().filter(|c| *c != 0);
        e.error_title = err.title;
        if let Some(details) = err.error_data.and_then(|d| d.details) {
            e.attributes = attrs_json(Map::from_iter([("error_details".to_string(), json!(details))]));
        }
        e
    }

    /// A purchase or a lead Meta saw in a click-to-WhatsApp thread: a conversion of the
    /// customer, on the thread's message.
    pub(super) fn automatic(&self, pnid: Option<&str>, a: AutomaticEvent) -> Event {
        let name = a.event_name.unwrap_or_default();
        let thread = a.id.unwrap_or_default();
        let mut e = self.base(format!("meta:auto:{thread}:{name}"), "conversion", a.timestamp.micros(), pnid);
        e.message_id = Some(thread).filter(|t| !t.is_empty());
        e.actor = Some("customer".into());
        self.n.set_contact(&mut e, a.from.as_deref());
        if let Some(d) = a.custom_data {
            e.revenue_micros = d.value.map(|v| (v * 1_000_000.0).round() as i64);
            e.currency = d.currency;
        }
        let mut attrs = Map::new();
        if let Some(clid) = a.ctwa_clid {
            attrs.insert("ctwa_clid".into(), json!(clid));
        }
        attrs.insert("event_name".into(), json!(name));
        e.attributes = attrs_json(attrs);
        e
    }

    pub(super) fn template(&self, field: &str, v: TemplateUpdate) -> Event {
        let tid = match &v.message_template_id {
            Some(Value::String(s)) => s.clone(),
            Some(other) => other.to_string(),
            None => String::new(),
        };
        let pause = v.other_info.as_ref().and_then(|o| o.title.clone());
        let what = v
            .event
            .clone()
            .or_else(|| v.new_quality_score.clone())
            .or_else(|| v.correct_category.as_ref().map(|c| format!("impending_{c}")))
            .or_else(|| v.new_category.clone())
            .or_else(|| (field == "message_template_components_update").then(|| "components".to_string()))
            .unwrap_or_default();
        // A second pause and the first are both `PAUSED`: the title tells them apart.
        let what = match &pause {
            Some(p) => format!("{what}:{p}"),
            None => what,
        };
        let when = self.entry_time.unwrap_or(self.received);
        let mut e =
            self.base(format!("meta:template:{tid}:{field}:{what}:{when}"), "template.status", Some(when), None);
        e.template = v.message_template_name;
        e.locale = v.message_template_language;
        e.category = v.message_template_category.or_else(|| v.new_category.clone()).map(|c| c.to_ascii_lowercase());
        let mut attrs = Map::new();
        attrs.insert("field".into(), json!(field));
        attrs.insert("template_id".into(), json!(tid));
        let rejection = v.rejection_info.unwrap_or_default();
        let other = v.other_info.unwrap_or_default();
        for (k, val) in [
            ("event", v.event),
            ("reason", v.reason),
            ("new_quality_score", v.new_quality_score),
            ("previous_quality_score", v.previous_quality_score),
            ("new_category", v.new_category),
            ("previous_category", v.previous_category),
            ("correct_category", v.correct_category),
            ("rejection_reason", rejection.reason),
            ("rejection_recommendation", rejection.recommendation),
            ("pause", other.title),
            ("pause_description", other.description),
            ("element", v.message_template_element),
            ("title", v.message_template_title),
            ("footer", v.message_template_footer),
        ] {
            if let Some(val) = val {
                attrs.insert(k.into(), json!(val));
            }
        }
        // Times in Unix seconds, as Meta sends them.
        for (k, at) in [
            ("category_update_at", v.category_update_timestamp.micros()),
            ("disable_at", v.disable_info.and_then(|d| d.disable_date.micros())),
        ] {
            if let Some(at) = at {
                attrs.insert(k.into(), json!(at / 1_000_000));
            }
        }
        e.attributes = attrs_json(attrs);
        e
    }

    /// A customer's marketing preference: `stop` an opt-out, `resume` or `signup` an opt-in
    /// (Meta's documented values); any other value is refused with its reason.
    pub(super) fn preference(&self, pnid: Option<&str>, p: UserPreference) -> Result<Event, String> {
        let event_type = match p.value.as_deref() {
            Some("stop") => "consent.opt_out",
            Some("resume" | "signup") => "consent.opt_in",
            other => return Err(format!("user preference value {other:?} is none of stop, resume, signup")),
        };
        let when = p.timestamp.micros();
        let mut e = self.base(String::new(), event_type, when, pnid);
        self.n.set_contact(&mut e, p.wa_id.as_deref());
        e.event_id = format!(
            "meta:pref:{}:{}:{}",
            e.contact_key.as_deref().unwrap_or(""),
            p.value.as_deref().unwrap_or(""),
            when.unwrap_or(0)
        );
        e.category = p.category.map(|c| if c.starts_with("marketing") { "marketing".into() } else { c });
        e.actor = Some("customer".into());
        Ok(e)
    }
}
