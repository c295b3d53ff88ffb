//! The local write-ahead log: what makes a 200 mean "durable".
//!
//! Events are appended as checksummed frames to numbered segment files by one writer thread.
//! Requests that arrive while it is busy are written together and share one `fdatasync`
//! (group commit), and each request is answered only after that sync. Segments are sealed on
//! size or age; the flusher ([`crate::flush::Flusher`]) turns sealed segments into Parquet and
//! then deletes them, so a crash at any point leaves either a segment to replay or a Parquet
//! file that a replay overwrites.
//!
//! Layout of `wal_dir`:
//! - `00000000000000000042.wal`: segment 42. An 8-byte magic, then frames of
//!   `[len: u32 LE][crc32: u32 LE][len bytes of payload]`. The first frame holds the Arrow IPC
//!   schema message of the events table, every later one the Arrow IPC record batch of one
//!   group commit. Segments of earlier builds (magic `CVWAL001`) hold one JSON array of events
//!   per frame; they are still read, so an upgrade flushes what the old build left.
//! - `dedup/<day>.ids`: 8-byte hashes of the event ids already flushed, per day received, so
//!   duplicates are recognised across restarts for [`DEDUP_DAYS`].
//! - `dedup/index/`: where the in-memory index of those ids (and of the segments' ids) keeps
//!   its sorted arrays, in files unlinked as soon as they are created ([`idset`]);
//!   cleared at every start.
//! - `corrupt/`: segments whose header is unreadable (or whose schema is another build's), set
//!   aside so they never block the rest.
//!
//! One file per part:
//! - this file: the [`Wal`] handle (append, seal, close, the readiness probe, and the sealed
//!   segments handed to the flusher and deleted after), its settings and its shared state;
//! - `frame.rs`: the frame and segment codec, the layout above in bytes;
//! - `writer.rs`: the writer thread and its group commit;
//! - `recovery.rs`: what opening the log does with what an earlier run left: torn tails cut,
//!   unreadable segments set aside, the segments' ids replayed into the index;
//! - `dedup.rs`: the index of ids already seen, and the `dedup/<day>.ids` records it is
//!   rebuilt from;
//! - `idset.rs`: the compact set of id hashes the index keeps per day.

mod dedup;
mod frame;
pub mod idset;
mod recovery;
mod writer;

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{Notify, oneshot};

pub use dedup::{DedupRecord, dedup_record};
pub use frame::{FrameEncoder, Segment, decode_segment, encode_frame, read_segment};
pub use recovery::Recovery;

use crate::error::{Error, Result};
use crate::event::Event;
use dedup::append_dedup;
use recovery::{Recovered, list_segments};
use writer::Cmd;

/// First bytes of every segment this build writes (Arrow IPC frames).
pub const MAGIC: &[u8; 8] = b"CVWAL002";
/// First bytes of segments written by builds before Arrow frames (JSON frames); read only.
pub const MAGIC_JSON: &[u8; 8] = b"CVWAL001";
/// A frame larger than this is taken for corruption: no request body may exceed the HTTP
/// limit, so no honest frame comes near it.
const MAX_FRAME_BYTES: usize = 256 << 20;
/// Requests that may wait for the writer before callers get "full" back: enough to keep the
/// writer busy through an fsync, small enough that waiting is short.
const QUEUE_DEPTH: usize = 4096;
/// How long duplicates are recognised: Meta retries a webhook for up to 7 days.
pub const DEDUP_DAYS: i64 = 7;
const MICROS_PER_DAY: i64 = 86_400_000_000;

/// Settings of the log.
#[derive(Debug, Clone)]
pub struct WalConfig {
    pub dir: PathBuf,
    /// Seal the active segment once it holds this many bytes.
    pub segment_bytes: u64,
    /// Seal the active segment once its first frame is this old.
    pub max_age: Duration,
    /// Refuse appends that would take all segments past this many bytes.
    pub budget_bytes: u64,
}

