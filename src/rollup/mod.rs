//! Rollups: partial aggregates written beside every events file, from which reports read
//! instead of grouping millions of events by their text ids.
//!
//! Every report groups events by a message or conversation id after scanning them all; that
//! grouping and the 64-character ids it reads were most of their time. The writer of an
//! events file already holds its rows in memory, so it also writes, first, one aggregate row
//! per message ([`messages`]), per conversation ([`conversations`]), per experiment exposure
//! ([`exposures`]) and per conversion or opt-out ([`contact_events`]) of that file to
//! `rollups/<kind>/date=<date>/<name>.parquet`. A report merges those rows per key (through
//! the facts tables, `crate::analytics::facts`), which reads a fraction of the rows, as numbers.
//!
//! Every column of a rollup is a `MIN`, `MAX`, "any" or set of the file's events, so merging
//! the rows of several files gives what aggregating their events at once gives, and a row
//! repeated (a file both before and after compaction replaced it, an events file flushed twice
//! after a crash) changes nothing.
//!
//! A row aggregates the events of one key *and one owner* (`account_id`, `phone_number_id`,
//! both kept in the row): a key's events nearly always share their owner, and where they do
//! not (a conversion posted without ids beside the receipts of its message) each owner gets a
//! row. So a tenant's session keeps the rollup rows of its ids and merges them per key, which
//! gives what aggregating its own events gives (`crate::analytics::tenancy`); merged per key
//! without that filter, the rows give what they gave before owners were kept. Reports use the rollups only when every events file has
//! every rollup ([`covers`]); otherwise they read the events (`convoscope compact` writes
//! missing rollups).

pub mod contact_events;
pub mod conversations;
pub mod exposures;
pub mod messages;

use std::hash::{Hash, Hasher};
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, Decimal128Array, RecordBatch, StringArray, TimestampMicrosecondArray};
use arrow::datatypes::{SchemaRef, TimestampMicrosecondType};

use crate::error::{Error, Result};

/// A rollup: what it aggregates per key of an events file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// One row per message: [`messages`].
    Messages,
    /// One row per conversation: [`conversations`].
    Conversations,
    /// One row per experiment exposure: [`exposures`].
    Exposures,
    /// One row per conversion or opt-out: [`contact_events`].
    ContactEvents,
}

impl Kind {
    /// Every rollup, in the order writers write them.
    pub const ALL: [Kind; 4] = [Kind::Messages, Kind::Conversations, Kind::Exposures, Kind::ContactEvents];

    /// Its directory under the store's prefix, with `date=` partitions as `events/`. A rollup
    /// whose columns change moves to a new directory (the old one goes to [`RETIRED_DIRS`]):
    /// read as the new layout, an old file would give its new columns as nulls, and a report
    /// would count them as answers; in a new directory, the old files are simply missing, and
    /// reports read the events until `serve`'s compaction round or `convoscope compact` writes
    /// them.
    pub fn dir(self) -> &'static str {
        match self {
            Kind::Messages => "rollups/messages-v3",
            Kind::Conversations => "rollups/conversations-v3",
            Kind::Exposures => "rollups/exposures-v3",
            Kind::ContactEvents => "rollups/contact-events",
        }
    }

    /// The SQL table reports read it as.
    pub fn table(self) -> &'static str {
        match self {
            Kind::Messages => "messages",
            Kind::Conversations => "conversations",
            Kind::Exposures => "exposures",
            Kind::ContactEvents => "contact_events",
        }
    }

    /// Its stored schema (without the `date` partition column).
    pub fn schema(self) -> SchemaRef {
        match self {
            Kind::Messages => messages::schema(),
            Kind::Conversations => conversations::schema(),
            Kind::Exposures => exposures::schema(),
            Kind::ContactEvents => contact_events::schema(),
        }
    }

    /// Its rows of `events`, batches of the events table (usually one date's rows of one file):
    /// one row per key of all of them.
    pub fn of_events(self, events: &[RecordBatch]) -> Result<RecordBatch> {
        match self {
            Kind::Messages => messages::of_events(events),
            Kind::Conversations => conversations::of_events(events),
            Kind::Exposures => exposures::of_events(events),
            Kind::ContactEvents => contact_events::of_events(events),
        }
    }

    /// The rollup file of the events file at `events_path` (a path under the store's prefix):
    /// the same date and name under [`Kind::dir`]. `None` for a path that is not an events file.
    pub fn path_of(self, events_path: &str) -> Option<String> {
        let (before, after) = events_path.rsplit_once("events/date=")?;
        if !(before.is_empty() || before.ends_with('/')) {
            return None;
        }
        Some(format!("{before}{}/date={after}", self.dir()))
    }
}

