//! Object storage: where events end up, as Parquet under `events/date=YYYY-MM-DD/`, each file
//! with its rollups ([`crate::rollup`]) under `rollups/<kind>/date=YYYY-MM-DD/`.
//!
//! [`Storage`] wraps any `object_store` backend chosen by URL. [`Flusher`] is the background
//! task that moves sealed write-ahead log segments into Parquet and deletes them only after
//! the upload succeeded. Object names derive from the segment (`wal-<log id>-<seq>.parquet`), so
//! flushing the same segment again after a crash overwrites instead of duplicating.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arrow::array::{ArrayRef, AsArray, Int32Array, RecordBatch, UInt32Array};
use arrow::compute::{SortColumn, SortOptions, concat_batches, lexsort_to_indices, take_record_batch};
use arrow::datatypes::TimestampMicrosecondType;
use chrono::{Datelike, NaiveDate};
use futures::TryStreamExt;
use object_store::path::Path as ObjPath;
use object_store::{ObjectMeta, ObjectStore, ObjectStoreExt, PutPayload};
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, Encoding, ZstdLevel};
use parquet::file::metadata::SortingColumn;
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::schema::types::ColumnPath;

use crate::error::{Error, Result};
use crate::event::{self, Event};
use crate::metrics::Metrics;
use crate::rollup::Kind;
use crate::wal::Wal;

/// Rows per Parquet row group. Large enough for good compression and few footer entries,
/// small enough that two cores scan one file in parallel and date filters skip row groups.
pub const ROW_GROUP_ROWS: usize = 256 * 1024;
/// zstd level: 3 is zstd's own default, most of the ratio of higher levels at a fraction of
/// the CPU on the flush path.
const ZSTD_LEVEL: i32 = 3;

/// An object store plus the prefix convoscope owns in it.
#[derive(Clone, Debug)]
pub struct Storage {
    pub store: Arc<dyn ObjectStore>,
    /// Prefix inside the store (empty for a local directory, `prefix` of `s3://bucket/prefix`).
    pub prefix: ObjPath,
    /// The URL it was opened from, for logs.
    pub url: String,
}

/// How long one object-store call keeps retrying before it fails. The library's default is
/// three minutes, during which a flush would neither succeed nor count as failed; the flusher
/// retries failed flushes itself with its own backoff, so an outage shows in
/// `convoscope_flush_errors_total` and `/readyz` within seconds.
const STORE_RETRY_TIMEOUT: Duration = Duration::from_secs(10);

fn retry() -> object_store::RetryConfig {
    object_store::RetryConfig { max_retries: 3, retry_timeout: STORE_RETRY_TIMEOUT, ..Default::default() }
}

impl Storage {
    /// Opens storage by URL: `file://DIR` (relative or absolute), `memory://`, `s3://bucket/prefix`
    /// (AWS_* variables, including `AWS_ENDPOINT` and `AWS_ALLOW_HTTP`), `gs://bucket/prefix`,
    /// `az://container/prefix`.
    pub fn open(url: &str) -> Result<Storage> {
        let bad = |reason: String| Error::StorageUrl { url: url.to_string(), reason };
        if let Some(dir) = url.strip_prefix("file://") {
            let dir = if dir.is_empty() { "." } else { dir };
            std::fs::create_dir_all(dir).map_err(|e| Error::io(format!("creating {dir}"), e))?;
            let abs = std::fs::canonicalize(dir).map_err(|e| Error::io(format!("resolving {dir}"), e))?;
            let store = object_store::local::LocalFileSystem::new_with_prefix(&abs)?.with_automatic_cleanup(true);
            return Ok(Storage { store: Arc::new(store), prefix: ObjPath::default(), url: url.to_string() });
        }
        if url.starts_with("memory://") {
            return Ok(Storage {
                store: Arc::new(object_store::memory::InMemory::new()),
                prefix: ObjPath::default(),
                url: url.to_string(),
            });
        }
        let parsed = url::Url::parse(url).map_err(|e| bad(e.to_string()))?;
        let prefix = ObjPath::from(parsed.path().trim_matches('/'));
        let store: Arc<dyn ObjectStore> = match parsed.scheme() {
            "s3" | "s3a" => Arc::new(
                object_store::aws::AmazonS3Builder::from_env()
                    .with_url(url)
                    .with_retry(retry())
                    .build()
                    .map_err(|e| bad(e.to_string()))?,
            ),
            "gs" => Arc::new(
                object_store::gcp::GoogleCloudStorageBuilder::from_env()
                    .with_url(url)
                    .with_retry(retry())
                    .build()
                    .map_err(|e| bad(e.to_string()))?,
            ),
            "az" | "azure" | "abfs" | "abfss" => Arc::new(
                object_store::azure::MicrosoftAzureBuilder::from_env()
                    .with_url(url)
                    .with_retry(retry())
                    .build()
                    .map_err(|e| bad(e.to_string()))?,
            ),
            other => {
                return Err(bad(format!(
                    "unsupported scheme {other:?}; use file://, memory://, s3://, gs:// or az://"
                )));
            }
        };
        Ok(Storage { store, prefix, url: url.to_string() })
    }

