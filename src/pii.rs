//! Pseudonymisation of phone numbers.
//!
//! A phone number never reaches storage or the logs: it becomes `contact_key`, an
//! HMAC-SHA256 of its E.164 digits under a secret key, and `country`, from its calling code.
//! Keyed (not a plain hash) because the space of phone numbers is small enough to
//! enumerate: without the key nobody can map a `contact_key` back to a number.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::LazyLock;

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::error::Error;

/// Hex characters of the HMAC kept as `contact_key`: 128 bits, far from collisions at any
/// realistic contact count, and half the bytes of the full digest in every row.
const CONTACT_KEY_HEX_CHARS: usize = 32;

/// The secret behind `contact_key`.
#[derive(Clone)]
pub struct PiiKey {
    /// HMAC state with the key already absorbed: cloning it per number saves the two SHA-256
    /// blocks of key setup that each of the few blocks of a phone number's HMAC would repeat.
    keyed: Hmac<Sha256>,
}

impl std::fmt::Debug for PiiKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PiiKey(..)")
    }
}

impl PiiKey {
    /// A key from configured bytes.
    pub fn from_secret(secret: &str) -> Self {
        // HMAC accepts keys of any length, so this cannot fail.
        PiiKey { keyed: <Hmac<Sha256> as Mac>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key length") }
    }

    /// A short keyed tag of `text` in `domain` (12 hex digits of the HMAC): names a secret
    /// (an API token in the audit trail) without giving it away, and cannot be reversed by
    /// trying tokens without the key.
    pub fn tag(&self, domain: &str, text: &str) -> String {
        let mut mac = self.keyed.clone();
        mac.update(domain.as_bytes());
        mac.update(&[0]);
        mac.update(text.as_bytes());
        hex::encode(&mac.finalize().into_bytes()[..6])
    }

    /// Loads the key from `configured`, else from `<state_dir>/pii.key`, and fails without one:
    /// for a command that must find the contact keys the collector made (a new key would
    /// make other keys, and find nobody).
    pub fn load_existing(configured: Option<&str>, state_dir: &Path) -> Result<Self, Error> {
        let path = state_dir.join("pii.key");
        if configured.is_none_or(str::is_empty) && !path.exists() {
            return Err(Error::Config(format!(
                "no PII key: set pii_key (CONVOSCOPE_PII_KEY) or state_dir to the collector's, whose {} holds it",
                path.display()
            )));
        }
        Self::load_or_create(configured, state_dir)
    }

    /// Loads the key from `configured`, else from `<state_dir>/pii.key`, generating and
    /// saving that file (mode 0600) the first time, with a warning: losing it changes
    /// every `contact_key`.
    pub fn load_or_create(configured: Option<&str>, state_dir: &Path) -> Result<Self, Error> {
        if let Some(s) = configured.filter(|s| !s.is_empty()) {
            return Ok(Self::from_secret(s));
        }
        let path: PathBuf = state_dir.join("pii.key");
        match std::fs::read_to_string(&path) {
            Ok(s) if !s.trim().is_empty() => return Ok(Self::from_secret(s.trim())),
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io(format!("reading {}", path.display()), e)),
        }
        std::fs::create_dir_all(state_dir).map_err(|e| Error::io(format!("creating {}", state_dir.display()), e))?;
        let mut bytes = [0u8; 32];
        rand::fill(&mut bytes);
        let secret = hex::encode(bytes);
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(0o600);
        }
        let mut f = opts.open(&path).map_err(|e| Error::io(format!("creating {}", path.display()), e))?;
        f.write_all(secret.as_bytes())
            .and_then(|_| f.sync_all())
            .map_err(|e| Error::io(format!("writing {}", path.display()), e))?;
        tracing::warn!(
            path = %path.display(),
            "generated a new PII key; keep it safe: losing it changes every contact_key"
        );
        Ok(Self::from_secret(&secret))
    }

    /// `contact_key` and `country` of a phone number in any common notation
    /// (`+1 555…`, `1555…`, `1555…@c.us`). `None` when it holds no digits.
    pub fn contact(&self, phone: &str) -> Option<(String, Option<&'static str>)> {
        let digits = e164_digits(phone);
        if digits.is_empty() {
            return None;
        }
        Some((self.contact_key_of_digits(&digits), country_of(&digits)))
    }

    /// `contact_key` of a person known only by a business-scoped user id (Meta's usernames:
    /// no phone number in the webhook). The same keyed hash, over the id behind a prefix of its
    /// own, so it is never a phone number's key. `None` for an empty id.
    pub fn contact_of_user(&self, user_id: &str) -> Option<String> {
        let id = user_id.trim();
        (!id.is_empty()).then(|| self.keyed_hex(&[b"user:", id.as_bytes()]))
    }

    fn contact_key_of_digits(&self, digits: &str) -> String {
        self.keyed_hex(&[digits.as_bytes()])
    }

    /// The first [`CONTACT_KEY_HEX_CHARS`] hex digits of the keyed hash of `parts`, in order.
    fn keyed_hex(&self, parts: &[&[u8]]) -> String {
        let mut mac = self.keyed.clone();
        for p in parts {
            mac.update(p);
        }
        let digest = mac.finalize().into_bytes();
        // Only the bytes kept, into a buffer: `hex::encode` of the whole digest pushed one char
        // at a time and was 2.6% of `serve`'s CPU under the status load.
        let mut out = [0u8; CONTACT_KEY_HEX_CHARS];
        // Both lengths are constants, one twice the other, so this cannot fail (and the
        // known-answer test below would see it if it did).
        let _ = hex::encode_to_slice(&digest[..CONTACT_KEY_HEX_CHARS / 2], &mut out);
        out.iter().map(|&b| char::from(b)).collect()
    }
}

