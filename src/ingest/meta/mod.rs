//! Meta WhatsApp Cloud API webhooks.
//!
//! One POST carries `entry[] → changes[] → value` with `statuses[]` (receipts of what we
//! sent) and `messages[]` (what customers sent), up to 1000 of them. Every level is iterated;
//! unknown JSON fields are ignored; an unknown status or message type is kept with its raw
//! type in `attributes`.
//!
//! The JSON is read into the structs of `wire.rs`; this file turns them into events.

mod wire;

use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::{Attributes, Batch, Normalizer, ParseError, RejectReason, Rejected, received_now};
use crate::event::Event;
use crate::experiments::parse_callback_data;
use wire::{
    Change, Entry, Envelope, Message, MessagesValue, Status, TemplateUpdate, Typed, UserPreference, UserPreferences,
};

/// Normalises one verified Meta webhook body.
pub fn parse(n: &Normalizer, body: &[u8]) -> Result<Batch, ParseError> {
    let received = received_now();
    match parse_typed(n, body, received) {
        Some(batch) => Ok(batch),
        None => parse_tree(n, body, received),
    }
}

/// Both ways of reading `body`, for the fuzz target that checks they agree: the typed reading
/// (`None` where it defers to the other) and the JSON-tree reading.
#[doc(hidden)]
pub fn parse_both(n: &Normalizer, body: &[u8]) -> (Option<Batch>, Result<Batch, ParseError>) {
    let received = received_now();
    (parse_typed(n, body, received), parse_tree(n, body, received))
}

/// The fast reading: statuses and messages straight into typed structs, with no JSON tree in
/// between (building the tree took a third of the parsing time). It covers bodies whose every
/// change is a `messages` change with a value and gives up (`None`) on anything else, so
/// the tree reading decides every other case, errors included, exactly as it always has.
///
/// Where both readings accept a body they give the same events (fuzzed). The fast one also
/// accepts what the tree refuses only inside fields convoscope never reads, because serde_json
/// skips those without building them: invalid UTF-8, a number out of `f64` range, nesting
/// deeper than 128. The events it returns then are all from well-formed fields.
fn parse_typed(n: &Normalizer, body: &[u8], received: i64) -> Option<Batch> {
    let mut env: Envelope<Option<MessagesValue>> = serde_json::from_slice(body).ok()?;
    if !env.entry.iter().all(|e| e.changes.iter().all(|c| c.field == "messages" && c.value.is_some())) {
        return None;
    }
    normalise(n, &mut env, received, |_, v| Ok(Typed::Messages(v.take().unwrap_or_default()))).ok()
}

/// The general reading: every change's value as a JSON tree, then into the shape its field
/// names; unknown fields are skipped whatever their value.
fn parse_tree(n: &Normalizer, body: &[u8], received: i64) -> Result<Batch, ParseError> {
    let mut env: Envelope<Value> =
        serde_json::from_slice(body).map_err(|e| ParseError(format!("not a Meta webhook body: {e}")))?;
    // Read from `&Value`, so statuses borrow the tree's strings.
    normalise(n, &mut env, received, |field, value| {
        let value = &*value;
        Ok(match field {
            "messages" => Typed::Messages(
                MessagesValue::deserialize(value).map_err(|e| ParseError(format!("malformed messages change: {e}")))?,
            ),
            "message_template_status_update" | "message_template_quality_update" | "template_category_update" => {
                Typed::Template(
                    TemplateUpdate::deserialize(value)
                        .map_err(|e| ParseError(format!("malformed {field} change: {e}")))?,
                )
            }
            "user_preferences" => Typed::Preferences(
                UserPreferences::deserialize(value)
                    .map_err(|e| ParseError(format!("malformed user_preferences change: {e}")))?,
            ),
            _ => Typed::Ignored,
        })
    })
}

