//! The one event schema every source is normalised into, and its
//! Arrow form.
//!
//! An [`Event`] is one row of the `events` table. It is what the write-ahead log stores
//! (as Arrow record batches inside checksummed frames) and what the flusher turns into Parquet.

use std::borrow::Borrow;
use std::sync::{Arc, LazyLock};

use arrow::array::{
    ArrayRef, BooleanBuilder, Int16Builder, Int32Builder, Int64Builder, RecordBatch, StringBuilder,
    TimestampMicrosecondBuilder,
};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

/// Every event type (docs/reference.md, "Event schema", says what each means).
///
/// `message.other` is the one addition: a provider status convoscope does not know
/// (Meta's `deleted`, `warning`, UltraMsg's `pending`) is kept under it with the raw
/// status in `attributes`, because nothing a provider sends may be dropped and none of the
/// listed types fits.
pub const EVENT_TYPES: &[&str] = &[
    "send.accepted",
    "send.rejected",
    "message.sent",
    "message.delivered",
    "message.read",
    "message.failed",
    "message.inbound",
    "message.other",
    "message.edited",
    "message.revoked",
    "message.system",
    "interaction.reply",
    "interaction.reaction",
    "link.click",
    "conversation.opened",
    "conversation.bot_reply",
    "conversation.handoff",
    "conversation.agent_reply",
    "conversation.resolved",
    "conversation.reopened",
    "csat.submitted",
    "conversion",
    "consent.opt_in",
    "consent.opt_out",
    "template.status",
    "experiment.variant_stopped",
    "account.update",
    "account.alert",
    "account.phone_quality",
    "account.capability",
    "account.error",
];

/// Where an event came from (the `source` column).
pub const SOURCES: &[&str] =
    &["meta", "360dialog", "gupshup", "twilio", "ultramsg", "api", "sender", "sandbox", "generator"];

/// Returns the static name of a known event type, so metric labels stay a bounded set.
pub fn known_event_type(t: &str) -> Option<&'static str> {
    EVENT_TYPES.iter().copied().find(|k| *k == t)
}

/// One row of the `events` table. Timestamps are microseconds since the Unix epoch, UTC.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Event {
    pub event_id: String,
    pub event_type: String,
    pub occurred_at: i64,
    pub received_at: i64,
    pub source: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub account_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub phone_number_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reply_to: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub conversation_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub contact_key: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub country: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub campaign: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub template: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub locale: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub category: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub experiment: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content_type: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub interaction_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub interaction_title: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_code: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_title: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub billable: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cost_micros: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub revenue_micros: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub currency: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub actor: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub agent_key: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub queue: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub csat_score: Option<i16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attributes: Option<String>,
}

impl Event {
    /// A new event with the four identity fields set and everything else empty.
    pub fn new(event_id: String, event_type: &str, occurred_at: i64, received_at: i64, source: &str) -> Self {
        Event {
            event_id,
            event_type: event_type.to_string(),
            occurred_at,
            received_at,
            source: source.to_string(),
            ..Default::default()
        }
    }
}

/// The partition (UTC date) of an event that occurred at `micros`.
pub fn partition_date(micros: i64) -> NaiveDate {
    micros_to_datetime(micros).date_naive()
}

/// Converts microseconds since the epoch to a UTC datetime, clamping out-of-range values.
pub fn micros_to_datetime(micros: i64) -> DateTime<Utc> {
    DateTime::<Utc>::from_timestamp_micros(micros).unwrap_or(DateTime::<Utc>::UNIX_EPOCH)
}

/// Current time in microseconds since the epoch.
pub fn now_micros() -> i64 {
    Utc::now().timestamp_micros()
}

/// Column names in schema order; first-party events use these as JSON keys.
pub const COLUMNS: &[&str] = &[
    "event_id",
    "event_type",
    "occurred_at",
    "received_at",
    "source",
    "account_id",
    "phone_number_id",
    "message_id",
    "reply_to",
    "conversation_id",
    "contact_key",
    "country",
    "campaign",
    "template",
    "locale",
    "category",
    "experiment",
    "variant",
    "content_type",
    "interaction_id",
    "interaction_title",
    "error_code",
    "error_title",
    "billable",
    "cost_micros",
    "revenue_micros",
    "currency",
    "actor",
    "agent_key",
    "queue",
    "csat_score",
    "attributes",
];

static SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
    let ts = || DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()));
    let fields: Vec<Field> = COLUMNS
        .iter()
        .map(|name| match *name {
            "event_id" | "event_type" | "source" => Field::new(*name, DataType::Utf8, false),
            "occurred_at" | "received_at" => Field::new(*name, ts(), false),
            "error_code" => Field::new(*name, DataType::Int32, true),
            "billable" => Field::new(*name, DataType::Boolean, true),
            "cost_micros" | "revenue_micros" => Field::new(*name, DataType::Int64, true),
            "csat_score" => Field::new(*name, DataType::Int16, true),
            _ => Field::new(*name, DataType::Utf8, true),
        })
        .collect();
    Arc::new(Schema::new(fields))
});

/// The Arrow schema of stored events (without the `date` partition column).
pub fn schema() -> SchemaRef {
    SCHEMA.clone()
}

/// The text of row `i` of a string column, `None` where it is null.
pub fn cell(a: &arrow::array::StringArray, i: usize) -> Option<&str> {
    use arrow::array::Array;
    a.is_valid(i).then(|| a.value(i))
}

/// Builds one record batch from events (or references to them), in the order given.
pub fn to_record_batch<E: Borrow<Event>>(events: &[E]) -> Result<RecordBatch, arrow::error::ArrowError> {
    let n = events.len();
    let utf8 = |f: &dyn Fn(&Event) -> Option<&str>| -> ArrayRef {
        let mut b = StringBuilder::with_capacity(n, n * 16);
        for e in events {
            b.append_option(f(e.borrow()));
        }
        Arc::new(b.finish())
    };
    let ts = |f: &dyn Fn(&Event) -> i64| -> ArrayRef {
        let mut b = TimestampMicrosecondBuilder::with_capacity(n).with_timezone("UTC");
        for e in events {
            b.append_value(f(e.borrow()));
        }
        Arc::new(b.finish())
    };
    fn s(o: &Option<String>) -> Option<&str> {
        o.as_deref()
    }
    let mut error_code = Int32Builder::with_capacity(n);
    let mut billable = BooleanBuilder::with_capacity(n);
    let mut cost = Int64Builder::with_capacity(n);
    let mut revenue = Int64Builder::with_capacity(n);
    let mut csat = Int16Builder::with_capacity(n);
    for e in events.iter().map(Borrow::borrow) {
        error_code.append_option(e.error_code);
        billable.append_option(e.billable);
        cost.append_option(e.cost_micros);
        revenue.append_option(e.revenue_micros);
        csat.append_option(e.csat_score);
    }
    let columns: Vec<ArrayRef> = vec![
        utf8(&|e| Some(e.event_id.as_str())),
        utf8(&|e| Some(e.event_type.as_str())),
        ts(&|e| e.occurred_at),
        ts(&|e| e.received_at),
        utf8(&|e| Some(e.source.as_str())),
        utf8(&|e| s(&e.account_id)),
        utf8(&|e| s(&e.phone_number_id)),
        utf8(&|e| s(&e.message_id)),
        utf8(&|e| s(&e.reply_to)),
        utf8(&|e| s(&e.conversation_id)),
        utf8(&|e| s(&e.contact_key)),
        utf8(&|e| s(&e.country)),
        utf8(&|e| s(&e.campaign)),
        utf8(&|e| s(&e.template)),
        utf8(&|e| s(&e.locale)),
        utf8(&|e| s(&e.category)),
        utf8(&|e| s(&e.experiment)),
        utf8(&|e| s(&e.variant)),
        utf8(&|e| s(&e.content_type)),
        utf8(&|e| s(&e.interaction_id)),
        utf8(&|e| s(&e.interaction_title)),
        Arc::new(error_code.finish()),
        utf8(&|e| s(&e.error_title)),
        Arc::new(billable.finish()),
        Arc::new(cost.finish()),
        Arc::new(revenue.finish()),
        utf8(&|e| s(&e.currency)),
        utf8(&|e| s(&e.actor)),
        utf8(&|e| s(&e.agent_key)),
        utf8(&|e| s(&e.queue)),
        Arc::new(csat.finish()),
        utf8(&|e| s(&e.attributes)),
    ];
    RecordBatch::try_new(schema(), columns)
}

