//! The writer thread: the one place segments are written. It takes the requests waiting for
//! it as one group, writes their new events, syncs once and then answers them all (group
//! commit); it seals the active segment on size, age or request.

use std::fs::{File, OpenOptions};
use std::io::{Seek, SeekFrom, Write};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use nohash_hasher::IntSet;
use tokio::sync::oneshot;

use super::dedup::DedupIndex;
use super::frame::{FRAME_OVERHEAD_BYTES, FrameEncoder, frame_bytes_of};
use super::{Appended, DEDUP_DAYS, MAX_FRAME_BYTES, MICROS_PER_DAY, WalConfig, WalShared, sync_dir};
use crate::error::{Error, Result};
use crate::event::Event;
use crate::ids::hash64;

/// How many requests one group commit takes at most, so a flood cannot delay the first
/// request's answer without bound.
const MAX_GROUP: usize = 1024;
/// A group's events go into frames of about this many bytes at most: one record batch per
/// frame, so the flusher never holds more than this of one frame's decoding at a time, and no
/// group of large requests comes near [`MAX_FRAME_BYTES`].
const FRAME_TARGET_BYTES: usize = 4 << 20;

pub(super) enum Cmd {
    Append { events: Vec<Event>, reply: oneshot::Sender<Result<Appended>> },
    Seal { reply: oneshot::Sender<()> },
}

/// Starts the writer thread on segment `seq` (the first after those an earlier run left),
/// taking its commands from `rx`.
pub(super) fn spawn(
    cfg: WalConfig,
    shared: Arc<WalShared>,
    dedup: DedupIndex,
    seq: u64,
    rx: Receiver<Cmd>,
) -> Result<JoinHandle<()>> {
    let writer =
        Writer { cfg, frames: FrameEncoder::new()?, shared, dedup, seq, file: None, len: 0, opened: Instant::now() };
    std::thread::Builder::new()
        .name("wal-writer".into())
        .spawn(move || writer.run(rx))
        .map_err(|e| Error::io("starting the write-ahead log thread", e))
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
        // Exported as a trace (debug: off unless a trace layer wants it, see util::traces).
        let _span = tracing::debug_span!("wal.group_commit", requests = group.len()).entered();
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
                        let h = hash64(&e.event_id);
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
                        super::DEDUP_ERRORS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
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
        let res = f.write_all(buf).and_then(|_| {
            let _span = tracing::debug_span!("wal.fsync", bytes = buf.len()).entered();
            f.sync_data()
        });
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wal::tests::{cfg, ev};
    use crate::wal::{Wal, read_segment};

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
}
