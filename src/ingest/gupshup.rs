//! Gupshup's v3 ("passthrough") webhooks: Meta's Cloud API JSON plus Gupshup's own fields: the
//! app (`gs_app_id`, the account where an entry names none), its message id beside Meta's
//! (`statuses[].gs_id`, kept in `attributes`), an `enqueued` status (kept as `message.other`)
//! with its time in milliseconds, its own failures' `code` and `reason` on the status, and a
//! status with no message when a callback URL is set (refused with its reason).
//!
//! Gupshup signs nothing: the server checks the URL token before this runs.

use super::{Batch, Normalizer, ParseError, meta};

/// Normalises one Gupshup v3 webhook body: Meta's reading, under source `gupshup`.
pub fn parse(n: &Normalizer, body: &[u8]) -> Result<Batch, ParseError> {
    meta::parse_as(n, body, "gupshup")
}