    /// Object path under convoscope's prefix.
    pub fn path(&self, rel: &str) -> ObjPath {
        let joined =
            if self.prefix.as_ref().is_empty() { rel.to_string() } else { format!("{}/{rel}", self.prefix.as_ref()) };
        ObjPath::from(joined)
    }

    /// Path of one events file.
    pub fn event_file(&self, date: NaiveDate, name: &str) -> ObjPath {
        self.path(&format!("events/date={date}/{name}.parquet"))
    }

    /// Path of one rollup of one events file ([`crate::rollup`]).
    pub fn rollup_file(&self, kind: Kind, date: NaiveDate, name: &str) -> ObjPath {
        self.path(&format!("{}/date={date}/{name}.parquet", kind.dir()))
    }

    /// Uploads the rollups of the events file `name` of `date`, before that file: an events
    /// file listed is one whose rollups are in place.
    pub async fn put_rollups(&self, rollups: crate::rollup::Encoded, date: NaiveDate, name: &str) -> Result<()> {
        for (kind, bytes) in rollups {
            self.store.put(&self.rollup_file(kind, date, name), PutPayload::from(bytes)).await?;
        }
        Ok(())
    }

    /// Writes events as Parquet, one file per `occurred_at` date named `<name>.parquet`, each
    /// sorted by [`STORED_ORDER`]. Returns the paths written with their row counts.
    pub async fn write_events(&self, events: Vec<Event>, name: &str) -> Result<Vec<(ObjPath, usize)>> {
        let batch = tokio::task::spawn_blocking(move || event::to_record_batch(&events))
            .await
            .map_err(|e| Error::Invalid(format!("arrow encoder task failed: {e}")))??;
        self.write_batches(vec![batch], name).await
    }

    /// Writes batches of the events table as [`Storage::write_events`] does.
    pub async fn write_batches(&self, batches: Vec<RecordBatch>, name: &str) -> Result<Vec<(ObjPath, usize)>> {
        let files = tokio::task::spawn_blocking(move || encode_event_files(batches))
            .await
            .map_err(|e| Error::Invalid(format!("parquet encoder task failed: {e}")))??;
        self.put_event_files(files, name).await
    }

    /// Uploads files [`encode_event_files`] made, each as `events/date=<date>/<name>.parquet`
    /// with its rollup. Returns the paths written with their row counts.
    pub async fn put_event_files(&self, files: Vec<EventFile>, name: &str) -> Result<Vec<(ObjPath, usize)>> {
        let mut written = Vec::new();
        for f in files {
            self.put_rollups(f.rollups, f.date, name).await?;
            let path = self.event_file(f.date, name);
            self.store.put(&path, PutPayload::from(f.bytes)).await?;
            written.push((path, f.rows));
        }
        Ok(written)
    }

    /// Every events file, with its partition date.
    pub async fn list_event_files(&self) -> Result<Vec<(NaiveDate, ObjectMeta)>> {
        self.list_partitioned("events").await
    }

