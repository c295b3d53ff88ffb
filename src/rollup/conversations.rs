//! The conversation rollup: one row per conversation and events file, from which `containment`
//! and `sla` read their conversations instead of grouping the events by conversation id.
//!
//! `sla`'s first response is the first reply at or after the customer's first message, which
//! may lie in another file; no single time per file can answer that, so the row keeps the
//! file's reply times (and reopening times, for the same reason) as sorted lists. A
//! conversation has a handful, so the lists stay small. Most conversations live in one file,
//! though, and for those the row also holds the answers themselves (`first_response_at`,
//! `reopened_within_week`): `sla` joins the lists only for conversations of several rows.

use std::sync::{Arc, LazyLock};

use arrow::array::{ArrayRef, BooleanArray, ListBuilder, RecordBatch, StringArray, TimestampMicrosecondBuilder};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};

use super::{
    ByKey, first_seen_order, keys, max_of, min_of, occurred_at, owner, owner_columns, owner_fields, text, timestamps,
    utf8,
};
use crate::error::Result;
use crate::ids;

/// The events that answer the customer: the first one after the customer's first message is
/// the first response.
const REPLIES: [&str; 2] = ["conversation.bot_reply", "conversation.agent_reply"];

/// How long after its first resolution a reopening means the conversation was not resolved at
/// first contact (sla.sql's 604800 seconds).
const REOPEN_WINDOW_MICROS: i64 = 7 * 24 * 3600 * 1_000_000;

fn timestamp() -> DataType {
    DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
}

fn times_field() -> Arc<Field> {
    Arc::new(Field::new("item", timestamp(), false))
}

static SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
    let list = DataType::List(times_field());
    Arc::new(Schema::new(vec![
        Field::new("conversation_key", ids::key_type(), false),
        Field::new("contact_key", ids::key_type(), true),
        Field::new("opened_at", timestamp(), true),
        Field::new("queue", DataType::Utf8, true),
        Field::new("any_queue", DataType::Utf8, true),
        Field::new("customer_at", timestamp(), true),
        Field::new("resolved_at", timestamp(), true),
        Field::new("handoff_at", timestamp(), true),
        Field::new("bot_replied", DataType::Boolean, false),
        Field::new("replies", list.clone(), false),
        Field::new("reopens", list, false),
        Field::new("first_response_at", timestamp(), true),
        Field::new("reopened_within_week", DataType::Boolean, false),
        owner_fields()[0].clone(),
        owner_fields()[1].clone(),
    ]))
});

/// The rollup's stored schema (without the `date` partition column), over the file's events
/// with a `conversation_id`:
///
/// - `conversation_key`: `id_key(conversation_id)`;
/// - `contact_key`: the largest `id_key(contact_key)` of its events (as `cost` reads it);
/// - `opened_at`, `resolved_at`, `handoff_at`: first `conversation.opened`,
///   `conversation.resolved`, `conversation.handoff`;
/// - `queue`: the largest `queue` of its `conversation.*` events (as `containment` reads it);
///   `any_queue`: of all its events (as `sla` reads it);
/// - `customer_at`: first event of actor `customer` or of type `message.inbound`;
/// - `bot_replied`: it has a `conversation.bot_reply`;
/// - `replies`, `reopens`: the distinct times of its bot and agent replies, and of its
///   `conversation.reopened`, ascending;
/// - over this file's events alone, what `sla` computes per conversation: `first_response_at`,
///   its first reply at or after `customer_at` (else `opened_at`); `reopened_within_week`, a
///   reopening within 7 days after `resolved_at`. Right for the conversation only where this
///   is its one row;
/// - `account_id`, `phone_number_id`: the owner of the row's events (a row per conversation
///   and owner: [`crate::rollup`]).
pub fn schema() -> SchemaRef {
    SCHEMA.clone()
}

/// One conversation's partial aggregate over a file. Strings borrow from the file's batch.
#[derive(Default)]
struct Partial<'a> {
    /// First seen, for the order of rows in the file.
    first_at: i64,
    contact: Option<i128>,
    opened_at: Option<i64>,
    queue: Option<&'a str>,
    any_queue: Option<&'a str>,
    customer_at: Option<i64>,
    resolved_at: Option<i64>,
    handoff_at: Option<i64>,
    bot_replied: bool,
    replies: Vec<i64>,
    reopens: Vec<i64>,
}

