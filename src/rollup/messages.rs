//! The message rollup: one row per message and events file, from which the message reports
//! read their cohort and receipts instead of the events.
//!
//! Every message report groups the sends and statuses of millions of messages by message id
//! after scanning every event; that grouping and the 64-character ids it reads were most of
//! their time. The writer of an events file already holds
//! its rows in memory, so it also writes their partial aggregate per message to
//! `rollups/messages-v3/date=<date>/<name>.parquet`: first send time and the send's attributes,
//! first delivered and read times, whether it failed and whether it was replied to. A report
//! merges these per message (`MIN`/`MAX` again), which reads a quarter of the rows, as numbers.
//!
//! Every column is a `MIN`, `MAX` or "any" of the file's events, so merging the rows of several
//! files gives what aggregating their events at once gives, and a row repeated (a file both
//! before and after compaction replaced it, an events file flushed twice after a crash) changes
//! nothing.

use std::sync::{Arc, LazyLock};

use arrow::array::{Array, ArrayRef, AsArray, BooleanArray, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};

use super::{
    ByKey, Owner, SENDS, first_seen_order, keys, max_of, min_of, occurred_at, owner, owner_columns, owner_fields, text,
    timestamps, utf8,
};
use crate::error::{Error, Result};
use crate::ids;

/// The receipts the rollup keeps.
const STATUSES: [&str; 3] = ["message.delivered", "message.read", "message.failed"];
/// The events that count as a reply to the message named in their `reply_to`.
const REPLIES: [&str; 2] = ["interaction.reply", "message.inbound"];

static SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
    let ts = || DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()));
    Arc::new(Schema::new(vec![
        Field::new("message_key", ids::key_type(), false),
        Field::new("sent_at", ts(), true),
        Field::new("campaign", DataType::Utf8, true),
        Field::new("template", DataType::Utf8, true),
        Field::new("locale", DataType::Utf8, true),
        Field::new("contact", ids::key_type(), true),
        Field::new("delivered_at", ts(), true),
        Field::new("read_at", ts(), true),
        Field::new("failed", DataType::Boolean, false),
        Field::new("replied", DataType::Boolean, false),
        Field::new("billable", DataType::Boolean, false),
        Field::new("category", DataType::Utf8, true),
        Field::new("country", DataType::Utf8, true),
        Field::new("cost_micros", DataType::Int64, true),
        Field::new("pricing_type", DataType::Utf8, true),
        owner_fields()[0].clone(),
        owner_fields()[1].clone(),
    ]))
});

/// The rollup's stored schema (without the `date` partition column):
///
/// - `message_key`: `id_key(message_id)` (of `reply_to` for replies);
/// - `sent_at`: first `occurred_at` of its send events (`send.accepted`, `message.sent`), null
///   when the file has none; `campaign`, `template`, `locale`: the largest value of its send
///   events; `contact`: the largest `id_key(contact_key)` of its send events;
/// - `delivered_at`, `read_at`: first `message.delivered`, `message.read`;
/// - `failed`: it has a `message.failed`; `replied`: an `interaction.reply` or `message.inbound`
///   names it in `reply_to`;
/// - for the `cost` and `pricing` reports, over its send, delivered and read events:
///   `billable`, any of them billable; `category`, `country`, `cost_micros`: the largest value;
///   `pricing_type`: the largest `pricing_type` of their `attributes` (Meta's `pricing.type`);
/// - `account_id`, `phone_number_id`: the owner of the row's events (a row per message and
///   owner: [`crate::rollup`]).
pub fn schema() -> SchemaRef {
    SCHEMA.clone()
}

/// One message's partial aggregate over a file. Strings borrow from the file's batch.
#[derive(Default)]
struct Partial<'a> {
    /// First seen, for the order of rows in the file.
    first_at: i64,
    sent_at: Option<i64>,
    campaign: Option<&'a str>,
    template: Option<&'a str>,
    locale: Option<&'a str>,
    contact: Option<i128>,
    delivered_at: Option<i64>,
    read_at: Option<i64>,
    failed: bool,
    replied: bool,
    billable: bool,
    category: Option<&'a str>,
    country: Option<&'a str>,
    cost_micros: Option<i64>,
    /// Read out of the attributes' JSON, so not a slice of the batch.
    pricing_type: Option<String>,
}