/// State shared between the writer, the flusher and the health checks.
#[derive(Debug)]
pub struct WalShared {
    /// Bytes in all segment files.
    pub bytes: AtomicU64,
    /// Segments numbered below this are sealed and may be flushed.
    sealed_below: AtomicU64,
    /// False after a failed write, true again after a good one.
    healthy: AtomicBool,
    /// True after an append was refused for the budget, until a flush frees space.
    full: AtomicBool,
    last_error: Mutex<Option<String>>,
    /// Size of the write that failed last: what readiness must find room for.
    failed_bytes: AtomicUsize,
    /// Woken when a segment is sealed.
    pub sealed: Notify,
    /// Byte budget of the log.
    pub budget: u64,
    dir: PathBuf,
}

/// Failures of the deduplication index since the process started (its files could not be
/// prepared, written or read), for `convoscope_errors_total{stage="dedup_index"}`. One count
/// for the process: the index logs each with its detail where it happens.
pub static DEDUP_ERRORS: AtomicU64 = AtomicU64::new(0);

/// Smallest readiness probe: one page, as a small append would need.
const PROBE_BYTES: usize = 4096;

/// Largest readiness probe. A failed group commit can be bigger (a frame may reach
/// [`MAX_FRAME_BYTES`]), but writing that much on every probe of an unhealthy log would cost
/// more than it tells: a disk with this much room takes the usual request again.
const MAX_PROBE_BYTES: usize = 8 << 20;

impl WalShared {
    /// False after a write failed, until a write or [`Wal::probe_disk`] succeeds.
    pub fn healthy(&self) -> bool {
        self.healthy.load(Ordering::Relaxed)
    }

    /// How long the oldest segment holding events has been in the log (zero when none holds
    /// any): how stale the store is at worst. A segment's age is from its file's creation (its
    /// last change where the file system keeps no creation time).
    pub fn oldest_segment_age(&self) -> Duration {
        static HEADER: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
        let header = *HEADER.get_or_init(|| FrameEncoder::new().map(|e| e.header().len() as u64).unwrap_or(0));
        for (_, path) in list_segments(&self.dir).unwrap_or_default() {
            let Ok(meta) = fs::metadata(&path) else { continue };
            if meta.len() <= header {
                continue;
            }
            let born = meta.created().or_else(|_| meta.modified());
            return born.ok().and_then(|t| t.elapsed().ok()).unwrap_or_default();
        }
        Duration::ZERO
    }

    /// `Ok` while the log takes writes; otherwise why not.
    pub fn status(&self) -> std::result::Result<(), String> {
        let used = self.bytes.load(Ordering::Relaxed);
        if used >= self.budget || self.full.load(Ordering::Relaxed) {
            return Err(format!(
                "write-ahead log full: {used} of {} bytes (is the object store reachable?)",
                self.budget
            ));
        }
        if !self.healthy.load(Ordering::Relaxed) {
            let why = self.last_error.lock().map(|e| e.clone()).unwrap_or_default();
            return Err(format!("write-ahead log write failed: {}", why.unwrap_or_default()));
        }
        Ok(())
    }
}

/// What an append stored: the events handed in, and per event whether it was a duplicate of
/// one already stored (and so not written again).
#[derive(Debug)]
pub struct Appended {
    pub events: Vec<Event>,
    pub duplicate: Vec<bool>,
}

impl Appended {
    /// How many events were new.
    pub fn accepted(&self) -> usize {
        self.duplicate.iter().filter(|d| !**d).count()
    }
}

