//! A compact set of 64-bit id hashes, for the write-ahead log's deduplication index.
//!
//! The index holds a week of event ids; at a few million events a day that is tens of millions
//! of hashes, and it is the largest thing `serve` keeps in memory. A `HashSet<u64>` costs 9 to
//! 18 bytes per hash (one control byte per slot, load factor between 7/16 and 7/8) and briefly
//! holds its old and new tables together while it grows, ~27 bytes per hash at that moment.
//!
//! [`IdSet`] keeps most hashes in sorted arrays (6 bytes each, plus a bucket table of half a
//! byte to a byte) and only the newest in a small hash set, which is merged into the arrays when it
//! reaches an eighth of them. The hashes are xxh3 outputs, uniform over `u64`, so
//! - they need no second hashing: the small set passes them through ([`nohash_hasher`]);
//! - their top bits split the arrays into [`SHARDS`] shards of similar size, so a merge copies
//!   one shard at a time and never holds two copies of the whole index;
//! - the next bits index a bucket table per shard, so a lookup reads one cache line or two
//!   instead of binary-searching millions of entries;
//! - a hash's shard and bucket give its top 16 bits or more, so the arrays keep only the low
//!   48 bits: the set stays exact, in three quarters of the memory.

use nohash_hasher::IntSet;

/// Shards of the sorted arrays, by the top [`SHARD_BITS`] bits of a hash.
const SHARD_BITS: u32 = 4;
const SHARDS: usize = 1 << SHARD_BITS;
/// The newest hashes stay in the hash set until there are at least this many; merging fewer
/// would copy the arrays too often for the memory it saves.
const MIN_RECENT: usize = 16 * 1024;
/// Fewest hashes per bucket of a shard's bucket table, on average (the table has a power of two
/// buckets, so 4 to 8): up to 8 hashes (48 bytes) sit in one cache line or two, and the table
/// costs 4 bytes per bucket (half a byte to one byte per hash).
const PER_BUCKET: usize = 4;
/// Fewest bits (after the shard bits) that select a bucket: with them, shard and bucket fix a
/// hash's top 16 bits, which is what lets the arrays store only [`Low48`]. A shard's table is
/// then at least 16 KiB, 256 KiB for the set.
const MIN_BUCKET_BITS: u32 = 16 - SHARD_BITS;
/// The low 48 bits of a hash, most significant part first (so arrays compare as the numbers do).
type Low48 = [u16; 3];
const LOW48_MASK: u64 = (1 << 48) - 1;

/// A set of uniformly distributed `u64`s (hashes), compact in memory.
#[derive(Default)]
pub struct IdSet {
    shards: Vec<Shard>,
    recent: IntSet<u64>,
}

/// The hashes of one shard, sorted, and where each bucket of them starts.
#[derive(Default)]
struct Shard {
    /// Low bits of the hashes; their shard and bucket give the rest.
    ids: Vec<Low48>,
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
                shard.merge(i, mine);
            }
        }
    }
}

impl Shard {
    fn contains(&self, h: u64) -> bool {
        if self.ids.is_empty() {
            return false;
        }
        let b = bucket(h, self.bucket_bits);
        let (from, to) = (self.starts[b] as usize, self.starts[b + 1] as usize);
        // A bucket holds a few hashes in one or two cache lines: a scan beats a binary search.
        self.ids[from..to].contains(&low48(h))
    }

    /// The whole hashes of shard `shard`, in order.
    fn hashes(&self, shard: usize) -> impl Iterator<Item = u64> + '_ {
        let bits = self.bucket_bits;
        self.starts.windows(2).enumerate().flat_map(move |(b, w)| {
            // The bucket number's top bits are the hash's bits 48..60 (there are at least 12).
            let top = ((shard as u64) << (64 - SHARD_BITS) | (b as u64) << (64 - SHARD_BITS - bits)) & !LOW48_MASK;
            self.ids[w[0] as usize..w[1] as usize].iter().map(move |e| top | from_low48(*e))
        })
    }

    /// Merges sorted hashes of shard `shard` into it: one new array, the old one freed after.
    fn merge(&mut self, shard: usize, new: &[u64]) {
        let total = self.ids.len() + new.len();
        // Rounded down to a power of two, so buckets hold PER_BUCKET to twice that.
        let bits =
            (usize::BITS - 1 - (total / PER_BUCKET).max(1).leading_zeros()).clamp(MIN_BUCKET_BITS, 64 - SHARD_BITS);
        let buckets = 1usize << bits;
        let mut ids = Vec::with_capacity(total);
        let mut starts = Vec::with_capacity(buckets + 1);
        let mut push = |h: u64| {
            let b = bucket(h, bits);
            while starts.len() <= b {
                starts.push(ids.len() as u32);
            }
            ids.push(low48(h));
        };
        let (mut a, mut b) = (self.hashes(shard).peekable(), new.iter().copied().peekable());
        while let (Some(&x), Some(&y)) = (a.peek(), b.peek()) {
            if x <= y {
                push(x);
                a.next();
                if x == y {
                    b.next();
                }
            } else {
                push(y);
                b.next();
            }
        }
        a.for_each(&mut push);
        b.for_each(&mut push);
        // Buckets are indexed with u32 offsets; a shard of 4 billion hashes is far beyond any
        // week of events one collector takes.
        while starts.len() <= buckets {
            starts.push(ids.len() as u32);
        }
        self.ids = ids;
        self.starts = starts;
        self.bucket_bits = bits;
    }
}

/// Bucket of `h` in a shard whose table has `bits` bits.
fn bucket(h: u64, bits: u32) -> usize {
    ((h << SHARD_BITS) >> (64 - bits)) as usize
}

fn low48(h: u64) -> Low48 {
    [(h >> 32) as u16, (h >> 16) as u16, h as u16]
}

fn from_low48(e: Low48) -> u64 {
    (e[0] as u64) << 32 | (e[1] as u64) << 16 | e[2] as u64
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
    fn sorted_arrays_take_under_seven_bytes_per_hash() {
        let n = 1_000_000;
        let set = IdSet::from_vec(hashes(n, 6));
        let bytes: usize = set
            .shards
            .iter()
            .map(|s| s.ids.capacity() * size_of::<Low48>() + s.starts.capacity() * size_of::<u32>())
            .sum();
        let per = bytes as f64 / n as f64;
        assert!(per < 7.0, "{per:.2} bytes per hash");
    }

    #[test]
    fn hashes_alike_in_their_low_48_bits_stay_apart() {
        // Enough hashes that they all reach the sorted arrays, which store only the low bits.
        let ins = hashes(100_000, 5);
        let twins: Vec<u64> = ins.iter().map(|h| h ^ (1 << 48)).collect();
        let set = IdSet::from_vec(ins.clone());
        assert_eq!(set.sorted_len(), ins.len());
        assert!(ins.iter().all(|h| set.contains(*h)));
        assert!(
            twins.iter().all(|h| !set.contains(*h)),
            "same shard and low bits; bit 48 is only in the bucket number"
        );
        let other_shard: Vec<u64> = ins.iter().map(|h| h ^ (1 << 62)).collect();
        assert!(other_shard.iter().all(|h| !set.contains(*h)));
        let mut grown = IdSet::from_vec(ins.clone());
        for h in &twins {
            assert!(grown.insert(*h));
        }
        assert_eq!(grown.len(), 2 * ins.len());
        assert!(ins.iter().chain(&twins).all(|h| grown.contains(*h)), "merges rebuild the whole hashes");
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