/// The events of `env`, each change's value read by `read`. The envelope is borrowed (its
/// values mutably, so the typed reading can take them) because what `read` returns may borrow
/// from it.
fn normalise<'v, V>(
    n: &Normalizer,
    env: &'v mut Envelope<V>,
    received: i64,
    read: impl Fn(&str, &'v mut V) -> Result<Typed<'v>, ParseError>,
) -> Result<Batch, ParseError> {
    let Envelope { object, entry: entries } = env;
    if let Some(o) = object.as_deref()
        && o != "whatsapp_business_account"
    {
        return Err(ParseError(format!("unexpected object {o:?}; expected \"whatsapp_business_account\"")));
    }
    let mut batch = Batch::default();
    let mut index = 0;
    for Entry { id, time, changes } in entries {
        for Change { field, value } in changes {
            let ctx = Ctx { n, received, account: id.as_deref(), entry_time: time.micros() };
            let at = index;
            index += 1;
            // One malformed change is skipped and counted, and the rest of the body stored: a
            // 400 would make Meta retry the whole batch for days, holding every good status in
            // it. The parser's message may quote a value, so only the field is logged.
            let typed = match read(field, value) {
                Ok(typed) => typed,
                Err(e) => {
                    tracing::warn!(field = %field, change = at, "skipped a malformed change of a Meta webhook; the rest is stored");
                    batch.rejected.push(Rejected { index: at, reason: RejectReason::Malformed, message: e.0 });
                    continue;
                }
            };
            match typed {
                Typed::Messages(v) => {
                    batch.events.reserve(v.statuses.len() + v.messages.len());
                    let pnid = v.metadata.phone_number_id;
                    for s in v.statuses {
                        let status = ctx.status(pnid, s);
                        if status.error_code == Some(STOPPED_MARKETING) {
                            batch.events.push(ctx.n.stopped_marketing(&status));
                        }
                        batch.events.push(status);
                    }
                    for m in v.messages {
                        ctx.message(pnid, m, &mut batch.events);
                    }
                }
                Typed::Template(v) => batch.events.push(ctx.template(field, v)),
                Typed::Preferences(v) => {
                    for p in v.user_preferences {
                        if let Some(e) = ctx.preference(v.metadata.phone_number_id, p) {
                            batch.events.push(e);
                        }
                    }
                }
                Typed::Ignored => {
                    tracing::debug!(field = %field, "ignoring Meta webhook field convoscope does not store")
                }
            }
        }
    }
    n.check_times(&mut batch, received);
    Ok(batch)
}

/// Meta's error for a marketing message to a person who stopped marketing messages from the
/// business: as good as their opt-out of marketing, which the send path then honours.
const STOPPED_MARKETING: i32 = 131050;

struct Ctx<'a> {
    n: &'a Normalizer,
    received: i64,
    account: Option<&'a str>,
    entry_time: Option<i64>,
}

