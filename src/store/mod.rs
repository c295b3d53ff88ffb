//! Object storage: where events end up, and under which keys.
//!
//! [`Storage`] wraps any `object_store` backend chosen by URL, and lays out convoscope's keys
//! under its prefix:
//! - `events/date=YYYY-MM-DD/<name>.parquet`: events whose `occurred_at` falls on that date,
//!   sorted by [`STORED_ORDER`] (the encoding is in `encoding.rs`);
//! - `rollups/<kind>/date=YYYY-MM-DD/<name>.parquet`: the rollups ([`crate::rollup`]) of the
//!   events file of the same date and name, uploaded before it, so an events file listed is
//!   one whose rollups are in place;
//! - `rollups/experiment-contacts/`: the experiment report's rows per exposed contact, kept by
//!   compaction while they match the events files (`manifest.json` names the file and the
//!   events files it covers; [`EXPERIMENT_CONTACTS_DIR`]);
//! - `_audit/date=YYYY-MM-DD/<name>.parquet`: the audit trail ([`crate::audit`]), by the date
//!   of each record;
//! - `_convoscope/`: convoscope's own small objects (the readiness probe, retention's records,
//!   the maintenance lease, erasures' tombstones).
//!
//! The name says who wrote a file: the flusher ([`crate::flush`]) names it after its log and
//! segment (`wal-<log id>-<seq>`), so flushing the same segment again after a crash overwrites
//! instead of duplicating; compaction ([`crate::maintenance`]) names it `compact-<random>`.

mod encoding;
pub mod tombstones;

use std::sync::Arc;
use std::time::Duration;

use arrow::array::RecordBatch;
use chrono::NaiveDate;
use futures::TryStreamExt;
use object_store::path::Path as ObjPath;
use object_store::{ObjectMeta, ObjectStore, ObjectStoreExt, PutPayload};

pub use encoding::{
    COMPACT_ROW_GROUP_ROWS, EventFile, ROW_GROUP_ROWS, STORED_ORDER, batches_parquet_bytes,
    compacted_writer_properties, encode_audit_files, encode_event_files, encode_rollup, encode_rollups, parquet_bytes,
    stored_order, writer_properties,
};

use crate::error::{Error, Result};
use crate::event::{self, Event};
use crate::rollup::Kind;

/// An object store plus the prefix convoscope owns in it.
#[derive(Clone, Debug)]
pub struct Storage {
    pub store: Arc<dyn ObjectStore>,
    /// Prefix inside the store (empty for a local directory, `prefix` of `s3://bucket/prefix`).
    pub prefix: ObjPath,
    /// The URL it was opened from, for logs.
    pub url: String,
}

/// Where the audit trail is kept, under the store's prefix ([`crate::audit`]).
pub const AUDIT_DIR: &str = "_audit";

/// Where compaction keeps the experiment report's rows per exposed contact
/// (`crate::analytics`' experiment report, `kept.rs`): derived from the events, so whatever
/// removes events (erasure, retention) deletes it ([`Storage::delete_experiment_contacts`]) and
/// the next compaction builds it again.
pub const EXPERIMENT_CONTACTS_DIR: &str = "rollups/experiment-contacts";

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

    /// Uploads audit files ([`encode_audit_files`]) as `_audit/date=<date>/<name>.parquet`.
    pub async fn put_audit_files(&self, files: Vec<(NaiveDate, Vec<u8>)>, name: &str) -> Result<()> {
        for (date, bytes) in files {
            self.store
                .put(&self.path(&format!("{AUDIT_DIR}/date={date}/{name}.parquet")), PutPayload::from(bytes))
                .await?;
        }
        Ok(())
    }

    /// Writes audit records straight to the store, for a command that runs without a
    /// collector's log (each call one file per date, named at random).
    pub async fn put_audit(&self, records: &[crate::audit::Record]) -> Result<()> {
        let batch = crate::audit::Record::to_batch(records)?;
        let files = encode_audit_files(std::slice::from_ref(&batch))?;
        self.put_audit_files(files, &format!("cli-{:016x}", rand::random::<u64>())).await
    }

    /// Deletes the kept experiment table and its manifest ([`EXPERIMENT_CONTACTS_DIR`]), the
    /// manifest first: a report then computes what the table held. Returns the objects deleted.
    pub async fn delete_experiment_contacts(&self) -> Result<usize> {
        let dir = self.path(EXPERIMENT_CONTACTS_DIR);
        let mut metas: Vec<ObjectMeta> = self.store.list(Some(&dir)).try_collect().await?;
        metas.sort_by_key(|m| !m.location.as_ref().ends_with(".json"));
        for m in &metas {
            self.delete_if_present(&m.location).await?;
        }
        Ok(metas.len())
    }

    /// Deletes `path`; one already gone (another process's delete, a rerun) is no error.
    pub async fn delete_if_present(&self, path: &ObjPath) -> Result<()> {
        match self.store.delete(path).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Every audit file, with its partition date.
    pub async fn list_audit_files(&self) -> Result<Vec<(NaiveDate, ObjectMeta)>> {
        self.list_partitioned(AUDIT_DIR).await
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
