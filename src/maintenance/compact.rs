//! `compact`: merges the files of a partition into one, dropping duplicate event ids, and only
//! then deletes the files it merged. The merge itself (a streaming k-way merge of files already
//! in the stored order) is in `merge.rs`.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::NaiveDate;
use object_store::path::Path as ObjPath;
use object_store::{ObjectMeta, ObjectStoreExt};
use parquet::file::FOOTER_SIZE;
use parquet::file::metadata::{FooterTail, ParquetMetaDataReader};

use super::lease::{Lease, STEP, step_for};
use super::{Grace, merge};
use crate::error::{Error, Result};
use crate::rollup::Kind;
use crate::store::Storage;

/// What compaction did to one partition.
#[derive(Debug, Clone, PartialEq)]
pub struct Compacted {
    pub date: NaiveDate,
    pub files_before: usize,
    pub rows_before: usize,
    pub rows_after: usize,
    pub file: String,
}

/// Merges every partition with more than one file (optionally only dates in `range`) into one
/// file; with `max_events`, only its files of fewer than half that many events, into files of at
/// most that many (as `serve` does), so a day too large to hold in memory can be compacted too.
///
/// Every merge and delete is made under `lease` ([`Lease`]), which the caller holds already;
/// should it pass to another process meanwhile, compaction stops with an error saying so.
pub async fn compact(
    storage: &Storage,
    range: Option<(NaiveDate, NaiveDate)>,
    max_events: Option<u64>,
    lease: &mut Lease,
) -> Result<Vec<Compacted>> {
    let mut by_date: BTreeMap<NaiveDate, Vec<ObjectMeta>> = BTreeMap::new();
    for (d, m) in storage.list_event_files().await? {
        if range.is_none_or(|(a, b)| d >= a && d <= b) {
            by_date.entry(d).or_default().push(m);
        }
    }
    let mut done = Vec::new();
    for (date, files) in by_date {
        if files.len() < 2 {
            continue;
        }
        let mut merged = Vec::new();
        let result = match max_events {
            Some(max) => merge_small_files(storage, date, &files, max, &Grace::default(), lease, &mut merged).await,
            None if lease.hold_until(step_for(bytes_of(&files))).await? => {
                merge_partition(storage, date, &files, lease).await.map(|m| merged.extend(m))
            }
            None => Ok(()),
        };
        // What was merged before a failure is still deleted, so it is not merged twice.
        done.extend(delete_replaced(storage, merged, lease).await?);
        result?;
        if !lease.hold_until(Duration::ZERO).await? {
            return Err(lost(lease).await);
        }
    }
    Ok(done)
}

/// The error of a command whose lease passed to another process while it ran.
async fn lost(lease: &Lease) -> Error {
    let holder = lease.current_holder().await.ok().flatten().unwrap_or_else(|| "another process".into());
    Error::Invalid(format!("the maintenance lease passed to {holder}; stopped here (run it again to go on)"))
}

/// Merges `files` (one day's) of fewer than half `max_events` rows, in groups of at most
/// `max_events` rows, onto `merged`; no merge starts once `grace` says `serve` is stopping, or
/// without `lease`. The files merged are not deleted yet.
pub(super) async fn merge_small_files(
    storage: &Storage,
    date: NaiveDate,
    files: &[ObjectMeta],
    max_events: u64,
    grace: &Grace,
    lease: &mut Lease,
    merged: &mut Vec<Merged>,
) -> Result<()> {
    let mut groups: Vec<Vec<ObjectMeta>> = Vec::new();
    let mut in_group = 0;
    for f in files {
        let rows = file_rows(storage, f).await?;
        if rows * 2 >= max_events {
            continue;
        }
        match groups.last_mut() {
            Some(group) if in_group + rows <= max_events => {
                group.push(f.clone());
                in_group += rows;
            }
            _ => {
                groups.push(vec![f.clone()]);
                in_group = rows;
            }
        }
    }
    for group in groups.into_iter().filter(|g| g.len() > 1) {
        if grace.stopped() || !lease.hold_until(step_for(bytes_of(&group))).await? {
            break;
        }
        match merge_partition(storage, date, &group, lease).await? {
            Some(m) => merged.push(m),
            None => break,
        }
    }
    Ok(())
}

/// Rows of one Parquet file, from its footer (two small range reads, not the file).
async fn file_rows(storage: &Storage, file: &ObjectMeta) -> Result<u64> {
    let too_short = || Error::Invalid(format!("{} is too short for a Parquet file", file.location));
    let tail_at = file.size.checked_sub(FOOTER_SIZE as u64).ok_or_else(too_short)?;
    let tail = storage.store.get_range(&file.location, tail_at..file.size).await?;
    let footer = FooterTail::try_from(tail.as_ref())?;
    let meta_at = tail_at.checked_sub(footer.metadata_length() as u64).ok_or_else(too_short)?;
    let meta = storage.store.get_range(&file.location, meta_at..tail_at).await?;
    Ok(ParquetMetaDataReader::decode_metadata(&meta)?.file_metadata().num_rows().max(0) as u64)
}

