//! A compact set of 64-bit id hashes, for the write-ahead log's deduplication index.
//!
//! The index holds a week of event ids; at a few million events a day that is tens of millions
//! of hashes, and it was the largest thing `serve` kept in memory. A `HashSet<u64>` costs 9 to
//! 18 bytes per hash (one control byte per slot, load factor between 7/16 and 7/8), sorted
//! arrays 6 to 7 (see below). [`IdSet`] keeps the sorted arrays in files on the log's disk and
//! in memory only what decides whether to read them:
//! - a Bloom filter per shard (1 to 2 bytes per hash, under [`FILTER_FP`] false positives), so
//!   the lookup of a new id, nearly every lookup, reads no file;
//! - a bucket table per shard (4 bytes per [`PER_BUCKET`] to twice that many hashes), so a
//!   lookup the filter lets through reads one bucket, under a kilobyte, with one `pread`;
//! - the newest hashes of each shard in a small hash set, merged into its file when they are an
//!   eighth of it ([`IdSet::merge_one`]: one shard at a time, so the write-ahead log, which
//!   merges between group commits, never stalls for more than a sixteenth of the set).
//!
//! The hashes are xxh3 outputs, uniform over `u64`, so
//! - they need no second hashing: the small set passes them through ([`nohash_hasher`]);
//! - their top bits split the arrays into [`SHARDS`] shards of similar size, so a merge
//!   rewrites one shard and never holds two copies of the whole index;
//! - the next bits select a bucket of a shard;
//! - a hash's shard and bucket give its top 16 bits or more, so the files keep only the low
//!   48 bits: the set stays exact, in three quarters of the disk.
//!
//! The files are unlinked as soon as they are created and live only as open descriptors: they
//! are a cache of what the log rebuilds the index from at every start (`dedup/*.ids` and its
//! segments), so a crash leaves nothing behind and nothing to trust.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use fastbloom::BloomFilter;
use nohash_hasher::IntSet;

/// Shards of the sorted arrays, by the top [`SHARD_BITS`] bits of a hash.
const SHARD_BITS: u32 = 4;
const SHARDS: usize = 1 << SHARD_BITS;
/// A shard's newest hashes stay in its hash set until there are at least this many; merging
/// fewer would rewrite its file too often for the memory it saves.
const MIN_RECENT: usize = 1024;
/// Fewest hashes per bucket of a shard's bucket table, on average (the table has a power of two
/// buckets, so 64 to 128): a bucket is 384 to 768 bytes of file, one `pread`, and the table
/// costs 4 bytes per bucket.
const PER_BUCKET: usize = 64;
/// Fewest bits (after the shard bits) that select a bucket: with them, shard and bucket fix a
/// hash's top 16 bits, which is what lets the files store only the low 48. A shard's table is
/// then at least 16 KiB, 256 KiB for the set.
const MIN_BUCKET_BITS: u32 = 16 - SHARD_BITS;
/// Bytes of one stored hash: its low 48 bits, big-endian, so a file sorts as the numbers do.
const ENTRY: usize = 6;
/// False positives of a shard's filter when it holds as many hashes as it was sized for. Each
/// one costs a `pread` of a bucket (a few microseconds from the page cache).
const FILTER_FP: f64 = 0.02;
/// A shard's filter is sized for this many times the shard's hashes when it is built, and
/// rebuilt (from the merge's pass over the shard) only when the shard outgrows it: a rebuild
/// at most every doubling, and 1 to 2 bytes per hash in between.
const FILTER_HEADROOM: usize = 2;
/// Hashes read per `pread` of a bucket (a bucket holds 128 or fewer but for rare outliers).
const READ_ENTRIES: usize = 2 * PER_BUCKET;

/// A set of uniformly distributed `u64`s (hashes): the newest in memory, the rest in files
/// under a directory, with what finds them in memory.
pub struct IdSet {
    dir: PathBuf,
    /// Always [`SHARDS`] of them.
    shards: Vec<Shard>,
}

