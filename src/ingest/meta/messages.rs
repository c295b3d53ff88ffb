//! The `messages` field's statuses (receipts of what the business sent), customer messages,
//! and the echoes of what the business sent from the WhatsApp Business app.

use serde_json::{Value, json};

use super::wire::{Echo, Message, Status};
use super::{Ctx, event_id, parse_callback_data, parse_payload_variant};
use crate::event::Event;
use crate::ingest::Attributes;

impl Ctx<'_> {
    pub(super) fn status(&self, pnid: Option<&str>, s: Status<'_>) -> Event {
        let raw = s.status.to_ascii_lowercase();
        let event_type = match raw.as_str() {
            "sent" => "message.sent",
            "delivered" => "message.delivered",
            // A played voice message has been read; keeping the raw status in the id keeps
            // a later `read` of the same message from being taken for a retry of it.
            "read" | "played" => "message.read",
            "failed" => "message.failed",
            // Gupshup's `enqueued`, Meta's `deleted` and `warning`: kept, with the raw status.
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
        let (conversation, origin, expires) = match s.conversation {
            Some(c) => (c.id, c.origin.and_then(|o| o.kind), c.expiration_timestamp.micros()),
            None => (None, None, None),
        };
        if let Some(at) = expires {
            // Seconds, as Meta sends it, so it reads the same in any tool.
            attrs.add("conversation_expiration", &(at / 1_000_000));
        }
        if let Some(origin) = origin {
            attrs.add("conversation_origin", &origin.to_ascii_lowercase());
        }
        let mut errors = s.errors.into_iter();
        let mut more_errors = Vec::new();
        if let Some(first) = errors.next() {
            e.error_code = first.code.and_then(|c| i32::try_from(c).ok());
            e.error_title = first.title;
            if let Some(details) = first.error_data.and_then(|d| d.details) {
                attrs.add("error_details", &details);
            }
            more_errors = errors.map(|x| json!({"code": x.code, "title": x.title})).collect::<Vec<Value>>();
        } else if let Some(code) = &s.code {
            // Gupshup's own code, where Meta never saw the message.
            e.error_code = match code {
                Value::Number(n) => n.as_i64().and_then(|c| i32::try_from(c).ok()),
                Value::String(t) => t.trim().parse().ok(),
                _ => None,
            };
            e.error_title = s.reason.filter(|r| !r.is_empty());
        }
        if let Some(gs) = s.gs_id {
            attrs.add("gs_id", gs);
        }
        if let Some(conv) = conversation {
            attrs.add("meta_conversation_id", conv);
        }
        if !more_errors.is_empty() {
            attrs.add("more_errors", &more_errors);
        }
        if let Some(p) = s.pricing {
            // Meta is deprecating `billable`; `type == "regular"` is the charge signal now.
            e.billable = match p.kind {
                Some(t) => Some(t == "regular"),
                None => p.billable,
            };
            if let Some(c) = p.category {
                // `authentication-international` in pricing, `authentication_international` in
                // a conversation's origin: one name, the rate card's.
                let c = c.to_ascii_lowercase();
                let normal = c.replace('-', "_");
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

    pub(super) fn message(&self, pnid: Option<&str>, m: Message, out: &mut Vec<Event>) {
        let mut raw_type = None;
        // An interactive message Meta could not read has an error and no choice: the error is
        // what is stored, not a reply without a choice.
        let unreadable = !m.errors.is_empty();
        let (event_type, content_type) = match m.kind.as_str() {
            "button" => ("interaction.reply", "button"),
            "interactive" if unreadable => ("message.inbound", "interactive"),
            "interactive" => ("interaction.reply", "interactive"),
            // A reaction is not a reply: a thumbs-up (or one taken back) counts in no reply rate.
            "reaction" => ("interaction.reaction", "reaction"),
            // Neither an edit, nor a deletion, nor a notice (a changed number) is a new message
            // from the customer: each would count as a reply or a first response otherwise.
            "edit" => ("message.edited", "edit"),
            "revoke" => ("message.revoked", "revoke"),
            "system" => ("message.system", "system"),
            "text" | "image" | "video" | "audio" | "document" | "sticker" | "location" | "contacts" | "order"
            | "unsupported" => ("message.inbound", m.kind.as_str()),
            other => {
                raw_type = Some(other);
                ("message.inbound", "other")
            }
        };
        let kind_suffix = match event_type {
            "interaction.reply" => "reply",
            "interaction.reaction" => "reaction",
            "message.edited" => "edited",
            "message.revoked" => "revoked",
            "message.system" => "system",
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
        let mut flow = None;
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
                    if let Some(f) = i.nfm_reply {
                        flow = f.response_json.as_deref().map(flow_answers);
                        e.interaction_id = f.name;
                    }
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
        // The customer's message an edit or a deletion changes.
        let original = m.edit.or(m.revoke).and_then(|x| x.original_message_id.or(x.message_id).or(x.id));
        if let Some(err) = m.errors.into_iter().next() {
            e.error_code = err.code.and_then(|c| i32::try_from(c).ok());
            e.error_title = err.title;
        }
        let order = m.order.map(|o| {
            // Items and value of the cart: the value is revenue the brand may attribute.
            let items: f64 = o.product_items.iter().map(|i| i.quantity.unwrap_or(1.0)).sum();
            let value: f64 =
                o.product_items.iter().map(|i| i.quantity.unwrap_or(1.0) * i.item_price.unwrap_or(0.0)).sum();
            e.revenue_micros = Some((value * 1_000_000.0).round() as i64);
            e.currency = o.product_items.iter().find_map(|i| i.currency.clone());
            items
        });
        let opt_out = text.as_deref().is_some_and(|t| self.n.is_opt_out(t));
        // Keys in ascending order, as `Attributes` needs.
        let mut attrs = Attributes::default();
        if let Some(emoji) = reaction.as_deref().filter(|e| !e.is_empty()) {
            attrs.add("emoji", emoji);
        }
        if let Some((fields, _)) = &flow {
            attrs.add("flow_fields", fields);
        }
        if let Some((_, Some(token))) = &flow {
            attrs.add("flow_token", token);
        }
        if let Some(t) = &interactive_type {
            attrs.add("interactive_type", t);
        }
        if let Some(items) = order {
            attrs.add("order_items", &items);
        }
        if let Some(id) = &original {
            attrs.add("original_message_id", id);
        }
        if let Some(t) = raw_type {
            attrs.add("raw_type", t);
        }
        if let Some(r) = &m.referral {
            attrs.add("referral", r);
        }
        if reaction.as_deref() == Some("") {
            attrs.add("removed", &true);
        }
        if let Some(kind) = m.system.and_then(|s| s.kind) {
            attrs.add("system_type", &kind);
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

    /// What the business sent its customer from the WhatsApp Business app on a number it also
    /// uses through the API (coexistence): an agent's reply to the contact. It names no
    /// conversation, so the conversation reports (which read the ones the brand posts) do not
    /// count it yet.
    pub(super) fn echo(&self, pnid: Option<&str>, m: Echo) -> Event {
        let mut e = self.base(event_id(&m.id, "echo"), "conversation.agent_reply", m.timestamp.micros(), pnid);
        e.message_id = Some(m.id);
        e.content_type = Some(m.kind);
        e.actor = Some("agent".into());
        e.agent_key = Some(BUSINESS_APP.into());
        e.reply_to = m.context.and_then(|c| c.id);
        self.n.set_contact_or_user(&mut e, m.to.as_deref(), m.to_user_id.as_deref());
        e
    }
}

/// The agent of every reply sent from the WhatsApp Business app, which names no person.
const BUSINESS_APP: &str = "whatsapp_business_app";

/// A Flow's answers: the names of their fields (sorted) and its `flow_token`. The values are
/// what the customer typed, personal data, and are not kept.
fn flow_answers(response_json: &str) -> (Vec<String>, Option<String>) {
    let Ok(Value::Object(answers)) = serde_json::from_str::<Value>(response_json) else {
        return (Vec::new(), None);
    };
    let token = answers.get("flow_token").and_then(Value::as_str).map(str::to_string);
    let mut names: Vec<String> = answers.keys().filter(|k| *k != "flow_token").cloned().collect();
    names.sort();
    (names, token)
}