/// Whether `run` is a date, `YYYY-MM-DD`: eight digits, but not a phone number.
fn is_date(run: &str) -> bool {
    let b = run.as_bytes();
    b.len() == 10
        && b[4] == b'-'
        && b[7] == b'-'
        && b.iter().enumerate().all(|(i, c)| i == 4 || i == 7 || c.is_ascii_digit())
}

/// `text` with every run of 7 or more digits (spaces, dots, dashes and brackets between them,
/// a leading `+`; a `YYYY-MM-DD` date is kept) replaced by `<number>`: what the audit trail keeps of a statement a person
/// typed, which may hold a phone number.
pub fn redact_numbers(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < chars.len() {
        if chars[i].is_ascii_digit() || (chars[i] == '+' && chars.get(i + 1).is_some_and(char::is_ascii_digit)) {
            let mut j = i + usize::from(chars[i] == '+');
            let (mut digits, mut end) = (0, j);
            while j < chars.len() && (chars[j].is_ascii_digit() || " .-()".contains(chars[j])) {
                if chars[j].is_ascii_digit() {
                    digits += 1;
                    end = j + 1;
                }
                j += 1;
            }
            let run: String = chars[i..end].iter().collect();
            if digits >= 7 && !is_date(&run) {
                out.push_str("<number>");
            } else {
                out.extend(&chars[i..end]);
            }
            i = end.max(i + 1);
        } else {
            out.push(chars[i]);
            i += 1;
        }
    }
    out
}

/// The E.164 digits of a number: the part before any `@` (WhatsApp-Web chat ids), digits only,
/// with an international `00` prefix removed.
pub fn e164_digits(phone: &str) -> String {
    let local = phone.split('@').next().unwrap_or("");
    let digits: String = local.chars().filter(|c| c.is_ascii_digit()).collect();
    match digits.strip_prefix("00") {
        Some(rest) if !local.trim_start().starts_with('+') => rest.to_string(),
        _ => digits,
    }
}

/// Calling code → ISO 3166 country, longest prefix first. Shared codes (+1, +7) map to the
/// largest market; a number whose code is not listed gets no country rather than a guess.
const CALLING_CODES: &[(&str, &str)] = &[
    ("1", "US"),
    ("7", "RU"),
    ("20", "EG"),
    ("27", "ZA"),
    ("30", "GR"),
    ("31", "NL"),
    ("32", "BE"),
    ("33", "FR"),
    ("34", "ES"),
    ("36", "HU"),
    ("39", "IT"),
    ("40", "RO"),
    ("41", "CH"),
    ("43", "AT"),
    ("44", "GB"),
    ("45", "DK"),
    ("46", "SE"),
    ("47", "NO"),
    ("48", "PL"),
    ("49", "DE"),
    ("51", "PE"),
    ("52", "MX"),
    ("53", "CU"),
    ("54", "AR"),
    ("55", "BR"),
    ("56", "CL"),
    ("57", "CO"),
    ("58", "VE"),
    ("60", "MY"),
    ("61", "AU"),
    ("62", "ID"),
    ("63", "PH"),
    ("64", "NZ"),
    ("65", "SG"),
    ("66", "TH"),
    ("81", "JP"),
    ("82", "KR"),
    ("84", "VN"),
    ("86", "CN"),
    ("90", "TR"),
    ("91", "IN"),
    ("92", "PK"),
    ("93", "AF"),
    ("94", "LK"),
    ("95", "MM"),
    ("98", "IR"),
    ("212", "MA"),
    ("213", "DZ"),
    ("216", "TN"),
    ("220", "GM"),
    ("221", "SN"),
    ("225", "CI"),
    ("233", "GH"),
    ("234", "NG"),
    ("237", "CM"),
    ("244", "AO"),
    ("249", "SD"),
    ("251", "ET"),
    ("254", "KE"),
    ("255", "TZ"),
    ("256", "UG"),
    ("260", "ZM"),
    ("263", "ZW"),
    ("351", "PT"),
    ("352", "LU"),
    ("353", "IE"),
    ("358", "FI"),
    ("380", "UA"),
    ("420", "CZ"),
    ("421", "SK"),
    ("502", "GT"),
    ("503", "SV"),
    ("504", "HN"),
    ("505", "NI"),
    ("506", "CR"),
    ("507", "PA"),
    ("591", "BO"),
    ("593", "EC"),
    ("595", "PY"),
    ("598", "UY"),
    ("852", "HK"),
    ("880", "BD"),
    ("886", "TW"),
    ("961", "LB"),
    ("962", "JO"),
    ("964", "IQ"),
    ("965", "KW"),
    ("966", "SA"),
    ("968", "OM"),
    ("971", "AE"),
    ("972", "IL"),
    ("973", "BH"),
    ("974", "QA"),
    ("977", "NP"),
];

