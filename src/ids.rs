//! The two hashes that stand for an id, shared by the log, the rollups, the metrics and the
//! SQL function `id_key`, so that every part of the pipeline agrees on them.
//!
//! - [`hash64`]: the 64-bit hash under which the log remembers event ids for deduplication and
//!   the metrics track a message's receipts. 64 bits keep a week of ids small in memory; the
//!   chance of any collision among 10 million ids is ~3e-6.
//! - [`key`]: the 126-bit key under which reports group and join message, conversation and
//!   contact ids as numbers (`id_key(text)` in SQL, stored in the rollups). DataFusion groups
//!   strings in a byte map that stores, compares and copies every distinct value; a 128-bit
//!   integer goes through the primitive group table and hash join instead. Two different ids
//!   share a key with probability about n²/2¹²⁷: for a billion ids, under 10⁻²⁰, so counting
//!   distinct keys is counting distinct ids.
//!
//! Both are xxh3, which its specification fixes: a hash written by one build (a dedup record,
//! a rollup file, a key a user saved) means the same id in the next.

use arrow::datatypes::DataType;

/// Precision of the key's type: the largest a `Decimal128` has.
pub const KEY_PRECISION: u8 = 38;

/// Keeps 126 of the hash's 128 bits: 2¹²⁶ < 10³⁸, so every key is a valid `Decimal128(38, 0)`.
const KEY_MASK: u128 = (1 << 126) - 1;

/// The hash under which an event id is remembered for deduplication.
pub fn hash64(id: &str) -> u64 {
    xxhash_rust::xxh3::xxh3_64(id.as_bytes())
}

/// The key of one id: xxh3-128 of its bytes with the top two bits cleared.
pub fn key(id: &str) -> i128 {
    // The mask leaves the sign bit clear, so the cast never wraps.
    (xxhash_rust::xxh3::xxh3_128(id.as_bytes()) & KEY_MASK) as i128
}

/// The key's SQL and Arrow type: `Decimal128(38, 0)`, the widest integer DataFusion groups
/// natively.
pub fn key_type() -> DataType {
    DataType::Decimal128(KEY_PRECISION, 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_stable_distinct_and_fit_the_type() {
        // Fixed by the algorithm (xxh3-128, top two bits cleared; checked against Python's
        // `xxhash`): a key a user saved from one build must mean the same id in the next.
        assert_eq!(key("wamid.A"), 75772337754330038444029943432968319820);
        assert_eq!(key(""), 34113528772569770473377261714909514111);
        assert_ne!(key("wamid.A"), key("wamid.B"));
        let max = 10i128.pow(38) - 1;
        for id in ["", "wamid.HBgLMTU1NTAwMDAwMDAVAgARGBI", "conv-1", "é"] {
            let k = key(id);
            assert!((0..=max).contains(&k), "{id}: {k}");
        }
    }

    #[test]
    fn hashes_are_stable() {
        // Dedup records on disk hold these: a change would forget every id seen last week.
        // Fixed by the algorithm (xxh3-64; checked against Python's `xxhash`).
        assert_eq!(hash64("a"), 16629034431890738719);
        assert_eq!(hash64("wamid.A"), 14165912370458949295);
        assert_eq!(hash64(""), 3244421341483603138);
    }
}
