//! UltraMsg webhooks: one JSON object per POST (`message_received`, `message_create`,
//! `message_ack`); an array of them is accepted too.
//!
//! UltraMsg signs nothing: the server checks the URL token before this runs.

use serde::Deserialize;
use serde_json::Value;

use super::{Attributes, Batch, Normalizer, ParseError, UnixTime, received_now};
use crate::event::Event;
use crate::experiments::parse_callback_data;

#[derive(Deserialize, Default)]
#[serde(default)]
struct Hook {
    event_type: String,
    #[serde(rename = "instanceId")]
    instance_id: Option<Value>,
    #[serde(rename = "referenceId")]
    reference_id: Option<String>,
    data: Data,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Data {
    id: String,
    from: Option<String>,
    to: Option<String>,
    ack: Option<Value>,
    #[serde(rename = "type")]
    kind: Option<String>,
    body: Option<String>,
    #[serde(rename = "fromMe")]
    from_me: bool,
    #[serde(rename = "quotedMsg")]
    quoted: Option<Value>,
    time: UnixTime,
}

/// Normalises one UltraMsg webhook body.
pub fn parse(n: &Normalizer, body: &[u8]) -> Result<Batch, ParseError> {
    let v: Value = serde_json::from_slice(body).map_err(|e| ParseError(format!("not JSON: {e}")))?;
    let hooks: Vec<Hook> = match v {
        Value::Array(items) => items
            .into_iter()
            .map(serde_json::from_value)
            .collect::<Result<_, _>>()
            .map_err(|e| ParseError(format!("not an UltraMsg webhook: {e}")))?,
        obj @ Value::Object(_) => {
            vec![serde_json::from_value(obj).map_err(|e| ParseError(format!("not an UltraMsg webhook: {e}")))?]
        }
        _ => return Err(ParseError("an UltraMsg webhook is a JSON object".into())),
    };
    let received = received_now();
    let mut batch = Batch::default();
    for h in hooks {
        if h.data.id.is_empty() {
            return Err(ParseError("UltraMsg webhook without data.id".into()));
        }
        convert(n, h, received, &mut batch.events);
    }
    n.check_times(&mut batch, received);
    Ok(batch)
}

fn convert(n: &Normalizer, h: Hook, received: i64, out: &mut Vec<Event>) {
    let ack = match &h.data.ack {
        Some(Value::String(s)) => s.to_ascii_lowercase(),
        Some(Value::Number(x)) => x.to_string(),
        _ => String::new(),
    };
    // Keys in ascending order, as `Attributes` needs: `raw_*`, `reference_id`, `text`.
    let mut attrs = Attributes::default();
    let (event_type, raw) = match h.event_type.as_str() {
        "message_ack" => match ack.as_str() {
            // Numeric acks: third-party mappings agree only on 2 = device and 3 = read.
            "server" | "1" => ("message.sent", "sent"),
            "device" | "2" => ("message.delivered", "delivered"),
            "read" | "played" | "3" | "4" => ("message.read", "read"),
            other => {
                attrs.add("raw_status", other);
                ("message.other", "ack_other")
            }
        },
        "message_create" if h.data.from_me => ("message.sent", "sent"),
        "message_received" if !h.data.from_me => ("message.inbound", "inbound"),
        other => {
            attrs.add("raw_event_type", other);
            ("message.other", "other")
        }
    };
    let occurred = h.data.time.micros().unwrap_or(received);
    let msg_key = message_key(&h.data.id);
    let mut e = Event::new(format!("ultramsg:{msg_key}:{raw}"), event_type, occurred, received, "ultramsg");
    e.account_id = h.instance_id.map(|i| match i {
        Value::String(s) => s.trim_start_matches("instance").to_string(),
        other => other.to_string(),
    });
    e.message_id = Some(msg_key);
    let customer = if h.data.from_me { h.data.to.as_deref() } else { h.data.from.as_deref() };
    n.set_contact(&mut e, customer);
    if let Some(r) = h.reference_id.filter(|r| !r.is_empty()) {
        let (exp, var, camp) = parse_callback_data(&r);
        e.experiment = exp;
        e.variant = var;
        e.campaign = camp;
        attrs.add("reference_id", &r);
    }
    if event_type == "message.inbound" {
        e.actor = Some("customer".into());
        e.content_type = Some(match h.data.kind.as_deref() {
            Some("chat") | None => "text".into(),
            Some("ptt") => "audio".into(),
            Some(k) => k.to_string(),
        });
        e.reply_to = h.data.quoted.as_ref().and_then(|q| q.get("id")).and_then(Value::as_str).map(message_key);
        let body = h.data.body.as_deref().unwrap_or("");
        if n.store_text() && !body.is_empty() {
            attrs.add("text", body);
        }
        if n.is_opt_out(body) {
            out.push(n.opt_out_event(&e));
        }
    }
    e.attributes = attrs.finish();
    out.push(e);
}

/// The stable part of a WhatsApp-Web message id. Serialised ids (`true_<chat>@c.us_<key>`)
/// embed the customer's number, which must not be stored, so only the message key is kept.
fn message_key(id: &str) -> String {
    if id.contains('@') { id.rsplit('_').next().unwrap_or(id).to_string() } else { id.to_string() }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingest::test_normalizer;
    use crate::pii::PiiKey;
    use serde_json::json;

    #[test]
    fn ack_read_joins_by_reference() {
        let b = parse(&test_normalizer(), include_bytes!("../../fixtures/ultramsg/ack.json")).unwrap();
        assert_eq!(b.events.len(), 1);
        let e = &b.events[0];
        assert_eq!(e.event_type, "message.read");
        assert_eq!(e.event_id, "ultramsg:3EB0C4F1A29D7E56B801:read");
        assert_eq!(e.account_id.as_deref(), Some("48213"));
        assert_eq!(e.country.as_deref(), Some("US"));
        // The message body and the number are not kept.
        let dump = format!("{e:?}");
        assert!(!dump.contains("SPRING20"));
        assert!(!dump.contains("15550109876"));
        assert_eq!(e.contact_key.as_ref().map(String::len), Some(32));
    }

    #[test]
    fn received_stop_is_an_opt_out() {
        let body = json!({"event_type":"message_received","instanceId":"instance7","data":{"id":"false_1@c.us_X","from":"5511987654321@c.us","to":"1@c.us","type":"chat","body":"CANCEL","fromMe":false,"time":1767255000}});
        let b = parse(&test_normalizer(), body.to_string().as_bytes()).unwrap();
        assert_eq!(b.events.len(), 2);
        assert_eq!(b.events[0].event_type, "consent.opt_out");
        assert_eq!(b.events[1].country.as_deref(), Some("BR"));
        assert_eq!(b.events[1].account_id.as_deref(), Some("7"));
    }

    #[test]
    fn attributes_are_compact_json_in_key_order() {
        let n = Normalizer::new(
            PiiKey::from_secret("test-key"),
            &[],
            true,
            crate::config::Config::default().max_future_secs,
        );
        let hook = |event_type: &str, ack: &str, body: &str| {
            json!({"event_type": event_type, "referenceId": "exp=e1;variant=\"B\"", "data": {
                "id": "true_1@c.us_K", "from": "5511987654321@c.us", "to": "1@c.us", "ack": ack,
                "body": body, "fromMe": false, "time": 1767255000}})
            .to_string()
        };
        let attributes = |body: String| parse(&n, body.as_bytes()).unwrap().events.pop().unwrap().attributes;
        // The bytes a `serde_json::Map` of the same entries wrote before.
        assert_eq!(
            attributes(hook("message_received", "", "olá \"you\"\n")).as_deref(),
            Some(r#"{"reference_id":"exp=e1;variant=\"B\"","text":"olá \"you\"\n"}"#)
        );
        assert_eq!(
            attributes(hook("message_ack", "pending", "")).as_deref(),
            Some(r#"{"raw_status":"pending","reference_id":"exp=e1;variant=\"B\""}"#)
        );
        assert_eq!(
            attributes(hook("message_revoked", "", "")).as_deref(),
            Some(r#"{"raw_event_type":"message_revoked","reference_id":"exp=e1;variant=\"B\""}"#)
        );
    }

    #[test]
    fn bad_bodies() {
        let n = test_normalizer();
        assert!(parse(&n, b"42").is_err());
        assert!(parse(&n, b"{\"event_type\":\"message_ack\"}").is_err());
        assert!(parse(&n, b"{\"data\": 5}").is_err());
    }
}
