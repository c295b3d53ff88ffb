//! The exposure rollup: one row per experiment exposure of an events file, from which
//! `experiment` reads who was exposed to which variant, when, through which message.
//!
//! The message rollup's `sent_at` is the first send of any kind, but an exposure is a send that
//! names its experiment and variant (Meta's `message.sent` status names neither; convoscope's
//! own `send.accepted` does), and `experiment` keeps each exposure's campaign for its filter.
//! So the row's key is everything the report reads of an exposure but its time and the send's
//! attributes: experiment, variant, campaign, contact and message. Its aggregates are the first
//! time and the greatest country, template and locale of those sends (the contact's stratum and
//! breakdown levels, which the report would otherwise have to merge every message of the
//! experiment for), and merging rows across files (`MIN`, `MAX`, or rows repeated) gives what
//! reading the send events gives.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock};

use arrow::array::{ArrayRef, RecordBatch, StringArray, TimestampMicrosecondArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};

use super::{Owner, SENDS, keys, max_of, occurred_at, owner, owner_fields, text, utf8};
use crate::error::Result;
use crate::ids;

static SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
    Arc::new(Schema::new(vec![
        Field::new("experiment", DataType::Utf8, false),
        Field::new("variant", DataType::Utf8, false),
        Field::new("campaign", DataType::Utf8, true),
        Field::new("contact", ids::key_type(), false),
        Field::new("message_key", ids::key_type(), true),
        Field::new("exposed_at", DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())), false),
        Field::new("country", DataType::Utf8, true),
        Field::new("template", DataType::Utf8, true),
        Field::new("locale", DataType::Utf8, true),
        owner_fields()[0].clone(),
        owner_fields()[1].clone(),
    ]))
});

/// The rollup's stored schema (without the `date` partition column), over the file's send
/// events (`send.accepted`, `message.sent`) with an experiment, a variant and a contact:
///
/// - `experiment`, `variant`, `campaign`: the send's;
/// - `contact`: `id_key(contact_key)`; `message_key`: `id_key(message_id)`, null without one;
/// - `exposed_at`: the first `occurred_at` of the file's sends with these five values and
///   owner;
/// - `country`, `template`, `locale`: the greatest of those sends' (`message.sent` names no
///   template or locale), null where none names one;
/// - `account_id`, `phone_number_id`: the sends' owner ([`crate::rollup`]).
pub fn schema() -> SchemaRef {
    SCHEMA.clone()
}

/// What a row is keyed by: experiment, variant, campaign, contact, message, owner. Strings
/// borrow from the file's batch.
type Key<'a> = (&'a str, &'a str, Option<&'a str>, i128, Option<i128>, Owner<'a>);

/// What a row aggregates: the first time, and the greatest country, template and locale.
struct Exposure<'a> {
    at: i64,
    country: Option<&'a str>,
    template: Option<&'a str>,
    locale: Option<&'a str>,
}

