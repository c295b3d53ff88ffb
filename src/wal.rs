//! The local write-ahead log: what makes a 200 mean "durable".
//!
//! Events are appended as checksummed frames to numbered segment files by one writer thread.
//! Requests that arrive while it is busy are written together and share one `fdatasync`
//! (group commit), and each request is answered only after that sync. Segments are sealed on
//! size or age; the flusher ([`crate::store::Flusher`]) turns sealed segments into Parquet and
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
//!   its sorted arrays, in files unlinked as soon as they are created ([`crate::idset`]);
//!   cleared at every start.
//! - `corrupt/`: segments whose header is unreadable (or whose schema is another build's), set
//!   aside so they never block the rest.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arrow::array::{AsArray, RecordBatch};
use arrow::buffer::Buffer;
use arrow::datatypes::TimestampMicrosecondType;
use arrow::ipc::convert::try_schema_from_ipc_buffer;
use arrow::ipc::reader::StreamDecoder;
use arrow::ipc::writer::{DictionaryTracker, IpcDataGenerator, IpcWriteContext, IpcWriteOptions, write_message};
use nohash_hasher::IntSet;
use tokio::sync::{Notify, oneshot};

use crate::error::{Error, Result};
use crate::event::Event;
use crate::idset::IdSet;

/// First bytes of every segment this build writes (Arrow IPC frames).
pub const MAGIC: &[u8; 8] = b"CVWAL002";
/// First bytes of segments written by builds before Arrow frames (JSON frames); read only.
pub const MAGIC_JSON: &[u8; 8] = b"CVWAL001";
const FRAME_HEADER: usize = 8;
/// A frame larger than this is taken for corruption: no request body may exceed the HTTP
/// limit, so no honest frame comes near it.
const MAX_FRAME_BYTES: usize = 256 << 20;
/// How many requests one group commit takes at most, so a flood cannot delay the first
/// request's answer without bound.
const MAX_GROUP: usize = 1024;
/// A group's events go into frames of about this many bytes at most: one record batch per
/// frame, so the flusher never holds more than this of one frame's decoding at a time, and no
/// group of large requests comes near [`MAX_FRAME_BYTES`].
const FRAME_TARGET_BYTES: usize = 4 << 20;
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

enum Cmd {
    Append { events: Vec<Event>, reply: oneshot::Sender<Result<Appended>> },
    Seal { reply: oneshot::Sender<()> },
}