    /// Every rollup file of every kind ([`crate::rollup`]), with its partition date.
    pub async fn list_rollup_files(&self) -> Result<Vec<(NaiveDate, ObjectMeta)>> {
        let mut all = Vec::new();
        for kind in Kind::ALL {
            all.extend(self.list_partitioned(kind.dir()).await?);
        }
        Ok(all)
    }

    /// The Parquet files under `dir`'s `date=` partitions, with their dates, by path.
    async fn list_partitioned(&self, dir: &str) -> Result<Vec<(NaiveDate, ObjectMeta)>> {
        let prefix = self.path(dir);
        let metas: Vec<ObjectMeta> = self.store.list(Some(&prefix)).try_collect().await?;
        let mut out = Vec::new();
        for m in metas {
            let s = m.location.as_ref();
            if !s.ends_with(".parquet") {
                continue;
            }
            let date = s
                .split('/')
                .find_map(|part| part.strip_prefix("date="))
                .and_then(|d| NaiveDate::parse_from_str(d, "%Y-%m-%d").ok());
            if let Some(d) = date {
                out.push((d, m));
            }
        }
        out.sort_by(|a, b| a.1.location.cmp(&b.1.location));
        Ok(out)
    }

    /// Checks the store takes writes: puts and deletes a small object.
    pub async fn probe(&self) -> Result<()> {
        let p = self.path("_convoscope/readyz");
        self.store.put(&p, PutPayload::from_static(b"ok")).await?;
        self.store.delete(&p).await?;
        Ok(())
    }
}

/// One day's events encoded as a Parquet file, not yet uploaded.
pub struct EventFile {
    /// The `occurred_at` date every row falls on.
    pub date: NaiveDate,
    pub rows: usize,
    pub bytes: Vec<u8>,
    /// Its rollups ([`crate::rollup`]), as Parquet.
    pub rollups: crate::rollup::Encoded,
}

/// Encodes batches of the events table as Parquet in memory, one file per `occurred_at` date,
/// each sorted by [`STORED_ORDER`]. CPU-bound: call it off the async runtime.
pub fn encode_event_files(batches: Vec<RecordBatch>) -> Result<Vec<EventFile>> {
    let all = concat_batches(&event::schema(), &batches)?;
    drop(batches);
    // One date per row; the dates lead the sort, so each date's rows are one slice.
    let occurred = all
        .column_by_name("occurred_at")
        .and_then(|c| c.as_primitive_opt::<TimestampMicrosecondType>())
        .ok_or_else(|| Error::Invalid("events without occurred_at".into()))?;
    let dates: Vec<NaiveDate> = occurred.values().iter().map(|m| event::partition_date(*m)).collect();
    let one_date = dates.windows(2).all(|w| w[0] == w[1]);
    let days = (!one_date)
        .then(|| Arc::new(Int32Array::from_iter_values(dates.iter().map(|d| d.num_days_from_ce()))) as ArrayRef);
    let order = stored_order(&all, days)?;
    let sorted = take_record_batch(&all, &order)?;
    drop(all);
    let mut files = Vec::new();
    let mut start = 0;
    while start < sorted.num_rows() {
        let date = dates[order.value(start) as usize];
        let len = order.values()[start..].iter().take_while(|&&i| dates[i as usize] == date).count();
        let slice = sorted.slice(start, len);
        files.push(EventFile {
            date,
            rows: len,
            bytes: parquet_bytes(&slice, writer_properties())?,
            rollups: crate::rollup::encode(std::slice::from_ref(&slice))?,
        });
        start += len;
    }
    Ok(files)
}

/// Encodes one batch as a Parquet file in memory with `properties` ([`writer_properties`] for
/// the flusher's files, [`compacted_writer_properties`] for `compact`'s).
pub fn parquet_bytes(batch: &RecordBatch, properties: WriterProperties) -> Result<Vec<u8>> {
    let mut buf = Vec::with_capacity(batch.get_array_memory_size() / 4 + 1024);
    let mut w = ArrowWriter::try_new(&mut buf, batch.schema(), Some(properties))?;
    w.write(batch)?;
    w.close()?;
    Ok(buf)
}

