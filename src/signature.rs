//! Providers' webhook signatures:
//!
//! - Meta: `X-Hub-Signature-256: sha256=<hex>`, the HMAC-SHA256 of the raw body under the app
//!   secret.
//! - 360dialog: `x-360dialog-signature: <hex>`, the same HMAC under 360dialog's own secret
//!   (a `sha256=` prefix, which some relays add, is accepted too).
//! - Twilio: `X-Twilio-Signature: <base64>`, the HMAC-SHA1 under the auth token of the URL
//!   Twilio called followed by every POST parameter, sorted by name, name then value.
//!
//! The collector verifies them before it parses a body; the sandbox signs its callbacks the
//! same way, so the whole loop exercises the real check. Both use this one module, so the
//! sandbox never reaches into the server for it.

use base64::Engine;
use hmac::{Hmac, Mac};
use sha1::Sha1;
use sha2::Sha256;

/// The header Meta signs its webhooks in.
pub const META_HEADER: &str = "x-hub-signature-256";

/// The header 360dialog signs its webhooks in.
pub const DIALOG360_HEADER: &str = "x-360dialog-signature";

/// The header Twilio signs its webhooks in.
pub const TWILIO_HEADER: &str = "x-twilio-signature";

/// Checks `sha256=<hex>` against the HMAC-SHA256 of the raw body, in constant time.
pub fn verify_meta(secret: &str, body: &[u8], header: Option<&str>) -> bool {
    let Some(hex_sig) = header.and_then(|h| h.trim().strip_prefix("sha256=")) else {
        return false;
    };
    verify_sha256_hex(secret, body, hex_sig)
}

/// Checks 360dialog's `<hex>` (or `sha256=<hex>`) against the HMAC-SHA256 of the raw body.
pub fn verify_360dialog(secret: &str, body: &[u8], header: Option<&str>) -> bool {
    let Some(h) = header.map(str::trim) else { return false };
    verify_sha256_hex(secret, body, h.strip_prefix("sha256=").unwrap_or(h))
}

fn verify_sha256_hex(secret: &str, body: &[u8], hex_sig: &str) -> bool {
    let Ok(sig) = hex::decode(hex_sig) else { return false };
    let Ok(mut mac) = <Hmac<Sha256> as Mac>::new_from_slice(secret.as_bytes()) else {
        return false;
    };
    mac.update(body);
    mac.verify_slice(&sig).is_ok()
}

/// Signs a body as 360dialog does (tests and fixtures).
pub fn sign_360dialog(secret: &str, body: &[u8]) -> String {
    sign_meta(secret, body).trim_start_matches("sha256=").to_string()
}

/// What Twilio signs: the URL it called, then each POST parameter (sorted by name, then
/// value, for a name sent twice) as name followed by value, with nothing between.
fn twilio_payload(url: &str, form_body: &[u8]) -> Vec<u8> {
    let mut params: Vec<(String, String)> = url::form_urlencoded::parse(form_body).into_owned().collect();
    params.sort();
    let mut out = url.as_bytes().to_vec();
    for (k, v) in params {
        out.extend_from_slice(k.as_bytes());
        out.extend_from_slice(v.as_bytes());
    }
    out
}

/// Signs a form-encoded body posted to `url` as Twilio does (the sandbox, tests, fixtures).
pub fn sign_twilio(auth_token: &str, url: &str, form_body: &[u8]) -> String {
    let mut mac = <Hmac<Sha1> as Mac>::new_from_slice(auth_token.as_bytes()).expect("HMAC takes any key length");
    mac.update(&twilio_payload(url, form_body));
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

/// Checks `X-Twilio-Signature` for a form-encoded body posted to `url`, in constant time.
pub fn verify_twilio(auth_token: &str, url: &str, form_body: &[u8], header: Option<&str>) -> bool {
    let Some(sig) = header.and_then(|h| base64::engine::general_purpose::STANDARD.decode(h.trim()).ok()) else {
        return false;
    };
    let Ok(mut mac) = <Hmac<Sha1> as Mac>::new_from_slice(auth_token.as_bytes()) else {
        return false;
    };
    mac.update(&twilio_payload(url, form_body));
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

    #[test]
    fn dialog360_takes_bare_or_prefixed_hex() {
        let sig = sign_360dialog("platform", b"{}");
        assert!(verify_360dialog("platform", b"{}", Some(&sig)));
        assert!(verify_360dialog("platform", b"{}", Some(&format!("sha256={sig}"))));
        assert!(!verify_360dialog("other", b"{}", Some(&sig)));
        assert!(!verify_360dialog("platform", b"{}", None));
    }

    /// Twilio's own example (its signature validation snippet, TwilioDevEd/api-snippets): this
    /// URL and these parameters under auth token 12345 sign to this value.
    #[test]
    fn twilio_documented_example() {
        let url = "https://mycompany.com/myapp.php?foo=1&bar=2";
        let body = b"To=%2B18005551212&CallSid=CA1234567890ABCDE&Caller=%2B14158675310&Digits=1234&From=%2B14158675310";
        let sig = sign_twilio("12345", url, body);
        assert_eq!(sig, "GvWf1cFY/Q7PnoempGyD5oXAezc=");
        assert!(verify_twilio("12345", url, body, Some(&sig)));
        assert!(!verify_twilio("12345", "https://example.com/myapp.php", body, Some(&sig)));
        assert!(!verify_twilio("12345", url, b"Digits=1235", Some(&sig)));
        assert!(!verify_twilio("12345", url, body, Some("not base64!")));
    }
}