/// The rollup rows of `batches` (of the events table, usually one date's rows of one file), ordered by when each message was first seen.
pub fn of_events(batches: &[RecordBatch]) -> Result<RecordBatch> {
    // Not sized from the rows up front: in a file of first-party events few rows are messages,
    // and a table for every row added ~25 MiB to `serve`'s peak under `/v1/events`.
    let mut by_key: ByKey<Partial> = ByKey::default();
    for events in batches {
        let event_type = utf8(events, "event_type")?;
        let message_id = utf8(events, "message_id")?;
        let reply_to = utf8(events, "reply_to")?;
        let campaign = utf8(events, "campaign")?;
        let template = utf8(events, "template")?;
        let locale = utf8(events, "locale")?;
        let contact_key = utf8(events, "contact_key")?;
        let category = utf8(events, "category")?;
        let country = utf8(events, "country")?;
        let billable = events
            .column_by_name("billable")
            .and_then(|c| c.as_boolean_opt())
            .ok_or_else(|| Error::Invalid("events batch without billable".into()))?;
        let cost_micros = events
            .column_by_name("cost_micros")
            .and_then(|c| c.as_primitive_opt::<arrow::datatypes::Int64Type>())
            .ok_or_else(|| Error::Invalid("events batch without cost_micros".into()))?;
        let attributes = utf8(events, "attributes")?;
        let (account, phone) = (utf8(events, "account_id")?, utf8(events, "phone_number_id")?);
        let occurred = occurred_at(events)?;
        for i in 0..events.num_rows() {
            let kind = event_type.value(i);
            let at = occurred.value(i);
            let (id, is_reply) = if REPLIES.contains(&kind) {
                (text(reply_to, i), true)
            } else if SENDS.contains(&kind) || STATUSES.contains(&kind) {
                (text(message_id, i), false)
            } else {
                continue;
            };
            let Some(id) = id else { continue };
            let p =
                by_key.entry(ids::key(id), owner(account, phone, i), || Partial { first_at: at, ..Default::default() });
            p.first_at = p.first_at.min(at);
            if is_reply {
                p.replied = true;
                continue;
            }
            if kind != "message.failed" {
                p.billable |= billable.is_valid(i) && billable.value(i);
                max_of(&mut p.category, text(category, i));
                max_of(&mut p.country, text(country, i));
                max_of(&mut p.cost_micros, cost_micros.is_valid(i).then(|| cost_micros.value(i)));
                // Only attributes that name it are parsed: most events carry none, or other keys.
                if let Some(a) = text(attributes, i).filter(|a| a.contains("pricing_type"))
                    && let Some(t) = crate::event::attribute_text(a, "pricing_type")
                    && p.pricing_type.as_ref().is_none_or(|have| *have < t)
                {
                    p.pricing_type = Some(t);
                }
            }
            match kind {
                "message.delivered" => min_of(&mut p.delivered_at, at),
                "message.read" => min_of(&mut p.read_at, at),
                "message.failed" => p.failed = true,
                k if SENDS.contains(&k) => {
                    min_of(&mut p.sent_at, at);
                    max_of(&mut p.campaign, text(campaign, i));
                    max_of(&mut p.template, text(template, i));
                    max_of(&mut p.locale, text(locale, i));
                    max_of(&mut p.contact, text(contact_key, i).map(ids::key));
                }
                _ => {}
            }
        }
    }
    let rows = first_seen_order(by_key, |p| p.first_at);

    let ts = |f: fn(&Partial) -> Option<i64>| timestamps(&rows, f);
    let [account_id, phone_number_id] = owner_columns(&rows);
    let columns: Vec<ArrayRef> = vec![
        keys(rows.iter().map(|(k, _, _)| Some(*k))),
        ts(|p| p.sent_at),
        text_column(&rows, |p| p.campaign),
        text_column(&rows, |p| p.template),
        text_column(&rows, |p| p.locale),
        keys(rows.iter().map(|(_, _, p)| p.contact)),
        ts(|p| p.delivered_at),
        ts(|p| p.read_at),
        Arc::new(BooleanArray::from_iter(rows.iter().map(|(_, _, p)| Some(p.failed)))),
        Arc::new(BooleanArray::from_iter(rows.iter().map(|(_, _, p)| Some(p.replied)))),
        Arc::new(BooleanArray::from_iter(rows.iter().map(|(_, _, p)| Some(p.billable)))),
        text_column(&rows, |p| p.category),
        text_column(&rows, |p| p.country),
        Arc::new(arrow::array::Int64Array::from_iter(rows.iter().map(|(_, _, p)| p.cost_micros))),
        Arc::new(StringArray::from_iter(rows.iter().map(|(_, _, p)| p.pricing_type.as_deref()))),
        account_id,
        phone_number_id,
    ];
    Ok(RecordBatch::try_new(schema(), columns)?)
}