/// Handle to the log. Cheap to share behind an `Arc`.
pub struct Wal {
    log_id: String,
    tx: Mutex<Option<SyncSender<Cmd>>>,
    shared: Arc<WalShared>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

/// What opening the log found.
#[derive(Debug, Default)]
pub struct Recovery {
    /// Segments left by an earlier run, now sealed and waiting for the flusher.
    pub segments: usize,
    /// Events in them.
    pub events: usize,
    /// Segments whose tail was cut at the last good frame.
    pub cut_tails: Vec<String>,
    /// Segments set aside under `corrupt/`.
    pub set_aside: Vec<String>,
}

impl Wal {
    /// Opens (or creates) the log in `cfg.dir`, recovers what an earlier run left, and starts
    /// the writer thread.
    pub fn open(cfg: WalConfig) -> Result<(Wal, Recovery)> {
        fs::create_dir_all(cfg.dir.join("dedup"))
            .map_err(|e| Error::io(format!("creating {}", cfg.dir.display()), e))?;
        let today = crate::event::now_micros().div_euclid(MICROS_PER_DAY);
        let mut dedup = DedupIndex::load(&cfg.dir.join("dedup"), today)?;
        let mut rec = Recovery::default();
        let mut bytes = 0u64;
        let mut max_seq = 0u64;
        for (seq, path) in list_segments(&cfg.dir)? {
            max_seq = max_seq.max(seq);
            match read_segment(&path) {
                Ok(seg) => {
                    if let Some(cut) = seg.cut_at {
                        tracing::warn!(segment = %path.display(), offset = cut, reason = seg.cut_reason.as_deref().unwrap_or(""),
                            "corrupt tail in write-ahead log segment; keeping the frames before it");
                        truncate(&path, cut)?;
                        rec.cut_tails.push(path.display().to_string());
                    }
                    for_each_id(&seg.batches, |h, day| dedup.insert(h, day))?;
                    rec.segments += 1;
                    rec.events += seg.rows();
                    bytes += fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
                }
                Err(err) => {
                    let aside = cfg.dir.join("corrupt");
                    fs::create_dir_all(&aside).map_err(|e| Error::io("creating corrupt/", e))?;
                    let to = aside.join(path.file_name().unwrap_or_default());
                    tracing::error!(segment = %path.display(), error = %err, moved_to = %to.display(),
                        "unreadable write-ahead log segment set aside");
                    fs::rename(&path, &to).map_err(|e| Error::io(format!("moving {}", path.display()), e))?;
                    rec.set_aside.push(path.display().to_string());
                }
            }
        }
        let active_seq = max_seq + 1;
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
        let writer = Writer {
            cfg,
            frames: FrameEncoder::new()?,
            shared: shared.clone(),
            dedup,
            seq: active_seq,
            file: None,
            len: 0,
            opened: Instant::now(),
        };
        let thread = std::thread::Builder::new()
            .name("wal-writer".into())
            .spawn(move || writer.run(rx))
            .map_err(|e| Error::io("starting the write-ahead log thread", e))?;
        let log_id = log_id(&shared.dir)?;
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

/// Appends id hashes to `dedup/<day>.ids`, keeping every file a whole number of 8-byte hashes:
/// a partial append (disk full, crash) is cut before the next one, or later hashes would be
/// read misaligned.
fn append_dedup(dir: &Path, record: &DedupRecord) -> Result<()> {
    for (day, bytes) in record {
        let p = dir.join(format!("{day}.ids"));
        let mut f = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&p)
            .map_err(|e| Error::io(format!("opening {}", p.display()), e))?;
        let len = f.metadata().map_err(|e| Error::io(format!("reading {}", p.display()), e))?.len();
        let whole = len - len % 8;
        if whole != len {
            f.set_len(whole).map_err(|e| Error::io(format!("cutting {}", p.display()), e))?;
        }
        if let Err(e) = f.write_all(bytes).and_then(|_| f.sync_data()) {
            let _ = f.set_len(whole);
            return Err(Error::io(format!("writing {}", p.display()), e));
        }
    }
    Ok(())
}

impl Drop for Wal {
    fn drop(&mut self) {
        self.close();
    }
}

/// Id hashes of a segment's events by day received, as they are appended to `dedup/<day>.ids`.
pub type DedupRecord = BTreeMap<i64, Vec<u8>>;

/// The dedup record of some events (batches of the events table).
pub fn dedup_record(batches: &[RecordBatch]) -> Result<DedupRecord> {
    let mut by_day = DedupRecord::new();
    for_each_id(batches, |h, day| by_day.entry(day).or_default().extend_from_slice(&h.to_le_bytes()))?;
    Ok(by_day)
}

/// Calls `f` with the id hash and day received of every event in `batches`.
fn for_each_id(batches: &[RecordBatch], mut f: impl FnMut(u64, i64)) -> Result<()> {
    for b in batches {
        let (Some(ids), Some(received)) = (b.column_by_name("event_id"), b.column_by_name("received_at")) else {
            return Err(Error::Invalid("log frame without event_id or received_at".into()));
        };
        let (Some(ids), Some(received)) =
            (ids.as_string_opt::<i32>(), received.as_primitive_opt::<TimestampMicrosecondType>())
        else {
            return Err(Error::Invalid("log frame with event_id or received_at of the wrong type".into()));
        };
        for (id, at) in ids.iter().zip(received.iter()) {
            f(id_hash(id.unwrap_or_default()), at.unwrap_or_default().div_euclid(MICROS_PER_DAY));
        }
    }
    Ok(())
}

/// Hash under which an event id is remembered for deduplication. xxh3 is fixed by its
/// specification, so hashes written by one build are read correctly by the next. 64 bits keep
/// a week of ids small in memory; the chance of any collision among 10 million ids is ~3e-6.
pub fn id_hash(event_id: &str) -> u64 {
    xxhash_rust::xxh3::xxh3_64(event_id.as_bytes())
}

/// Event ids seen in the last [`DEDUP_DAYS`], by day received.
struct DedupIndex {
    days: BTreeMap<i64, IdSet>,
    /// Where the sets keep their (unlinked) files: `dedup/index/`.
    files: PathBuf,
}

impl DedupIndex {
    fn load(dir: &Path, today: i64) -> Result<Self> {
        // Whatever an earlier run left here is stale: the sets are rebuilt from the records.
        // If the directory cannot be made (a read-only disk), the sets keep their ids in memory
        // until it can (the log answers 503 meanwhile).
        let files = dir.join("index");
        let cleared = match fs::remove_dir_all(&files) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => fs::create_dir_all(&files),
        };
        if let Err(e) = cleared {
            tracing::warn!(error = %e, dir = %files.display(), "cannot prepare the deduplication index's files; keeping it in memory");
        }
        let mut days = BTreeMap::new();
        for entry in fs::read_dir(dir).map_err(|e| Error::io(format!("listing {}", dir.display()), e))? {
            let entry = entry.map_err(|e| Error::io("listing dedup/", e))?;
            let path = entry.path();
            let Some(day) = path.file_stem().and_then(|s| s.to_str()).and_then(|s| s.parse::<i64>().ok()) else {
                continue;
            };
            if day < today - DEDUP_DAYS {
                let _ = fs::remove_file(&path);
                continue;
            }
            let bytes = fs::read(&path).map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
            // A torn last record (crash mid-append) is ignored: its segment was not deleted.
            let ids = bytes.chunks_exact(8).map(|c| u64::from_le_bytes(c.try_into().unwrap_or_default())).collect();
            days.insert(day, IdSet::from_vec(&files, ids));
        }
        Ok(DedupIndex { days, files })
    }

    fn contains(&self, h: u64) -> Result<bool> {
        for set in self.days.values() {
            if set.contains(h).map_err(|e| Error::io("reading the deduplication index", e))? {
                return Ok(true);
            }
        }
        Ok(false)
    }