/// Handle to the log. Cheap to share behind an `Arc`.
pub struct Wal {
    log_id: String,
    tx: Mutex<Option<SyncSender<Cmd>>>,
    shared: Arc<WalShared>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl Wal {
    /// Opens (or creates) the log in `cfg.dir`, recovers what an earlier run left, and starts
    /// the writer thread.
    pub fn open(cfg: WalConfig) -> Result<(Wal, Recovery)> {
        let Recovered { dedup, rec, bytes, active_seq } = recovery::recover(&cfg)?;
        let shared = Arc::new(WalShared {
            bytes: AtomicU64::new(bytes),
            sealed_below: AtomicU64::new(active_seq),
            healthy: AtomicBool::new(true),
            full: AtomicBool::new(false),
            last_error: Mutex::new(None),
            failed_bytes: AtomicUsize::new(0),
            sealed: Notify::new(),
            budget: cfg.budget_bytes,
            dir: cfg.dir.clone(),
        });
        let (tx, rx) = std::sync::mpsc::sync_channel(QUEUE_DEPTH);
        let thread = writer::spawn(cfg, shared.clone(), dedup, active_seq, rx)?;
        let log_id = recovery::log_id(&shared.dir)?;
        Ok((Wal { log_id, tx: Mutex::new(Some(tx)), shared, thread: Mutex::new(Some(thread)) }, rec))
    }

    /// Random id of this log directory, created with it: part of every Parquet name it flushes.
    pub fn log_id(&self) -> &str {
        &self.log_id
    }

    /// Shared state, for the flusher and health checks.
    pub fn shared(&self) -> &Arc<WalShared> {
        &self.shared
    }

    fn send(&self, cmd: Cmd) -> Result<()> {
        let guard = self.tx.lock().map_err(|_| Error::WalClosed("lock poisoned".into()))?;
        let tx = guard.as_ref().ok_or_else(|| Error::WalClosed("shutting down".into()))?;
        match tx.try_send(cmd) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(_)) => {
                Err(Error::WalFull { used: self.shared.bytes.load(Ordering::Relaxed), budget: self.shared.budget })
            }
            Err(TrySendError::Disconnected(_)) => Err(Error::WalClosed("writer stopped".into())),
        }
    }

    /// Appends events durably; returns only after the frame is fsynced.
    pub async fn append(&self, events: Vec<Event>) -> Result<Appended> {
        if events.is_empty() {
            return Ok(Appended { events, duplicate: Vec::new() });
        }
        let (reply, rx) = oneshot::channel();
        self.send(Cmd::Append { events, reply })?;
        rx.await.map_err(|_| Error::WalClosed("writer stopped".into()))?
    }

    /// Seals the active segment now, so the flusher can take everything written so far.
    pub async fn seal(&self) -> Result<()> {
        let (reply, rx) = oneshot::channel();
        self.send(Cmd::Seal { reply })?;
        rx.await.map_err(|_| Error::WalClosed("writer stopped".into()))
    }

    /// Stops taking writes, seals the active segment and waits for the writer to finish.
    pub fn close(&self) {
        if let Ok(mut tx) = self.tx.lock() {
            tx.take();
        }
        if let Some(t) = self.thread.lock().ok().and_then(|mut t| t.take()) {
            let _ = t.join();
        }
    }

    /// Writes, syncs and deletes a file in the log directory as large as the write that failed
    /// (within [`PROBE_BYTES`]..=[`MAX_PROBE_BYTES`]); on success the log counts as healthy
    /// again. Readiness calls it after a write failed, so a server that a load balancer took
    /// out of rotation for a disk problem sees the fix without waiting for a request that
    /// would never come, and is not put back while the failed write still would not fit.
    pub fn probe_disk(&self) -> Result<()> {
        let p = self.shared.dir.join(".probe");
        let n = self.shared.failed_bytes.load(Ordering::Relaxed).clamp(PROBE_BYTES, MAX_PROBE_BYTES);
        let res = File::create(&p).and_then(|mut f| f.write_all(&vec![0u8; n]).and_then(|_| f.sync_data()));
        let _ = fs::remove_file(&p);
        res.map_err(|e| Error::io(format!("probing {}", self.shared.dir.display()), e))?;
        self.shared.healthy.store(true, Ordering::Relaxed);
        Ok(())
    }

    /// Sealed segments, oldest first.
    pub fn sealed_segments(&self) -> Result<Vec<(u64, PathBuf)>> {
        let below = self.shared.sealed_below.load(Ordering::Acquire);
        Ok(list_segments(&self.shared.dir)?.into_iter().filter(|(s, _)| *s < below).collect())
    }

    /// Records the ids of a flushed segment for restarts (see [`dedup_record`]), then deletes
    /// the segment. Called by the flusher only after its Parquet is stored.
    ///
    /// When the disk is too full even for the record (8 bytes per event), the segment is
    /// deleted first to make room and the record written after. A crash between the two
    /// forgets these ids for restarts: a provider's redelivery after that is stored twice and
    /// `compact` drops the copy. The other order would leave a full log that can never drain.
    pub fn finish_segment(&self, path: &Path, record: DedupRecord) -> Result<()> {
        let dir = self.shared.dir.join("dedup");
        let first = append_dedup(&dir, &record);
        if let Err(e) = &first {
            tracing::warn!(error = %e, segment = %path.display(), "cannot record flushed ids; deleting the segment first to make room");
        }
        let size = fs::metadata(path).map(|m| m.len()).unwrap_or(0);
        fs::remove_file(path).map_err(|e| Error::io(format!("deleting {}", path.display()), e))?;
        sync_dir(&self.shared.dir);
        self.shared.bytes.fetch_sub(size.min(self.shared.bytes.load(Ordering::Relaxed)), Ordering::Relaxed);
        self.shared.full.store(false, Ordering::Relaxed);
        // The events are stored; only their protection against redelivery after a restart
        // is lost if this fails too.
        if first.is_err()
            && let Err(e) = append_dedup(&dir, &record)
        {
            tracing::error!(error = %e, "flushed ids not recorded; a redelivery after a restart may be stored twice (compact drops it)");
        }
        Ok(())
    }
}

