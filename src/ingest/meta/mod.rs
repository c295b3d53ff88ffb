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
mod tests {
    use super::*;
    use crate::ingest::test_normalizer;

    const STATUS_BATCH: &str = include_str!("../../../fixtures/meta/status_batch.json");
    const INBOUND: &str = include_str!("../../../fixtures/meta/inbound_interactive.json");

    #[test]
    fn status_batch_normalises_every_status() {
        let b = parse(&test_normalizer(), STATUS_BATCH.as_bytes()).unwrap();
        assert!(b.rejected.is_empty());
        let types: Vec<&str> = b.events.iter().map(|e| e.event_type.as_str()).collect();
        assert_eq!(
            types,
            ["message.sent", "message.delivered", "message.read", "message.sent", "message.failed", "message.failed"]
        );
        let sent = &b.events[0];
        assert_eq!(sent.event_id, "meta:wamid.HBgLMTU1NTAxMDk4NzYVAgARGBJBQjAxRVhQNDJWQVJCMDAwMTcA:sent");
        assert_eq!(sent.occurred_at, 1_767_254_400_000_000);
        assert_eq!(sent.experiment.as_deref(), Some("42"));
        assert_eq!(sent.variant.as_deref(), Some("B"));
        assert_eq!(sent.billable, Some(true));
        assert_eq!(sent.category.as_deref(), Some("marketing"));
        assert_eq!(sent.country.as_deref(), Some("US"));
        assert_eq!(sent.account_id.as_deref(), Some("100200300400500"));
        assert_eq!(b.events[3].billable, Some(false));
        assert_eq!(b.events[4].error_code, Some(131049));
        assert_eq!(b.events[5].error_title.as_deref(), Some("Message undeliverable"));
    }

    #[test]
    fn interactive_replies_join_back_by_context() {
        let b = parse(&test_normalizer(), INBOUND.as_bytes()).unwrap();
        assert_eq!(b.events.len(), 2);
        let r = &b.events[0];
        assert_eq!(r.event_type, "interaction.reply");
        assert_eq!(r.content_type.as_deref(), Some("interactive"));
        assert_eq!(r.interaction_id.as_deref(), Some("exp42-B-yes"));
        assert_eq!(r.interaction_title.as_deref(), Some("Yes, show me"));
        assert_eq!(r.reply_to.as_deref(), Some("wamid.HBgLMTU1NTAxMDk4NzYVAgARGBJJTlRFUkFDVElWRUJUTjAwMDEA"));
        assert_eq!(b.events[1].interaction_id.as_deref(), Some("exp42-A-plan-annual"));
        // The profile name is personal data and must not survive.
        assert!(!format!("{:?}", b.events).contains("Dana"));
    }

    #[test]
    fn status_attributes_are_compact_json_in_key_order() {
        let status = json!({"id":"wamid.Y","status":"Deleted","timestamp":"1767254400","recipient_id":"15550109876",
            "biz_opaque_callback_data":"exp=7;variant=\"q\"\n\u{e9}\u{1}",
            "conversation":{"id":"conv-1"},
            "pricing":{"pricing_model":"CBP","type":"regular","category":"Authentication_International"},
            "errors":[{"code":1,"title":"first"},{"code":2,"title":"second"},{"title":"third"}]});
        let body = json!({"object":"whatsapp_business_account","entry":[{"id":"1","changes":[{"field":"messages","value":{"statuses":[status]}}]}]});
        let b = parse(&test_normalizer(), body.to_string().as_bytes()).unwrap();
        // Written by a `serde_json::Map` before `Attributes` (keys sorted, compact, escaped).
        let want = r#"{"callback_data":"exp=7;variant=\"q\"\né\u0001","meta_conversation_id":"conv-1","more_errors":[{"code":2,"title":"second"},{"code":null,"title":"third"}],"pricing_category":"authentication_international","pricing_model":"CBP","pricing_type":"regular","raw_status":"Deleted"}"#;
        assert_eq!(b.events[0].attributes.as_deref(), Some(want));
    }

