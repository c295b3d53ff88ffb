//! The flusher: the background task that moves sealed write-ahead log segments ([`crate::wal`])
//! into Parquet on object storage ([`crate::store`]), and deletes a segment only after its
//! upload succeeded.
//!
//! A flush reads a segment, encodes its events into one file per date (with their rollups),
//! uploads them, then records the segment's ids for deduplication across restarts and deletes
//! it. Object names derive from the segment (`wal-<log id>-<seq>.parquet`), so flushing the
//! same segment again after a crash overwrites instead of duplicating.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::metrics::Metrics;
use crate::store::tombstones::Tombstones;
use crate::store::{Storage, encode_audit_files, encode_event_files};
use crate::wal::Wal;

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
    /// Erased contacts, whose events in the log are dropped rather than stored.
    tombstones: Tombstones,
}

/// The one thread that does the flusher's CPU work: reading a segment, sorting it, encoding
/// Parquet.
///
/// One long-lived thread rather than tokio's blocking pool, for memory: mimalloc keeps the
/// pages a thread freed for that thread's next allocations, and the pool's threads take turns,
/// so each of them held a segment's worth of freed memory that no other thread could reuse. On
/// one thread each segment reuses the pages of the one before.
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
    /// `tombstones` are the erased contacts: a flush waits until they have been read from the
    /// store once ([`Tombstones::loaded`]), so no flush stores an erased contact's events.
    pub fn new(
        wal: Arc<Wal>,
        storage: Storage,
        metrics: Arc<Metrics>,
        log_id: String,
        tombstones: Tombstones,
    ) -> Result<Self> {
        Ok(Flusher {
            wal,
            storage,
            metrics,
            log_id,
            last_error: Mutex::new(None),
            busy: tokio::sync::Mutex::new(()),
            thread: FlushThread::spawn()?,
            tombstones,
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
        if !self.tombstones.loaded()
            && let Err(e) = self.tombstones.refresh(&self.storage).await
        {
            // Nothing is flushed before the erased contacts are known: a failure to read them
            // is a failed flush.
            self.metrics.flush_errors_total.inc();
            self.metrics.error("flush");
            return Err(e);
        }
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
                    self.metrics.error("flush");
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
        // Every sealed segment is in the store: the store is as fresh as the log allows.
        self.metrics.flushed(stored);
        Ok(stored)
    }

    async fn flush_one(&self, seq: u64, path: std::path::PathBuf) -> Result<usize> {
        let p = path.clone();
        let tombstones = self.tombstones.clone();
        let (cut_at, n, record, files, erased) = self
            .thread
            .run(move || {
                let seg = crate::wal::read_segment(&p)?;
                let n = seg.rows();
                // Taken before encoding, which consumes the events; written only after the upload.
                let record = crate::wal::dedup_record(&seg.batches)?;
                let (mut events, audit) = crate::audit::split(seg.batches)?;
                let mut erased = 0;
                for b in &mut events {
                    if let Some(keep) = tombstones.keep(b)? {
                        erased += keep.false_count();
                        *b = arrow::compute::filter_record_batch(b, &keep)?;
                    }
                }
                let files =
                    if events.iter().any(|b| b.num_rows() > 0) { encode_event_files(events)? } else { Vec::new() };
                Ok((seg.cut_at, n, record, (files, encode_audit_files(&audit)?), erased))
            })
            .await?;
        if erased > 0 {
            tracing::info!(events = erased, "dropped events of erased contacts from the log");
            self.metrics.rejected("log", "erased", erased as u64);
        }
        if let Some(at) = cut_at {
            self.metrics.error("corrupt_segment");
            tracing::warn!(segment = %path.display(), offset = at, "segment has a corrupt tail; flushing the frames before it");
        }
        let name = format!("wal-{}-{seq:020}", self.log_id);
        let (files, audit) = files;
        self.storage.put_audit_files(audit, &name).await?;
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
    async fn a_panicking_flush_job_is_an_error_and_the_thread_goes_on() {
        let thread = FlushThread::spawn().unwrap();
        let panicked = thread.run(|| -> Result<()> { panic!("bad segment") }).await;
        assert!(matches!(panicked, Err(Error::Invalid(m)) if m.contains("panicked")));
        let name = thread.run(|| Ok(std::thread::current().name().map(str::to_string))).await.unwrap();
        assert_eq!(name.as_deref(), Some("convoscope-flush"), "the same thread takes the next job");
    }
}