    fn insert(&mut self, h: u64, day: i64) {
        self.days.entry(day).or_insert_with(|| IdSet::new(&self.files)).insert(h);
    }

    fn evict_before(&mut self, day: i64) {
        self.days.retain(|d, _| *d >= day);
    }

    /// One due merge of a day's newest ids into its files ([`IdSet::merge_one`]).
    fn merge_one(&mut self) {
        // Newest day first: that is the one that grows.
        for set in self.days.values_mut().rev() {
            if set.merge_one() {
                return;
            }
        }
    }
}

/// An append waiting for the group's sync: whom to answer, the duplicate mask, the events.
type Answer = (oneshot::Sender<Result<Appended>>, Result<Vec<bool>>, Vec<Event>);

struct Writer {
    cfg: WalConfig,
    frames: FrameEncoder,
    shared: Arc<WalShared>,
    dedup: DedupIndex,
    seq: u64,
    file: Option<File>,
    len: u64,
    opened: Instant,
}

impl Writer {
    fn run(mut self, rx: Receiver<Cmd>) {
        loop {
            let wait = if self.file.is_some() {
                self.cfg.max_age.saturating_sub(self.opened.elapsed())
            } else {
                Duration::from_secs(3600)
            };
            let first = match rx.recv_timeout(wait) {
                Ok(c) => c,
                Err(RecvTimeoutError::Timeout) => {
                    self.rotate();
                    continue;
                }
                Err(RecvTimeoutError::Disconnected) => break,
            };
            let mut group = vec![first];
            while group.len() < MAX_GROUP {
                match rx.try_recv() {
                    Ok(c) => group.push(c),
                    Err(_) => break,
                }
            }
            self.commit(group);
            if self.file.is_some() && (self.len >= self.cfg.segment_bytes || self.opened.elapsed() >= self.cfg.max_age)
            {
                self.rotate();
            }
        }
        self.rotate();
    }

    /// Writes every append of the group, syncs once, then answers them all.
    fn commit(&mut self, group: Vec<Cmd>) {
        let now_day = crate::event::now_micros().div_euclid(MICROS_PER_DAY);
        let mut pending: IntSet<u64> = IntSet::default();
        let mut to_insert: Vec<(u64, i64)> = Vec::new();
        let mut answers: Vec<Answer> = Vec::new();
        let mut seals = Vec::new();
        // The new events of the group as (answer, event) positions, cut into frames.
        let mut frames: Vec<Vec<(usize, usize)>> = vec![Vec::new()];
        let mut frame_bytes = 0usize;
        // A new segment starts with its header.
        let mut group_bytes = if self.file.is_none() { self.frames.header().len() as u64 } else { 0 };
        for cmd in group {
            match cmd {
                Cmd::Seal { reply } => seals.push(reply),
                Cmd::Append { events, reply } => {
                    let mut mask = Vec::with_capacity(events.len());
                    // This request's new ids: a set for the duplicate check, a list (with the day
                    // received) for the index once the group is durable.
                    let mut mine = Vec::new();
                    let mut mine_set = IntSet::with_capacity_and_hasher(events.len(), Default::default());
                    let mut bytes = 0usize;
                    let mut unreadable = None;
                    for e in &events {
                        let h = id_hash(&e.event_id);
                        let dup = match self.dedup.contains(h) {
                            Ok(seen) => seen || pending.contains(&h) || !mine_set.insert(h),
                            Err(err) => {
                                unreadable = Some(err);
                                break;
                            }
                        };
                        mask.push(dup);
                        if !dup {
                            bytes += frame_bytes_of(e);
                            mine.push((h, e.received_at.div_euclid(MICROS_PER_DAY)));
                        }
                    }
                    if let Some(err) = unreadable {
                        // Without the index a redelivery would be stored twice: refused, the
                        // provider retries.
                        tracing::error!(error = %err, "deduplication index unreadable; refusing the request");
                        answers.push((reply, Err(err), events));
                        continue;
                    }
                    if mine.is_empty() {
                        answers.push((reply, Ok(mask), events));
                        continue;
                    }
                    if bytes > MAX_FRAME_BYTES {
                        let err = Error::Invalid(format!(
                            "request too large for one log frame (~{bytes} bytes of events, limit {MAX_FRAME_BYTES})"
                        ));
                        answers.push((reply, Err(err), events));
                        continue;
                    }
                    let new_frame = frame_bytes > 0 && frame_bytes + bytes > FRAME_TARGET_BYTES;
                    let overhead = if frame_bytes == 0 || new_frame { FRAME_OVERHEAD_BYTES } else { 0 };
                    let used = self.shared.bytes.load(Ordering::Relaxed) + group_bytes;
                    if used + (bytes + overhead) as u64 > self.cfg.budget_bytes {
                        self.shared.full.store(true, Ordering::Relaxed);
                        answers.push((reply, Err(Error::WalFull { used, budget: self.cfg.budget_bytes }), events));
                        continue;
                    }
                    if new_frame {
                        frames.push(Vec::new());
                        frame_bytes = 0;
                    }
                    let at = answers.len();
                    if let Some(frame) = frames.last_mut() {
                        frame.extend(mask.iter().enumerate().filter(|(_, d)| !**d).map(|(i, _)| (at, i)));
                    }
                    frame_bytes += bytes + overhead;
                    group_bytes += (bytes + overhead) as u64;
                    for (h, d) in &mine {
                        pending.insert(*h);
                        to_insert.push((*h, *d));
                    }
                    answers.push((reply, Ok(mask), events));
                }
            }
        }
        // Sized once from the frames' upper bound, not grown by doubling through a 4 MiB frame.
        let mut buf: Vec<u8> = Vec::with_capacity(usize::try_from(group_bytes).unwrap_or(0));
        let encoded = frames.iter().filter(|f| !f.is_empty()).try_for_each(|frame| {
            let events: Vec<&Event> = frame.iter().map(|&(a, i)| &answers[a].2[i]).collect();
            self.frames.append_batch(&mut buf, &crate::event::to_record_batch(&events)?)
        });
        if let Err(e) = encoded {
            // Only a bug can get here (events always fit the schema); nothing of the group
            // is written, and every request with new events is told so.
            tracing::error!(error = %e, "cannot encode events for the write-ahead log");
            let msg = format!("cannot encode events: {e}");
            for (_, res, _) in answers.iter_mut() {
                if matches!(res, Ok(mask) if mask.iter().any(|d| !*d)) {
                    *res = Err(Error::Invalid(msg.clone()));
                }
            }
            buf.clear();
            to_insert.clear();
        }
        if !buf.is_empty() {
            if let Err(err) = self.write_and_sync(&buf) {
                tracing::error!(error = %err, "write-ahead log write failed; answering 503 until it recovers");
                self.shared.healthy.store(false, Ordering::Relaxed);
                self.shared.failed_bytes.store(buf.len(), Ordering::Relaxed);
                if let Ok(mut last) = self.shared.last_error.lock() {
                    *last = Some(err.to_string());
                }
                let msg = err.to_string();
                for (reply, res, events) in answers {
                    let res = match res {
                        Ok(mask) if mask.iter().all(|d| *d) => Ok(Appended { events, duplicate: mask }),
                        Ok(_) => Err(Error::WalClosed(msg.clone())),
                        Err(e) => Err(e),
                    };
                    let _ = reply.send(res);
                }
                for s in seals {
                    let _ = s.send(());
                }
                return;
            }
            self.shared.healthy.store(true, Ordering::Relaxed);
        }
        for (reply, res, events) in answers {
            let _ = reply.send(res.map(|duplicate| Appended { events, duplicate }));
        }
        // After the answers: a merge of the index into its files takes a few milliseconds, and
        // the next group (whose lookups need these ids) waits for it anyway.
        if !to_insert.is_empty() {
            for (h, d) in to_insert {
                self.dedup.insert(h, d);
            }
            self.dedup.evict_before(now_day - DEDUP_DAYS);
            self.dedup.merge_one();
        }
        if !seals.is_empty() {
            self.rotate();
            for s in seals {
                let _ = s.send(());
            }
        }
    }

