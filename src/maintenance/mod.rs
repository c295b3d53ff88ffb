//! Storage upkeep: what keeps the store quick to read and within its retention period.
//!
//! One file per operation:
//! - `compact.rs`: [`compact()`] merges the files of each partition, dropping duplicate event
//!   ids (the streaming merge of events files is in `merge.rs`);
//! - `schedule.rs`: `serve`'s own compaction, a round every interval ([`compact_every`]);
//! - `heal.rs`: [`heal_rollups`] writes the rollups an events file lacks and deletes those of
//!   a retired layout;
//! - `retention.rs`: [`retention()`] deletes partitions past the retention period;
//! - `erase.rs`: [`erase()`] removes one contact's rows from every file (and [`settle`] sweeps
//!   again once every collector knows its tombstone);
//! - `lease.rs`: the [`Lease`] in the store under which one process at a time, of the many
//!   collectors (and commands) sharing a store, does any of the above.
//!
//! `serve` also merges small files on its own ([`compact_every`]), today's included, a bounded
//! number of events at a time, so the files a flush writes every minute do not pile up:
//! every file costs each report a footer and a reader (reports over 10 million events in 422
//! files took about twice as long as over the same events in 43). Each round also writes the
//! rollups an events file lacks and deletes those of a retired layout, as `convoscope compact`
//! does, so a store of an older version heals without it.
//!
//! Compaction writes the merged file first, checks its row count from the footer, and only then
//! deletes the files it merged, listed when it started; files the flusher writes meanwhile are
//! left alone, so it is safe to run beside `serve`. Interrupted at any point it loses nothing:
//! at worst old and new files both exist, the reports count each event once, and the next run
//! merges them again. Inside `serve`, the files a merge replaced outlive it by a grace period
//! ([`Grace`]), so a query that listed them before the merge still finds them.

mod compact;
mod erase;
mod heal;
mod lease;
mod merge;
mod retention;
mod rewrite;
mod schedule;

use std::time::Duration;

use arrow::array::RecordBatch;
use object_store::path::Path as ObjPath;

pub use compact::{Compacted, compact};
pub use erase::{Erased, SETTLE, erase, settle, sweep};
pub use heal::{Healed, delete_retired_rollups, heal_rollups, write_missing_rollups};
pub use lease::{Lease, STEP, step_for};
pub use retention::{Deleted, Policy, Removed, Trimmed, retention};
pub use schedule::{EraseRequest, LastStep, Step, Upkeep, compact_every, compact_small_files_of_every_day};

use crate::error::{Error, Result};
use crate::event;

/// How long the files a merge replaced outlive it. A query lists the files it reads when it
/// starts; one that listed them before the merge would fail on finding them gone, so `serve`
/// keeps them for its longest query or report time (past which none of its queries still
/// runs). When it stops meanwhile, it leaves them (other processes sharing the store may be
/// reading them) for the next round, of any collector, to merge again. Meanwhile a query sees
/// the old files and the merged one, which changes no report (each counts an event once). The
/// command waits none.
#[derive(Clone, Debug, Default)]
pub struct Grace {
    /// How long, unless `stop` turns true first.
    pub wait: Duration,
    /// Turns true when `serve` stops.
    pub stop: Option<tokio::sync::watch::Receiver<bool>>,
}

impl Grace {
    fn stopped(&self) -> bool {
        self.stop.as_ref().is_some_and(|s| *s.borrow())
    }

    async fn elapse(&self) {
        match self.stop.clone() {
            Some(mut stop) => {
                tokio::select! {
                    _ = tokio::time::sleep(self.wait) => {}
                    _ = stop.wait_for(|s| *s) => {}
                }
            }
            None => tokio::time::sleep(self.wait).await,
        }
    }
}

/// The rows of an events file, in the events table's schema.
#[cfg(test)]
fn decode_events(path: &ObjPath, bytes: bytes::Bytes) -> Result<Vec<RecordBatch>> {
    merge::kept_rows(path, &bytes, event::COLUMNS, None)?.into_iter().map(|b| in_events_schema(path, b)).collect()
}

/// The event ids in the store's events files, sorted (the tests' check of what an operation
/// left).
#[cfg(test)]
async fn stored_ids(storage: &crate::store::Storage) -> Vec<String> {
    use arrow::array::AsArray;
    use object_store::ObjectStoreExt;
    let mut ids = Vec::new();
    for (_, meta) in storage.list_event_files().await.expect("listing") {
        let bytes = storage.store.get(&meta.location).await.expect("get").bytes().await.expect("bytes");
        for b in merge::kept_rows(&meta.location, &bytes, &["event_id"], None).expect("decode") {
            ids.extend(b.column(0).as_string::<i32>().iter().flatten().map(str::to_string));
        }
    }
    ids.sort();
    ids
}

/// An event of the tests: `message.sent`, with these ids and times.
#[cfg(test)]
fn ev(id: &str, occurred: i64, received: i64) -> event::Event {
    event::Event::new(id.into(), "message.sent", occurred, received, "api")
}

/// A batch read from the events file at `path` in the events table's schema: files written by
/// other versions may order columns differently, so they are selected by name.
fn in_events_schema(path: &ObjPath, batch: RecordBatch) -> Result<RecordBatch> {
    let schema = event::schema();
    let cols = schema
        .fields()
        .iter()
        .map(|fld| {
            batch
                .column_by_name(fld.name())
                .cloned()
                .ok_or_else(|| Error::Invalid(format!("{path} lacks column {}", fld.name())))
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(RecordBatch::try_new(schema, cols)?)
}