/// The value at `key` of an event's `attributes` (a JSON object), as text: a string value is
/// its text, any other value its JSON; a missing key, a null or text that is not one JSON
/// object give `None`. Rollups read a key of every status this way, so the object is not
/// built: its keys are compared as they are read and the other values skipped, and only the
/// value asked for is made (a duplicated key gives its last value, as a parsed object would).
pub fn attribute_text(json: &str, key: &str) -> Option<String> {
    let mut de = serde_json::Deserializer::from_str(json);
    let found = serde::Deserializer::deserialize_map(&mut de, Find(key)).ok()?;
    // Text after the object is not a JSON object either.
    de.end().ok()?;
    match found? {
        serde_json::Value::Null => None,
        serde_json::Value::String(s) => Some(s),
        other => Some(other.to_string()),
    }
}

/// Reads an object for the value of one key.
struct Find<'k>(&'k str);

impl<'de> serde::de::Visitor<'de> for Find<'_> {
    type Value = Option<serde_json::Value>;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut found = None;
        while let Some(hit) = map.next_key_seed(IsKey(self.0))? {
            if hit {
                found = Some(map.next_value::<serde_json::Value>()?);
            } else {
                map.next_value::<serde::de::IgnoredAny>()?;
            }
        }
        Ok(found)
    }
}

/// A key compared with the one asked for as it is read, without a copy of it.
struct IsKey<'k>(&'k str);

impl<'de> serde::de::DeserializeSeed<'de> for IsKey<'_> {
    type Value = bool;

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<bool, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> serde::de::Visitor<'de> for IsKey<'_> {
    type Value = bool;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a key")
    }

    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<bool, E> {
        Ok(v == self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_matches_schema_and_keeps_nulls() {
        let mut e = Event::new("a".into(), "message.sent", 1_767_254_400_000_000, 1, "meta");
        e.error_code = Some(131026);
        let b = to_record_batch(&[e.clone(), Event::new("b".into(), "conversion", 0, 0, "api")]).unwrap();
        assert_eq!(b.num_rows(), 2);
        assert_eq!(b.num_columns(), COLUMNS.len());
        assert_eq!(b.column_by_name("error_code").unwrap().null_count(), 1);
        assert_eq!(partition_date(e.occurred_at).to_string(), "2026-01-01");
    }

    #[test]
    fn every_column_is_in_the_schema_once() {
        let s = schema();
        for c in COLUMNS {
            assert!(s.field_with_name(c).is_ok(), "{c}");
        }
    }

    /// The same answers as parsing the whole object, on objects with nesting, escapes, spaces,
    /// a duplicated key, and on text that is not one object.
    #[test]
    fn the_same_as_the_parsed_object() {
        let whole = |json: &str, key: &str| match serde_json::from_str::<serde_json::Value>(json).ok()?.get(key)? {
            serde_json::Value::Null => None,
            serde_json::Value::String(s) => Some(s.clone()),
            other => Some(other.to_string()),
        };
        let cases = [
            r#"{"pricing_model":"PMP","pricing_type":"regular"}"#,
            r#"{ "a" : { "pricing_type" : "nested" } , "pricing_type" : "top" }"#,
            r#"{"a":{"pricing_type":"nested only"}}"#,
            r#"{"note":"\"pricing_type\":\"fake\"","pricing_type":"free_entry_point"}"#,
            r#"{"pricing_type":"first","pricing_type":"last"}"#,
            r#"{"pric\u0069ng_type":"escaped key","x":[1,{"pricing_type":2}]}"#,
            r#"{"pricing_type":"caf\u00e9 \"quoted\""}"#,
            r#"{"pricing_type":["a",1]}"#,
            r#"{"pricing_type":"regular"} trailing"#,
            r#"{"pricing_type":"regular""#,
            r#""pricing_type""#,
            "",
        ];
        for json in cases {
            for key in ["pricing_type", "a", "x", "note", "missing"] {
                assert_eq!(attribute_text(json, key), whole(json, key), "{json} {key}");
            }
        }
        assert_eq!(attribute_text(cases[1], "pricing_type").as_deref(), Some("top"));
        assert_eq!(attribute_text(cases[3], "pricing_type").as_deref(), Some("free_entry_point"));
        assert_eq!(attribute_text(cases[4], "pricing_type").as_deref(), Some("last"));
        assert_eq!(attribute_text(cases[5], "pricing_type").as_deref(), Some("escaped key"));
        assert_eq!(attribute_text(cases[6], "pricing_type").as_deref(), Some("café \"quoted\""));
        assert_eq!(attribute_text(cases[2], "pricing_type"), None);
    }
}