impl Ctx<'_> {
    fn base(&self, id: String, event_type: &str, occurred: Option<i64>, pnid: Option<&str>) -> Event {
        let mut e =
            Event::new(id, event_type, occurred.or(self.entry_time).unwrap_or(self.received), self.received, "meta");
        e.account_id = self.account.map(str::to_string);
        e.phone_number_id = pnid.map(str::to_string);
        e
    }

    fn status(&self, pnid: Option<&str>, s: Status<'_>) -> Event {
        let raw = s.status.to_ascii_lowercase();
        let event_type = match raw.as_str() {
            "sent" => "message.sent",
            "delivered" => "message.delivered",
            // A played voice message has been read; keeping the raw status in the id keeps
            // a later `read` of the same message from being taken for a retry of it.
            "read" | "played" => "message.read",
            "failed" => "message.failed",
            _ => "message.other",
        };
        let mut e = self.base(event_id(s.id, &raw), event_type, s.timestamp.micros(), pnid);
        e.message_id = Some(s.id.to_string());
        self.n.set_contact_or_user(&mut e, s.recipient_id, s.recipient_user_id);
        // Keys in ascending order, as `Attributes` needs.
        let mut attrs = Attributes::default();
        if let Some(cb) = s.biz_opaque_callback_data {
            let (exp, var, camp) = parse_callback_data(cb);
            e.experiment = exp;
            e.variant = var;
            e.campaign = camp;
            attrs.add("callback_data", cb);
        }
        if let Some(conv) = s.conversation.and_then(|c| c.id) {
            attrs.add("meta_conversation_id", conv);
        }
        let mut errors = s.errors.into_iter();
        if let Some(first) = errors.next() {
            e.error_code = first.code.and_then(|c| i32::try_from(c).ok());
            e.error_title = first.title;
            let rest: Vec<Value> = errors.map(|x| json!({"code": x.code, "title": x.title})).collect();
            if !rest.is_empty() {
                attrs.add("more_errors", &rest);
            }
        }
        if let Some(p) = s.pricing {
            // Meta is deprecating `billable`; `type == "regular"` is the charge signal now.
            e.billable = match p.kind {
                Some(t) => Some(t == "regular"),
                None => p.billable,
            };
            if let Some(c) = p.category {
                let c = c.to_ascii_lowercase();
                let normal = if c.starts_with("authentication") { "authentication".to_string() } else { c.clone() };
                if normal != c {
                    attrs.add("pricing_category", &c);
                }
                e.category = Some(normal);
            }
            if let Some(m) = p.pricing_model {
                attrs.add("pricing_model", m);
            }
            if let Some(t) = p.kind {
                attrs.add("pricing_type", t);
            }
        }
        if event_type == "message.other" {
            attrs.add("raw_status", s.status);
        }
        e.attributes = attrs.finish();
        e
    }

    fn message(&self, pnid: Option<&str>, m: Message, out: &mut Vec<Event>) {
        let mut raw_type = None;
        let (event_type, content_type) = match m.kind.as_str() {
            "button" => ("interaction.reply", "button"),
            "interactive" => ("interaction.reply", "interactive"),
            // A reaction is not a reply: a thumbs-up (or one taken back) counts in no reply rate.
            "reaction" => ("interaction.reaction", "reaction"),
            "text" | "image" | "video" | "audio" | "document" | "sticker" | "location" | "contacts" | "order"
            | "system" | "unsupported" => ("message.inbound", m.kind.as_str()),
            other => {
                raw_type = Some(other);
                ("message.inbound", "other")
            }
        };
        let kind_suffix = match event_type {
            "interaction.reply" => "reply",
            "interaction.reaction" => "reaction",
            _ => "inbound",
        };
        let mut e = self.base(event_id(&m.id, kind_suffix), event_type, m.timestamp.micros(), pnid);
        e.content_type = Some(content_type.to_string());
        e.message_id = Some(m.id.clone());
        e.actor = Some("customer".into());
        e.reply_to = m.context.and_then(|c| c.id);
        self.n.set_contact_or_user(&mut e, m.from.as_deref(), m.from_user_id.as_deref());
        let mut text: Option<String> = None;
        let mut interactive_type = None;
        if let Some(b) = m.button {
            e.interaction_id = b.payload.or_else(|| b.text.clone());
            e.interaction_title = b.text.clone();
            if let Some((exp, var)) = e.interaction_id.as_deref().and_then(parse_payload_variant) {
                e.experiment = Some(exp);
                e.variant = Some(var);
            }
            text = b.text;
        }
        if let Some(i) = m.interactive {
            let choice = i.button_reply.or(i.list_reply);
            match choice {
                Some(c) => {
                    e.interaction_id = c.id;
                    e.interaction_title = c.title;
                }
                None => {
                    e.interaction_id = i.nfm_reply.and_then(|f| f.name);
                }
            }
            interactive_type = Some(i.kind);
        }
        if let Some(t) = m.text {
            text = Some(t.body);
        }
        let mut reaction = None;
        if let Some(r) = m.reaction {
            e.reply_to = e.reply_to.or(r.message_id);
            reaction = Some(r.emoji.unwrap_or_default());
        }
        if let Some(err) = m.errors.into_iter().next() {
            e.error_code = err.code.and_then(|c| i32::try_from(c).ok());
            e.error_title = err.title;
        }
        let opt_out = text.as_deref().is_some_and(|t| self.n.is_opt_out(t));
        // Keys in ascending order, as `Attributes` needs.
        let mut attrs = Attributes::default();
        if let Some(emoji) = reaction.as_deref().filter(|e| !e.is_empty()) {
            attrs.add("emoji", emoji);
        }
        if let Some(t) = &interactive_type {
            attrs.add("interactive_type", t);
        }
        if let Some(t) = raw_type {
            attrs.add("raw_type", t);
        }
        if m.referral.is_some() {
            attrs.add("referral", &true);
        }
        if reaction.as_deref() == Some("") {
            attrs.add("removed", &true);
        }
        if self.n.store_text()
            && let Some(t) = &text
        {
            attrs.add("text", t);
        }
        e.attributes = attrs.finish();
        if opt_out {
            out.push(self.n.opt_out_event(&e));
        }
        out.push(e);
    }

    fn template(&self, field: &str, v: TemplateUpdate) -> Event {
        let tid = match &v.message_template_id {
            Some(Value::String(s)) => s.clone(),
            Some(other) => other.to_string(),
            None => String::new(),
        };
        let what = v
            .event
            .clone()
            .or_else(|| v.new_quality_score.clone())
            .or_else(|| v.new_category.clone())
            .unwrap_or_default();
        let when = self.entry_time.unwrap_or(self.received);
        let mut e =
            self.base(format!("meta:template:{tid}:{field}:{what}:{when}"), "template.status", Some(when), None);
        e.template = v.message_template_name;
        e.locale = v.message_template_language;
        e.category = v.message_template_category.or_else(|| v.new_category.clone()).map(|c| c.to_ascii_lowercase());
        let mut attrs = Map::new();
        attrs.insert("field".into(), json!(field));
        attrs.insert("template_id".into(), json!(tid));
        for (k, val) in [
            ("event", v.event),
            ("reason", v.reason),
            ("new_quality_score", v.new_quality_score),
            ("previous_quality_score", v.previous_quality_score),
            ("new_category", v.new_category),
            ("previous_category", v.previous_category),
        ] {
            if let Some(val) = val {
                attrs.insert(k.into(), json!(val));
            }
        }
        e.attributes = attrs_json(attrs);
        e
    }

    fn preference(&self, pnid: Option<&str>, p: UserPreference) -> Option<Event> {
        let event_type = match p.value.as_deref()? {
            "stop" => "consent.opt_out",
            // `signup` is an opt-in given through Meta (its documented values: stop, resume,
            // signup).
            "resume" | "signup" => "consent.opt_in",
            _ => return None,
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
        Some(e)
    }
}

/// A quick-reply payload that carries its variant, as the send path writes it:
/// `exp=<experiment>;variant=<variant>;...` or `<experiment>:<variant>:<choice>`.
fn parse_payload_variant(payload: &str) -> Option<(String, String)> {
    if let (Some(e), Some(v), _) = parse_callback_data(payload) {
        return Some((e, v));
    }
    None
}

/// `meta:<id>:<kind>`, the id of an event from a Meta status or message. A `concat`, one
/// allocation: `format!` was 1.3% of `serve`'s CPU under the status load.
fn event_id(id: &str, kind: &str) -> String {
    ["meta:", id, ":", kind].concat()
}

/// Serialises collected attributes, or `None` when there are none: for keys not known in
/// advance (template updates, first-party events); fixed keys go through `Attributes`.
pub(crate) fn attrs_json(attrs: Map<String, Value>) -> Option<String> {
    // `to_string`, not `Value`'s `Display`: the same compact JSON without going through a
    // formatter per token (this was ~6% of `serve`'s CPU under a status webhook load).
    if attrs.is_empty() { None } else { serde_json::to_string(&attrs).ok() }
}

#[cfg(test)]
mod tests;