/// The rollup rows of `batches` (of the events table, usually one date's rows of one file), ordered by when each conversation was first seen.
pub fn of_events(batches: &[RecordBatch]) -> Result<RecordBatch> {
    let mut by_key: ByKey<Partial> = ByKey::default();
    for events in batches {
        let event_type = utf8(events, "event_type")?;
        let conversation_id = utf8(events, "conversation_id")?;
        let queue = utf8(events, "queue")?;
        let actor = utf8(events, "actor")?;
        let contact = utf8(events, "contact_key")?;
        let (account, phone) = (utf8(events, "account_id")?, utf8(events, "phone_number_id")?);
        let occurred = occurred_at(events)?;
        for i in 0..events.num_rows() {
            let Some(id) = text(conversation_id, i) else { continue };
            let kind = event_type.value(i);
            let at = occurred.value(i);
            let p =
                by_key.entry(ids::key(id), owner(account, phone, i), || Partial { first_at: at, ..Default::default() });
            p.first_at = p.first_at.min(at);
            max_of(&mut p.contact, text(contact, i).map(ids::key));
            let q = text(queue, i);
            max_of(&mut p.any_queue, q);
            if kind.starts_with("conversation.") {
                max_of(&mut p.queue, q);
            }
            if kind == "message.inbound" || text(actor, i) == Some("customer") {
                min_of(&mut p.customer_at, at);
            }
            match kind {
                "conversation.opened" => min_of(&mut p.opened_at, at),
                "conversation.resolved" => min_of(&mut p.resolved_at, at),
                "conversation.handoff" => min_of(&mut p.handoff_at, at),
                "conversation.reopened" => p.reopens.push(at),
                k if REPLIES.contains(&k) => {
                    p.bot_replied |= k == "conversation.bot_reply";
                    p.replies.push(at)
                }
                _ => {}
            }
        }
    }
    let mut rows = first_seen_order(by_key, |p| p.first_at);
    for (_, _, p) in &mut rows {
        for v in [&mut p.replies, &mut p.reopens] {
            v.sort_unstable();
            v.dedup();
        }
    }

    let ts = |f: fn(&Partial) -> Option<i64>| timestamps(&rows, f);
    let text_column = |f: &dyn Fn(&Partial) -> Option<String>| -> ArrayRef {
        Arc::new(StringArray::from_iter(rows.iter().map(|(_, _, p)| f(p))))
    };
    let [account_id, phone_number_id] = owner_columns(&rows);
    let columns: Vec<ArrayRef> = vec![
        keys(rows.iter().map(|(k, _, _)| Some(*k))),
        keys(rows.iter().map(|(_, _, p)| p.contact)),
        ts(|p| p.opened_at),
        text_column(&|p| p.queue.map(str::to_string)),
        text_column(&|p| p.any_queue.map(str::to_string)),
        ts(|p| p.customer_at),
        ts(|p| p.resolved_at),
        ts(|p| p.handoff_at),
        Arc::new(BooleanArray::from_iter(rows.iter().map(|(_, _, p)| Some(p.bot_replied)))),
        times(rows.iter().map(|(_, _, p)| p.replies.as_slice())),
        times(rows.iter().map(|(_, _, p)| p.reopens.as_slice())),
        ts(|p| {
            let from = p.customer_at.or(p.opened_at)?;
            p.replies.iter().copied().filter(|t| *t >= from).min()
        }),
        Arc::new(BooleanArray::from_iter(rows.iter().map(|(_, _, p)| {
            Some(p.resolved_at.is_some_and(|r| p.reopens.iter().any(|t| *t >= r && *t - r <= REOPEN_WINDOW_MICROS)))
        }))),
        account_id,
        phone_number_id,
    ];
    Ok(RecordBatch::try_new(schema(), columns)?)
}