/// The hashes of one shard: the newest in a hash set, the rest sorted in a file, and where each
/// bucket of them starts.
#[derive(Default)]
struct Shard {
    recent: IntSet<u64>,
    /// No merge is tried before `recent` holds this many: raised after a merge could not write
    /// (disk full), so a failing merge is not retried at every insert.
    retry_at: usize,
    /// Low bits of the hashes; their shard and bucket give the rest. `None` while empty.
    file: Option<File>,
    /// Hashes in the file.
    len: usize,
    /// `starts[b]..starts[b + 1]` is bucket `b` of the file, in hashes; empty while it is.
    starts: Vec<u32>,
    /// How many bits (after the shard bits) select a bucket.
    bucket_bits: u32,
    /// Holds every hash of the file; `None` while it is empty.
    filter: Option<BloomFilter>,
    /// Hashes the filter was sized for.
    capacity: usize,
}

impl IdSet {
    /// An empty set whose files will be created (and at once unlinked) in `dir`, which must exist.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        IdSet { dir: dir.into(), shards: (0..SHARDS).map(|_| Shard::default()).collect() }
    }

    /// A set of `ids` (in any order, duplicates allowed), built in one sort and one pass.
    pub fn from_vec(dir: impl Into<PathBuf>, mut ids: Vec<u64>) -> Self {
        ids.sort_unstable();
        ids.dedup();
        let mut set = IdSet::new(dir);
        let mut rest = &ids[..];
        for (i, shard) in set.shards.iter_mut().enumerate() {
            let (mine, after) = rest.split_at(rest.partition_point(|h| shard_of(*h) == i));
            rest = after;
            shard.merge_or_keep(&set.dir, i, mine);
        }
        set
    }

    /// Hashes in the files (not counting those only in memory).
    #[cfg(test)]
    fn sorted_len(&self) -> usize {
        self.shards.iter().map(|s| s.len).sum()
    }

    /// Whether `h` is in the set. Fails only if the set's file cannot be read.
    pub fn contains(&self, h: u64) -> io::Result<bool> {
        let s = &self.shards[shard_of(h)];
        if s.recent.contains(&h) {
            return Ok(true);
        }
        s.contains(h)
    }

    /// Adds `h` to the newest hashes of its shard. They are merged into the shard's file by
    /// [`IdSet::merge_one`], or here once they are twice what is due (so memory stays bounded
    /// when nobody calls it).
    pub fn insert(&mut self, h: u64) {
        let i = shard_of(h);
        let s = &mut self.shards[i];
        // Not looked up in the file first: a hash already there is merged away.
        s.recent.insert(h);
        if s.recent.len() >= 2 * s.due_at() {
            s.merge_recent(&self.dir, i);
        }
    }

    /// Merges the newest hashes of the shard most overdue into its file, if any is due (its
    /// newest hashes are an eighth of its file); returns whether one was. A merge rewrites the
    /// shard's file (a sixteenth of the set), so a caller that calls this once between requests
    /// never keeps them waiting for more than that. If the file cannot be written (disk full),
    /// the hashes stay in memory and the set stays exact.
    pub fn merge_one(&mut self) -> bool {
        let due = self
            .shards
            .iter()
            .enumerate()
            .filter(|(_, s)| s.recent.len() >= s.due_at())
            .max_by(|(_, a), (_, b)| (a.recent.len() * b.due_at()).cmp(&(b.recent.len() * a.due_at())));
        let Some((i, _)) = due else {
            return false;
        };
        self.shards[i].merge_recent(&self.dir, i);
        true
    }

    /// Bytes the set holds in memory (filters, bucket tables, the newest hashes' tables).
    pub fn memory_bytes(&self) -> usize {
        self.shards
            .iter()
            .map(|s| {
                // hashbrown: a u64 and a control byte per slot.
                s.recent.capacity() * 9
                    + s.starts.capacity() * size_of::<u32>()
                    + s.filter.as_ref().map_or(0, |f| f.num_bits() / 8)
            })
            .sum()
    }
}

impl Shard {
    /// How many newest hashes make a merge due.
    fn due_at(&self) -> usize {
        MIN_RECENT.max(self.len / 8).max(self.retry_at)
    }