/// Directories of rollups in a layout no report reads any more ([`Kind::dir`]):
/// `convoscope compact` and `serve`'s compaction round delete their files once they have
/// written the current ones (`maintenance::heal_rollups`).
/// `rollups/conversations`: before the conversation rollup had `contact_key`, `handoff_at` and
/// `bot_replied` (for `cost`); `rollups/messages`, `rollups/conversations-v2`,
/// `rollups/exposures`: before rows were kept per owner (`account_id`, `phone_number_id`);
/// `rollups/messages-v2`: before the message rollup had `pricing_type` (for `pricing`);
/// `rollups/exposures-v2`: before the exposure rollup had the sends' `country`, `template` and
/// `locale` (for `experiment`).
pub const RETIRED_DIRS: [&str; 6] = [
    "rollups/conversations",
    "rollups/messages",
    "rollups/conversations-v2",
    "rollups/exposures",
    "rollups/messages-v2",
    "rollups/exposures-v2",
];

/// The columns of the events table the rollups read: a merge of events files reads only these
/// for the rollups of the merged file (`maintenance`). A rollup reading another column fails
/// on such a batch (every merge test would).
pub const EVENT_COLUMNS: [&str; 22] = [
    "event_type",
    "event_id",
    "account_id",
    "phone_number_id",
    "occurred_at",
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
    "billable",
    "cost_micros",
    "revenue_micros",
    "actor",
    "queue",
    "attributes",
];

/// The rollups of one events file, each encoded as Parquet (by `crate::store`).
pub type Encoded = Vec<(Kind, Vec<u8>)>;

/// Whether every events file (paths under the store) has every rollup among `rollups`.
pub fn covers<'a>(events: impl IntoIterator<Item = &'a str>, rollups: impl IntoIterator<Item = &'a str>) -> bool {
    let have: std::collections::HashSet<&str> = rollups.into_iter().collect();
    events.into_iter().all(|e| Kind::ALL.iter().all(|k| k.path_of(e).is_some_and(|r| have.contains(r.as_str()))))
}

/// The send events: they put a message in the cohort ([`messages`]) and, naming an
/// experiment, expose its contact to a variant ([`exposures`]).
const SENDS: [&str; 2] = ["send.accepted", "message.sent"];

/// A key column (`id_key` values, null where `None`).
fn keys(values: impl IntoIterator<Item = Option<i128>>) -> ArrayRef {
    Arc::new(Decimal128Array::from_iter(values).with_data_type(crate::ids::key_type()))
}

/// An `id_key` as a hash-map key. It is an xxh3 hash already, so its low 64 bits serve as the
/// map's hash: SipHash of it was ~1.9% of `serve`'s CPU under the status load, in the message
/// rollup alone.
#[derive(Clone, Copy, PartialEq, Eq)]
struct IdKey(i128);

impl Hash for IdKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u64(self.0 as u64);
    }
}

impl nohash_hasher::IsEnabled for IdKey {}

/// Who an event is: its `account_id` and `phone_number_id`. Strings borrow from the file's batch.
type Owner<'a> = (Option<&'a str>, Option<&'a str>);

/// The owner of row `i` of an events batch, from its `account_id` and `phone_number_id`.
fn owner<'a>(account: &'a StringArray, phone: &'a StringArray, i: usize) -> Owner<'a> {
    (text(account, i), text(phone, i))
}

