//! Merging events files into one, in the stored order, without holding their rows decoded.
//!
//! Every events file is already in the stored order ([`crate::store::STORED_ORDER`]): the
//! flusher and compaction both write them so. Merging them is then a k-way merge that reads
//! each file a few thousand rows at a time and writes the merged rows to the Parquet writer as
//! they come. Sorting in memory instead holds the files decoded and a sorted copy: `compact` of
//! the generator's 10 million events peaked at 430-509 MiB that way, 233-236 MiB this way.
//!
//! What the merge holds instead, one after the other:
//! - for dropping duplicates, the files' `event_id` and `received_at` ([`first_received`]),
//!   which leave one bit per row;
//! - for the rollups, which aggregate the whole file and borrow their text from its rows, the
//!   columns they read of the rows kept ([`rollups_of`]); the rollups' rows are in an order of
//!   their own, so they need no merge;
//! - a batch per file, sized so all of them together are about [`MERGE_ROWS`] rows, and the
//!   Parquet writer's encoded pages.
//!
//! A file that is not in the stored order (written by another tool) is found out during the
//! merge, which then starts again by sorting in memory ([`merge_in_memory`]).

use std::collections::HashMap;

use arrow::array::{Array, AsArray, BooleanArray, RecordBatch, StringArray, TimestampMicrosecondArray};
use arrow::buffer::BooleanBuffer;
use arrow::compute::{
    SortOptions, concat, concat_batches, filter_record_batch, interleave_record_batch, take_record_batch,
};
use arrow::datatypes::TimestampMicrosecondType;
use arrow::row::{OwnedRow, RowConverter, Rows, SortField};
use bytes::Bytes;
use object_store::path::Path as ObjPath;
use parquet::arrow::ArrowWriter;
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::{ParquetRecordBatchReader, ParquetRecordBatchReaderBuilder};

use super::in_events_schema;
use crate::error::{Error, Result};
use crate::event;
use crate::store::{STORED_ORDER, compacted_writer_properties, parquet_bytes, stored_order};

/// Rows held decoded across all the files' batches: ~500 bytes each, so ~32 MiB.
const MERGE_ROWS: usize = 64 * 1024;
/// Fewest rows read from a file at a time, however many files: reading a page of a column
/// in smaller steps only adds calls.
const MIN_BATCH_ROWS: usize = 256;
/// Most rows read from a file at a time, and rows per batch handed to the writer.
const MAX_BATCH_ROWS: usize = 8 * 1024;

/// A merged file: its Parquet bytes and rollups, and the rows before and after duplicates
/// were dropped.
pub(super) struct Merged {
    pub bytes: Vec<u8>,
    pub rollups: crate::rollup::Encoded,
    pub rows_before: usize,
    pub rows_after: usize,
}

/// The rows of `files` (path, contents) as one Parquet file in the stored order, duplicates of
/// an event id dropped (the copy received first is kept), and its rollups.
pub(super) fn merge(files: Vec<(ObjPath, Bytes)>) -> Result<Merged> {
    let batch_rows = (MERGE_ROWS / files.len().max(1)).clamp(MIN_BATCH_ROWS, MAX_BATCH_ROWS);
    match merge_sorted(&files, batch_rows, MAX_BATCH_ROWS)? {
        Some(m) => Ok(m),
        None => {
            tracing::info!(files = files.len(), "a file to merge is not in the stored order; sorting in memory");
            merge_in_memory(files)
        }
    }
}

