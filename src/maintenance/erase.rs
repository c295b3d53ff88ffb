//! `erase`: removes every row of one contact from the store (GDPR article 17), and keeps it
//! out afterwards through its tombstone ([`crate::store::tombstones`]).
//!
//! A contact's rows are its events (by `contact_key`) and the events of its messages and
//! conversations that do not name it (a receipt, a conversion or a conversation event posted
//! without the contact): found in a first pass that reads five columns of every events file.
//! A second pass rewrites each file that holds any of them without those rows, as compaction
//! writes: the new file (named after the old one and the contact, so a rerun writes the same
//! file again instead of a second copy) and its rollups first, its row count checked from its
//! footer, then the old file and its rollups deleted. The rollups of the new file are computed
//! from its rows, so no rollup keeps a trace of the contact either. All of it under the
//! maintenance lease, so no merge runs beside it.
//!
//! Stopped at any point, it loses nothing and a rerun finishes it: the tombstone is written
//! first, a file is deleted only after its replacement is in place, and a rewritten file holds
//! no row to remove. Collectors learn the tombstone within [`SETTLE`] and drop the contact's
//! events from then on, at ingest and at flush; `serve`'s round sweeps once more after that
//! ([`settle`]), for a file another collector flushed in between.

use std::collections::HashSet;
use std::time::Duration;

use arrow::array::{AsArray, BooleanArray, RecordBatch, StringArray};
use object_store::ObjectStoreExt;

use super::lease::{Lease, STEP, step_for};
use super::merge::kept_rows;
use crate::error::{Error, Result};
use crate::event::{self, cell as text};
use crate::store::Storage;
use crate::store::tombstones::{Sweep, Tombstone, Tombstones};

/// How long after an erasure every collector knows its tombstone (they read the store's every
/// minute), with room for a flush under way: a sweep started later sees every file written
/// before they knew.
pub const SETTLE: Duration = Duration::from_secs(75);

/// The columns the first pass reads (and `occurred_at`).
const LINK_COLUMNS: [&str; 6] =
    ["contact_key", "message_id", "conversation_id", "account_id", "phone_number_id", "occurred_at"];

/// What a sweep removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize)]
pub struct Erased {
    /// Events files rewritten (or deleted, when nothing was left).
    pub files: usize,
    /// Event rows removed.
    pub rows: usize,
}

/// Erases `tombstone`'s contact: saves the tombstone (known to `tombstones` at once), then
/// sweeps the store ([`sweep`]) and records the sweep, and the messages and conversations it
/// found to be the contact's, in the tombstone.
pub async fn erase(
    storage: &Storage,
    tombstones: &Tombstones,
    tombstone: Tombstone,
    lease: &mut Lease,
) -> Result<Erased> {
    // An earlier erasure of the contact in this scope keeps its time and sweeps: a rerun
    // finishes it. One the contact reopened since is a new erasure.
    let t = match tombstones.get(&tombstone.contact_key, tombstone.tenant.as_deref()) {
        Some(old) if old.owner_ids == tombstone.owner_ids && old.reopened_at.is_none() => old,
        _ => tombstone,
    };
    tombstones.save(storage, &t).await?;
    swept(storage, tombstones, &t, lease).await
}

/// Sweeps for `t` and records the sweep on its latest stored version.
async fn swept(storage: &Storage, tombstones: &Tombstones, t: &Tombstone, lease: &mut Lease) -> Result<Erased> {
    let started_at = event::now_micros();
    let (erased, linked) = sweep(storage, t, lease).await?;
    tombstones
        .update(storage, t, |latest| {
            latest.sweeps.push(Sweep { started_at, at: event::now_micros(), files: erased.files, rows: erased.rows });
            let mut all: HashSet<String> = latest.linked.drain(..).collect();
            all.extend(linked);
            latest.linked = all.into_iter().collect();
            latest.linked.sort_unstable();
        })
        .await?;
    Ok(erased)
}

/// Sweeps again for every tombstone no sweep has settled yet ([`Tombstone::settled`]), once
/// [`SETTLE`] has passed: `serve`'s round runs it. Returns the tombstones swept.
pub async fn settle(storage: &Storage, tombstones: &Tombstones, lease: &mut Lease) -> Result<Vec<(String, Erased)>> {
    tombstones.refresh(storage).await?;
    let now = event::now_micros();
    let due = |t: &Tombstone| {
        !t.settled(SETTLE) && now - t.erased_at >= i64::try_from(SETTLE.as_micros()).unwrap_or(i64::MAX)
    };
    let mut done = Vec::new();
    for t in tombstones.all().into_iter().filter(due) {
        let erased = swept(storage, tombstones, &t, lease).await?;
        done.push((t.contact_key.clone(), erased));
    }
    Ok(done)
}