    fn path(&self, seq: u64) -> PathBuf {
        self.cfg.dir.join(format!("{seq:020}.wal"))
    }

    fn write_and_sync(&mut self, buf: &[u8]) -> Result<()> {
        if self.file.is_none() {
            let path = self.path(self.seq);
            let mut f = OpenOptions::new()
                .create(true)
                .truncate(true)
                .write(true)
                .open(&path)
                .map_err(|e| Error::io(format!("creating {}", path.display()), e))?;
            let header = self.frames.header();
            f.write_all(header).map_err(|e| Error::io(format!("writing {}", path.display()), e))?;
            sync_dir(&self.cfg.dir);
            self.shared.bytes.fetch_add(header.len() as u64, Ordering::Relaxed);
            self.file = Some(f);
            self.len = header.len() as u64;
            self.opened = Instant::now();
        }
        let Some(f) = self.file.as_mut() else {
            return Err(Error::WalClosed("no active segment".into()));
        };
        let res = f.write_all(buf).and_then(|_| f.sync_data());
        match res {
            Ok(()) => {
                self.len += buf.len() as u64;
                self.shared.bytes.fetch_add(buf.len() as u64, Ordering::Relaxed);
                Ok(())
            }
            Err(e) => {
                // Cut what may have been written so no unacknowledged frame survives, then
                // start a fresh segment for the next write.
                let good = self.len;
                let cut = f.set_len(good).and_then(|_| f.seek(SeekFrom::Start(good)).map(|_| ()));
                if cut.is_err() {
                    tracing::error!(
                        "could not cut a failed write from the log; the flusher will stop at the bad frame"
                    );
                }
                self.rotate();
                Err(Error::io("appending to the write-ahead log", e))
            }
        }
    }