/// Which rows of each file to keep: per event id, the copy received first (of equal times,
/// the one in the earlier file, then the earlier row). `None` for a file whose rows are all
/// kept. With the number of rows of all the files.
fn first_received(files: &[(ObjPath, Bytes)]) -> Result<(usize, Vec<Option<BooleanBuffer>>)> {
    let mut columns: Vec<(StringArray, TimestampMicrosecondArray)> = Vec::with_capacity(files.len());
    for (path, bytes) in files {
        let (mut ids, mut received) = (Vec::new(), Vec::new());
        for b in read_columns(bytes, &["event_id", "received_at"])? {
            let b = b?;
            let column = |name: &str| {
                b.column_by_name(name).cloned().ok_or_else(|| Error::Invalid(format!("{path} lacks column {name}")))
            };
            ids.push(column("event_id")?);
            received.push(column("received_at")?);
        }
        if ids.is_empty() {
            // A file without rows: `concat` wants at least one array.
            columns.push((StringArray::new_null(0), TimestampMicrosecondArray::new_null(0)));
            continue;
        }
        let ids = concat(&ids.iter().map(|a| a.as_ref()).collect::<Vec<_>>())?;
        let received = concat(&received.iter().map(|a| a.as_ref()).collect::<Vec<_>>())?;
        let (Some(ids), Some(received)) =
            (ids.as_string_opt::<i32>(), received.as_primitive_opt::<TimestampMicrosecondType>())
        else {
            return Err(Error::Invalid(format!("{path}: event_id or received_at of another type")));
        };
        columns.push((ids.clone(), received.clone()));
    }
    let total: usize = columns.iter().map(|(ids, _)| ids.len()).sum();
    let mut first: HashMap<&str, (u32, u32)> = HashMap::with_capacity(total);
    for (f, (ids, received)) in columns.iter().enumerate() {
        for i in 0..ids.len() {
            match first.get(ids.value(i)) {
                Some(&(g, j)) if columns[g as usize].1.value(j as usize) <= received.value(i) => {}
                _ => {
                    first.insert(ids.value(i), (f as u32, i as u32));
                }
            }
        }
    }
    if first.len() == total {
        return Ok((total, vec![None; files.len()]));
    }
    let keep = columns
        .iter()
        .enumerate()
        .map(|(f, (ids, _))| {
            let keep =
                BooleanBuffer::collect_bool(ids.len(), |i| first.get(ids.value(i)) == Some(&(f as u32, i as u32)));
            (keep.count_set_bits() < ids.len()).then_some(keep)
        })
        .collect();
    Ok((total, keep))
}

/// One file being merged: its current batch, and the sort keys of that batch's rows.
struct Cursor<'a> {
    path: &'a ObjPath,
    reader: ParquetRecordBatchReader,
    /// Rows of the file to keep ([`first_received`]); `None`: all.
    keep: Option<&'a BooleanBuffer>,
    batch: RecordBatch,
    keys: Rows,
    /// The batch's index among those the next written batch takes rows from.
    slot: usize,
    /// The batch's next row.
    pos: usize,
    /// The file's row number of the batch's first row.
    start: usize,
}

/// What loading a file's next batch found.
enum Next {
    Loaded,
    /// The file has no more rows.
    End,
    /// The file's rows are not in the stored order.
    Unsorted,
}

impl Cursor<'_> {
    /// The sort key of the current row.
    fn key(&self) -> arrow::row::Row<'_> {
        self.keys.row(self.pos)
    }

    /// Loads the file's next batch that has a row to keep, and moves to that row.
    fn load(&mut self, converter: &RowConverter) -> Result<Next> {
        // The last key of the batch before, to check the order across batches.
        let mut last: Option<OwnedRow> =
            (self.keys.num_rows() > 0).then(|| self.keys.row(self.keys.num_rows() - 1).owned());
        loop {
            self.start += self.batch.num_rows();
            let Some(batch) = self.reader.next() else { return Ok(Next::End) };
            self.batch = in_events_schema(self.path, batch?)?;
            self.keys = sort_keys(converter, &self.batch)?;
            self.pos = 0;
            let n = self.keys.num_rows();
            if n == 0 {
                continue;
            }
            let sorted = last.as_ref().is_none_or(|l| l.row() <= self.keys.row(0))
                && (1..n).all(|i| self.keys.row(i - 1) <= self.keys.row(i));
            if !sorted {
                return Ok(Next::Unsorted);
            }
            if self.skip_dropped() {
                return Ok(Next::Loaded);
            }
            last = Some(self.keys.row(n - 1).owned());
        }
    }

    /// Moves past rows not kept; whether a row of the batch is left.
    fn skip_dropped(&mut self) -> bool {
        if let Some(keep) = self.keep {
            while self.pos < self.batch.num_rows() && !keep.value(self.start + self.pos) {
                self.pos += 1;
            }
        }
        self.pos < self.batch.num_rows()
    }
}

