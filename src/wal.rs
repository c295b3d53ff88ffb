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
//!   `[len: u32 LE][crc32: u32 LE][len bytes of JSON array of events]`.
//! - `dedup/<day>.ids`: 8-byte hashes of the event ids already flushed, per day received, so
//!   duplicates are recognised across restarts for [`DEDUP_DAYS`].
//! - `corrupt/`: segments whose header is unreadable, set aside so they never block the rest.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nohash_hasher::IntSet;
use serde::de::DeserializeSeed;
use tokio::sync::{Notify, oneshot};

use crate::error::{Error, Result};
use crate::event::Event;
use crate::idset::IdSet;

/// First bytes of every segment file.
pub const MAGIC: &[u8; 8] = b"CVWAL001";
const FRAME_HEADER: usize = 8;
/// A frame larger than this is taken for corruption: no request body may exceed the HTTP
/// limit, so no honest frame comes near it.
const MAX_FRAME_BYTES: usize = 256 << 20;
/// How many requests one group commit takes at most, so a flood cannot delay the first
/// request's answer without bound.
const MAX_GROUP: usize = 1024;
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
    /// Woken when a segment is sealed.
    pub sealed: Notify,
    /// Byte budget of the log.
    pub budget: u64,
    dir: PathBuf,
}

/// Size of the readiness probe's file: one page, as a small append would need.
const PROBE_BYTES: usize = 4096;

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
                    for e in &seg.events {
                        dedup.insert(id_hash(&e.event_id), e.received_at.div_euclid(MICROS_PER_DAY));
                    }
                    rec.segments += 1;
                    rec.events += seg.events.len();
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
            sealed: Notify::new(),
            budget: cfg.budget_bytes,
            dir: cfg.dir.clone(),
        });
        let (tx, rx) = std::sync::mpsc::sync_channel(QUEUE_DEPTH);
        let writer =
            Writer { cfg, shared: shared.clone(), dedup, seq: active_seq, file: None, len: 0, opened: Instant::now() };
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

    /// Writes, syncs and deletes a small file in the log directory; on success the log counts
    /// as healthy again. Readiness calls it after a write failed, so a server that a load
    /// balancer took out of rotation for a disk problem sees the fix without waiting for a
    /// request that would never come.
    pub fn probe_disk(&self) -> Result<()> {
        let p = self.shared.dir.join(".probe");
        let res = File::create(&p).and_then(|mut f| f.write_all(&[0u8; PROBE_BYTES]).and_then(|_| f.sync_data()));
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

/// The dedup record of some events.
pub fn dedup_record(events: &[Event]) -> DedupRecord {
    let mut by_day = DedupRecord::new();
    for e in events {
        by_day
            .entry(e.received_at.div_euclid(MICROS_PER_DAY))
            .or_default()
            .extend_from_slice(&id_hash(&e.event_id).to_le_bytes());
    }
    by_day
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
}

impl DedupIndex {
    fn load(dir: &Path, today: i64) -> Result<Self> {
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
            days.insert(day, IdSet::from_vec(ids));
        }
        Ok(DedupIndex { days })
    }

    fn contains(&self, h: u64) -> bool {
        self.days.values().any(|s| s.contains(h))
    }

    fn insert(&mut self, h: u64, day: i64) {
        self.days.entry(day).or_default().insert(h);
    }

    fn evict_before(&mut self, day: i64) {
        self.days.retain(|d, _| *d >= day);
    }
}

/// An append waiting for the group's sync: whom to answer, the duplicate mask, the events.
type Answer = (oneshot::Sender<Result<Appended>>, Result<Vec<bool>>, Vec<Event>);