    #[test]
    fn message_attributes_are_compact_json_in_key_order() {
        let ev = one_message(json!({"from":"15550100001","id":"wamid.N","timestamp":"1767255000","type":"hologram",
            "referral":{"source_url":"https://x"}}));
        assert_eq!(ev[0].attributes.as_deref(), Some(r#"{"raw_type":"hologram","referral":true}"#));
        let ev = one_message(json!({"from":"15550100001","id":"wamid.I","timestamp":"1767255000","type":"interactive",
            "interactive":{"type":"list_reply","list_reply":{"id":"a","title":"A"}}}));
        assert_eq!(ev[0].attributes.as_deref(), Some(r#"{"interactive_type":"list_reply"}"#));
    }

    fn one_message(msg: Value) -> Vec<Event> {
        let body = json!({"object":"whatsapp_business_account","entry":[{"id":"1","changes":[{"field":"messages","value":{"metadata":{"phone_number_id":"9"},"messages":[msg]}}]}]});
        parse(&test_normalizer(), body.to_string().as_bytes()).unwrap().events
    }

    #[test]
    fn stop_reply_also_records_opt_out_and_drops_text() {
        let ev = one_message(
            json!({"from":"447700900123","id":"wamid.X","timestamp":"1767255000","type":"text","text":{"body":"Stop"}}),
        );
        assert_eq!(ev.len(), 2);
        assert_eq!(ev[0].event_type, "consent.opt_out");
        assert_eq!(ev[0].event_id, "meta:wamid.X:opt_out");
        assert_eq!(ev[1].event_type, "message.inbound");
        assert_eq!(ev[1].content_type.as_deref(), Some("text"));
        assert_eq!(ev[0].contact_key, ev[1].contact_key);
        assert!(ev[1].attributes.is_none());
    }

    #[test]
    fn template_quick_reply_and_unknown_types() {
        let ev = one_message(
            json!({"from":"15550100001","id":"wamid.B","timestamp":"1767255000","type":"button","context":{"id":"wamid.T"},"button":{"payload":"exp=spring;variant=B","text":"Interested"}}),
        );
        assert_eq!(ev[0].event_type, "interaction.reply");
        assert_eq!(ev[0].reply_to.as_deref(), Some("wamid.T"));
        assert_eq!(ev[0].variant.as_deref(), Some("B"));
        let ev = one_message(json!({"from":"15550100001","id":"wamid.N","timestamp":"1767255000","type":"hologram"}));
        assert_eq!(ev[0].event_type, "message.inbound");
        assert_eq!(ev[0].content_type.as_deref(), Some("other"));
        assert!(ev[0].attributes.as_deref().unwrap().contains("hologram"));
    }

    #[test]
    fn unknown_status_is_kept_and_played_is_read() {
        let body = json!({"object":"whatsapp_business_account","entry":[{"id":"1","changes":[{"field":"messages","value":{"statuses":[
            {"id":"w1","status":"deleted","timestamp":"1767255000","recipient_id":"15550100001"},
            {"id":"w1","status":"played","timestamp":"1767255001","recipient_id":"15550100001"}]}}]}]});
        let ev = parse(&test_normalizer(), body.to_string().as_bytes()).unwrap().events;
        assert_eq!(ev[0].event_type, "message.other");
        assert!(ev[0].attributes.as_deref().unwrap().contains("deleted"));
        assert_eq!(ev[1].event_type, "message.read");
    }

    #[test]
    fn template_status_update() {
        let body = json!({"object":"whatsapp_business_account","entry":[{"id":"1","time":1767255000,"changes":[{"field":"message_template_status_update","value":{"event":"PAUSED","message_template_id":12345,"message_template_name":"spring_promo_b","message_template_language":"en_US","reason":"NONE","message_template_category":"MARKETING"}}]}]});
        let ev = parse(&test_normalizer(), body.to_string().as_bytes()).unwrap().events;
        assert_eq!(ev[0].event_type, "template.status");
        assert_eq!(ev[0].template.as_deref(), Some("spring_promo_b"));
        assert_eq!(ev[0].category.as_deref(), Some("marketing"));
        assert_eq!(ev[0].occurred_at, 1_767_255_000_000_000);
        assert!(ev[0].attributes.as_deref().unwrap().contains("PAUSED"));
    }

    #[test]
    fn typed_and_tree_readings_agree_on_every_fixture() {
        let n = test_normalizer();
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let mut bodies: Vec<_> =
            std::fs::read_dir(root.join("fixtures/meta")).unwrap().map(|e| e.unwrap().path()).collect();
        bodies.push(root.join("fixtures/collector/meta_batch.json"));
        let mut typed = 0;
        for path in bodies {
            let (t, tree) = parse_both(&n, &std::fs::read(&path).unwrap());
            if let Some(t) = t {
                assert_eq!(Some(&t), tree.as_ref().ok(), "{}", path.display());
                typed += 1;
            }
        }
        assert!(typed >= 3, "the status, inbound and collector fixtures take the typed reading");
        // Anything but messages changes, and a missing value, go to the tree reading.
        let template =
            br#"{"entry":[{"changes":[{"field":"message_template_status_update","value":{"event":"PAUSED"}}]}]}"#;
        assert!(parse_both(&n, template).0.is_none());
        // An invalid byte in a field convoscope ignores: the tree refuses it, the typed reading
        // keeps the statuses, which are well formed.
        let stray = b"{\"entry\":[{\"changes\":[{\"field\":\"messages\",\"value\":{\"x\":\"\xff\",\"statuses\":[{\"id\":\"w1\",\"status\":\"sent\",\"timestamp\":\"1767255000\"}]}}]}]}";
        let (t, tree) = parse_both(&n, stray);
        assert!(tree.is_err());
        assert_eq!(t.map(|b| b.events.len()), Some(1));
        assert_eq!(parse(&n, stray).unwrap().events[0].message_id.as_deref(), Some("w1"));
        // A change without a value is skipped and counted, not the whole body refused.
        let no_value = br#"{"entry":[{"changes":[{"field":"messages"}]}]}"#;
        let (t, tree) = parse_both(&n, no_value);
        assert!(t.is_none());
        assert_eq!(tree.map(|b| (b.events.len(), b.rejected.len())).ok(), Some((0, 1)));
    }

    #[test]
    fn malformed_bodies_are_errors() {
        let n = test_normalizer();
        assert!(parse(&n, b"{\"entry\": [").is_err());
        assert!(parse(&n, b"{\"object\":\"page\",\"entry\":[]}").is_err());
        assert!(parse(&n, b"[1,2]").is_err());
    }

    #[test]
    fn future_statuses_are_rejected_alone() {
        let far = chrono::Utc::now().timestamp() + 3600;
        let body = json!({"object":"whatsapp_business_account","entry":[{"id":"1","changes":[{"field":"messages","value":{"statuses":[
            {"id":"w1","status":"sent","timestamp":far.to_string(),"recipient_id":"15550100001"},
            {"id":"w2","status":"sent","timestamp":"1767255000","recipient_id":"15550100001"}]}}]}]});
        let b = parse(&test_normalizer(), body.to_string().as_bytes()).unwrap();
        assert_eq!(b.events.len(), 1);
        assert_eq!(b.rejected.len(), 1);
        assert_eq!(b.events[0].message_id.as_deref(), Some("w2"));
    }

    #[test]
    fn a_malformed_change_is_skipped_and_counted_and_the_rest_stored() {
        let status = json!({"id":"wamid.G","status":"delivered","timestamp":"1767255000","recipient_id":"15550100001"});
        let body = json!({"object":"whatsapp_business_account","entry":[{"id":"1","changes":[
            {"field":"message_template_status_update","value":{"event":["not", "a", "string"]}},
            {"field":"messages","value":{"metadata":{"phone_number_id":"9"},"statuses":[status]}},
            {"field":"messages","value":{"statuses":"not a list"}}]}]});
        let b = parse(&test_normalizer(), body.to_string().as_bytes()).expect("the good change is stored");
        assert_eq!(b.events.len(), 1);
        assert_eq!(b.events[0].event_type, "message.delivered");
        let skipped: Vec<(usize, RejectReason)> = b.rejected.iter().map(|r| (r.index, r.reason)).collect();
        assert_eq!(skipped, [(0, RejectReason::Malformed), (2, RejectReason::Malformed)]);
    }

    #[test]
    fn a_signup_preference_is_an_opt_in() {
        let body = json!({"object":"whatsapp_business_account","entry":[{"id":"1","changes":[{"field":"user_preferences",
            "value":{"metadata":{"phone_number_id":"9"},"user_preferences":[
                {"wa_id":"15550100001","detail":"User requested to receive marketing messages","category":"marketing_messages",
                 "value":"signup","timestamp":1767255000}]}}]}]});
        let b = parse(&test_normalizer(), body.to_string().as_bytes()).expect("parsed");
        assert_eq!(b.events.len(), 1, "{:?}", b.rejected);
        assert_eq!(
            (b.events[0].event_type.as_str(), b.events[0].category.as_deref()),
            ("consent.opt_in", Some("marketing"))
        );
    }

    #[test]
    fn a_reaction_is_its_own_event_and_no_reply() {
        let ev = one_message(json!({"from":"15550100001","id":"wamid.R","timestamp":"1767255000","type":"reaction",
            "reaction":{"message_id":"wamid.SENT","emoji":"\u{1F44D}"}}));
        assert_eq!(ev.len(), 1);
        assert_eq!(
            (ev[0].event_type.as_str(), ev[0].reply_to.as_deref()),
            ("interaction.reaction", Some("wamid.SENT"))
        );
        assert_eq!(ev[0].attributes.as_deref(), Some("{\"emoji\":\"\u{1F44D}\"}"));
        let removed =
            one_message(json!({"from":"15550100001","id":"wamid.R2","timestamp":"1767255060","type":"reaction",
            "reaction":{"message_id":"wamid.SENT","emoji":""}}));
        assert_eq!(removed[0].attributes.as_deref(), Some(r#"{"removed":true}"#));
        let batch = crate::event::to_record_batch(&[ev[0].clone(), removed[0].clone()]).unwrap();
        let rollup = crate::rollup::Kind::Messages.of_events(std::slice::from_ref(&batch)).unwrap();
        assert_eq!(rollup.num_rows(), 0, "a reaction makes no message replied");
    }

    #[test]
    fn error_131050_records_an_opt_out_of_marketing() {
        let status = json!({"id":"wamid.M","status":"failed","timestamp":"1767255000","recipient_id":"15550100001",
            "errors":[{"code":131050,"title":"User stopped marketing messages"}]});
        let body = json!({"object":"whatsapp_business_account","entry":[{"id":"1","changes":[{"field":"messages","value":{"metadata":{"phone_number_id":"9"},"statuses":[status]}}]}]});
        let b = parse(&test_normalizer(), body.to_string().as_bytes()).expect("parsed");
        let kinds: Vec<(&str, Option<&str>)> =
            b.events.iter().map(|e| (e.event_type.as_str(), e.category.as_deref())).collect();
        assert_eq!(kinds, [("consent.opt_out", Some("marketing")), ("message.failed", None)]);
        assert_eq!(b.events[0].contact_key, b.events[1].contact_key);
        assert_eq!(
            b.events[0].event_id, "meta:wamid.M:failed:131050:opt_out",
            "one per failure: a retry is a duplicate"
        );
    }

    #[test]
    fn a_person_without_a_phone_number_is_counted_by_their_user_id() {
        let n = test_normalizer();
        let status = json!({"id":"wamid.U","status":"delivered","timestamp":"1767255000","recipient_id":"",
            "recipient_user_id":"US.134912086"});
        let body = json!({"object":"whatsapp_business_account","entry":[{"id":"1","changes":[{"field":"messages","value":{"metadata":{"phone_number_id":"9"},"statuses":[status]}}]}]});
        let b = parse(&n, body.to_string().as_bytes()).expect("parsed");
        let key = n.pii().contact_of_user("US.134912086");
        assert!(key.is_some());
        assert_eq!(b.events[0].contact_key, key);
        let inbound =
            one_message(json!({"from":"","from_user_id":"US.134912086","id":"wamid.UI","timestamp":"1767255000",
            "type":"text","text":{"body":"hi"}}));
        assert_eq!(inbound[0].contact_key, key, "the same person by the same id");
    }
}