fn text_column<'a>(rows: &[(i128, Owner<'a>, Partial<'a>)], f: impl Fn(&Partial<'a>) -> Option<&'a str>) -> ArrayRef {
    Arc::new(StringArray::from_iter(rows.iter().map(|(_, _, p)| f(p))))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{self, Event};
    use arrow::datatypes::TimestampMicrosecondType;

    fn ev(kind: &str, id: &str, at: i64) -> Event {
        let mut e = Event::new(format!("{kind}-{id}-{at}"), kind, at, at, "test");
        e.message_id = Some(id.to_string());
        e
    }

    #[test]
    fn one_row_per_message_with_first_times_and_largest_attributes() {
        let mut accepted = ev("send.accepted", "m1", 10);
        accepted.template = Some("b".into());
        accepted.contact_key = Some("c1".into());
        let mut sent = ev("message.sent", "m1", 5);
        sent.template = Some("a".into());
        sent.billable = Some(true);
        sent.category = Some("utility".into());
        sent.attributes = Some(r#"{"pricing_model":"PMP","pricing_type":"regular"}"#.into());
        let mut failed = ev("message.failed", "m2", 60);
        failed.billable = Some(true);
        failed.cost_micros = Some(7);
        sent.campaign = Some("spring".into());
        let mut reply = ev("message.inbound", "in1", 40);
        reply.reply_to = Some("m1".into());
        let events = vec![
            accepted,
            sent,
            ev("message.delivered", "m1", 30),
            ev("message.delivered", "m1", 20),
            ev("message.read", "m2", 50),
            failed,
            reply,
            ev("conversion", "m3", 70),
        ];
        let batch = event::to_record_batch(&events).expect("batch");
        let r = of_events(std::slice::from_ref(&batch)).expect("rollup");
        assert_eq!(r.num_rows(), 2, "m1 and m2; the inbound message and the conversion make no row");
        let col = |n: &str| r.column_by_name(n).expect(n).clone();
        let keys = col("message_key");
        let keys = keys.as_primitive::<arrow::datatypes::Decimal128Type>();
        assert_eq!(keys.value(0), ids::key("m1"));
        assert_eq!(keys.value(1), ids::key("m2"));
        let ts = |n: &str, i: usize| {
            let c = col(n);
            let a = c.as_primitive::<TimestampMicrosecondType>();
            a.is_valid(i).then(|| a.value(i))
        };
        assert_eq!((ts("sent_at", 0), ts("delivered_at", 0), ts("read_at", 0)), (Some(5), Some(20), None));
        assert_eq!((ts("sent_at", 1), ts("delivered_at", 1), ts("read_at", 1)), (None, None, Some(50)));
        let template = col("template");
        assert_eq!(template.as_string::<i32>().value(0), "b");
        assert_eq!(col("campaign").as_string::<i32>().value(0), "spring");
        assert!(col("locale").is_null(0));
        let contact = col("contact");
        assert_eq!(contact.as_primitive::<arrow::datatypes::Decimal128Type>().value(0), ids::key("c1"));
        assert!(contact.is_null(1));
        let flags = |n: &str| {
            let c = col(n);
            (c.as_boolean().value(0), c.as_boolean().value(1))
        };
        assert_eq!(flags("failed"), (false, true));
        assert_eq!(flags("replied"), (true, false));
        assert_eq!(flags("billable"), (true, false), "a failure's billing is not the message's");
        assert_eq!(col("category").as_string::<i32>().value(0), "utility");
        assert_eq!(col("pricing_type").as_string::<i32>().value(0), "regular");
        assert!(col("pricing_type").is_null(1));
        assert!(col("cost_micros").is_null(1));
    }

    #[test]
    fn a_row_per_owner_of_a_message() {
        let mut sent = ev("message.sent", "m1", 5);
        sent.phone_number_id = Some("p1".into());
        let mut read = ev("message.read", "m1", 9);
        read.phone_number_id = Some("p1".into());
        let orphan = ev("message.delivered", "m1", 7);
        let batch = event::to_record_batch(&[sent, orphan, read]).expect("batch");
        let r = of_events(std::slice::from_ref(&batch)).expect("rollup");
        assert_eq!(r.num_rows(), 2, "the owned events and the one without ids");
        let phone = r.column_by_name("phone_number_id").expect("owner column");
        let phone = phone.as_string::<i32>();
        let read_at = r.column_by_name("read_at").expect("read_at");
        let read_at = read_at.as_primitive::<TimestampMicrosecondType>();
        assert_eq!((phone.value(0), read_at.value(0)), ("p1", 9), "first seen first");
        assert!(phone.is_null(1) && read_at.is_null(1));
        assert!(r.column_by_name("account_id").expect("account_id").is_null(0));
    }
}