/// A merged file written and checked, and the files it replaces, still in place.
pub(super) struct Merged {
    compacted: Compacted,
    replaced: Vec<ObjectMeta>,
}

/// Bytes of these files.
fn bytes_of(files: &[ObjectMeta]) -> u64 {
    files.iter().map(|f| f.size).sum()
}

/// Writes the merge of `files` as one new file of the partition and checks its row count from
/// its footer, if `lease` still covers it once merged (`None`: it passed to another process
/// meanwhile, and nothing was written); deletes nothing (see [`delete_replaced`]).
async fn merge_partition(
    storage: &Storage,
    date: NaiveDate,
    files: &[ObjectMeta],
    lease: &mut Lease,
) -> Result<Option<Merged>> {
    let mut raw = Vec::with_capacity(files.len());
    for f in files {
        raw.push((f.location.clone(), storage.store.get(&f.location).await?.bytes().await?));
    }
    // Decoding, merging and encoding a day is seconds of CPU: off the async runtime, where
    // `serve`'s background compaction would otherwise stall requests.
    let merge::Merged { bytes, rollups, rows_before, rows_after } = tokio::task::spawn_blocking(move || {
        let merged = merge::merge(raw);
        crate::util::alloc::release_freed();
        merged
    })
    .await
    .map_err(|e| Error::Invalid(format!("compaction task failed: {e}")))??;
    let mut id = [0u8; 8];
    rand::fill(&mut id);
    let name = format!("compact-{}", hex::encode(id));
    let path = storage.event_file(date, &name);
    if !lease.hold_until(STEP).await? {
        tracing::warn!(%date, "the maintenance lease passed to another process during a merge; its result is dropped");
        return Ok(None);
    }
    storage.put_rollups(rollups, date, &name).await?;
    storage.store.put(&path, bytes.into()).await?;
    // Check what landed before anything is deleted.
    let footer_rows = file_rows(storage, &storage.store.head(&path).await?).await? as usize;
    if footer_rows != rows_after {
        let _ = storage.store.delete(&path).await;
        delete_rollups_of(storage, &path).await;
        return Err(Error::Invalid(format!(
            "compacted file of {date} has {footer_rows} rows, expected {rows_after}; kept the originals"
        )));
    }
    // Which files went into which: the trail an operator (or a test) follows to see that no
    // file was merged twice.
    let inputs: Vec<&str> = files.iter().filter_map(|f| f.location.filename()).collect();
    tracing::info!(%date, file = %path, inputs = %inputs.join(","), rows_before, rows_after, "merged files");
    let compacted = Compacted { date, files_before: files.len(), rows_before, rows_after, file: path.to_string() };
    Ok(Some(Merged { compacted, replaced: files.to_vec() }))
}

/// Deletes the files each merge replaced, now that its merged file is in place, while `lease`
/// is held. Tries every file before it reports the first failure: a file left behind (or kept
/// because the lease passed on) is only merged once more, and counted once meanwhile.
pub(super) async fn delete_replaced(
    storage: &Storage,
    merged: Vec<Merged>,
    lease: &mut Lease,
) -> Result<Vec<Compacted>> {
    let mut done = Vec::with_capacity(merged.len());
    let mut failed = None;
    for Merged { compacted: c, replaced } in merged {
        if !lease.hold_until(STEP).await? {
            tracing::warn!(date = %c.date, file = %c.file, "the maintenance lease passed to another process before the merged files were deleted; they stay, and are merged again");
            continue;
        }
        for f in &replaced {
            match storage.store.delete(&f.location).await {
                Ok(()) => delete_rollups_of(storage, &f.location).await,
                Err(e) => {
                    failed.get_or_insert(e);
                }
            }
        }
        tracing::info!(date = %c.date, files = c.files_before, rows_before = c.rows_before, rows_after = c.rows_after, "compacted partition");
        done.push(c);
    }
    match failed {
        Some(e) => Err(e.into()),
        None => Ok(done),
    }
}

/// Deletes the rollups of the events file at `events`, after the events file: a rollup without
/// its events file changes no report (its rows repeat the merged file's rollup), so a failure
/// here is only logged, and a missing rollup (a file of an older version) is not one.
async fn delete_rollups_of(storage: &Storage, events: &ObjPath) {
    for kind in Kind::ALL {
        let Some(rollup) = kind.path_of(events.as_ref()) else { return };
        match storage.store.delete(&ObjPath::from(rollup.as_str())).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
            Err(e) => tracing::warn!(file = %rollup, error = %e, "could not delete a replaced rollup file"),
        }
    }
}

#[cfg(test)]
mod tests {
    use arrow::array::AsArray;
    use parquet::file::reader::{FileReader, SerializedFileReader};

    use super::*;
    use crate::event::Event;
    use crate::maintenance::{decode_events, ev};