    /// Merges the newest hashes of shard `shard` into its file.
    fn merge_recent(&mut self, dir: &Path, shard: usize) {
        let started = std::time::Instant::now();
        let mut new: Vec<u64> = self.recent.drain().collect();
        self.recent.shrink_to(MIN_RECENT);
        let n = new.len();
        new.sort_unstable();
        self.merge_or_keep(dir, shard, &new);
        tracing::debug!(
            shard,
            new = n,
            total = self.len,
            ms = started.elapsed().as_secs_f64() * 1e3,
            "deduplication index merged"
        );
    }

    /// Merges sorted, distinct hashes into the file, or keeps them in memory if it cannot be
    /// written.
    fn merge_or_keep(&mut self, dir: &Path, shard: usize, new: &[u64]) {
        if new.is_empty() {
            return;
        }
        match self.merge(dir, shard, new) {
            Ok(()) => self.retry_at = 0,
            Err(e) => {
                super::DEDUP_ERRORS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                tracing::warn!(error = %e, dir = %dir.display(),
                    "cannot write the deduplication index to disk; keeping its newest ids in memory until it can");
                self.recent.extend(new.iter().copied());
                self.retry_at = 2 * self.recent.len();
            }
        }
    }

    /// Whether `h` is in the file.
    fn contains(&self, h: u64) -> io::Result<bool> {
        let (Some(file), Some(filter)) = (&self.file, &self.filter) else {
            return Ok(false);
        };
        if !filter.contains_hash(filter_key(h)) {
            return Ok(false);
        }
        let b = bucket(h, self.bucket_bits);
        let (mut at, to) = (self.starts[b] as usize, self.starts[b + 1] as usize);
        let want = low48(h);
        let mut buf = [0u8; READ_ENTRIES * ENTRY];
        while at < to {
            let n = (to - at).min(READ_ENTRIES);
            let chunk = &mut buf[..n * ENTRY];
            file.read_exact_at(chunk, (at * ENTRY) as u64)?;
            if chunk.chunks_exact(ENTRY).any(|e| e == want) {
                return Ok(true);
            }
            at += n;
        }
        Ok(false)
    }

    /// Merges sorted hashes of shard `shard` into a new file in `dir`, which replaces the old
    /// one only once it is whole; on an error the shard is as it was.
    fn merge(&mut self, dir: &Path, shard: usize, new: &[u64]) -> io::Result<()> {
        let total = self.len + new.len();
        // Rounded down to a power of two, so buckets hold PER_BUCKET to twice that.
        let bits =
            (usize::BITS - 1 - (total / PER_BUCKET).max(1).leading_zeros()).clamp(MIN_BUCKET_BITS, 64 - SHARD_BITS);
        let rebuild = total > self.capacity;
        let out = unlinked_file(dir)?;
        let mut w = ShardWriter::new(&out, bits, rebuild.then(|| total * FILTER_HEADROOM));
        let mut old = OldHashes::new(self, shard);
        let mut i = 0;
        while let Some(block) = old.next_block()? {
            for &x in block {
                // The new hashes before x, then x (once, if it is new again).
                while let Some(&y) = new.get(i).filter(|y| **y <= x) {
                    if y < x {
                        w.push(y)?;
                    }
                    i += 1;
                }
                w.push(x)?;
            }
        }
        for &y in &new[i..] {
            w.push(y)?;
        }
        let (starts, rebuilt) = w.finish()?;
        match rebuilt {
            Some(f) => {
                self.filter = Some(f);
                self.capacity = total * FILTER_HEADROOM;
            }
            None => {
                if let Some(f) = self.filter.as_mut() {
                    for h in new {
                        f.insert_hash(filter_key(*h));
                    }
                }
            }
        }
        self.file = Some(out);
        self.len = starts.last().map_or(0, |n| *n as usize);
        self.starts = starts;
        self.bucket_bits = bits;
        Ok(())
    }
}

/// Hashes of a shard per [`MERGE_BLOCK`]: the unit of the merges' reads and writes.
const MERGE_BLOCK: usize = 16 * 1024;