/// A list column of each row's times.
fn times<'a>(rows: impl Iterator<Item = &'a [i64]>) -> ArrayRef {
    let mut b = ListBuilder::new(TimestampMicrosecondBuilder::new().with_timezone("UTC")).with_field(times_field());
    for v in rows {
        b.values().append_slice(v);
        b.append(true);
    }
    Arc::new(b.finish())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{self, Event};
    use arrow::array::{Array, AsArray};
    use arrow::datatypes::{Decimal128Type, TimestampMicrosecondType};

    fn ev(kind: &str, conversation: Option<&str>, at: i64) -> Event {
        let mut e = Event::new(format!("{kind}-{conversation:?}-{at}"), kind, at, at, "test");
        e.conversation_id = conversation.map(str::to_string);
        e
    }

    #[test]
    fn one_row_per_conversation_with_first_times_and_reply_times() {
        let mut opened = ev("conversation.opened", Some("c1"), 10);
        opened.queue = Some("billing".into());
        let mut inbound = ev("message.inbound", Some("c1"), 20);
        inbound.queue = Some("zz-only-on-inbound".into());
        inbound.contact_key = Some("+15550001".into());
        let mut handoff = ev("conversation.handoff", Some("c1"), 25);
        handoff.contact_key = Some("+15550002".into());
        let mut customer = ev("csat.submitted", Some("c2"), 5);
        customer.actor = Some("customer".into());
        let events = vec![
            ev("conversation.bot_reply", Some("c1"), 8),
            opened,
            inbound,
            ev("conversation.agent_reply", Some("c1"), 30),
            ev("conversation.agent_reply", Some("c1"), 30),
            handoff,
            ev("conversation.handoff", Some("c1"), 35),
            ev("conversation.resolved", Some("c1"), 50),
            ev("conversation.resolved", Some("c1"), 40),
            ev("conversation.reopened", Some("c1"), 60),
            customer,
            ev("message.delivered", None, 1),
        ];
        let batch = event::to_record_batch(&events).expect("batch");
        let r = of_events(std::slice::from_ref(&batch)).expect("rollup");
        assert_eq!(r.num_rows(), 2, "c2 first (seen at 5), then c1; no row for the event without a conversation");
        let col = |n: &str| r.column_by_name(n).expect(n).clone();
        let keys = col("conversation_key");
        let keys = keys.as_primitive::<Decimal128Type>();
        assert_eq!((keys.value(0), keys.value(1)), (ids::key("c2"), ids::key("c1")));
        let ts = |n: &str, i: usize| {
            let c = col(n);
            let a = c.as_primitive::<TimestampMicrosecondType>();
            a.is_valid(i).then(|| a.value(i))
        };
        assert_eq!((ts("opened_at", 1), ts("customer_at", 1), ts("resolved_at", 1)), (Some(10), Some(20), Some(40)));
        assert_eq!((ts("opened_at", 0), ts("customer_at", 0)), (None, Some(5)), "a customer actor counts");
        assert_eq!(col("queue").as_string::<i32>().value(1), "billing");
        assert_eq!(col("any_queue").as_string::<i32>().value(1), "zz-only-on-inbound");
        assert_eq!((ts("handoff_at", 0), ts("handoff_at", 1)), (None, Some(25)));
        let bot = col("bot_replied");
        assert_eq!((bot.as_boolean().value(0), bot.as_boolean().value(1)), (false, true));
        let contacts = col("contact_key");
        let contacts = contacts.as_primitive::<Decimal128Type>();
        assert!(contacts.is_null(0), "c2's events name no contact");
        assert_eq!(contacts.value(1), ids::key("+15550002").max(ids::key("+15550001")), "the largest key");
        let times = |n: &str, i: usize| -> Vec<i64> {
            let c = col(n);
            let v = c.as_list::<i32>().value(i);
            v.as_primitive::<TimestampMicrosecondType>().values().to_vec()
        };
        assert_eq!(times("replies", 1), [8, 30], "sorted, the repeated reply once");
        assert_eq!(times("reopens", 1), [60]);
        assert!(times("replies", 0).is_empty());
        assert_eq!(ts("first_response_at", 1), Some(30), "the reply at 8 came before the customer wrote");
        assert_eq!(ts("first_response_at", 0), None);
        let reopened = col("reopened_within_week");
        assert!(reopened.as_boolean().value(1), "reopened 20 µs after its resolution at 40");
        assert!(!reopened.as_boolean().value(0));
    }
}
