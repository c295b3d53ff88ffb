//! Storage upkeep: `compact` (merge small files per partition, dropping duplicate event ids)
//! and `retention` (delete partitions past the retention period).
//!
//! `serve` also merges small files on its own ([`compact_every`]), today's included, a bounded
//! number of events at a time, so the files a flush writes every minute do not pile up:
//! every file costs each report a footer and a reader (reports over 10 million events in 422
//! files took about twice as long as over the same events in 43; BENCHMARKS.md). Each round
//! also writes the rollups an events file lacks and deletes those of a retired layout, as
//! `convoscope compact` does, so a store of an older version heals without it.
//!
//! Compaction writes the merged file first, checks its row count from the footer, and only then
//! deletes the files it merged, listed when it started; files the flusher writes meanwhile are
//! left alone, so it is safe to run beside `serve`. Interrupted at any point it loses nothing:
//! at worst old and new files both exist, the reports count each event once, and the next run
//! merges them again.

mod merge;

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use arrow::array::RecordBatch;
use chrono::NaiveDate;
use object_store::path::Path as ObjPath;
use object_store::{ObjectMeta, ObjectStoreExt};
use parquet::file::FOOTER_SIZE;
use parquet::file::metadata::{FooterTail, ParquetMetaDataReader};

use crate::error::{Error, Result};
use crate::event;
use crate::rollup::Kind;
use crate::store::{Storage, parquet_bytes};

/// What compaction did to one partition.
#[derive(Debug, Clone, PartialEq)]
pub struct Compacted {
    pub date: NaiveDate,
    pub files_before: usize,
    pub rows_before: usize,
    pub rows_after: usize,
    pub file: String,
}

/// How long the files a merge replaced outlive it. A query lists the files it reads when it
/// starts; one that listed them before the merge would fail on finding them gone, so `serve`
/// keeps them for its request timeout (past which none of its queries still runs), cut short
/// when it stops (its requests have finished by then). Meanwhile a query sees the old files and
/// the merged one, which changes no report (each counts an event once). The command waits none.
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

/// Merges every partition with more than one file (optionally only dates in `range`) into one
/// file; with `max_events`, only its files of fewer than half that many events, into files of at
/// most that many (as `serve` does), so a day too large to hold in memory can be compacted too.
pub async fn compact(
    storage: &Storage,
    range: Option<(NaiveDate, NaiveDate)>,
    max_events: Option<u64>,
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
            Some(max) => merge_small_files(storage, date, &files, max, &Grace::default(), &mut merged).await,
            None => merge_partition(storage, date, &files).await.map(|m| merged.push(m)),
        };
        // What was merged before a failure is still deleted, so it is not merged twice.
        done.extend(delete_replaced(storage, merged).await?);
        result?;
    }
    Ok(done)
}

/// Merges the small files of every day, in groups of at most `max_events` events (counted
/// from the files' footers), since a merge holds part of what it merges in memory (the
/// rollups' columns, the new file's pages): a quiet day's files become one, a busy day's many
/// minute-by-minute files a few. Today's files are merged as they come (the small merged file
/// again with the next ones, until it is half of `max_events`), so reports over today read tens
/// of files, not a file per flush. Files of at least half of `max_events` are left as they are;
/// `convoscope compact` merges whole days.
///
/// `settled` remembers the file count of days with nothing to merge, so their footers are read
/// again only when files are added. The files a merge replaced are deleted after `grace`; once
/// `grace` says `serve` is stopping, no further merge starts.
pub async fn compact_small_files_of_every_day(
    storage: &Storage,
    max_events: u64,
    grace: &Grace,
    settled: &mut HashMap<NaiveDate, usize>,
) -> Result<Vec<Compacted>> {
    let mut by_date: BTreeMap<NaiveDate, Vec<ObjectMeta>> = BTreeMap::new();
    for (d, m) in storage.list_event_files().await? {
        by_date.entry(d).or_default().push(m);
    }
    settled.retain(|d, _| by_date.contains_key(d));
    let mut merged = Vec::new();
    for (date, files) in by_date {
        if grace.stopped() {
            break;
        }
        if files.len() < 2 || settled.get(&date) == Some(&files.len()) {
            continue;
        }
        // One day's unreadable file must not keep the other days from being merged.
        let before = merged.len();
        match merge_small_files(storage, date, &files, max_events, grace, &mut merged).await {
            Ok(()) if merged.len() == before => {
                settled.insert(date, files.len());
            }
            Ok(()) => {}
            Err(e) => tracing::warn!(%date, error = %e, "could not compact the day; the next round retries"),
        }
    }
    // One grace period for the whole round, not one per merge.
    if !merged.is_empty() {
        grace.elapse().await;
    }
    delete_replaced(storage, merged).await
}

