//! What opening the log does with what an earlier run left: every segment is read, a torn
//! tail is cut at the last good frame, a segment that cannot be read at all is set aside under
//! `corrupt/`, and the ids of the segments' events go back into the deduplication index, so
//! a redelivery of an event not yet flushed is still recognised. The segments stay, sealed,
//! for the flusher.

use std::fs::{self, File, OpenOptions};
use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use super::dedup::{DedupIndex, for_each_id};
use super::frame::read_segment;
use super::{MAGIC, MICROS_PER_DAY, WalConfig, sync_dir};
use crate::error::{Error, Result};

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

/// What the writer starts from: the index of ids seen, the segments' bytes, and the number of
/// the first new segment.
pub(super) struct Recovered {
    pub(super) dedup: DedupIndex,
    pub(super) rec: Recovery,
    pub(super) bytes: u64,
    pub(super) active_seq: u64,
}

/// Recovers what an earlier run left in `cfg.dir` (creating it if missing).
pub(super) fn recover(cfg: &WalConfig) -> Result<Recovered> {
    fs::create_dir_all(cfg.dir.join("dedup")).map_err(|e| Error::io(format!("creating {}", cfg.dir.display()), e))?;
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
    Ok(Recovered { dedup, rec, bytes, active_seq })
}

pub(super) fn log_id(dir: &Path) -> Result<String> {
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

pub(super) fn list_segments(dir: &Path) -> Result<Vec<(u64, PathBuf)>> {
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

#[cfg(test)]
mod tests {
    use arrow::ipc::writer::{DictionaryTracker, IpcDataGenerator, IpcWriteOptions, write_message};

    use super::*;
    use crate::wal::tests::{cfg, ev};
    use crate::wal::{Wal, decode_segment, encode_frame};

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
}