    /// Seals the active segment (if it holds anything) and tells the flusher.
    fn rotate(&mut self) {
        if self.file.take().is_some() {
            self.seq += 1;
            self.len = 0;
            self.shared.sealed_below.store(self.seq, Ordering::Release);
        }
        // Always wake the flusher: a seal request must flush even an empty active segment's
        // predecessors.
        self.shared.sealed.notify_one();
    }
}

/// Appends one frame: payload length and CRC32 (little-endian u32 each), then the payload.
/// Refuses a payload over [`MAX_FRAME_BYTES`]: [`decode_segment`] would take it for a torn
/// frame and cut it, losing what was acknowledged.
pub fn encode_frame(buf: &mut Vec<u8>, payload: &[u8]) -> Result<()> {
    let start = begin_frame(buf);
    buf.extend_from_slice(payload);
    end_frame(buf, start)
}

/// Starts a frame at the end of `buf`: room for its header, filled in by [`end_frame`].
fn begin_frame(buf: &mut Vec<u8>) -> usize {
    let start = buf.len();
    buf.extend_from_slice(&[0; FRAME_HEADER]);
    start
}

/// Fills in the length and checksum of the frame begun at `start`, or takes the frame back
/// out of `buf` when it is over [`MAX_FRAME_BYTES`].
fn end_frame(buf: &mut Vec<u8>, start: usize) -> Result<()> {
    let len = buf.len() - start - FRAME_HEADER;
    if len > MAX_FRAME_BYTES {
        buf.truncate(start);
        return Err(Error::Invalid(format!(
            "request too large for one log frame ({len} bytes of events, limit {MAX_FRAME_BYTES})"
        )));
    }
    let crc = crc32fast::hash(&buf[start + FRAME_HEADER..]);
    // Fits: MAX_FRAME_BYTES is below u32::MAX.
    buf[start..start + 4].copy_from_slice(&(len as u32).to_le_bytes());
    buf[start + 4..start + FRAME_HEADER].copy_from_slice(&crc.to_le_bytes());
    Ok(())
}

/// An upper bound on a frame's bytes besides its events': the frame header and the record
/// batch message's metadata (~2.4 KB for the events table's 30 columns).
const FRAME_OVERHEAD_BYTES: usize = 4096;

/// An upper bound on what one event adds to a frame: its strings plus offsets, validity bits
/// and fixed-width values of every column (~150 bytes). Used for the log's budget and for
/// cutting a group into frames before anything is encoded.
fn frame_bytes_of(e: &Event) -> usize {
    const FIXED: usize = 160;
    let opt = |o: &Option<String>| o.as_ref().map_or(0, String::len);
    FIXED
        + e.event_id.len()
        + e.event_type.len()
        + e.source.len()
        + [
            &e.account_id,
            &e.phone_number_id,
            &e.message_id,
            &e.reply_to,
            &e.conversation_id,
            &e.contact_key,
            &e.country,
            &e.campaign,
            &e.template,
            &e.locale,
            &e.category,
            &e.experiment,
            &e.variant,
            &e.content_type,
            &e.interaction_id,
            &e.interaction_title,
            &e.error_title,
            &e.currency,
            &e.actor,
            &e.agent_key,
            &e.queue,
            &e.attributes,
        ]
        .into_iter()
        .map(opt)
        .sum::<usize>()
}

/// Encodes log frames as Arrow IPC messages: the events table's schema once per segment, then
/// one record batch per frame. Arrow instead of JSON because the flusher needs Arrow anyway:
/// encoding events as JSON and decoding them back into structs was ~20% of `serve`'s CPU
/// under webhook load (BENCHMARKS.md, section 1, third round).
pub struct FrameEncoder {
    generator: IpcDataGenerator,
    options: IpcWriteOptions,
    context: IpcWriteContext,
    /// Stays empty: the events table has no dictionary columns.
    dictionaries: DictionaryTracker,
    header: Vec<u8>,
}

impl FrameEncoder {
    /// An encoder for the events table.
    pub fn new() -> Result<Self> {
        // 8-byte alignment (the format's minimum): Arrow's default of 64 pads each of the
        // ~90 buffers of a batch by up to 63 bytes.
        let options = IpcWriteOptions::try_new(8, false, arrow::ipc::MetadataVersion::V5)?;
        let generator = IpcDataGenerator::default();
        let mut dictionaries = DictionaryTracker::new(false);
        let schema =
            generator.schema_to_bytes_with_dictionary_tracker(&crate::event::schema(), &mut dictionaries, &options);
        let mut payload = Vec::new();
        write_message(&mut payload, schema, &options)?;
        let mut header = MAGIC.to_vec();
        encode_frame(&mut header, &payload)?;
        Ok(FrameEncoder { generator, options, context: IpcWriteContext::default(), dictionaries, header })
    }

    /// The first bytes of a segment: the magic and the schema frame.
    pub fn header(&self) -> &[u8] {
        &self.header
    }