/// Partial aggregates by `id_key` and owner. A key's first owner is kept beside it in the map
/// (no allocation: nearly every key has one), any other in `others`.
struct ByKey<'a, P> {
    first: nohash_hasher::IntMap<IdKey, (Owner<'a>, P)>,
    others: std::collections::HashMap<(i128, Owner<'a>), P>,
}

impl<'a, P> Default for ByKey<'a, P> {
    fn default() -> Self {
        ByKey { first: Default::default(), others: Default::default() }
    }
}

impl<'a, P> ByKey<'a, P> {
    /// The partial aggregate of `key` and `owner`, made by `new` if it is the first.
    fn entry(&mut self, key: i128, owner: Owner<'a>, new: impl FnOnce() -> P) -> &mut P {
        use std::collections::hash_map::Entry;
        match self.first.entry(IdKey(key)) {
            Entry::Vacant(v) => &mut v.insert((owner, new())).1,
            Entry::Occupied(o) if o.get().0 == owner => &mut o.into_mut().1,
            Entry::Occupied(_) => self.others.entry((key, owner)).or_insert_with(new),
        }
    }
}

/// `by_key`'s rows by when each was first seen (`first_at`), then by key and owner: timestamps
/// that follow each other delta-encode into a few bits.
fn first_seen_order<'a, P>(by_key: ByKey<'a, P>, first_at: impl Fn(&P) -> i64) -> Vec<(i128, Owner<'a>, P)> {
    let mut rows: Vec<(i128, Owner<'a>, P)> = by_key
        .first
        .into_iter()
        .map(|(k, (o, p))| (k.0, o, p))
        .chain(by_key.others.into_iter().map(|((k, o), p)| (k, o, p)))
        .collect();
    rows.sort_unstable_by(|(ka, oa, a), (kb, ob, b)| (first_at(a), *ka, *oa).cmp(&(first_at(b), *kb, *ob)));
    rows
}

/// The two owner columns (`account_id`, `phone_number_id`) of `rows`.
fn owner_columns<P>(rows: &[(i128, Owner, P)]) -> [ArrayRef; 2] {
    [
        Arc::new(StringArray::from_iter(rows.iter().map(|(_, o, _)| o.0))),
        Arc::new(StringArray::from_iter(rows.iter().map(|(_, o, _)| o.1))),
    ]
}

/// The fields of the owner columns every rollup ends with.
fn owner_fields() -> [arrow::datatypes::Field; 2] {
    use arrow::datatypes::{DataType, Field};
    [Field::new("account_id", DataType::Utf8, true), Field::new("phone_number_id", DataType::Utf8, true)]
}

/// A UTC timestamp column of `f` over `rows`.
fn timestamps<P>(rows: &[(i128, Owner, P)], f: impl Fn(&P) -> Option<i64>) -> ArrayRef {
    Arc::new(TimestampMicrosecondArray::from_iter(rows.iter().map(|(_, _, p)| f(p))).with_timezone("UTC"))
}

fn min_of(slot: &mut Option<i64>, v: i64) {
    *slot = Some(slot.map_or(v, |s| s.min(v)));
}

fn max_of<T: Ord + Copy>(slot: &mut Option<T>, v: Option<T>) {
    if let Some(v) = v {
        *slot = Some(slot.map_or(v, |s| s.max(v)));
    }
}

fn text(a: &StringArray, i: usize) -> Option<&str> {
    a.is_valid(i).then(|| a.value(i))
}

fn utf8<'a>(batch: &'a RecordBatch, name: &str) -> Result<&'a StringArray> {
    batch
        .column_by_name(name)
        .and_then(|c| c.as_string_opt::<i32>())
        .ok_or_else(|| Error::Invalid(format!("events batch without a text column {name}")))
}

fn occurred_at(batch: &RecordBatch) -> Result<&TimestampMicrosecondArray> {
    batch
        .column_by_name("occurred_at")
        .and_then(|c| c.as_primitive_opt::<TimestampMicrosecondType>())
        .ok_or_else(|| Error::Invalid("events batch without occurred_at".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rollup_paths_mirror_events_paths() {
        let m = Kind::Messages;
        assert_eq!(
            m.path_of("events/date=2026-01-02/wal-a-1.parquet").as_deref(),
            Some("rollups/messages-v3/date=2026-01-02/wal-a-1.parquet")
        );
        assert_eq!(
            Kind::Conversations.path_of("pre/fix/events/date=2026-01-02/x.parquet").as_deref(),
            Some("pre/fix/rollups/conversations-v3/date=2026-01-02/x.parquet")
        );
        assert_eq!(m.path_of("myevents/date=2026-01-02/x.parquet"), None);
        assert_eq!(m.path_of("other/x.parquet"), None);
        let events = ["events/date=2026-01-02/a.parquet", "events/date=2026-01-03/b.parquet"];
        let all: Vec<String> = Kind::ALL.iter().flat_map(|k| events.iter().filter_map(|e| k.path_of(e))).collect();
        let all: Vec<&str> = all.iter().map(String::as_str).collect();
        assert!(covers(events, all.iter().copied()));
        assert!(!covers(events, all[..3].iter().copied()), "one rollup of one file missing");
        assert!(covers([], []));
    }
}