/// One pass over the store removing the rows of `t`'s contact (see the module's docs).
/// Returns what it removed and the message and conversation ids it found to be the contact's.
pub async fn sweep(storage: &Storage, t: &Tombstone, lease: &mut Lease) -> Result<(Erased, HashSet<String>)> {
    // Rollups of a retired layout are never read, but could hold the contact: gone first.
    hold(lease, 0).await?;
    super::delete_retired_rollups(storage, lease).await?;
    // So is the experiment report's kept table (a row per exposed contact); compaction builds
    // it again from what the sweep leaves.
    storage.delete_experiment_contacts().await?;
    let files = storage.list_event_files().await?;
    // First pass: the contact's own rows, and the messages and conversations they name.
    let mut linked = HashSet::new();
    for (_, meta) in &files {
        hold(lease, meta.size).await?;
        let Some(bytes) = read_file(storage, &meta.location).await? else { continue };
        for b in kept_rows(&meta.location, &bytes, &LINK_COLUMNS, None)? {
            let cols = columns(&b)?;
            let occurred = occurred_at(&b)?;
            for i in 0..b.num_rows() {
                if own_row(t, &cols, i) && erased_row(t, occurred.value(i)) {
                    linked.extend([text(cols[1], i), text(cols[2], i)].into_iter().flatten().map(str::to_string));
                }
            }
        }
    }
    // Second pass: every file with a row of the contact, its messages or its conversations.
    let mut erased = Erased::default();
    for (date, meta) in &files {
        hold(lease, meta.size).await?;
        let Some(bytes) = read_file(storage, &meta.location).await? else { continue };
        let batches = kept_rows(&meta.location, &bytes, event::COLUMNS, None)?;
        let mut removed = 0;
        let mut kept = Vec::new();
        for b in batches {
            let keep = keep_mask(t, &b, &linked)?;
            removed += keep.false_count();
            kept.push(super::in_events_schema(&meta.location, arrow::compute::filter_record_batch(&b, &keep)?)?);
        }
        if removed == 0 {
            continue;
        }
        let name = format!(
            "erase-{:016x}",
            xxhash_rust::xxh3::xxh3_64(format!("{}|{}", meta.location, t.contact_key).as_bytes())
        );
        super::rewrite::replace(storage, &meta.location, *date, kept, &name).await?;
        erased.files += 1;
        erased.rows += removed;
    }
    tracing::info!(files = erased.files, rows = erased.rows, "erased a contact's rows from the store");
    Ok((erased, linked))
}