/// The rollup rows of `batches` (of the events table, usually one date's rows of one file), ordered by exposure time.
pub fn of_events(batches: &[RecordBatch]) -> Result<RecordBatch> {
    let mut first: HashMap<Key, Exposure> = HashMap::new();
    for events in batches {
        let event_type = utf8(events, "event_type")?;
        let experiment = utf8(events, "experiment")?;
        let variant = utf8(events, "variant")?;
        let campaign = utf8(events, "campaign")?;
        let contact_key = utf8(events, "contact_key")?;
        let message_id = utf8(events, "message_id")?;
        let (country, template, locale) =
            (utf8(events, "country")?, utf8(events, "template")?, utf8(events, "locale")?);
        let (account, phone) = (utf8(events, "account_id")?, utf8(events, "phone_number_id")?);
        let occurred = occurred_at(events)?;
        for i in 0..events.num_rows() {
            if !SENDS.contains(&event_type.value(i)) {
                continue;
            }
            let (Some(e), Some(v), Some(c)) = (text(experiment, i), text(variant, i), text(contact_key, i)) else {
                continue;
            };
            let key =
                (e, v, text(campaign, i), ids::key(c), text(message_id, i).map(ids::key), owner(account, phone, i));
            let at = occurred.value(i);
            let x = first.entry(key).or_insert(Exposure { at, country: None, template: None, locale: None });
            x.at = x.at.min(at);
            max_of(&mut x.country, text(country, i));
            max_of(&mut x.template, text(template, i));
            max_of(&mut x.locale, text(locale, i));
        }
    }
    // By time, so the timestamps delta-encode into a few bits; the rest of the key makes the
    // order (and so the file) the same on every run.
    let mut rows: Vec<(Key, Exposure)> = first.into_iter().collect();
    rows.sort_unstable_by(|(a, x), (b, y)| x.at.cmp(&y.at).then_with(|| a.cmp(b)));

    let columns: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from_iter_values(rows.iter().map(|(k, _)| k.0))),
        Arc::new(StringArray::from_iter_values(rows.iter().map(|(k, _)| k.1))),
        Arc::new(StringArray::from_iter(rows.iter().map(|(k, _)| k.2))),
        keys(rows.iter().map(|(k, _)| Some(k.3))),
        keys(rows.iter().map(|(k, _)| k.4)),
        Arc::new(TimestampMicrosecondArray::from_iter_values(rows.iter().map(|(_, x)| x.at)).with_timezone("UTC")),
        Arc::new(StringArray::from_iter(rows.iter().map(|(_, x)| x.country))),
        Arc::new(StringArray::from_iter(rows.iter().map(|(_, x)| x.template))),
        Arc::new(StringArray::from_iter(rows.iter().map(|(_, x)| x.locale))),
        Arc::new(StringArray::from_iter(rows.iter().map(|(k, _)| k.5.0))),
        Arc::new(StringArray::from_iter(rows.iter().map(|(k, _)| k.5.1))),
    ];
    Ok(RecordBatch::try_new(schema(), columns)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{self, Event};
    use arrow::array::{Array, AsArray};
    use arrow::datatypes::{Decimal128Type, TimestampMicrosecondType};

    fn send(kind: &str, message: Option<&str>, variant: Option<&str>, at: i64) -> Event {
        let mut e = Event::new(format!("{kind}-{message:?}-{at}"), kind, at, at, "test");
        e.message_id = message.map(str::to_string);
        e.contact_key = Some("c1".into());
        e.experiment = variant.map(|_| "exp".to_string());
        e.variant = variant.map(str::to_string);
        e
    }

    #[test]
    fn one_row_per_exposure_with_its_first_time() {
        let mut other_campaign = send("send.accepted", Some("m1"), Some("a"), 5);
        other_campaign.campaign = Some("spring".into());
        let mut no_contact = send("send.accepted", Some("m4"), Some("a"), 1);
        no_contact.contact_key = None;
        let events = vec![
            send("message.sent", Some("m1"), Some("a"), 30),
            send("send.accepted", Some("m1"), Some("a"), 20),
            other_campaign,
            send("send.accepted", None, Some("b"), 40),
            send("message.sent", Some("m2"), None, 10),
            send("message.read", Some("m3"), Some("a"), 2),
            no_contact,
        ];
        let batch = event::to_record_batch(&events).expect("batch");
        let r = of_events(std::slice::from_ref(&batch)).expect("rollup");
        // m1 in two campaigns, and the exposure without a message; not m2 (no variant), m3 (a
        // read is no exposure) or m4 (no contact).
        assert_eq!(r.num_rows(), 3);
        let col = |n: &str| r.column_by_name(n).expect(n).clone();
        let at = col("exposed_at");
        let at: Vec<i64> = at.as_primitive::<TimestampMicrosecondType>().values().to_vec();
        assert_eq!(at, vec![5, 20, 40], "first time per key, rows by time");
        let campaign = col("campaign");
        let campaign = campaign.as_string::<i32>();
        assert_eq!((campaign.value(0), campaign.is_null(1)), ("spring", true));
        let message = col("message_key");
        let message = message.as_primitive::<Decimal128Type>();
        assert_eq!((message.value(0), message.value(1)), (ids::key("m1"), ids::key("m1")));
        assert!(message.is_null(2));
        assert_eq!(col("variant").as_string::<i32>().value(2), "b");
        assert_eq!(col("contact").as_primitive::<Decimal128Type>().value(2), ids::key("c1"));
    }

    #[test]
    fn a_row_keeps_the_greatest_country_template_and_locale_of_its_sends() {
        let mut accepted = send("send.accepted", Some("m1"), Some("a"), 20);
        (accepted.country, accepted.template, accepted.locale) =
            (Some("BR".into()), Some("promo".into()), Some("pt_BR".into()));
        // Meta's status names the country but neither template nor locale.
        let mut sent = send("message.sent", Some("m1"), Some("a"), 30);
        sent.country = Some("AR".into());
        let bare = send("send.accepted", Some("m2"), Some("a"), 40);
        let batch = event::to_record_batch(&[accepted, sent, bare]).expect("batch");
        let r = of_events(std::slice::from_ref(&batch)).expect("rollup");
        assert_eq!(r.num_rows(), 2);
        let text = |n: &str| {
            let c = r.column_by_name(n).expect(n).as_string::<i32>().clone();
            (0..c.len()).map(|i| c.is_valid(i).then(|| c.value(i).to_string())).collect::<Vec<_>>()
        };
        assert_eq!(text("country"), vec![Some("BR".to_string()), None]);
        assert_eq!(text("template"), vec![Some("promo".to_string()), None]);
        assert_eq!(text("locale"), vec![Some("pt_BR".to_string()), None]);
    }
}
