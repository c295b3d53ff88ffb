//! The deduplication index: the hashes ([`crate::ids::hash64`]) of the event ids seen in the
//! last [`DEDUP_DAYS`], by day received, which the writer checks every event against. It is
//! rebuilt at every start from the `dedup/<day>.ids` records of flushed segments
//! ([`dedup_record`], written by [`super::Wal::finish_segment`]) and from the segments not yet
//! flushed.

use std::collections::BTreeMap;
use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use arrow::array::{AsArray, RecordBatch};
use arrow::datatypes::TimestampMicrosecondType;

use super::idset::IdSet;
use super::{DEDUP_DAYS, MICROS_PER_DAY};
use crate::error::{Error, Result};
use crate::ids::hash64;

/// Appends id hashes to `dedup/<day>.ids`, keeping every file a whole number of 8-byte hashes:
/// a partial append (disk full, crash) is cut before the next one, or later hashes would be
/// read misaligned.
pub(super) fn append_dedup(dir: &Path, record: &DedupRecord) -> Result<()> {
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

/// Id hashes of a segment's events by day received, as they are appended to `dedup/<day>.ids`.
pub type DedupRecord = BTreeMap<i64, Vec<u8>>;

/// The dedup record of some events (batches of the events table).
pub fn dedup_record(batches: &[RecordBatch]) -> Result<DedupRecord> {
    let mut by_day = DedupRecord::new();
    for_each_id(batches, |h, day| by_day.entry(day).or_default().extend_from_slice(&h.to_le_bytes()))?;
    Ok(by_day)
}

/// Calls `f` with the id hash and day received of every event in `batches`.
pub(super) fn for_each_id(batches: &[RecordBatch], mut f: impl FnMut(u64, i64)) -> Result<()> {
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
            f(hash64(id.unwrap_or_default()), at.unwrap_or_default().div_euclid(MICROS_PER_DAY));
        }
    }
    Ok(())
}

/// Event ids seen in the last [`DEDUP_DAYS`], by day received.
pub(super) struct DedupIndex {
    days: BTreeMap<i64, IdSet>,
    /// Where the sets keep their (unlinked) files: `dedup/index/`.
    files: PathBuf,
}

impl DedupIndex {
    pub(super) fn load(dir: &Path, today: i64) -> Result<Self> {
        // Whatever an earlier run left here is stale: the sets are rebuilt from the records.
        // If the directory cannot be made (a read-only disk), the sets keep their ids in memory
        // until it can (the log answers 503 meanwhile).
        let files = dir.join("index");
        let cleared = match fs::remove_dir_all(&files) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => fs::create_dir_all(&files),
        };
        if let Err(e) = cleared {
            super::DEDUP_ERRORS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
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

    pub(super) fn contains(&self, h: u64) -> Result<bool> {
        for set in self.days.values() {
            if set.contains(h).map_err(|e| Error::io("reading the deduplication index", e))? {
                return Ok(true);
            }
        }
        Ok(false)
    }

    pub(super) fn insert(&mut self, h: u64, day: i64) {
        self.days.entry(day).or_insert_with(|| IdSet::new(&self.files)).insert(h);
    }

    pub(super) fn evict_before(&mut self, day: i64) {
        self.days.retain(|d, _| *d >= day);
    }

    /// One due merge of a day's newest ids into its files ([`IdSet::merge_one`]).
    pub(super) fn merge_one(&mut self) {
        // Newest day first: that is the one that grows.
        for set in self.days.values_mut().rev() {
            if set.merge_one() {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wal::tests::ev;

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
        assert!(idx.contains(hash64("a")).unwrap() && idx.contains(hash64("b")).unwrap());
    }
}
