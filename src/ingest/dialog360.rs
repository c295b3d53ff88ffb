//! 360dialog's webhooks: Meta's Cloud API JSON as it is, relayed by 360dialog, which signs
//! it with its own secret (`x-360dialog-signature`, checked by the server) instead of Meta's.

use super::{Batch, Normalizer, ParseError, meta};

/// Normalises one verified 360dialog webhook body: Meta's reading, under source `360dialog`.
pub fn parse(n: &Normalizer, body: &[u8]) -> Result<Batch, ParseError> {
    meta::parse_as(n, body, "360dialog")
}
