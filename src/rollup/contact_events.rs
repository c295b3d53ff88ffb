//! The contact-event rollup: one row per conversion or opt-out of an events file, from which
//! `experiment` reads what each exposed contact did around its exposure.
//!
//! Conversions and opt-outs are a small share of the events, but a report that reads them from
//! the events decodes the 64-character event ids and contact keys of every page that may hold
//! them (on 10 million compacted events, a fifth of the experiment report's time). Here each is
//! a row of numbers: its id and contact as `id_key`s, its first time and its revenue.
//!
//! The row is keyed by the event's type, id and owner, so an event stored twice (a file both
//! before and after compaction replaced it, an events file flushed twice after a crash) is one
//! row once merged (`MIN`, `MAX`), and a conversion counts once however many files hold it.

use std::sync::{Arc, LazyLock};

use arrow::array::{Array, ArrayRef, AsArray, Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Int64Type, Schema, SchemaRef, TimeUnit};

use super::{ByKey, first_seen_order, keys, occurred_at, owner, owner_columns, owner_fields, text, timestamps, utf8};
use crate::error::{Error, Result};
use crate::ids;

/// The event types the rollup keeps, in the order of its rows' `event_type`.
pub const TYPES: [&str; 2] = ["conversion", "consent.opt_out"];

static SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
    Arc::new(Schema::new(vec![
        Field::new("event_type", DataType::Utf8, false),
        Field::new("event_key", ids::key_type(), false),
        Field::new("contact", ids::key_type(), false),
        Field::new("occurred_at", DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())), false),
        Field::new("revenue_micros", DataType::Int64, false),
        owner_fields()[0].clone(),
        owner_fields()[1].clone(),
    ]))
});

/// The rollup's stored schema (without the `date` partition column), over the file's
/// [`TYPES`] events with a contact:
///
/// - `event_type`: `conversion` or `consent.opt_out`; `event_key`: `id_key(event_id)`;
/// - `contact`: the largest `id_key(contact_key)` of the file's events with this type, id and
///   owner;
/// - `occurred_at`: their first `occurred_at`;
/// - `revenue_micros`: their largest `revenue_micros`, 0 where none has one;
/// - `account_id`, `phone_number_id`: their owner ([`crate::rollup`]).
pub fn schema() -> SchemaRef {
    SCHEMA.clone()
}

/// One event's partial aggregate over a file.
struct Partial {
    contact: i128,
    occurred_at: i64,
    revenue_micros: i64,
}

/// The rollup rows of `batches` (of the events table, usually one date's rows of one file),
/// conversions first, each type's rows by time.
pub fn of_events(batches: &[RecordBatch]) -> Result<RecordBatch> {
    let mut by_type: [ByKey<Partial>; 2] = Default::default();
    for events in batches {
        let event_type = utf8(events, "event_type")?;
        let event_id = utf8(events, "event_id")?;
        let contact_key = utf8(events, "contact_key")?;
        let revenue = events
            .column_by_name("revenue_micros")
            .and_then(|c| c.as_primitive_opt::<Int64Type>())
            .ok_or_else(|| Error::Invalid("events batch without revenue_micros".into()))?;
        let (account, phone) = (utf8(events, "account_id")?, utf8(events, "phone_number_id")?);
        let occurred = occurred_at(events)?;
        for i in 0..events.num_rows() {
            let Some(kind) = TYPES.iter().position(|t| *t == event_type.value(i)) else { continue };
            let Some(contact) = text(contact_key, i).map(ids::key) else { continue };
            let (at, amount) = (occurred.value(i), if revenue.is_valid(i) { revenue.value(i) } else { 0 });
            let p = by_type[kind].entry(ids::key(event_id.value(i)), owner(account, phone, i), || Partial {
                contact,
                occurred_at: at,
                revenue_micros: amount,
            });
            p.contact = p.contact.max(contact);
            p.occurred_at = p.occurred_at.min(at);
            p.revenue_micros = p.revenue_micros.max(amount);
        }
    }
    let mut types = Vec::new();
    let mut rows = Vec::new();
    for (kind, by_key) in by_type.into_iter().enumerate() {
        let ordered = first_seen_order(by_key, |p| p.occurred_at);
        types.extend(std::iter::repeat_n(TYPES[kind], ordered.len()));
        rows.extend(ordered);
    }
    let [account, phone] = owner_columns(&rows);
    let columns: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from_iter_values(types)),
        keys(rows.iter().map(|(k, _, _)| Some(*k))),
        keys(rows.iter().map(|(_, _, p)| Some(p.contact))),
        timestamps(&rows, |p| Some(p.occurred_at)),
        Arc::new(Int64Array::from_iter_values(rows.iter().map(|(_, _, p)| p.revenue_micros))),
        account,
        phone,
    ];
    Ok(RecordBatch::try_new(schema(), columns)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{self, Event};
    use arrow::datatypes::{Decimal128Type, TimestampMicrosecondType};

    fn event(id: &str, kind: &str, contact: Option<&str>, at: i64, revenue: Option<i64>) -> Event {
        let mut e = Event::new(id.to_string(), kind, at, at, "test");
        e.contact_key = contact.map(str::to_string);
        e.revenue_micros = revenue;
        e
    }

    #[test]
    fn one_row_per_conversion_or_opt_out_with_its_first_time_and_revenue() {
        let mut other_owner = event("v1", "conversion", Some("c1"), 50, Some(9));
        other_owner.account_id = Some("acct-2".into());
        let events = vec![
            // One conversion stored twice (a retry in another file): one row.
            event("v1", "conversion", Some("c1"), 30, Some(5_000_000)),
            event("v1", "conversion", Some("c1"), 20, None),
            other_owner,
            event("v2", "conversion", Some("c2"), 10, None),
            event("o1", "consent.opt_out", Some("c1"), 40, None),
            // Without a contact nobody can be credited; other types are not kept.
            event("v3", "conversion", None, 5, Some(1)),
            event("m1", "message.sent", Some("c1"), 1, None),
        ];
        let batch = event::to_record_batch(&events).expect("batch");
        let r = of_events(std::slice::from_ref(&batch)).expect("rollup");
        assert_eq!(r.num_rows(), 4, "v2, v1, v1 of the other owner, o1");
        let col = |n: &str| r.column_by_name(n).expect(n).clone();
        let types: Vec<String> = col("event_type").as_string::<i32>().iter().flatten().map(str::to_string).collect();
        assert_eq!(types, ["conversion", "conversion", "conversion", "consent.opt_out"]);
        let at = col("occurred_at");
        assert_eq!(at.as_primitive::<TimestampMicrosecondType>().values().to_vec(), vec![10, 20, 50, 40]);
        let revenue = col("revenue_micros");
        assert_eq!(revenue.as_primitive::<Int64Type>().values().to_vec(), vec![0, 5_000_000, 9, 0]);
        let key = col("event_key");
        assert_eq!(key.as_primitive::<Decimal128Type>().value(1), ids::key("v1"));
        let contact = col("contact");
        assert_eq!(contact.as_primitive::<Decimal128Type>().value(3), ids::key("c1"));
        let account = col("account_id");
        assert_eq!((account.is_null(1), account.as_string::<i32>().value(2)), (true, "acct-2"));
    }
}
