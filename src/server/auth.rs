//! Who may do what: bearer tokens with roles, and the report page's sessions.
//!
//! Tokens are kept as SHA-256 digests and compared in constant time, so neither timing nor a
//! memory dump of the comparison gives a token away. A page session is a signed cookie traded
//! for a read token at `/login`, so a browser never holds the token itself.

use std::time::Duration;

use axum::http::{HeaderMap, header};
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::error::ApiError;
use crate::error::{Error, Result};

/// What a token lets its holder do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Ingest,
    Read,
    Send,
    Admin,
}

impl Role {
    fn parse(s: &str) -> Option<Role> {
        Some(match s {
            "ingest" => Role::Ingest,
            "read" => Role::Read,
            "send" => Role::Send,
            "admin" => Role::Admin,
            _ => return None,
        })
    }

    /// Whether a token of this role may act as `needed` (admin may do everything).
    pub fn allows(self, needed: Role) -> bool {
        self == Role::Admin || self == needed
    }
}

/// Parses the `tokens` setting's `role:token` entries, with errors that name the setting.
pub fn parse_tokens(entries: &[String]) -> Result<Vec<(Role, String)>> {
    entries
        .iter()
        .map(|t| {
            let (role, token) = t.split_once(':').ok_or_else(|| {
                Error::Config("a token is written role:token (roles ingest, read, send, admin)".into())
            })?;
            let role = Role::parse(role.trim()).ok_or_else(|| {
                Error::Config(format!("unknown token role {role:?}; roles are ingest, read, send, admin"))
            })?;
            if token.trim().len() < 8 {
                return Err(Error::Config(format!("the {role:?} token is shorter than 8 characters")));
            }
            Ok((role, token.trim().to_string()))
        })
        .collect()
}

/// The configured tokens.
#[derive(Clone, Default)]
pub struct Tokens {
    tokens: Vec<(Role, [u8; 32])>,
}

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Tokens({} configured)", self.tokens.len())
    }
}

fn digest(s: &str) -> [u8; 32] {
    Sha256::digest(s.as_bytes()).into()
}

/// Compares two secrets in constant time (via their digests, so lengths do not leak either).
pub fn secret_eq(a: &str, b: &str) -> bool {
    digest(a).ct_eq(&digest(b)).into()
}

impl Tokens {
    /// From parsed `role:token` pairs.
    pub fn new(pairs: &[(Role, String)]) -> Self {
        Tokens { tokens: pairs.iter().map(|(r, t)| (*r, digest(t))).collect() }
    }

    /// The role of a presented token, checking every configured token.
    pub fn role_of(&self, token: &str) -> Option<Role> {
        let d = digest(token);
        let mut found = None;
        for (role, t) in &self.tokens {
            if bool::from(t.ct_eq(&d)) && found.is_none() {
                found = Some(*role);
            }
        }
        found
    }

    /// Checks the request's bearer token allows `needed`: 401 without a valid token, 403 with
    /// a token of another role.
    pub fn authorize(&self, headers: &HeaderMap, needed: Role) -> Result<Role, ApiError> {
        let token = bearer(headers)
            .ok_or_else(|| ApiError::Unauthorized("send an API token as `Authorization: Bearer <token>`".into()))?;
        self.check(token, needed)
    }

    /// Checks a token allows `needed`.
    pub fn check(&self, token: &str, needed: Role) -> Result<Role, ApiError> {
        let role = self.role_of(token).ok_or_else(|| ApiError::Unauthorized("unknown API token".into()))?;
        if role.allows(needed) {
            Ok(role)
        } else {
            Err(ApiError::Forbidden(format!("this token's role ({role:?}) may not do this; it needs {needed:?}")))
        }
    }
}

/// Name of the session cookie of the report pages.
pub const SESSION_COOKIE: &str = "convoscope_session";
/// How long a page session lasts: a working day.
pub const SESSION_TTL: Duration = Duration::from_secs(12 * 3600);

/// Signs and checks page sessions with a key made at start (sessions end with the process).
pub struct Sessions {
    key: [u8; 32],
}

impl Default for Sessions {
    fn default() -> Self {
        let mut key = [0u8; 32];
        rand::fill(&mut key);
        Sessions { key }
    }
}

impl Sessions {
    fn mac(&self, payload: &str) -> String {
        let mut m = <Hmac<Sha256> as Mac>::new_from_slice(&self.key).expect("HMAC takes any key length");
        m.update(payload.as_bytes());
        hex::encode(m.finalize().into_bytes())
    }

    /// A cookie value for a read session valid until `SESSION_TTL` from now.
    pub fn issue(&self) -> String {
        let until = chrono::Utc::now().timestamp() + SESSION_TTL.as_secs() as i64;
        let payload = format!("read.{until}");
        format!("{payload}.{}", self.mac(&payload))
    }

    /// Whether a cookie value is a valid, unexpired session.
    pub fn valid(&self, value: &str) -> bool {
        let Some((payload, mac)) = value.rsplit_once('.') else { return false };
        let Some(until) = payload.strip_prefix("read.").and_then(|u| u.parse::<i64>().ok()) else { return false };
        secret_eq(&self.mac(payload), mac) && until > chrono::Utc::now().timestamp()
    }

    /// The session cookie of a request, if any.
    pub fn cookie(headers: &HeaderMap) -> Option<&str> {
        headers.get_all(header::COOKIE).iter().filter_map(|v| v.to_str().ok()).flat_map(|v| v.split(';')).find_map(
            |kv| {
                let (k, v) = kv.trim().split_once('=')?;
                (k == SESSION_COOKIE).then_some(v)
            },
        )
    }
}

/// The bearer token of a request, if any.
pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = v.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim()).filter(|t| !t.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_and_admin() {
        let t = Tokens::new(&[(Role::Read, "reader-token".into()), (Role::Admin, "admin-token".into())]);
        assert_eq!(t.check("reader-token", Role::Read).unwrap(), Role::Read);
        assert!(matches!(t.check("reader-token", Role::Ingest), Err(ApiError::Forbidden(_))));
        assert!(matches!(t.check("nope", Role::Read), Err(ApiError::Unauthorized(_))));
        assert_eq!(t.check("admin-token", Role::Send).unwrap(), Role::Admin);
        let mut h = HeaderMap::new();
        assert!(matches!(t.authorize(&h, Role::Read), Err(ApiError::Unauthorized(_))));
        h.insert(header::AUTHORIZATION, "Bearer reader-token".parse().unwrap());
        assert!(t.authorize(&h, Role::Read).is_ok());
        assert!(secret_eq("a", "a") && !secret_eq("a", "ab"));
    }

    #[test]
    fn token_errors_name_the_setting() {
        let e = parse_tokens(&["reader:abcdefgh".into()]).unwrap_err().to_string();
        assert!(e.contains("role"), "{e}");
        assert!(parse_tokens(&["read:short".into()]).unwrap_err().to_string().contains("shorter"));
        assert_eq!(
            parse_tokens(&["read:abcdefgh".into(), " ingest:ijklmnop ".into()]).unwrap(),
            vec![(Role::Read, "abcdefgh".into()), (Role::Ingest, "ijklmnop".into())]
        );
    }
}