    /// Appends one frame holding `batch` (of the events table's schema) to `buf`. The message
    /// is written in place and its length and checksum filled in after, rather than written to
    /// a payload of its own and copied: frames are up to 4 MiB, and every copy is memory the
    /// allocator holds for a while after it is freed.
    pub fn append_batch(&mut self, buf: &mut Vec<u8>, batch: &RecordBatch) -> Result<()> {
        let (dictionaries, message) =
            self.generator.encode(batch, &mut self.dictionaries, &self.options, &mut self.context)?;
        buf.reserve(FRAME_HEADER + message.ipc_message.len() + message.arrow_data.len() + 16);
        let start = begin_frame(buf);
        let written = dictionaries
            .into_iter()
            .try_for_each(|d| write_message(&mut *buf, d, &self.options).map(drop))
            .and_then(|()| write_message(&mut *buf, message, &self.options).map(drop));
        if let Err(e) = written {
            buf.truncate(start);
            return Err(e.into());
        }
        end_frame(buf, start)
    }
}

/// A decoded segment.
#[derive(Debug, Default)]
pub struct Segment {
    /// The events, one batch per frame, in the events table's schema.
    pub batches: Vec<RecordBatch>,
    /// Offset of the first bad frame, when the tail is corrupt.
    pub cut_at: Option<u64>,
    pub cut_reason: Option<String>,
}

impl Segment {
    /// How many events the segment holds.
    pub fn rows(&self) -> usize {
        self.batches.iter().map(RecordBatch::num_rows).sum()
    }
}

/// Reads every good frame of a segment. A bad header is an error; a bad frame ends the read
/// (everything after a torn write is suspect) and is reported in `cut_at`.
pub fn read_segment(path: &Path) -> Result<Segment> {
    let mut f = File::open(path).map_err(|e| Error::io(format!("opening {}", path.display()), e))?;
    let mut data = Vec::new();
    f.read_to_end(&mut data).map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
    decode_segment(data).map_err(|m| Error::Invalid(format!("{}: {m}", path.display())))
}

/// What a segment's frames hold.
enum Frames {
    Arrow(StreamDecoder),
    Json,
}

/// Decodes segment bytes (see [`read_segment`]). The batches of an Arrow segment share
/// `data`'s memory where it is aligned.
pub fn decode_segment(data: Vec<u8>) -> std::result::Result<Segment, String> {
    let data = Buffer::from_vec(data);
    if data.len() < MAGIC.len() {
        // A crash between creating the file and writing its header leaves it empty.
        return Ok(Segment { cut_at: Some(0), cut_reason: Some("no header".into()), ..Default::default() });
    }
    let mut frames = match &data[..MAGIC.len()] {
        m if m == MAGIC => Frames::Arrow(StreamDecoder::new()),
        m if m == MAGIC_JSON => Frames::Json,
        _ => return Err("not a convoscope write-ahead log segment".into()),
    };
    let mut seg = Segment::default();
    let mut pos = MAGIC.len();
    while pos < data.len() {
        let cut = |seg: &mut Segment, why: &str| {
            seg.cut_at = Some(pos as u64);
            seg.cut_reason = Some(why.to_string());
        };
        if data.len() - pos < FRAME_HEADER {
            cut(&mut seg, "torn frame header");
            break;
        }
        let len = u32::from_le_bytes([data[pos], data[pos + 1], data[pos + 2], data[pos + 3]]) as usize;
        let crc = u32::from_le_bytes([data[pos + 4], data[pos + 5], data[pos + 6], data[pos + 7]]);
        if len > MAX_FRAME_BYTES || data.len() - pos - FRAME_HEADER < len {
            cut(&mut seg, "torn frame");
            break;
        }
        let payload = data.slice_with_length(pos + FRAME_HEADER, len);
        if crc32fast::hash(payload.as_slice()) != crc {
            cut(&mut seg, "checksum mismatch");
            break;
        }
        let first = pos == MAGIC.len();
        let decoded = match &mut frames {
            Frames::Arrow(decoder) => {
                if first {
                    // A segment of another schema (a later build's) is not cut: cutting would
                    // delete its events. The caller sets it aside whole.
                    match try_schema_from_ipc_buffer(payload.as_slice()) {
                        Ok(s) if s.fields() != crate::event::schema().fields() => {
                            return Err("its events table schema differs from this build's".into());
                        }
                        Ok(_) => arrow_frame(decoder, payload, true),
                        Err(e) => Err(e.to_string()),
                    }
                } else {
                    arrow_frame(decoder, payload, false)
                }
            }
            Frames::Json => json_frame(payload.as_slice()),
        };
        match decoded {
            Ok(Some(batch)) => seg.batches.push(batch),
            Ok(None) => {}
            Err(e) => {
                // Nothing of an undecodable frame is kept.
                cut(&mut seg, &format!("undecodable frame: {e}"));
                break;
            }
        }
        pos += FRAME_HEADER + len;
    }
    Ok(seg)
}

/// Decodes one Arrow frame: the schema (the segment's first frame, already checked) or one
/// record batch.
fn arrow_frame(
    decoder: &mut StreamDecoder,
    mut payload: Buffer,
    first: bool,
) -> std::result::Result<Option<RecordBatch>, String> {
    // Arrow's IPC reader panics on some malformed messages (a buffer reaching past the body,
    // found by fuzzing). Bytes that passed the checksum are malformed only through a bug, but
    // even then one segment must not take the collector down at startup.
    let decoded = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let mut batch = None;
        while !payload.is_empty() {
            if let Some(b) = decoder.decode(&mut payload)?
                && batch.replace(b).is_some()
            {
                return Err(arrow::error::ArrowError::IpcError("two batches in one frame".into()));
            }
        }
        // A batch frame must end where a message ends, or its last message would run into the
        // next frame. (Not checkable after the schema: the decoder takes a message without a
        // body as complete only when the next bytes arrive.)
        if !first {
            decoder.finish()?;
        }
        Ok(batch)
    }))
    .map_err(|_| "the Arrow decoder panicked".to_string())?
    .map_err(|e| e.to_string())?;
    match (first, decoded.is_some()) {
        (true, false) | (false, true) => Ok(decoded),
        _ => Err(if first { "first frame is not the schema" } else { "frame holds no record batch" }.into()),
    }
}