/// Writes a shard's new file in blocks, with its bucket table and (when rebuilt) its filter.
struct ShardWriter<'a> {
    file: &'a File,
    buf: Vec<u8>,
    bits: u32,
    starts: Vec<u32>,
    written: usize,
    filter: Option<BloomFilter>,
}

impl<'a> ShardWriter<'a> {
    /// A writer to `file` for a table of `bits` bucket bits, building a filter sized for
    /// `filter_for` hashes if given.
    fn new(file: &'a File, bits: u32, filter_for: Option<usize>) -> Self {
        ShardWriter {
            file,
            buf: Vec::with_capacity(MERGE_BLOCK * ENTRY),
            bits,
            starts: Vec::with_capacity((1 << bits) + 1),
            written: 0,
            filter: filter_for.map(|n| BloomFilter::with_false_pos(FILTER_FP).expected_items(n)),
        }
    }

    fn push(&mut self, h: u64) -> io::Result<()> {
        let b = bucket(h, self.bits);
        while self.starts.len() <= b {
            // Buckets are indexed with u32 offsets; a shard of 4 billion hashes is far beyond
            // any week of events one collector takes.
            self.starts.push(self.written as u32);
        }
        self.buf.extend_from_slice(&low48(h));
        if let Some(f) = self.filter.as_mut() {
            f.insert_hash(filter_key(h));
        }
        self.written += 1;
        if self.buf.len() >= MERGE_BLOCK * ENTRY {
            let mut f = self.file;
            f.write_all(&self.buf)?;
            self.buf.clear();
        }
        Ok(())
    }

    /// Writes the rest; returns the bucket table and the filter, if one was built.
    fn finish(mut self) -> io::Result<(Vec<u32>, Option<BloomFilter>)> {
        let mut f = self.file;
        f.write_all(&self.buf)?;
        while self.starts.len() <= 1 << self.bits {
            self.starts.push(self.written as u32);
        }
        Ok((self.starts, self.filter))
    }
}

/// The whole hashes of a shard's file, in order, a block at a time.
struct OldHashes<'a> {
    shard: &'a Shard,
    number: u64,
    /// Next hash to read, and the bucket it is in.
    at: usize,
    bucket: usize,
    raw: Vec<u8>,
    block: Vec<u64>,
}

impl<'a> OldHashes<'a> {
    fn new(shard: &'a Shard, number: usize) -> Self {
        OldHashes { shard, number: number as u64, at: 0, bucket: 0, raw: Vec::new(), block: Vec::new() }
    }

    fn next_block(&mut self) -> io::Result<Option<&[u64]>> {
        let s = self.shard;
        let Some(file) = &s.file else {
            return Ok(None);
        };
        let n = (s.len - self.at).min(MERGE_BLOCK);
        if n == 0 {
            return Ok(None);
        }
        self.raw.resize(n * ENTRY, 0);
        file.read_exact_at(&mut self.raw, (self.at * ENTRY) as u64)?;
        self.block.clear();
        for (k, e) in self.raw.chunks_exact(ENTRY).enumerate() {
            while s.starts[self.bucket + 1] as usize <= self.at + k {
                self.bucket += 1;
            }
            // The bucket number's top bits are the hash's bits 48..60 (there are at least 12).
            let top = (self.number << (64 - SHARD_BITS) | (self.bucket as u64) << (64 - SHARD_BITS - s.bucket_bits))
                & !LOW48_MASK;
            self.block.push(top | u64::from_be_bytes([0, 0, e[0], e[1], e[2], e[3], e[4], e[5]]));
        }
        self.at += n;
        Ok(Some(&self.block))
    }
}

const LOW48_MASK: u64 = (1 << 48) - 1;

/// A new file in `dir` (created if missing: it could not be at start on a read-only disk),
/// already unlinked: it lives as long as its descriptor.
fn unlinked_file(dir: &Path) -> io::Result<File> {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let path = dir.join(format!("{}-{}.ids.tmp", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed)));
    let open = || OpenOptions::new().read(true).write(true).create_new(true).open(&path);
    let file = match open() {
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            fs::create_dir_all(dir)?;
            open()?
        }
        other => other?,
    };
    fs::remove_file(&path)?;
    Ok(file)
}