/// [`CALLING_CODES`] by code: every status and message looks its number up, and a scan of the
/// list for each prefix length was ~0.9% of `serve`'s CPU under the status load.
static BY_CALLING_CODE: LazyLock<HashMap<&'static str, &'static str>> =
    LazyLock::new(|| CALLING_CODES.iter().copied().collect());

/// Country of E.164 digits by calling code, longest match first.
pub fn country_of(digits: &str) -> Option<&'static str> {
    (1..=3).rev().filter(|&n| digits.len() > n).find_map(|n| BY_CALLING_CODE.get(&digits[..n]).copied())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notations_of_one_number_share_a_key() {
        let k = PiiKey::from_secret("k");
        let a = k.contact("+1 555-010-9876").unwrap();
        let b = k.contact("15550109876").unwrap();
        let c = k.contact("15550109876@c.us").unwrap();
        assert_eq!(a, b);
        assert_eq!(b, c);
        assert_eq!(a.0.len(), CONTACT_KEY_HEX_CHARS);
        assert_eq!(a.1, Some("US"));
        assert!(!a.0.contains("5550109876"));
    }

    #[test]
    fn contact_key_is_the_hmac_sha256_of_the_digits_in_hex() {
        // Python: hmac.new(b"test-key", b"15550109876", hashlib.sha256).hexdigest()[:32]
        let (key, _) = PiiKey::from_secret("test-key").contact("+1 555 010 9876").unwrap();
        assert_eq!(key, "3f7a5ae1adeabea5b951c7185ad2fd3c");
    }

    #[test]
    fn different_keys_give_different_contact_keys() {
        let a = PiiKey::from_secret("a").contact("447700900123").unwrap();
        let b = PiiKey::from_secret("b").contact("447700900123").unwrap();
        assert_ne!(a.0, b.0);
        assert_eq!(a.1, Some("GB"));
    }

    #[test]
    fn countries_by_longest_prefix() {
        assert_eq!(country_of("971501234567"), Some("AE"));
        assert_eq!(country_of("919812345678"), Some("IN"));
        assert_eq!(country_of("2348031234567"), Some("NG"));
        assert_eq!(country_of("5511987654321"), Some("BR"));
        assert_eq!(country_of("8881234"), None);
        assert_eq!(e164_digits("0044 7700 900123"), "447700900123");
        assert!(PiiKey::from_secret("k").contact("no digits").is_none());
    }

    #[test]
    fn generated_key_is_persisted_with_private_mode() {
        let dir = tempfile::tempdir().unwrap();
        let a = PiiKey::load_or_create(None, dir.path()).unwrap();
        let b = PiiKey::load_or_create(None, dir.path()).unwrap();
        assert_eq!(a.contact("15550100000"), b.contact("15550100000"));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join("pii.key")).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[test]
    fn numbers_are_redacted_and_short_ones_kept() {
        assert_eq!(
            redact_numbers("SELECT * FROM events WHERE x = '+1 (555) 010-9876' AND date = '2026-01-31' LIMIT 10"),
            "SELECT * FROM events WHERE x = '<number>' AND date = '2026-01-31' LIMIT 10"
        );
        assert_eq!(redact_numbers("15550109876"), "<number>");
        assert_eq!(redact_numbers("a+b 123456 x"), "a+b 123456 x");
    }

    #[test]
    fn a_user_id_has_a_key_of_its_own() {
        let k = PiiKey::from_secret("k");
        let user = k.contact_of_user(" US.13491208655302741918 ").expect("a key");
        assert_eq!(user.len(), CONTACT_KEY_HEX_CHARS);
        assert_eq!(Some(user.clone()), k.contact_of_user("US.13491208655302741918"));
        assert_ne!(Some(user), k.contact("13491208655302741918").map(|c| c.0), "never a number's key");
        assert_eq!(k.contact_of_user("  "), None);
    }
}