/// Merges `files` (one day's) of fewer than half `max_events` rows, in groups of at most
/// `max_events` rows, onto `merged`; no merge starts once `grace` says `serve` is stopping.
/// The files merged are not deleted yet.
async fn merge_small_files(
    storage: &Storage,
    date: NaiveDate,
    files: &[ObjectMeta],
    max_events: u64,
    grace: &Grace,
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
        if grace.stopped() {
            break;
        }
        merged.push(merge_partition(storage, date, &group).await?);
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

/// Runs [`compact_small_files_of_every_day`], then [`heal_rollups`], every `every` (first after one interval) until `stop` turns
/// true, keeping replaced files for `wait` (see [`Grace`]); a failed round is logged and the
/// next one tries again (compaction loses nothing when it stops half-way).
pub async fn compact_every(
    storage: Storage,
    every: Duration,
    max_events: u64,
    wait: Duration,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let grace = Grace { wait, stop: Some(stop.clone()) };
    let mut settled = HashMap::new();
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        if let Err(e) = compact_small_files_of_every_day(&storage, max_events, &grace, &mut settled).await {
            tracing::warn!(error = %e, "background compaction failed; the next round retries");
        }
        // A store of an older version heals on its own: until every events file has every
        // rollup, reports read the events (right, but slower).
        match heal_rollups(&storage).await {
            Ok(Healed { written: 0, deleted: 0 }) => {}
            Ok(h) => tracing::info!(written = h.written, deleted = h.deleted, "rollups brought up to date"),
            Err(e) => tracing::warn!(error = %e, "could not bring the rollups up to date; the next round retries"),
        }
    }
}

/// What [`heal_rollups`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Healed {
    /// Rollup files written for events files that lacked them.
    pub written: usize,
    /// Rollup files of a retired layout deleted.
    pub deleted: usize,
}

/// Brings the rollups up to date with the events files: [`write_missing_rollups`], then
/// [`delete_retired_rollups`] (after, so reports never lose a rollup they could read).
pub async fn heal_rollups(storage: &Storage) -> Result<Healed> {
    let written = write_missing_rollups(storage).await?;
    let deleted = delete_retired_rollups(storage).await?;
    Ok(Healed { written, deleted })
}

/// A merged file written and checked, and the files it replaces, still in place.
struct Merged {
    compacted: Compacted,
    replaced: Vec<ObjectMeta>,
}

/// Writes the merge of `files` as one new file of the partition and checks its row count from
/// its footer; deletes nothing (see [`delete_replaced`]).
async fn merge_partition(storage: &Storage, date: NaiveDate, files: &[ObjectMeta]) -> Result<Merged> {
    let mut raw = Vec::with_capacity(files.len());
    for f in files {
        raw.push((f.location.clone(), storage.store.get(&f.location).await?.bytes().await?));
    }
    // Decoding, merging and encoding a day is seconds of CPU: off the async runtime, where
    // `serve`'s background compaction would otherwise stall requests.
    let merge::Merged { bytes, rollups, rows_before, rows_after } = tokio::task::spawn_blocking(move || {
        let merged = merge::merge(raw);
        crate::alloc::release_freed();
        merged
    })
    .await
    .map_err(|e| Error::Invalid(format!("compaction task failed: {e}")))??;
    let mut id = [0u8; 8];
    rand::fill(&mut id);
    let name = format!("compact-{}", hex::encode(id));
    let path = storage.event_file(date, &name);
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
    let compacted = Compacted { date, files_before: files.len(), rows_before, rows_after, file: path.to_string() };
    Ok(Merged { compacted, replaced: files.to_vec() })
}