/// The bytes of the file at `location`; `None` when it was deleted since the listing
/// (retention, another sweep): nothing of it left to erase.
async fn read_file(storage: &Storage, location: &object_store::path::Path) -> Result<Option<bytes::Bytes>> {
    match storage.store.get(location).await {
        Ok(r) => Ok(Some(r.bytes().await?)),
        Err(object_store::Error::NotFound { .. }) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Whether a row of the contact that occurred at `at` is erased: all of them, but those since
/// the contact opted in again.
fn erased_row(t: &Tombstone, at: i64) -> bool {
    t.reopened_at.is_none_or(|r| at < r)
}

fn occurred_at(b: &RecordBatch) -> Result<&arrow::array::TimestampMicrosecondArray> {
    b.column_by_name("occurred_at")
        .and_then(|c| c.as_primitive_opt::<arrow::datatypes::TimestampMicrosecondType>())
        .ok_or_else(|| Error::Invalid("an events file without occurred_at".into()))
}

/// Keeps the lease for the work on a file of `bytes`, or stops the sweep.
async fn hold(lease: &mut Lease, bytes: u64) -> Result<()> {
    if lease.hold_until(STEP.max(step_for(bytes))).await? {
        Ok(())
    } else {
        Err(Error::Invalid(
            "the maintenance lease passed to another process during an erasure; run it again to finish it".into(),
        ))
    }
}

/// The link columns of a first-pass batch, in [`LINK_COLUMNS`]' order.
fn columns(b: &RecordBatch) -> Result<Vec<&StringArray>> {
    LINK_COLUMNS[..5]
        .iter()
        .map(|n| {
            b.column_by_name(n)
                .and_then(|c| c.as_string_opt::<i32>())
                .ok_or_else(|| Error::Invalid(format!("an events file without {n}")))
        })
        .collect()
}

/// Whether row `i` (of [`LINK_COLUMNS`]) is the contact's own, and, for a tenant's erasure,
/// that tenant's.
fn own_row(t: &Tombstone, cols: &[&StringArray], i: usize) -> bool {
    text(cols[0], i) == Some(t.contact_key.as_str()) && t.covers_owner(text(cols[3], i), text(cols[4], i))
}

/// Which rows of a batch of the events table survive the erasure: not the contact's (until it
/// opted in again), nor those of the messages and conversations in `linked`, of the owner the
/// erasure covers.
fn keep_mask(t: &Tombstone, b: &RecordBatch, linked: &HashSet<String>) -> Result<BooleanArray> {
    let col = |n: &str| {
        b.column_by_name(n)
            .and_then(|c| c.as_string_opt::<i32>())
            .ok_or_else(|| Error::Invalid(format!("an events file without {n}")))
    };
    let (contact, message, reply_to, conversation, account, phone) = (
        col("contact_key")?,
        col("message_id")?,
        col("reply_to")?,
        col("conversation_id")?,
        col("account_id")?,
        col("phone_number_id")?,
    );
    let occurred = occurred_at(b)?;
    let in_linked = |a: &StringArray, i: usize| text(a, i).is_some_and(|v| linked.contains(v));
    Ok((0..b.num_rows())
        .map(|i| {
            let of_contact = text(contact, i) == Some(t.contact_key.as_str());
            let gone = (of_contact || in_linked(message, i) || in_linked(reply_to, i) || in_linked(conversation, i))
                && erased_row(t, occurred.value(i))
                && t.covers_owner(text(account, i), text(phone, i));
            Some(!gone)
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rollup::Kind;

    fn ev(id: &str, kind: &str, contact: Option<&str>, message: &str) -> event::Event {
        let mut e = event::Event::new(id.into(), kind, 1_767_225_600_000_000, 0, "api");
        e.contact_key = contact.map(str::to_string);
        e.message_id = Some(message.into());
        e
    }

    #[tokio::test]
    async fn a_contacts_rows_and_their_messages_go_and_a_rerun_changes_nothing() {
        let s = Storage::open("memory://").unwrap();
        s.write_events(
            vec![
                ev("a1", "message.sent", Some("gone"), "m1"),
                ev("a2", "message.delivered", None, "m1"),
                ev("b1", "message.sent", Some("stays"), "m2"),
            ],
            "one",
        )
        .await
        .unwrap();
        s.write_events(vec![ev("c1", "conversion", None, "m1"), ev("c2", "message.read", Some("stays"), "m2")], "two")
            .await
            .unwrap();
        s.write_events(vec![ev("d1", "message.sent", Some("stays"), "m3")], "three").await.unwrap();
        let tombstones = Tombstones::default();
        let t = Tombstone::new("gone".into(), None);
        let mut lease = Lease::new(s.clone(), "test");
        let erased = erase(&s, &tombstones, t.clone(), &mut lease).await.unwrap();
        assert_eq!(erased, Erased { files: 2, rows: 3 }, "its send, the receipt and conversion of its message");
        let files: Vec<String> =
            s.list_event_files().await.unwrap().into_iter().map(|(_, m)| m.location.to_string()).collect();
        assert_eq!(files.len(), 3, "{files:?}");
        assert!(files.iter().any(|f| f.ends_with("three.parquet")), "a file without the contact is untouched");
        assert!(files.iter().all(|f| !f.ends_with("one.parquet") && !f.ends_with("two.parquet")));
        let ids = crate::maintenance::stored_ids(&s).await;
        assert_eq!(ids, ["b1", "c2", "d1"]);
        assert!(
            crate::rollup::covers(
                s.list_event_files().await.unwrap().iter().map(|(_, m)| m.location.as_ref()),
                s.list_rollup_files().await.unwrap().iter().map(|(_, m)| m.location.as_ref()),
            ) && s.list_rollup_files().await.unwrap().len() == 3 * Kind::ALL.len(),
            "every file has its rollups, and no other rollup is left"
        );
        let again = erase(&s, &tombstones, t, &mut lease).await.unwrap();
        assert_eq!(again, Erased::default());
        assert_eq!(
            tombstones.get("gone", None).map(|t| (t.sweeps.len(), t.linked)),
            Some((2, vec!["m1".to_string()])),
            "the rerun is recorded on the same tombstone"
        );
    }
}