    #[tokio::test]
    async fn compaction_merges_dedups_and_keeps_the_first_received() {
        let s = Storage::open("memory://").unwrap();
        let day = 1_767_225_600_000_000i64;
        s.write_events(vec![ev("a", day + 5, 10), ev("b", day + 1, 10)], "f1").await.unwrap();
        let mut late = ev("a", day + 5, 99);
        late.campaign = Some("late".into());
        let mut read = ev("r", day + 9, 10);
        read.event_type = "message.read".into();
        s.write_events(vec![late, ev("c", day + 3, 10), read], "f2").await.unwrap();
        s.write_events(vec![ev("z", day + 86_400_000_000, 1)], "f3").await.unwrap();
        let done = compact(&s, None, None, &mut Lease::new(s.clone(), "test")).await.unwrap();
        assert_eq!(done.len(), 1, "only the partition with two files");
        assert_eq!((done[0].files_before, done[0].rows_before, done[0].rows_after), (2, 5, 4));
        let files = s.list_event_files().await.unwrap();
        assert_eq!(files.len(), 2);
        let merged = &files.iter().find(|f| f.1.location.as_ref().contains("compact-")).unwrap().1.location;
        let batches = decode_events(merged, s.store.get(merged).await.unwrap().bytes().await.unwrap()).unwrap();
        let b = &batches[0];
        let ids: Vec<&str> = b.column_by_name("event_id").unwrap().as_string::<i32>().iter().flatten().collect();
        assert_eq!(ids, ["r", "b", "c", "a"], "sorted by event type, then occurred_at");
        assert_eq!(b.column_by_name("campaign").unwrap().null_count(), 4, "the first-received copy of a is kept");
        // A second run has nothing to do.
        assert!(compact(&s, None, None, &mut Lease::new(s.clone(), "test")).await.unwrap().is_empty());
    }

    /// The flusher's files each hold a few contacts' messages in small dictionaries; merged and
    /// sorted by event type, a day's ids must still be stored once, not once per row group or
    /// in plain encoding past a small dictionary (compaction made the generator's 10 million
    /// events 1.5x larger before it had its own writer settings).
    #[tokio::test]
    async fn compaction_does_not_grow_the_files_it_merges() {
        let s = Storage::open("memory://").unwrap();
        let day = 1_767_225_600_000_000i64;
        // 4 chunks of 25,000 contacts, each sent, delivered and read a message: 300,000 rows,
        // more than one flusher row group; 100,000 contacts of 32 hex digits, more than
        // Parquet's default dictionary page holds.
        let mut flushed = 0;
        for chunk in 0..4i64 {
            let mut evs = Vec::new();
            for c in chunk * 25_000..(chunk + 1) * 25_000 {
                for (k, t) in ["message.sent", "message.delivered", "message.read"].into_iter().enumerate() {
                    let mut e = Event::new(format!("e{c}-{k}"), t, day + c * 800_000 + k as i64, 0, "api");
                    e.message_id = Some(format!("wamid.{c}"));
                    e.contact_key =
                        Some(format!("{:032x}", (c as u128).wrapping_mul(0x9e37_79b9_7f4a_7c15_f39c_c060_5ced_c835)));
                    evs.push(e);
                }
            }
            let written = s.write_events(evs, &format!("f{chunk}")).await.unwrap();
            for (path, _) in written {
                flushed += s.store.head(&path).await.unwrap().size;
            }
        }
        let done = compact(&s, None, None, &mut Lease::new(s.clone(), "test")).await.unwrap();
        assert_eq!((done[0].files_before, done[0].rows_after), (4, 300_000));
        let path = ObjPath::from(done[0].file.as_str());
        let bytes = s.store.get(&path).await.unwrap().bytes().await.unwrap();
        let compacted = bytes.len() as u64;
        let meta = SerializedFileReader::new(bytes).unwrap().metadata().clone();
        assert_eq!(meta.num_row_groups(), 1, "a day this size is one row group");
        // A few percent more is the price of one day-wide dictionary: each row's index into it
        // takes more bits than into a small file's (3.22 against 3.14 MB here; 5.96 MB, 1.9x,
        // with the flusher's settings).
        assert!(compacted * 10 <= flushed * 11, "compacted {compacted} bytes, the files it merged {flushed}");
    }

    #[tokio::test]
    async fn compaction_with_max_events_bounds_each_merged_file() {
        let s = Storage::open("memory://").unwrap();
        let day = 1_767_225_600_000_000i64;
        for (name, rows) in [("a", 100), ("b", 100), ("c", 100), ("big", 130)] {
            let evs = (0..rows).map(|i| ev(&format!("{name}{i}"), day + i, 0)).collect();
            s.write_events(evs, name).await.unwrap();
        }
        let done = compact(&s, None, Some(250), &mut Lease::new(s.clone(), "test")).await.unwrap();
        // `big` is over half the limit and stays; a and b are merged; c would pass the limit.
        assert_eq!(done.iter().map(|c| (c.files_before, c.rows_after)).collect::<Vec<_>>(), [(2, 200)]);
        assert_eq!(s.list_event_files().await.unwrap().len(), 3);
        // Without a limit the day becomes one file.
        assert_eq!(compact(&s, None, None, &mut Lease::new(s.clone(), "test")).await.unwrap()[0].rows_after, 430);
    }
}