/// Decodes one JSON frame (segments of earlier builds) into a batch.
fn json_frame(payload: &[u8]) -> std::result::Result<Option<RecordBatch>, String> {
    let events: Vec<Event> = serde_json::from_slice(payload).map_err(|e| e.to_string())?;
    crate::event::to_record_batch(&events).map(Some).map_err(|e| e.to_string())
}

fn log_id(dir: &Path) -> Result<String> {
    let p = dir.join("log.id");
    match fs::read_to_string(&p) {
        Ok(s) if !s.trim().is_empty() => return Ok(s.trim().to_string()),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(Error::io(format!("reading {}", p.display()), e)),
    }
    let id = format!("{:016x}", rand::random::<u64>());
    fs::write(&p, &id)
        .and_then(|_| File::open(&p)?.sync_all())
        .map_err(|e| Error::io(format!("writing {}", p.display()), e))?;
    sync_dir(dir);
    Ok(id)
}

fn list_segments(dir: &Path) -> Result<Vec<(u64, PathBuf)>> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir).map_err(|e| Error::io(format!("listing {}", dir.display()), e))? {
        let entry = entry.map_err(|e| Error::io(format!("listing {}", dir.display()), e))?;
        let path = entry.path();
        if path.extension().and_then(|e| e.to_str()) != Some("wal") {
            continue;
        }
        if let Some(seq) = path.file_stem().and_then(|s| s.to_str()).and_then(|s| s.parse::<u64>().ok()) {
            out.push((seq, path));
        }
    }
    out.sort();
    Ok(out)
}