struct Writer {
    cfg: WalConfig,
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
        let mut buf: Vec<u8> = Vec::new();
        let mut pending: IntSet<u64> = IntSet::default();
        let mut to_insert: Vec<(u64, i64)> = Vec::new();
        let mut answers: Vec<Answer> = Vec::new();
        let mut seals = Vec::new();
        for cmd in group {
            match cmd {
                Cmd::Seal { reply } => seals.push(reply),
                Cmd::Append { events, reply } => {
                    let mut mask = Vec::with_capacity(events.len());
                    let mut keep: Vec<&Event> = Vec::with_capacity(events.len());
                    // This request's new ids: a set for the duplicate check, a list (with the day
                    // received) for the index once the group is durable.
                    let mut mine = Vec::new();
                    let mut mine_set = IntSet::with_capacity_and_hasher(events.len(), Default::default());
                    for e in &events {
                        let h = id_hash(&e.event_id);
                        let dup = self.dedup.contains(h) || pending.contains(&h) || !mine_set.insert(h);
                        mask.push(dup);
                        if !dup {
                            keep.push(e);
                            mine.push((h, e.received_at.div_euclid(MICROS_PER_DAY)));
                        }
                    }
                    if keep.is_empty() {
                        answers.push((reply, Ok(mask), events));
                        continue;
                    }
                    let payload = match serde_json::to_vec(&keep) {
                        Ok(p) => p,
                        Err(e) => {
                            answers.push((reply, Err(Error::Invalid(format!("cannot encode events: {e}"))), events));
                            continue;
                        }
                    };
                    let used = self.shared.bytes.load(Ordering::Relaxed) + buf.len() as u64;
                    let frame_len = (payload.len() + FRAME_HEADER) as u64;
                    if used + frame_len > self.cfg.budget_bytes {
                        self.shared.full.store(true, Ordering::Relaxed);
                        answers.push((reply, Err(Error::WalFull { used, budget: self.cfg.budget_bytes }), events));
                        continue;
                    }
                    if let Err(e) = encode_frame(&mut buf, &payload) {
                        answers.push((reply, Err(e), events));
                        continue;
                    }
                    for (h, d) in &mine {
                        pending.insert(*h);
                        to_insert.push((*h, *d));
                    }
                    drop(keep);
                    answers.push((reply, Ok(mask), events));
                }
            }
        }
        if !buf.is_empty() {
            if let Err(err) = self.write_and_sync(&buf) {
                tracing::error!(error = %err, "write-ahead log write failed; answering 503 until it recovers");
                self.shared.healthy.store(false, Ordering::Relaxed);
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
            for (h, d) in to_insert {
                self.dedup.insert(h, d);
            }
            self.dedup.evict_before(now_day - DEDUP_DAYS);
        }
        for (reply, res, events) in answers {
            let _ = reply.send(res.map(|duplicate| Appended { events, duplicate }));
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
            f.write_all(MAGIC).map_err(|e| Error::io(format!("writing {}", path.display()), e))?;
            sync_dir(&self.cfg.dir);
            self.shared.bytes.fetch_add(MAGIC.len() as u64, Ordering::Relaxed);
            self.file = Some(f);
            self.len = MAGIC.len() as u64;
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
    if payload.len() > MAX_FRAME_BYTES {
        return Err(Error::Invalid(format!(
            "request too large for one log frame ({} bytes of events, limit {MAX_FRAME_BYTES})",
            payload.len()
        )));
    }
    // Fits: MAX_FRAME_BYTES is below u32::MAX.
    let len = payload.len() as u32;
    buf.extend_from_slice(&len.to_le_bytes());
    buf.extend_from_slice(&crc32fast::hash(payload).to_le_bytes());
    buf.extend_from_slice(payload);
    Ok(())
}

/// A decoded segment.
#[derive(Debug, Default)]
pub struct Segment {
    pub events: Vec<Event>,
    /// Offset of the first bad frame, when the tail is corrupt.
    pub cut_at: Option<u64>,
    pub cut_reason: Option<String>,
}

/// Reads every good frame of a segment. A bad header is an error; a bad frame ends the read
/// (everything after a torn write is suspect) and is reported in `cut_at`.
pub fn read_segment(path: &Path) -> Result<Segment> {
    let mut f = File::open(path).map_err(|e| Error::io(format!("opening {}", path.display()), e))?;
    let mut data = Vec::new();
    f.read_to_end(&mut data).map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
    decode_segment(&data).map_err(|m| Error::Invalid(format!("{}: {m}", path.display())))
}

/// Decodes segment bytes (see [`read_segment`]).
pub fn decode_segment(data: &[u8]) -> std::result::Result<Segment, String> {
    if data.len() < MAGIC.len() {
        // A crash between creating the file and writing its header leaves it empty.
        return Ok(Segment { cut_at: Some(0), cut_reason: Some("no header".into()), ..Default::default() });
    }
    if &data[..MAGIC.len()] != MAGIC {
        return Err("not a convoscope write-ahead log segment".into());
    }
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
        let payload = &data[pos + FRAME_HEADER..pos + FRAME_HEADER + len];
        if crc32fast::hash(payload) != crc {
            cut(&mut seg, "checksum mismatch");
            break;
        }
        let before = seg.events.len();
        let mut de = serde_json::Deserializer::from_slice(payload);
        match AppendTo(&mut seg.events).deserialize(&mut de).and_then(|()| de.end()) {
            Ok(()) => {}
            Err(e) => {
                // Nothing of an undecodable frame is kept.
                seg.events.truncate(before);
                cut(&mut seg, &format!("undecodable frame: {e}"));
                break;
            }
        }
        pos += FRAME_HEADER + len;
    }
    Ok(seg)
}

/// Reads a frame's JSON array of events straight onto the end of a vector: decoding each frame
/// into its own vector and appending it moved every ~700-byte event twice more.
struct AppendTo<'a>(&'a mut Vec<Event>);

