//! First-party events (`POST /v1/events`): a JSON array or NDJSON of objects keyed by column
//! name. Each item stands alone: a bad one is refused with its index and
//! the others are kept.

use serde_json::{Map, Value};

use super::meta::attrs_json;
use super::{Batch, Normalizer, ParseError, RejectReason, Rejected, received_now};
use crate::event::{COLUMNS, Event, known_event_type};

/// Longest `event_id` accepted: ids are idempotency keys, not payloads.
pub const MAX_EVENT_ID_LEN: usize = 256;

/// Normalises a first-party body. `source` is what the `source` column records (`api` for
/// the HTTP endpoint, `sandbox` or `sender` for convoscope's own components).
pub fn parse(n: &Normalizer, body: &[u8], source: &str) -> Result<Batch, ParseError> {
    let text = std::str::from_utf8(body).map_err(|e| ParseError(format!("body is not UTF-8: {e}")))?;
    let trimmed = text.trim_start();
    let received = received_now();
    let mut batch = Batch::default();
    let push = |batch: &mut Batch, index: usize, item: Value| match convert(n, item, received, source) {
        Ok(event) => batch.events.push(event),
        Err((reason, message)) => batch.rejected.push(Rejected { index, reason, message }),
    };
    if trimmed.starts_with('[') {
        let items: Vec<Value> =
            serde_json::from_str(trimmed).map_err(|e| ParseError(format!("body is not a JSON array: {e}")))?;
        batch.events.reserve_exact(items.len());
        for (i, v) in items.into_iter().enumerate() {
            push(&mut batch, i, v);
        }
    } else {
        // Sized once: grown by doubling, a batch of 1,000 ~700-byte events reallocated ~1.4 MB
        // per request, half of what `serve` freed and returned to the kernel under /v1/events.
        batch.events.reserve_exact(body.iter().filter(|&&b| b == b'\n').count() + 1);
        let mut index = 0;
        for line in text.lines() {
            if line.trim().is_empty() {
                continue;
            }
            let item = serde_json::from_str::<Value>(line).map_err(|e| format!("not JSON: {e}"));
            match item {
                Ok(v) => push(&mut batch, index, v),
                Err(m) => batch.rejected.push(Rejected { index, reason: RejectReason::Malformed, message: m }),
            }
            index += 1;
        }
        if index == 0 {
            return Err(ParseError("empty body: send a JSON array or NDJSON of events".into()));
        }
    }
    // Future timestamps were checked per item above, so rejected indexes match the request.
    Ok(batch)
}

type ItemError = (RejectReason, String);

fn invalid(msg: impl Into<String>) -> ItemError {
    (RejectReason::InvalidEvent, msg.into())
}

/// One item → its event (never an implied opt-out, as a webhook's STOP gives: the brand
/// sends `consent.opt_out` itself).
fn convert(n: &Normalizer, v: Value, received: i64, source: &str) -> Result<Event, ItemError> {
    let Value::Object(obj) = v else {
        return Err((RejectReason::Malformed, "an event is a JSON object".into()));
    };
    let mut e = Event { received_at: received, source: source.to_string(), ..Default::default() };
    let mut attrs = Map::new();
    let mut seen_id = false;
    let mut seen_time = false;
    for (k, val) in obj {
        if val.is_null() {
            continue;
        }
        match k.as_str() {
            "event_id" => {
                let id = string(&k, val)?;
                if id.is_empty() || id.len() > MAX_EVENT_ID_LEN {
                    return Err(invalid(format!("event_id must be 1 to {MAX_EVENT_ID_LEN} characters")));
                }
                e.event_id = id;
                seen_id = true;
            }
            "event_type" => {
                let t = string(&k, val)?;
                e.event_type =
                    known_event_type(&t).ok_or_else(|| invalid(format!("unknown event_type {t:?}")))?.to_string();
            }
            "occurred_at" => {
                let t = string(&k, val)?;
                let dt = chrono::DateTime::parse_from_rfc3339(&t)
                    .map_err(|err| invalid(format!("occurred_at {t:?} is not RFC 3339: {err}")))?;
                e.occurred_at = dt.timestamp_micros();
                seen_time = true;
            }
            "contact" => {
                let phone = string(&k, val)?;
                n.set_contact(&mut e, Some(&phone));
                if e.contact_key.is_none() {
                    return Err(invalid("contact has no digits"));
                }
            }
            // Set by convoscope, never by the sender.
            "source" | "received_at" => {}
            "attributes" => match val {
                Value::Object(m) => attrs.extend(m),
                Value::String(s) => match serde_json::from_str::<Value>(&s) {
                    Ok(Value::Object(m)) => attrs.extend(m),
                    _ => return Err(invalid("attributes must be a JSON object")),
                },
                _ => return Err(invalid("attributes must be a JSON object")),
            },
            "error_code" => e.error_code = Some(int(&k, &val)?),
            "cost_micros" => e.cost_micros = Some(int(&k, &val)?),
            "revenue_micros" => e.revenue_micros = Some(int(&k, &val)?),
            "csat_score" => {
                let s: i16 = int(&k, &val)?;
                if !(1..=5).contains(&s) {
                    return Err(invalid(format!("csat_score must be 1..5, got {s}")));
                }
                e.csat_score = Some(s);
            }
            "billable" => e.billable = Some(val.as_bool().ok_or_else(|| invalid("billable must be true or false"))?),
            name if COLUMNS.contains(&name) => {
                let s = string(&k, val)?;
                if let Some(slot) = text_column(&mut e, name) {
                    *slot = Some(s);
                }
            }
            _ => {
                attrs.insert(k, val);
            }
        }
    }
    if !seen_id {
        return Err(invalid("event_id is required"));
    }
    if e.event_type.is_empty() {
        return Err(invalid("event_type is required"));
    }
    if !seen_time {
        return Err(invalid("occurred_at is required"));
    }
    if n.too_far_ahead(e.occurred_at, received) {
        return Err((RejectReason::FutureTimestamp, "occurred_at is too far in the future".into()));
    }
    e.attributes = attrs_json(attrs);
    Ok(e)
}