/// The order of rows in every events file: by `event_type`, then `occurred_at`, then `event_id`.
///
/// Every report selects rows by event type, and most read a few types only (statuses,
/// conversation events, failures). Grouped by type, each type's rows sit in a few pages whose
/// statistics let a reader skip the rest, and columns that only some types fill (template,
/// error code, queue) compress into long runs: at 3 million events every report 5-25% faster
/// and the files 4% smaller than sorted by `occurred_at` alone (BENCHMARKS.md, fourth round).
pub const STORED_ORDER: [&str; 3] = ["event_type", "occurred_at", "event_id"];

/// Row indices that put `batch` (of the events table) in [`STORED_ORDER`], after `first` when
/// given (the flusher puts each date's rows together with it).
pub fn stored_order(batch: &RecordBatch, first: Option<ArrayRef>) -> Result<UInt32Array> {
    let options = Some(SortOptions { descending: false, nulls_first: false });
    let mut keys: Vec<SortColumn> = first.into_iter().map(|values| SortColumn { values, options }).collect();
    for name in STORED_ORDER {
        let values = batch.column_by_name(name).cloned().ok_or_else(|| Error::Invalid(format!("no {name} column")))?;
        keys.push(SortColumn { values, options });
    }
    Ok(lexsort_to_indices(&keys, None)?)
}

/// zstd, page statistics for pruning, sorted by [`STORED_ORDER`]; timestamps delta-encoded and
/// unique ids kept out of dictionaries (where a dictionary would only add size).
pub fn writer_properties() -> WriterProperties {
    let sorting = STORED_ORDER
        .iter()
        .filter_map(|name| event::COLUMNS.iter().position(|c| c == name))
        .map(|idx| SortingColumn { column_idx: idx as i32, descending: false, nulls_first: false })
        .collect();
    let mut b = WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::try_new(ZSTD_LEVEL).unwrap_or_default()))
        .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
        .set_statistics_enabled(EnabledStatistics::Page)
        .set_sorting_columns(Some(sorting));
    for col in ["occurred_at", "received_at"] {
        b = b
            .set_column_dictionary_enabled(ColumnPath::from(col), false)
            .set_column_encoding(ColumnPath::from(col), Encoding::DELTA_BINARY_PACKED);
    }
    b = b.set_column_dictionary_enabled(ColumnPath::from("event_id"), false);
    b.build()
}

/// Rows per row group in the files `compact` writes: a whole day of most accounts (the
/// generator's 10 million events over 30 days are 333,000 a day).
///
/// Files are sorted by event type, so row groups of a day hold different types of the same
/// messages and contacts, and each row group's dictionaries repeat their ids: a day compacted
/// into row groups of [`ROW_GROUP_ROWS`] took 27.5 bytes per event, in one row group 22.7, the
/// flusher's small files 22.2 (BENCHMARKS.md, storage).
pub const COMPACT_ROW_GROUP_ROWS: usize = 1024 * 1024;
/// Dictionary page limit in compacted files. A row group of a day holds ~100,000 contacts and
/// message ids of 32-70 bytes each; past Parquet's default of 1 MiB a column falls back to plain
/// encoding for the rest of the row group (that day took 33.8 bytes per event instead of 22.7).
const COMPACT_DICTIONARY_PAGE_BYTES: usize = 16 * 1024 * 1024;

/// [`writer_properties`] for the one file per day `compact` writes: larger row groups and
/// dictionaries, so a day's ids are stored once instead of once per row group.
pub fn compacted_writer_properties() -> WriterProperties {
    writer_properties()
        .into_builder()
        .set_max_row_group_row_count(Some(COMPACT_ROW_GROUP_ROWS))
        .set_dictionary_page_size_limit(COMPACT_DICTIONARY_PAGE_BYTES)
        .build()
}

/// Moves sealed log segments into Parquet. One per process.
pub struct Flusher {
    wal: Arc<Wal>,
    storage: Storage,
    metrics: Arc<Metrics>,
    /// Log id in object names, so two logs (say, a wiped and recreated one) never overwrite
    /// each other's files.
    log_id: String,
    last_error: Mutex<Option<String>>,
    busy: tokio::sync::Mutex<()>,
    thread: FlushThread,
}