impl<'de> serde::de::DeserializeSeed<'de> for AppendTo<'_> {
    type Value = ();

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> std::result::Result<(), D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> serde::de::Visitor<'de> for AppendTo<'_> {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("an array of events")
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> std::result::Result<(), A::Error> {
        while let Some(e) = seq.next_element::<Event>()? {
            self.0.push(e);
        }
        Ok(())
    }
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
            wal.finish_segment(&p, dedup_record(&seg.events)).unwrap();
        }
        assert!(wal.sealed_segments().unwrap().is_empty());
        drop(wal);
        let (wal, rec) = Wal::open(cfg(dir.path())).unwrap();
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
        let total: usize =
            wal.sealed_segments().unwrap().iter().map(|(_, p)| read_segment(p).unwrap().events.len()).sum();
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
        c.budget_bytes = 600;
        let (wal, _) = Wal::open(c).unwrap();
        let mut full = false;
        for i in 0..20 {
            match wal.append(vec![ev(&format!("x{i}"))]).await {
                Ok(_) => {}
                Err(Error::WalFull { .. }) => {
                    full = true;
                    break;
                }
                Err(e) => panic!("{e}"),
            }
        }
        assert!(full);
        assert!(wal.shared().bytes.load(Ordering::Relaxed) <= 600);
    }

    #[test]
    fn decode_rejects_flipped_bits() {
        let payload = serde_json::to_vec(&vec![ev("a")]).unwrap();
        let mut data = MAGIC.to_vec();
        encode_frame(&mut data, &payload).unwrap();
        assert_eq!(decode_segment(&data).unwrap().events.len(), 1);
        let n = data.len();
        data[n - 5] ^= 0x40;
        let seg = decode_segment(&data).unwrap();
        assert!(seg.events.is_empty());
        assert_eq!(seg.cut_reason.as_deref(), Some("checksum mismatch"));
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
        let rec = dedup_record(&[ev("a"), ev("b")]);
        let day = *rec.keys().next().unwrap();
        let file = dir.path().join(format!("{day}.ids"));
        // A crash (or a full disk) left three bytes of a hash behind.
        std::fs::write(&file, [1u8, 2, 3]).unwrap();
        append_dedup(dir.path(), &rec).unwrap();
        assert_eq!(std::fs::metadata(&file).unwrap().len(), 16);
        let idx = DedupIndex::load(dir.path(), day).unwrap();
        assert!(idx.contains(id_hash("a")) && idx.contains(id_hash("b")));
    }
}