fn string(key: &str, v: Value) -> Result<String, ItemError> {
    match v {
        Value::String(s) => Ok(s),
        Value::Number(n) => Ok(n.to_string()),
        other => Err(invalid(format!("{key} must be a string, got {other}"))),
    }
}

fn int<T: TryFrom<i64>>(key: &str, v: &Value) -> Result<T, ItemError> {
    v.as_i64()
        .or_else(|| v.as_str().and_then(|s| s.trim().parse().ok()))
        .and_then(|i| T::try_from(i).ok())
        .ok_or_else(|| invalid(format!("{key} must be an integer in range, got {v}")))
}

/// The text column of that name, for columns set verbatim from first-party input.
fn text_column<'a>(e: &'a mut Event, name: &str) -> Option<&'a mut Option<String>> {
    Some(match name {
        "account_id" => &mut e.account_id,
        "phone_number_id" => &mut e.phone_number_id,
        "message_id" => &mut e.message_id,
        "reply_to" => &mut e.reply_to,
        "conversation_id" => &mut e.conversation_id,
        "contact_key" => &mut e.contact_key,
        "country" => &mut e.country,
        "campaign" => &mut e.campaign,
        "template" => &mut e.template,
        "locale" => &mut e.locale,
        "category" => &mut e.category,
        "experiment" => &mut e.experiment,
        "variant" => &mut e.variant,
        "content_type" => &mut e.content_type,
        "interaction_id" => &mut e.interaction_id,
        "interaction_title" => &mut e.interaction_title,
        "error_title" => &mut e.error_title,
        "currency" => &mut e.currency,
        "actor" => &mut e.actor,
        "agent_key" => &mut e.agent_key,
        "queue" => &mut e.queue,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingest::test_normalizer;

    #[test]
    fn array_with_contact_and_extra_keys() {
        let body = br#"[{"event_id":"c1","event_type":"conversion","occurred_at":"2026-01-01T10:00:00Z","contact":"+44 7700 900123","revenue_micros":2500000,"currency":"GBP","order_id":"o-9","source":"forged"}]"#;
        let b = parse(&test_normalizer(), body, "api").unwrap();
        assert!(b.rejected.is_empty(), "{:?}", b.rejected);
        let e = &b.events[0];
        assert_eq!(e.source, "api");
        assert_eq!(e.country.as_deref(), Some("GB"));
        assert_eq!(e.revenue_micros, Some(2_500_000));
        assert_eq!(e.attributes.as_deref(), Some(r#"{"order_id":"o-9"}"#));
        assert!(!format!("{e:?}").contains("7700"));
    }

    #[test]
    fn ndjson_keeps_good_lines_and_reports_bad_ones_by_index() {
        let future = (chrono::Utc::now() + chrono::Duration::hours(2)).to_rfc3339();
        let body = format!(
            "{}\n{{bad json\n\n{}\n{}\n{}\n",
            r#"{"event_id":"a","event_type":"conversation.opened","occurred_at":"2026-01-01T10:00:00Z","conversation_id":"k1","queue":"billing"}"#,
            r#"{"event_id":"b","event_type":"nope","occurred_at":"2026-01-01T10:00:00Z"}"#,
            format_args!(r#"{{"event_id":"c","event_type":"conversion","occurred_at":"{future}"}}"#),
            r#"{"event_id":"d","event_type":"csat.submitted","occurred_at":"2026-01-01T10:00:00+02:00","csat_score":9}"#,
        );
        let b = parse(&test_normalizer(), body.as_bytes(), "api").unwrap();
        assert_eq!(b.events.len(), 1);
        assert_eq!(b.events[0].queue.as_deref(), Some("billing"));
        let got: Vec<(usize, &str)> = b.rejected.iter().map(|r| (r.index, r.reason.as_str())).collect();
        assert_eq!(got, [(1, "malformed"), (2, "invalid_event"), (3, "future_timestamp"), (4, "invalid_event")]);
    }

    #[test]
    fn required_fields() {
        let n = test_normalizer();
        for body in [
            r#"[{"event_type":"conversion","occurred_at":"2026-01-01T10:00:00Z"}]"#,
            r#"[{"event_id":"x","occurred_at":"2026-01-01T10:00:00Z"}]"#,
            r#"[{"event_id":"x","event_type":"conversion"}]"#,
            r#"[{"event_id":"x","event_type":"conversion","occurred_at":"yesterday"}]"#,
            r#"[{"event_id":"x","event_type":"conversion","occurred_at":"2026-01-01T10:00:00Z","cost_micros":1e40}]"#,
            r#"[5]"#,
        ] {
            let b = parse(&n, body.as_bytes(), "api").unwrap();
            assert_eq!(b.rejected.len(), 1, "{body}");
        }
        assert!(parse(&n, b"[{", "api").is_err());
        assert!(parse(&n, b"  \n", "api").is_err());
        assert!(parse(&n, &[0xff, 0xfe], "api").is_err());
    }
}
