//! A compact set of 64-bit id hashes, for the write-ahead log's deduplication index.
//!
//! The index holds a week of event ids; at a few million events a day that is tens of millions
//! of hashes, and it is the largest thing `serve` keeps in memory. A `HashSet<u64>` costs 9 to
//! 18 bytes per hash (one control byte per slot, load factor between 7/16 and 7/8) and briefly
//! holds its old and new tables together while it grows, ~27 bytes per hash at that moment.
//!
//! [`IdSet`] keeps most hashes in sorted arrays (8 bytes each, plus a bucket table of about half
//! a byte) and only the newest in a small hash set, which is merged into the arrays when it
//! reaches an eighth of them. The hashes are xxh3 outputs, uniform over `u64`, so
//! - they need no second hashing: the small set passes them through ([`nohash_hasher`]);
//! - their top bits split the arrays into [`SHARDS`] shards of similar size, so a merge copies
//!   one shard at a time and never holds two copies of the whole index;
//! - the next bits index a bucket table per shard, so a lookup reads one cache line or two
//!   instead of binary-searching millions of entries.

use nohash_hasher::IntSet;

/// Shards of the sorted arrays, by the top [`SHARD_BITS`] bits of a hash.
const SHARD_BITS: u32 = 4;
const SHARDS: usize = 1 << SHARD_BITS;
/// The newest hashes stay in the hash set until there are at least this many; merging fewer
/// would copy the arrays too often for the memory it saves.
const MIN_RECENT: usize = 16 * 1024;
/// Average hashes per bucket of a shard's bucket table: four hashes (32 bytes) fit in one or
/// two cache lines, and the table costs 4 bytes per bucket (one byte per hash).
const PER_BUCKET: usize = 4;

/// A set of uniformly distributed `u64`s (hashes), compact in memory.
#[derive(Default)]
pub struct IdSet {
    shards: Vec<Shard>,
    recent: IntSet<u64>,
}

/// The hashes of one shard, sorted, and where each bucket of them starts.
#[derive(Default)]
struct Shard {
    ids: Vec<u64>,
    /// `starts[b]..starts[b + 1]` is bucket `b` of `ids`; empty when `ids` is.
    starts: Vec<u32>,
    /// How many bits (after the shard bits) select a bucket.
    bucket_bits: u32,
}

impl IdSet {
    /// An empty set.
    pub fn new() -> Self {
        IdSet::default()
    }

    /// A set of `ids` (in any order, duplicates allowed), built in one sort.
    pub fn from_vec(mut ids: Vec<u64>) -> Self {
        ids.sort_unstable();
        ids.dedup();
        let mut set = IdSet::new();
        set.merge_sorted(&ids);
        set
    }

    /// How many hashes the set holds.
    pub fn len(&self) -> usize {
        self.recent.len() + self.sorted_len()
    }

    fn sorted_len(&self) -> usize {
        self.shards.iter().map(|s| s.ids.len()).sum()
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether `h` is in the set.
    pub fn contains(&self, h: u64) -> bool {
        self.recent.contains(&h) || self.shards.get(shard_of(h)).is_some_and(|s| s.contains(h))
    }

    /// Adds `h`; returns whether it was new.
    pub fn insert(&mut self, h: u64) -> bool {
        if self.shards.get(shard_of(h)).is_some_and(|s| s.contains(h)) || !self.recent.insert(h) {
            return false;
        }
        if self.recent.len() >= MIN_RECENT && self.recent.len() >= self.sorted_len() / 8 {
            let mut new: Vec<u64> = self.recent.drain().collect();
            new.sort_unstable();
            self.merge_sorted(&new);
            self.recent.shrink_to(MIN_RECENT);
        }
        true
    }

    /// Merges sorted, distinct hashes none of which is in the shards yet.
    fn merge_sorted(&mut self, new: &[u64]) {
        if self.shards.is_empty() {
            self.shards.resize_with(SHARDS, Shard::default);
        }
        let mut rest = new;
        for (i, shard) in self.shards.iter_mut().enumerate() {
            let n = rest.partition_point(|h| shard_of(*h) == i);
            let (mine, after) = rest.split_at(n);
            rest = after;
            if !mine.is_empty() {
                shard.merge(mine);
            }
        }
    }
}

impl Shard {
    fn bucket(&self, h: u64) -> usize {
        if self.bucket_bits == 0 { 0 } else { ((h << SHARD_BITS) >> (64 - self.bucket_bits)) as usize }
    }

    fn contains(&self, h: u64) -> bool {
        if self.ids.is_empty() {
            return false;
        }
        let b = self.bucket(h);
        let (from, to) = (self.starts[b] as usize, self.starts[b + 1] as usize);
        self.ids[from..to].binary_search(&h).is_ok()
    }

    /// Merges sorted hashes of this shard into it: one new array, the old one freed after.
    fn merge(&mut self, new: &[u64]) {
        let old = std::mem::take(&mut self.ids);
        let mut ids = Vec::with_capacity(old.len() + new.len());
        let (mut a, mut b) = (old.iter().peekable(), new.iter().peekable());
        while let (Some(&&x), Some(&&y)) = (a.peek(), b.peek()) {
            if x <= y {
                ids.push(x);
                a.next();
                if x == y {
                    b.next();
                }
            } else {
                ids.push(y);
                b.next();
            }
        }
        ids.extend(a);
        ids.extend(b);
        drop(old);
        self.ids = ids;
        self.reindex();
    }

    fn reindex(&mut self) {
        // Buckets are indexed with u32 offsets; a shard of 4 billion hashes is far beyond any
        // week of events one collector takes.
        let buckets = (self.ids.len() / PER_BUCKET).max(1).next_power_of_two();
        self.bucket_bits = buckets.trailing_zeros().min(64 - SHARD_BITS);
        let mut starts = Vec::with_capacity(buckets + 1);
        let mut at = 0usize;
        for b in 0..buckets {
            starts.push(at as u32);
            while at < self.ids.len() && self.bucket(self.ids[at]) == b {
                at += 1;
            }
        }
        starts.push(self.ids.len() as u32);
        self.starts = starts;
    }
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

    #[test]
    fn holds_what_was_inserted_and_nothing_else_across_merges() {
        let mut set = IdSet::new();
        let ins = hashes(200_000, 1);
        for h in &ins {
            assert!(set.insert(*h));
        }
        assert!(set.sorted_len() > 150_000, "merged into the arrays");
        for h in &ins {
            assert!(set.contains(*h));
            assert!(!set.insert(*h), "a second insert is not new");
        }
        assert_eq!(set.len(), ins.len());
        assert!(hashes(50_000, 2).iter().all(|h| !set.contains(*h)));
    }

    #[test]
    fn extreme_values_and_small_sets() {
        let set = IdSet::from_vec(vec![u64::MAX, 0, 1 << 63, 0, (1 << 60) - 1]);
        assert_eq!(set.len(), 4);
        for h in [u64::MAX, 0, 1 << 63, (1 << 60) - 1] {
            assert!(set.contains(h));
        }
        assert!(!set.contains(1) && !set.contains(u64::MAX - 1));
        assert!(!IdSet::new().contains(0));
    }

    #[test]
    fn built_in_one_sort_equals_inserted_one_by_one() {
        let ins = hashes(100_000, 3);
        let bulk = IdSet::from_vec(ins.iter().chain(&ins[..1000]).copied().collect());
        assert_eq!(bulk.len(), ins.len());
        assert!(ins.iter().all(|h| bulk.contains(*h)));
        assert!(hashes(10_000, 4).iter().all(|h| !bulk.contains(*h)));
    }
}