/// The one thread that does the flusher's CPU work: reading a segment, sorting it, encoding
/// Parquet.
///
/// One long-lived thread rather than tokio's blocking pool, for memory: mimalloc keeps the
/// pages a thread freed for that thread's next allocations, and the pool's threads take turns,
/// so each of them held a segment's worth of freed memory that no other thread could reuse. On
/// one thread each segment reuses the pages of the one before (BENCHMARKS.md, ingest, fourth round).
struct FlushThread {
    jobs: std::sync::mpsc::Sender<FlushJob>,
}

type FlushJob = Box<dyn FnOnce() + Send>;

impl FlushThread {
    fn spawn() -> Result<Self> {
        let (jobs, queue) = std::sync::mpsc::channel::<FlushJob>();
        std::thread::Builder::new()
            .name("convoscope-flush".into())
            .spawn(move || {
                // Ends when the flusher, and with it the sender, is dropped.
                for job in queue {
                    job();
                }
            })
            .map_err(|e| Error::io("starting the flush thread", e))?;
        Ok(FlushThread { jobs })
    }

    /// Runs `f` on the thread. A panic in `f` is an error here and leaves the thread running.
    async fn run<R: Send + 'static>(&self, f: impl FnOnce() -> Result<R> + Send + 'static) -> Result<R> {
        let (done, result) = tokio::sync::oneshot::channel();
        let job = move || {
            let _ = done.send(std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)));
        };
        let stopped = || Error::Invalid("the flush thread has stopped".into());
        self.jobs.send(Box::new(job)).map_err(|_| stopped())?;
        match result.await {
            Ok(Ok(r)) => r,
            Ok(Err(_)) => Err(Error::Invalid("flush task panicked".into())),
            Err(_) => Err(stopped()),
        }
    }
}

/// Longest pause between retries while the object store keeps failing.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

impl Flusher {
    /// A flusher for this log and store, with the thread it encodes on.
    pub fn new(wal: Arc<Wal>, storage: Storage, metrics: Arc<Metrics>, log_id: String) -> Result<Self> {
        Ok(Flusher {
            wal,
            storage,
            metrics,
            log_id,
            last_error: Mutex::new(None),
            busy: tokio::sync::Mutex::new(()),
            thread: FlushThread::spawn()?,
        })
    }

    /// The last flush error, if the last attempt failed.
    pub fn last_error(&self) -> Option<String> {
        self.last_error.lock().ok().and_then(|e| e.clone())
    }

    /// Flushes every sealed segment now, oldest first. Returns how many events it stored.
    /// Stops at the first failure: later segments wait, so files land in order.
    pub async fn flush_sealed(&self) -> Result<usize> {
        let _one_at_a_time = self.busy.lock().await;
        let mut stored = 0;
        for (seq, path) in self.wal.sealed_segments()? {
            let started = Instant::now();
            let res = self.flush_one(seq, path).await;
            self.metrics.flush_duration_seconds.observe(started.elapsed().as_secs_f64());
            self.metrics.wal_bytes.set(self.wal.shared().bytes.load(std::sync::atomic::Ordering::Relaxed) as i64);
            match res {
                Ok(n) => stored += n,
                Err(e) => {
                    self.metrics.flush_errors_total.inc();
                    if let Ok(mut last) = self.last_error.lock() {
                        *last = Some(e.to_string());
                    }
                    return Err(e);
                }
            }
        }
        if let Ok(mut last) = self.last_error.lock() {
            *last = None;
        }
        Ok(stored)
    }

    async fn flush_one(&self, seq: u64, path: std::path::PathBuf) -> Result<usize> {
        let p = path.clone();
        let (cut_at, n, record, files) = self
            .thread
            .run(move || {
                let seg = crate::wal::read_segment(&p)?;
                let n = seg.rows();
                // Taken before encoding, which consumes the events; written only after the upload.
                let record = crate::wal::dedup_record(&seg.batches)?;
                let files = if n > 0 { encode_event_files(seg.batches)? } else { Vec::new() };
                Ok((seg.cut_at, n, record, files))
            })
            .await?;
        if let Some(at) = cut_at {
            tracing::warn!(segment = %path.display(), offset = at, "segment has a corrupt tail; flushing the frames before it");
        }
        let name = format!("wal-{}-{seq:020}", self.log_id);
        self.storage.put_event_files(files, &name).await?;
        let wal = self.wal.clone();
        tokio::task::spawn_blocking(move || wal.finish_segment(&path, record))
            .await
            .map_err(|e| Error::Invalid(format!("segment cleanup task failed: {e}")))??;
        tracing::debug!(seq, events = n, "flushed segment");
        Ok(n)
    }

