//! Meta's webhook signature: `X-Hub-Signature-256: sha256=<hex>`, the HMAC-SHA256 of the raw
//! body under the app secret.
//!
//! The collector verifies it before it parses a body; the sandbox signs its callbacks the same
//! way, so the whole loop exercises the real check. Both use this one module, so the sandbox
//! never reaches into the server for it.

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The header Meta signs its webhooks in.
pub const META_HEADER: &str = "x-hub-signature-256";

/// Checks `sha256=<hex>` against the HMAC-SHA256 of the raw body, in constant time.
pub fn verify_meta(secret: &str, body: &[u8], header: Option<&str>) -> bool {
    let Some(hex_sig) = header.and_then(|h| h.trim().strip_prefix("sha256=")) else {
        return false;
    };
    let Ok(sig) = hex::decode(hex_sig) else { return false };
    let Ok(mut mac) = <Hmac<Sha256> as Mac>::new_from_slice(secret.as_bytes()) else {
        return false;
    };
    mac.update(body);
    mac.verify_slice(&sig).is_ok()
}

/// Signs a body as Meta does (the sandbox's callbacks, tests and benchmarks).
pub fn sign_meta(secret: &str, body: &[u8]) -> String {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key length");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_round_trip_and_tamper() {
        let sig = sign_meta("s3cret", b"{\"a\":1}");
        assert!(verify_meta("s3cret", b"{\"a\":1}", Some(&sig)));
        assert!(!verify_meta("s3cret", b"{\"a\":2}", Some(&sig)));
        assert!(!verify_meta("other", b"{\"a\":1}", Some(&sig)));
        assert!(!verify_meta("s3cret", b"{\"a\":1}", None));
        assert!(!verify_meta("s3cret", b"{\"a\":1}", Some("sha256=zz")));
        assert!(!verify_meta("s3cret", b"{\"a\":1}", Some(sig.trim_start_matches("sha256="))));
    }
}