impl Drop for Wal {
    fn drop(&mut self) {
        self.close();
    }
}

/// Makes a directory's entries (new or deleted files) durable. Best effort: not every file
/// system supports syncing directories.
fn sync_dir(dir: &Path) {
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(super) fn cfg(dir: &Path) -> WalConfig {
        WalConfig {
            dir: dir.to_path_buf(),
            segment_bytes: 1 << 20,
            max_age: Duration::from_secs(60),
            budget_bytes: 1 << 30,
        }
    }

    pub(super) fn ev(id: &str) -> Event {
        Event::new(id.into(), "message.sent", 1_767_254_400_000_000, crate::event::now_micros(), "meta")
    }

    #[tokio::test]
    async fn appends_dedup_and_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let (wal, rec) = Wal::open(cfg(dir.path())).unwrap();
        assert_eq!(rec.segments, 0);
        assert_eq!(wal.append(vec![ev("a"), ev("b"), ev("a")]).await.unwrap().duplicate, [false, false, true]);
        assert_eq!(wal.append(vec![ev("b"), ev("c")]).await.unwrap().duplicate, [true, false]);
        drop(wal);
        // Reopen without flushing: the segment is replayed and its ids still count as seen.
        let (wal, rec) = Wal::open(cfg(dir.path())).unwrap();
        assert_eq!((rec.segments, rec.events), (1, 3));
        assert_eq!(wal.append(vec![ev("c"), ev("d")]).await.unwrap().duplicate, [true, false]);
        // After a flush the ids live on in dedup/ files.
        wal.seal().await.unwrap();
        for (_, p) in wal.sealed_segments().unwrap() {
            let seg = read_segment(&p).unwrap();
            wal.finish_segment(&p, dedup_record(&seg.batches).unwrap()).unwrap();
        }
        assert!(wal.sealed_segments().unwrap().is_empty());
        drop(wal);
        // What a crash between creating and unlinking an index file would leave.
        let stale = dir.path().join("dedup/index/1-1.ids.tmp");
        std::fs::write(&stale, [0u8; 6]).unwrap();
        let (wal, rec) = Wal::open(cfg(dir.path())).unwrap();
        assert!(!stale.exists() && dir.path().join("dedup/index").is_dir());
        assert_eq!(rec.segments, 0);
        assert_eq!(wal.append(vec![ev("a"), ev("d"), ev("e")]).await.unwrap().duplicate, [true, true, false]);
    }
}