    /// Runs until `shutdown` resolves: flushes whenever a segment is sealed, and retries
    /// failures with exponential backoff.
    pub async fn run(self: Arc<Self>, shutdown: impl std::future::Future<Output = ()>) {
        tokio::pin!(shutdown);
        let mut backoff = Duration::from_millis(200);
        loop {
            let wait = if self.last_error().is_some() { backoff } else { Duration::from_secs(5) };
            tokio::select! {
                _ = &mut shutdown => break,
                _ = self.wal.shared().sealed.notified() => {}
                _ = tokio::time::sleep(wait) => {}
            }
            match self.flush_sealed().await {
                Ok(_) => backoff = Duration::from_millis(200),
                Err(e) => {
                    tracing::warn!(error = %e, retry_in_ms = backoff.as_millis() as u64, "flush failed; events stay in the write-ahead log");
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn writes_one_sorted_file_per_date() {
        let s = Storage::open("memory://").unwrap();
        let day = 86_400_000_000i64;
        let base = 1_767_225_600_000_000i64; // 2026-01-01T00:00:00Z
        let evs = vec![
            Event::new("b".into(), "message.sent", base + 10, 0, "api"),
            Event::new("a".into(), "message.sent", base + 5, 0, "api"),
            Event::new("c".into(), "message.sent", base + day, 0, "api"),
            Event::new("r".into(), "message.read", base + 20, 0, "api"),
        ];
        let written = s.write_events(evs, "t").await.unwrap();
        assert_eq!(written.len(), 2);
        assert_eq!(written[0].0.as_ref(), "events/date=2026-01-01/t.parquet");
        assert_eq!(written[0].1, 3);
        let bytes = s.store.get(&written[0].0).await.unwrap().bytes().await.unwrap();
        let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(bytes).unwrap();
        let sorting = reader.metadata().row_group(0).sorting_columns().cloned().unwrap_or_default();
        assert_eq!(sorting.len(), STORED_ORDER.len(), "the order is declared in the file");
        let batch = reader.build().unwrap().next().unwrap().unwrap();
        use arrow::array::AsArray;
        let ids: Vec<&str> = batch.column_by_name("event_id").unwrap().as_string::<i32>().iter().flatten().collect();
        assert_eq!(ids, ["r", "a", "b"], "by event type, then occurred_at");
        let files = s.list_event_files().await.unwrap();
        assert_eq!(files.len(), 2);
        assert_eq!(files[1].0.to_string(), "2026-01-02");
        s.probe().await.unwrap();
    }

    #[tokio::test]
    async fn a_panicking_flush_job_is_an_error_and_the_thread_goes_on() {
        let thread = FlushThread::spawn().unwrap();
        let panicked = thread.run(|| -> Result<()> { panic!("bad segment") }).await;
        assert!(matches!(panicked, Err(Error::Invalid(m)) if m.contains("panicked")));
        let name = thread.run(|| Ok(std::thread::current().name().map(str::to_string))).await.unwrap();
        assert_eq!(name.as_deref(), Some("convoscope-flush"), "the same thread takes the next job");
    }

    #[test]
    fn prefixes_and_bad_urls() {
        assert!(Storage::open("ftp://x/y").is_err());
        let dir = tempfile::tempdir().unwrap();
        let s = Storage::open(&format!("file://{}", dir.path().display())).unwrap();
        assert_eq!(
            s.event_file(NaiveDate::from_ymd_opt(2026, 1, 2).unwrap(), "n").as_ref(),
            "events/date=2026-01-02/n.parquet"
        );
    }
}
