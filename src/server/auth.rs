//! Bearer tokens with roles. Tokens are kept as SHA-256 digests and compared in constant
//! time, so neither timing nor a memory dump of the comparison gives a token away.

use axum::http::{HeaderMap, header};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::error::ApiError;
use crate::config::Role;

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
}