/// The sort keys of a batch of the events table, in [`STORED_ORDER`].
fn sort_keys(converter: &RowConverter, batch: &RecordBatch) -> Result<Rows> {
    let columns = STORED_ORDER
        .iter()
        .map(|name| batch.column_by_name(name).cloned().ok_or_else(|| Error::Invalid(format!("no {name} column"))))
        .collect::<Result<Vec<_>>>()?;
    Ok(converter.convert_columns(&columns)?)
}

/// A binary min-heap of cursor indices by their current key (then index, so equal keys come
/// in file order): `std`'s heap cannot compare through the cursors it does not own.
fn sift_down(heap: &mut [usize], mut i: usize, less: impl Fn(usize, usize) -> bool) {
    loop {
        let (l, r) = (2 * i + 1, 2 * i + 2);
        let mut smallest = i;
        if l < heap.len() && less(heap[l], heap[smallest]) {
            smallest = l;
        }
        if r < heap.len() && less(heap[r], heap[smallest]) {
            smallest = r;
        }
        if smallest == i {
            return;
        }
        heap.swap(i, smallest);
        i = smallest;
    }
}

/// Whether cursor `a`'s row comes before cursor `b`'s.
fn less(cursors: &[Cursor<'_>], a: usize, b: usize) -> bool {
    (cursors[a].key(), a) < (cursors[b].key(), b)
}

/// [`merge`] of files each in the stored order, reading `batch_rows` of a file at a time and
/// writing `write_rows` at a time; `None` when a file is not in the stored order.
fn merge_sorted(files: &[(ObjPath, Bytes)], batch_rows: usize, write_rows: usize) -> Result<Option<Merged>> {
    let (rows_before, keep) = first_received(files)?;
    let rollups = rollups_of(files, &keep)?;
    let schema = event::schema();
    let options = SortOptions { descending: false, nulls_first: false };
    let fields = STORED_ORDER
        .iter()
        .map(|name| Ok(SortField::new_with_options(schema.field_with_name(name)?.data_type().clone(), options)))
        .collect::<Result<Vec<_>>>()?;
    let converter = RowConverter::new(fields)?;

    let mut cursors = Vec::with_capacity(files.len());
    for ((path, bytes), keep) in files.iter().zip(&keep) {
        let reader = ParquetRecordBatchReaderBuilder::try_new(bytes.clone())?.with_batch_size(batch_rows).build()?;
        let mut c = Cursor {
            path,
            reader,
            keep: keep.as_ref(),
            batch: RecordBatch::new_empty(schema.clone()),
            keys: converter.empty_rows(0, 0),
            slot: 0,
            pos: 0,
            start: 0,
        };
        match c.load(&converter)? {
            Next::Loaded => cursors.push(c),
            Next::End => {}
            Next::Unsorted => return Ok(None),
        }
    }
    // The batches the rows waiting to be written come from, and those rows as (batch, row).
    let mut slots: Vec<RecordBatch> = Vec::with_capacity(2 * cursors.len());
    for c in cursors.iter_mut() {
        c.slot = slots.len();
        slots.push(c.batch.clone());
    }
    let mut pending: Vec<(usize, usize)> = Vec::with_capacity(write_rows);
    let mut rows_after = 0;
    let mut bytes = Vec::new();
    let mut writer = ArrowWriter::try_new(&mut bytes, schema.clone(), Some(compacted_writer_properties()))?;

    let mut heap: Vec<usize> = (0..cursors.len()).collect();
    for i in (0..heap.len() / 2).rev() {
        sift_down(&mut heap, i, |a, b| less(&cursors, a, b));
    }
    while let Some(&top) = heap.first() {
        let c = &mut cursors[top];
        pending.push((c.slot, c.pos));
        c.pos += 1;
        if !c.skip_dropped() {
            match c.load(&converter)? {
                Next::Loaded => {
                    c.slot = slots.len();
                    slots.push(c.batch.clone());
                }
                Next::End => {
                    // Its last batch lives on in `slots` as long as rows waiting need it.
                    c.batch = RecordBatch::new_empty(schema.clone());
                    let last = heap.len() - 1;
                    heap.swap(0, last);
                    heap.pop();
                }
                Next::Unsorted => return Ok(None),
            }
        }
        sift_down(&mut heap, 0, |a, b| less(&cursors, a, b));
        if pending.len() >= write_rows || heap.is_empty() {
            let refs: Vec<&RecordBatch> = slots.iter().collect();
            let merged = interleave_record_batch(&refs, &pending)?;
            rows_after += merged.num_rows();
            writer.write(&merged)?;
            pending.clear();
            // Only the batches the cursors are still reading stay.
            slots.clear();
            for &i in &heap {
                cursors[i].slot = slots.len();
                slots.push(cursors[i].batch.clone());
            }
        }
    }
    writer.close()?;
    Ok(Some(Merged { bytes, rollups, rows_before, rows_after }))
}

/// A reader of the columns `names` of an events file, 64k rows at a time.
fn read_columns(bytes: &Bytes, names: &[&str]) -> Result<ParquetRecordBatchReader> {
    let builder = ParquetRecordBatchReaderBuilder::try_new(bytes.clone())?;
    let mask = ProjectionMask::columns(builder.parquet_schema(), names.iter().copied());
    Ok(builder.with_projection(mask).with_batch_size(64 * 1024).build()?)
}

/// The rollups of the rows of `files` that `keep` keeps, from the columns the rollups read
/// (read again rather than kept from the merge: held beside the merge's batches, which come
/// and go, they raised its peak RSS by their size again).
fn rollups_of(files: &[(ObjPath, Bytes)], keep: &[Option<BooleanBuffer>]) -> Result<crate::rollup::Encoded> {
    let mut batches = Vec::new();
    for ((path, bytes), keep) in files.iter().zip(keep) {
        batches.extend(kept_rows(path, bytes, &crate::rollup::EVENT_COLUMNS, keep.as_ref())?);
    }
    crate::store::encode_rollups(&batches)
}

/// The columns `names` of the rows of the events file at `path` that `keep` keeps (all without
/// it). With [`crate::rollup::EVENT_COLUMNS`], what a rollup of the file needs, at about a
/// third of the file's decoded size.
pub(super) fn kept_rows(
    path: &ObjPath,
    bytes: &Bytes,
    names: &[&str],
    keep: Option<&BooleanBuffer>,
) -> Result<Vec<RecordBatch>> {
    let mut batches = Vec::new();
    let mut start = 0;
    for batch in read_columns(bytes, names)? {
        let batch = batch?;
        let rows = batch.num_rows();
        if batch.num_columns() < names.len() {
            return Err(Error::Invalid(format!("{path} lacks one of the columns {names:?}")));
        }
        batches.push(match keep {
            Some(keep) => filter_record_batch(&batch, &BooleanArray::new(keep.slice(start, rows), None))?,
            None => batch,
        });
        start += rows;
    }
    Ok(batches)
}

/// [`merge`] by decoding every file, then sorting: for files not in the stored order.
fn merge_in_memory(files: Vec<(ObjPath, Bytes)>) -> Result<Merged> {
    let schema = event::schema();
    let (rows_before, keep) = first_received(&files)?;
    let mut batches = Vec::new();
    for ((path, bytes), keep) in files.iter().zip(&keep) {
        for batch in kept_rows(path, bytes, event::COLUMNS, keep.as_ref())? {
            batches.push(in_events_schema(path, batch)?);
        }
    }
    // The files' batches go as soon as they are one, so the sort takes the rows once.
    let all = concat_batches(&schema, &batches)?;
    drop(batches);
    let sorted = take_record_batch(&all, &stored_order(&all, None)?)?;
    drop(all);
    let rows_after = sorted.num_rows();
    let rollups = crate::store::encode_rollups(std::slice::from_ref(&sorted))?;
    Ok(Merged { bytes: parquet_bytes(&sorted, compacted_writer_properties())?, rollups, rows_before, rows_after })
}

#[cfg(test)]
mod tests {
    use super::super::decode_events;
    use super::*;
    use crate::generate::{Spec, generate};
    use crate::store::Storage;
    use arrow::array::UInt32Array;
    use arrow::datatypes::TimestampMicrosecondType;
    use object_store::ObjectStoreExt;

    /// One day's files of three generated data sets, then: a second copy of the first file (all
    /// its rows dropped, as received no earlier), and copies of a second file's first rows
    /// received a microsecond earlier (the originals dropped from the middle of that file); and
    /// a file without rows among them.
    async fn day_files() -> Vec<(ObjPath, Bytes)> {
        let s = Storage::open("memory://").unwrap();
        let start = chrono::NaiveDate::from_ymd_opt(2026, 3, 1).unwrap();
        for seed in 1..=3 {
            generate(&s, &Spec { events: 4000, days: 1, seed, start }).await.unwrap();
        }
        let mut files = Vec::new();
        for (date, meta) in s.list_event_files().await.unwrap() {
            if date == start {
                files.push((meta.location.clone(), s.store.get(&meta.location).await.unwrap().bytes().await.unwrap()));
            }
        }
        assert!(files.len() >= 3);
        files.push((ObjPath::from("again.parquet"), files[0].1.clone()));
        let second =
            concat_batches(&event::schema(), &decode_events(&files[1].0, files[1].1.clone()).unwrap()).unwrap();
        let early = second.slice(0, 150);
        let received = early.column_by_name("received_at").unwrap().as_primitive::<TimestampMicrosecondType>();
        let earlier: TimestampMicrosecondArray =
            received.unary::<_, TimestampMicrosecondType>(|t| t - 1).with_timezone("UTC");
        let idx = early.schema().index_of("received_at").unwrap();
        let mut columns = early.columns().to_vec();
        columns[idx] = std::sync::Arc::new(earlier);
        let early = RecordBatch::try_new(early.schema(), columns).unwrap();
        let file = crate::store::encode_event_files(vec![early]).unwrap().remove(0);
        files.push((ObjPath::from("earlier.parquet"), Bytes::from(file.bytes)));
        let empty = parquet_bytes(&RecordBatch::new_empty(event::schema()), compacted_writer_properties()).unwrap();
        files.insert(1, (ObjPath::from("empty.parquet"), Bytes::from(empty)));
        files
    }

    fn rows(bytes: &[u8]) -> RecordBatch {
        let path = ObjPath::from("merged.parquet");
        concat_batches(&event::schema(), &decode_events(&path, Bytes::copy_from_slice(bytes)).unwrap()).unwrap()
    }

    #[tokio::test]
    async fn merging_sorted_files_gives_what_sorting_them_in_memory_gives() {
        let files = day_files().await;
        let expected = merge_in_memory(files.clone()).unwrap();
        assert!(expected.rows_after < expected.rows_before, "duplicates were dropped");
        let expected_rows = rows(&expected.bytes);
        // Reads and writes of a few rows cross batch ends everywhere, dropped rows among them.
        for (batch_rows, write_rows) in [(7, 50), (256, 8192), (8192, 3)] {
            let got = merge_sorted(&files, batch_rows, write_rows).unwrap().expect("the files are sorted");
            assert_eq!((got.rows_before, got.rows_after), (expected.rows_before, expected.rows_after));
            assert_eq!(rows(&got.bytes), expected_rows, "{batch_rows} / {write_rows}");
            assert_eq!(got.rollups, expected.rollups, "the rollups, from the rollups' columns alone");
        }
        let got = merge(files).unwrap();
        assert_eq!(got.bytes, expected.bytes, "the same file, byte for byte");
    }

    #[tokio::test]
    async fn a_file_out_of_the_stored_order_is_sorted_in_memory() {
        let mut files = day_files().await;
        let batch = concat_batches(&event::schema(), &decode_events(&files[2].0, files[2].1.clone()).unwrap()).unwrap();
        let reversed: UInt32Array = (0..batch.num_rows() as u32).rev().collect();
        let reversed = take_record_batch(&batch, &reversed).unwrap();
        files[2].1 = Bytes::from(parquet_bytes(&reversed, compacted_writer_properties()).unwrap());
        assert!(merge_sorted(&files, 64, 64).unwrap().is_none());
        let expected = merge_in_memory(files.clone()).unwrap();
        let got = merge(files).unwrap();
        assert_eq!((got.bytes, got.rows_after), (expected.bytes, expected.rows_after));
    }
}