fn truncate(path: &Path, len: u64) -> Result<()> {
    let f =
        OpenOptions::new().write(true).open(path).map_err(|e| Error::io(format!("opening {}", path.display()), e))?;
    // An empty segment keeps its header so it stays readable.
    f.set_len(len.max(MAGIC.len() as u64))
        .and_then(|_| {
            if len < MAGIC.len() as u64 {
                let mut f = &f;
                f.seek(SeekFrom::Start(0))?;
                f.write_all(MAGIC)?;
            }
            f.sync_all()
        })
        .map_err(|e| Error::io(format!("cutting {}", path.display()), e))
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

    fn cfg(dir: &Path) -> WalConfig {
        WalConfig {
            dir: dir.to_path_buf(),
            segment_bytes: 1 << 20,
            max_age: Duration::from_secs(60),
            budget_bytes: 1 << 30,
        }
    }

    fn ev(id: &str) -> Event {
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

    #[tokio::test]
    async fn concurrent_appends_share_syncs_and_all_land() {
        let dir = tempfile::tempdir().unwrap();
        let (wal, _) = Wal::open(cfg(dir.path())).unwrap();
        let wal = Arc::new(wal);
        let mut tasks = Vec::new();
        for i in 0..200 {
            let w = wal.clone();
            tasks.push(tokio::spawn(async move { w.append(vec![ev(&format!("e{i}"))]).await }));
        }
        for t in tasks {
            assert_eq!(t.await.unwrap().unwrap().duplicate, [false]);
        }
        wal.seal().await.unwrap();
        let total: usize = wal.sealed_segments().unwrap().iter().map(|(_, p)| read_segment(p).unwrap().rows()).sum();
        assert_eq!(total, 200);
    }

    #[tokio::test]
    async fn corrupt_tail_is_cut_and_other_segments_survive() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (wal, _) = Wal::open(cfg(dir.path())).unwrap();
            wal.append(vec![ev("a")]).await.unwrap();
            wal.seal().await.unwrap();
            wal.append(vec![ev("b")]).await.unwrap();
            wal.append(vec![ev("c")]).await.unwrap();
        }
        let segs = list_segments(dir.path()).unwrap();
        assert_eq!(segs.len(), 2);
        // Tear the last frame of the second segment, and give a third segment a bad header.
        let p = &segs[1].1;
        let len = fs::metadata(p).unwrap().len();
        OpenOptions::new().write(true).open(p).unwrap().set_len(len - 3).unwrap();
        fs::write(dir.path().join("00000000000000000099.wal"), b"garbage!garbage").unwrap();
        let (wal, rec) = Wal::open(cfg(dir.path())).unwrap();
        assert_eq!(rec.segments, 2);
        assert_eq!(rec.events, 2);
        assert_eq!(rec.cut_tails.len(), 1);
        assert_eq!(rec.set_aside.len(), 1);
        // `c` was torn away with the tail, so it is new again; `a` is still known.
        assert_eq!(wal.append(vec![ev("a"), ev("c")]).await.unwrap().duplicate, [true, false]);
    }

    #[tokio::test]
    async fn budget_refuses_and_reports() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = cfg(dir.path());
        let budget = FrameEncoder::new().unwrap().header().len() as u64 + 3 * FRAME_OVERHEAD_BYTES as u64;
        c.budget_bytes = budget;
        let (wal, _) = Wal::open(c).unwrap();
        let (mut full, mut ok) = (false, 0);
        for i in 0..20 {
            match wal.append(vec![ev(&format!("x{i}"))]).await {
                Ok(_) => ok += 1,
                Err(Error::WalFull { .. }) => {
                    full = true;
                    break;
                }
                Err(e) => panic!("{e}"),
            }
        }
        assert!(full && ok >= 2, "{ok} appends before the log was full");
        assert!(wal.shared().bytes.load(Ordering::Relaxed) <= budget);
    }

    fn segment_of(events: &[Event]) -> Vec<u8> {
        let mut enc = FrameEncoder::new().unwrap();
        let mut data = enc.header().to_vec();
        enc.append_batch(&mut data, &crate::event::to_record_batch(events).unwrap()).unwrap();
        data
    }

    #[test]
    fn decode_rejects_flipped_bits() {
        let mut data = segment_of(&[ev("a")]);
        assert_eq!(decode_segment(data.clone()).unwrap().rows(), 1);
        let n = data.len();
        data[n - 5] ^= 0x40;
        let seg = decode_segment(data).unwrap();
        assert!(seg.batches.is_empty());
        assert_eq!(seg.cut_reason.as_deref(), Some("checksum mismatch"));
    }

    #[test]
    fn frames_hold_every_column_of_the_events() {
        let mut a = ev("a");
        a.attributes = Some(r#"{"k":"\u00e9\"x"}"#.into());
        a.error_code = Some(131_049);
        a.billable = Some(false);
        a.cost_micros = Some(-5);
        a.csat_score = Some(4);
        a.contact_key = Some("c".into());
        let events = [a, ev("b")];
        let seg = decode_segment(segment_of(&events)).unwrap();
        assert_eq!(seg.cut_reason, None);
        assert_eq!(seg.batches, [crate::event::to_record_batch(&events).unwrap()]);
    }

    #[test]
    fn segments_of_earlier_builds_still_decode() {
        // An earlier build wrote each request as a JSON array of events.
        let events = [ev("a"), ev("b")];
        let mut data = MAGIC_JSON.to_vec();
        encode_frame(&mut data, &serde_json::to_vec(&events[..1]).unwrap()).unwrap();
        encode_frame(&mut data, &serde_json::to_vec(&events[1..]).unwrap()).unwrap();
        let seg = decode_segment(data).unwrap();
        assert_eq!((seg.rows(), seg.cut_at), (2, None));
        let ids: Vec<&str> = seg.batches.iter().map(|b| b.column(0).as_string::<i32>().value(0)).collect();
        assert_eq!(ids, ["a", "b"]);
    }

    #[tokio::test]
    async fn a_segment_of_another_schema_is_set_aside_not_cut() {
        use arrow::datatypes::{DataType, Field, Schema};
        let schema = Schema::new(vec![Field::new("event_id", DataType::Utf8, false)]);
        let options = IpcWriteOptions::default();
        let encoded = IpcDataGenerator::default().schema_to_bytes_with_dictionary_tracker(
            &schema,
            &mut DictionaryTracker::new(false),
            &options,
        );
        let mut payload = Vec::new();
        write_message(&mut payload, encoded, &options).unwrap();
        let mut data = MAGIC.to_vec();
        encode_frame(&mut data, &payload).unwrap();
        assert!(decode_segment(data.clone()).is_err());
        // Opening the log moves it aside whole: a later build can still flush every byte.
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("00000000000000000003.wal"), &data).unwrap();
        let (_wal, rec) = Wal::open(cfg(dir.path())).unwrap();
        assert_eq!((rec.set_aside.len(), rec.cut_tails.len()), (1, 0));
        assert_eq!(fs::read(dir.path().join("corrupt/00000000000000000003.wal")).unwrap(), data);
    }

    #[test]
    fn frames_the_reader_would_cut_are_refused() {
        let mut buf = Vec::new();
        let big = vec![b' '; MAX_FRAME_BYTES + 1];
        assert!(encode_frame(&mut buf, &big).is_err());
        assert!(buf.is_empty());
        encode_frame(&mut buf, &big[..MAX_FRAME_BYTES]).unwrap();
        assert_eq!(buf.len(), FRAME_HEADER + MAX_FRAME_BYTES);
    }

    #[test]
    fn a_torn_dedup_record_is_cut_before_the_next_append() {
        let dir = tempfile::tempdir().unwrap();
        let rec = dedup_record(&[crate::event::to_record_batch(&[ev("a"), ev("b")]).unwrap()]).unwrap();
        let day = *rec.keys().next().unwrap();
        let file = dir.path().join(format!("{day}.ids"));
        // A crash (or a full disk) left three bytes of a hash behind.
        std::fs::write(&file, [1u8, 2, 3]).unwrap();
        append_dedup(dir.path(), &rec).unwrap();
        assert_eq!(std::fs::metadata(&file).unwrap().len(), 16);
        let idx = DedupIndex::load(dir.path(), day).unwrap();
        assert!(idx.contains(id_hash("a")).unwrap() && idx.contains(id_hash("b")).unwrap());
    }
}