/// What a shard's filter is keyed by: the hash with its shard bits moved to the bottom, since
/// the filter places bits by a key's top bits and a shard's hashes share theirs.
fn filter_key(h: u64) -> u64 {
    h.rotate_left(SHARD_BITS)
}

/// Bucket of `h` in a shard whose table has `bits` bits.
fn bucket(h: u64, bits: u32) -> usize {
    ((h << SHARD_BITS) >> (64 - bits)) as usize
}

/// The low 48 bits of `h`, as stored.
fn low48(h: u64) -> [u8; ENTRY] {
    let b = h.to_be_bytes();
    [b[2], b[3], b[4], b[5], b[6], b[7]]
}

fn shard_of(h: u64) -> usize {
    (h >> (64 - SHARD_BITS)) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hashes(n: u64, salt: u64) -> Vec<u64> {
        (0..n).map(|i| xxhash_rust::xxh3::xxh3_64_with_seed(&i.to_le_bytes(), salt)).collect()
    }

    fn has(set: &IdSet, h: u64) -> bool {
        set.contains(h).expect("index file readable")
    }

    #[test]
    fn holds_what_was_inserted_and_nothing_else_across_merges() {
        let dir = tempfile::tempdir().unwrap();
        let mut set = IdSet::new(dir.path());
        let ins = hashes(200_000, 1);
        for h in &ins {
            assert!(!has(&set, *h));
            set.insert(*h);
        }
        assert!(set.sorted_len() > 100_000, "merged into the files without merge_one");
        while set.merge_one() {}
        assert!(set.sorted_len() > 150_000, "merged into the files");
        assert!(ins.iter().all(|h| has(&set, *h)));
        for h in &ins {
            set.insert(*h);
        }
        // Inserted again: merged away, not stored twice.
        for i in 0..SHARDS {
            set.shards[i].merge_recent(dir.path(), i);
        }
        assert_eq!(set.sorted_len(), ins.len());
        assert!(set.shards.iter().all(|s| s.recent.is_empty()));
        assert!(ins.iter().all(|h| has(&set, *h)));
        // Exact: what the filters let through is read and refused.
        assert!(hashes(50_000, 2).iter().all(|h| !has(&set, *h)));
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0, "files live only as descriptors");
    }

    #[test]
    fn extreme_values_and_small_sets() {
        let dir = tempfile::tempdir().unwrap();
        let set = IdSet::from_vec(dir.path(), vec![u64::MAX, 0, 1 << 63, 0, (1 << 60) - 1]);
        assert_eq!(set.sorted_len(), 4);
        for h in [u64::MAX, 0, 1 << 63, (1 << 60) - 1] {
            assert!(has(&set, h));
        }
        assert!(!has(&set, 1) && !has(&set, u64::MAX - 1));
        assert!(!has(&IdSet::new(dir.path()), 0));
    }

    #[test]
    fn memory_holds_about_two_bytes_per_hash() {
        let dir = tempfile::tempdir().unwrap();
        let n = 1_000_000;
        let set = IdSet::from_vec(dir.path(), hashes(n, 6));
        let per = set.memory_bytes() as f64 / n as f64;
        assert!(per < 2.5, "{per:.2} bytes per hash in memory");
        let on_disk: u64 = set.shards.iter().map(|s| s.file.as_ref().unwrap().metadata().unwrap().len()).sum();
        assert_eq!(on_disk, n * ENTRY as u64);
    }

    #[test]
    fn memory_as_the_log_grows_it_stays_under_five_bytes_per_hash() {
        let dir = tempfile::tempdir().unwrap();
        let mut set = IdSet::new(dir.path());
        let mut worst: f64 = 0.0;
        // As the log's writer does: a group commit's ids, then one merge.
        for (k, group) in hashes(1_000_000, 10).chunks(1000).enumerate() {
            group.iter().for_each(|h| set.insert(*h));
            set.merge_one();
            if k >= 200 {
                worst = worst.max(set.memory_bytes() as f64 / ((k + 1) * 1000) as f64);
            }
        }
        assert!(worst < 5.0, "{worst:.2} bytes per hash in memory at worst");
    }

    #[test]
    fn hashes_alike_in_their_low_48_bits_stay_apart() {
        let dir = tempfile::tempdir().unwrap();
        let ins = hashes(100_000, 5);
        let twins: Vec<u64> = ins.iter().map(|h| h ^ (1 << 48)).collect();
        let set = IdSet::from_vec(dir.path(), ins.clone());
        assert_eq!(set.sorted_len(), ins.len());
        assert!(ins.iter().all(|h| has(&set, *h)));
        assert!(twins.iter().all(|h| !has(&set, *h)), "same shard and low bits; bit 48 is only in the bucket number");
        let other_shard: Vec<u64> = ins.iter().map(|h| h ^ (1 << 62)).collect();
        assert!(other_shard.iter().all(|h| !has(&set, *h)));
        let mut grown = IdSet::from_vec(dir.path(), ins.clone());
        for h in &twins {
            grown.insert(*h);
        }
        while grown.merge_one() {}
        assert!(ins.iter().chain(&twins).all(|h| has(&grown, *h)), "merges rebuild the whole hashes");
        let recent: usize = grown.shards.iter().map(|s| s.recent.len()).sum();
        assert_eq!(grown.sorted_len() + recent, 2 * ins.len());
    }

    #[test]
    fn built_in_one_sort_equals_inserted_one_by_one() {
        let dir = tempfile::tempdir().unwrap();
        let ins = hashes(100_000, 3);
        let bulk = IdSet::from_vec(dir.path(), ins.iter().chain(&ins[..1000]).copied().collect());
        assert_eq!(bulk.sorted_len(), ins.len());
        assert!(ins.iter().all(|h| has(&bulk, *h)));
        assert!(hashes(10_000, 4).iter().all(|h| !has(&bulk, *h)));
    }

    #[test]
    fn a_merge_that_cannot_write_keeps_the_hashes_in_memory() {
        let parent = tempfile::tempdir().unwrap();
        let dir = parent.path().join("index");
        // A file where the directory should be: every merge fails, and nothing is lost.
        fs::write(&dir, b"").unwrap();
        let mut set = IdSet::new(&dir);
        let ins = hashes(16 * 3 * MIN_RECENT as u64, 7);
        let (first, rest) = ins.split_at(ins.len() / 2);
        for h in first {
            set.insert(*h);
        }
        while set.merge_one() {}
        assert_eq!(set.sorted_len(), 0);
        assert!(set.shards.iter().all(|s| s.retry_at > MIN_RECENT), "not retried at every call");
        assert!(first.iter().all(|h| has(&set, *h)));
        // Once it can write again, the merges take everything.
        fs::remove_file(&dir).unwrap();
        for h in rest {
            set.insert(*h);
        }
        while set.merge_one() {}
        for i in 0..SHARDS {
            set.shards[i].merge_recent(&dir, i);
        }
        assert_eq!(set.sorted_len(), ins.len());
        assert!(set.shards.iter().all(|s| s.recent.is_empty() && s.retry_at == 0));
        assert!(ins.iter().all(|h| has(&set, *h)));
    }

    #[test]
    fn merge_one_merges_a_single_shard_and_only_when_due() {
        let dir = tempfile::tempdir().unwrap();
        let mut set = IdSet::from_vec(dir.path(), hashes(160_000, 8));
        assert!(!set.merge_one(), "nothing new");
        // An eighth of every shard's file, but under twice that: nothing merges by itself.
        for h in hashes(24_000, 9) {
            set.insert(h);
        }
        let before = set.sorted_len();
        let due = set.shards.iter().filter(|s| s.recent.len() >= s.due_at()).count();
        assert!(due > 1);
        assert!(set.merge_one());
        assert_eq!(set.shards.iter().filter(|s| s.recent.is_empty()).count(), 1);
        assert!(set.sorted_len() > before);
        let mut merges = 1;
        while set.merge_one() {
            merges += 1;
        }
        assert_eq!(merges, due);
    }
}