/// Deletes the files each merge replaced, now that its merged file is in place. Tries every
/// file before it reports the first failure: a file left behind is only merged once more.
async fn delete_replaced(storage: &Storage, merged: Vec<Merged>) -> Result<Vec<Compacted>> {
    let mut done = Vec::with_capacity(merged.len());
    let mut failed = None;
    for Merged { compacted: c, replaced } in merged {
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

/// The rows of an events file, in the events table's schema.
#[cfg(test)]
fn decode_events(path: &ObjPath, bytes: bytes::Bytes) -> Result<Vec<RecordBatch>> {
    merge::kept_rows(path, &bytes, event::COLUMNS, None)?.into_iter().map(|b| in_events_schema(path, b)).collect()
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

/// Writes each rollup ([`crate::rollup`]) that an events file lacks: files of versions before
/// that rollup, or written by another tool. Until every file has every rollup, reports read
/// the events instead. Returns how many rollup files were written. Safe beside `serve`: a
/// writer puts a file's rollups before the file, so a file it is writing is never missing one
/// (at worst, one listed between the two listings here gets the same rollups again).
pub async fn write_missing_rollups(storage: &Storage) -> Result<usize> {
    let have: std::collections::HashSet<String> =
        storage.list_rollup_files().await?.into_iter().map(|(_, m)| m.location.to_string()).collect();
    let mut written = 0;
    for (_, file) in storage.list_event_files().await? {
        let missing: Vec<(Kind, String)> = Kind::ALL
            .into_iter()
            .filter_map(|k| k.path_of(file.location.as_ref()).map(|p| (k, p)))
            .filter(|(_, p)| !have.contains(p))
            .collect();
        if missing.is_empty() {
            continue;
        }
        // Compaction (beside `serve`) may have replaced it since the listing: it needs none.
        let bytes = match storage.store.get(&file.location).await {
            Ok(got) => got.bytes().await?,
            Err(object_store::Error::NotFound { .. }) => continue,
            Err(e) => return Err(e.into()),
        };
        let path = file.location.clone();
        let encoded = tokio::task::spawn_blocking(move || -> Result<Vec<(String, Vec<u8>)>> {
            let events = merge::kept_rows(&path, &bytes, &crate::rollup::EVENT_COLUMNS, None)?;
            missing
                .into_iter()
                .map(|(k, p)| Ok((p, parquet_bytes(&k.of_events(&events)?, k.writer_properties())?)))
                .collect()
        })
        .await
        .map_err(|e| Error::Invalid(format!("rollup task failed: {e}")))??;
        for (p, bytes) in encoded {
            storage.store.put(&ObjPath::from(p.as_str()), bytes.into()).await?;
            written += 1;
        }
    }
    Ok(written)
}

/// Deletes the files of rollups in a layout no report reads ([`crate::rollup::RETIRED_DIRS`]),
/// which retention, listing only the current rollups, would never delete. Returns how many.
pub async fn delete_retired_rollups(storage: &Storage) -> Result<usize> {
    use futures::TryStreamExt;
    let mut deleted = 0;
    for dir in crate::rollup::RETIRED_DIRS {
        let files: Vec<ObjectMeta> = storage.store.list(Some(&storage.path(dir))).try_collect().await?;
        for f in files {
            match storage.store.delete(&f.location).await {
                Ok(()) => deleted += 1,
                Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(e.into()),
            }
        }
    }
    Ok(deleted)
}

/// What retention deleted.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Deleted {
    pub date: NaiveDate,
    pub files: usize,
    pub bytes: u64,
}

/// Deletes whole partitions dated before `today - keep_days`, and records what it deleted
/// under `_convoscope/retention/`.
pub async fn retention(storage: &Storage, keep_days: u32, min_days: u32, today: NaiveDate) -> Result<Vec<Deleted>> {
    if keep_days < min_days {
        return Err(Error::Config(format!(
            "--keep-days {keep_days} is below the configured minimum of {min_days} (min_retention_days)"
        )));
    }
    let cutoff = today - chrono::Duration::days(keep_days as i64);
    let mut by_date: BTreeMap<NaiveDate, Vec<ObjectMeta>> = BTreeMap::new();
    for (d, m) in storage.list_event_files().await? {
        if d < cutoff {
            by_date.entry(d).or_default().push(m);
        }
    }
    let mut deleted = Vec::new();
    for (date, files) in by_date {
        let bytes = files.iter().map(|f| f.size).sum();
        for f in &files {
            storage.store.delete(&f.location).await?;
        }
        deleted.push(Deleted { date, files: files.len(), bytes });
    }
    // Every rollup file of those dates, not only those of the files just deleted: a rollup
    // left without its events file (a failed delete after compaction) would otherwise bring
    // deleted messages back into the reports that read the rollup.
    for (d, m) in storage.list_rollup_files().await? {
        if d < cutoff {
            storage.store.delete(&m.location).await?;
        }
    }
    if !deleted.is_empty() {
        let record = serde_json::json!({"at": chrono::Utc::now().to_rfc3339(), "keep_days": keep_days,
                                        "cutoff": cutoff.to_string(), "deleted": deleted});
        let path =
            storage.path(&format!("_convoscope/retention/{}.json", chrono::Utc::now().format("%Y%m%dT%H%M%S%.3fZ")));
        storage.store.put(&path, record.to_string().into()).await?;
    }
    Ok(deleted)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Event;
    use arrow::array::AsArray;
    use parquet::file::reader::{FileReader, SerializedFileReader};

    fn ev(id: &str, occurred: i64, received: i64) -> Event {
        Event::new(id.into(), "message.sent", occurred, received, "api")
    }

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
        let done = compact(&s, None, None).await.unwrap();
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
        assert!(compact(&s, None, None).await.unwrap().is_empty());
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
        let done = compact(&s, None, None).await.unwrap();
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
        let done = compact(&s, None, Some(250)).await.unwrap();
        // `big` is over half the limit and stays; a and b are merged; c would pass the limit.
        assert_eq!(done.iter().map(|c| (c.files_before, c.rows_after)).collect::<Vec<_>>(), [(2, 200)]);
        assert_eq!(s.list_event_files().await.unwrap().len(), 3);
        // Without a limit the day becomes one file.
        assert_eq!(compact(&s, None, None).await.unwrap()[0].rows_after, 430);
    }

    #[tokio::test]
    async fn an_unreadable_file_holds_back_its_day_only() {
        let s = Storage::open("memory://").unwrap();
        let d = |dd| NaiveDate::from_ymd_opt(2026, 1, dd).unwrap();
        let at = |date: NaiveDate| date.and_hms_opt(12, 0, 0).unwrap().and_utc().timestamp_micros();
        for (date, name) in [(d(1), "a"), (d(1), "b"), (d(2), "a"), (d(2), "b")] {
            s.write_events(vec![ev(&format!("{date}-{name}"), at(date), 0)], name).await.unwrap();
        }
        s.store.put(&s.event_file(d(1), "torn"), b"PAR1 not a parquet file".to_vec().into()).await.unwrap();
        let mut settled = HashMap::new();
        let done = compact_small_files_of_every_day(&s, 1000, &Grace::default(), &mut settled).await.unwrap();
        assert_eq!(done.iter().map(|c| (c.date, c.files_before)).collect::<Vec<_>>(), [(d(2), 2)]);
        assert!(settled.is_empty(), "the failed day is tried again next round");
        // Next round: day 2 is one file now, day 1 still fails and is still not settled.
        assert!(compact_small_files_of_every_day(&s, 1000, &Grace::default(), &mut settled).await.unwrap().is_empty());
        assert!(!settled.contains_key(&d(1)));
    }

    #[tokio::test]
    async fn retention_deletes_old_partitions_and_refuses_short_periods() {
        let s = Storage::open("memory://").unwrap();
        let d = |y, m, dd| NaiveDate::from_ymd_opt(y, m, dd).unwrap();
        let at = |date: NaiveDate| date.and_hms_opt(12, 0, 0).unwrap().and_utc().timestamp_micros();
        for (i, date) in [d(2026, 1, 1), d(2026, 1, 20), d(2026, 2, 1)].into_iter().enumerate() {
            s.write_events(vec![ev(&format!("e{i}"), at(date), 0)], "x").await.unwrap();
        }
        // A rollup whose events file is already gone.
        let orphan = s.rollup_file(Kind::Conversations, d(2026, 1, 2), "orphan");
        s.store.put(&orphan, bytes::Bytes::from_static(b"x").into()).await.unwrap();
        assert!(retention(&s, 3, 7, d(2026, 2, 2)).await.unwrap_err().to_string().contains("minimum"));
        let gone = retention(&s, 14, 7, d(2026, 2, 2)).await.unwrap();
        assert_eq!(gone.iter().map(|g| g.date).collect::<Vec<_>>(), [d(2026, 1, 1)]);
        let left: Vec<NaiveDate> = s.list_event_files().await.unwrap().into_iter().map(|f| f.0).collect();
        assert_eq!(left, [d(2026, 1, 20), d(2026, 2, 1)]);
        let rollups: Vec<NaiveDate> = s.list_rollup_files().await.unwrap().into_iter().map(|f| f.0).collect();
        let kept = [d(2026, 1, 20), d(2026, 2, 1)];
        assert_eq!(rollups, kept.repeat(Kind::ALL.len()), "the old file's rollups and the orphan are gone, per kind");
    }
}
