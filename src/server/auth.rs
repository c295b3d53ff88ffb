//! Who may do what: bearer tokens with roles, and the report page's sessions.
//!
//! Tokens are kept as SHA-256 digests and compared in constant time, so neither timing nor a
//! memory dump of the comparison gives a token away. A page session is a signed cookie traded
//! for a read token at `/login`, so a browser never holds the token itself.

use std::sync::Arc;
use std::time::Duration;

use axum::http::{HeaderMap, header};
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::error::ApiError;
use crate::config::Tenant;
use crate::error::{Error, Result};
use crate::pii::PiiKey;

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

    /// Its name, as the configuration spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Ingest => "ingest",
            Role::Read => "read",
            Role::Send => "send",
            Role::Admin => "admin",
        }
    }

    /// Whether a token of this role may act as `needed` (admin may do everything).
    pub fn allows(self, needed: Role) -> bool {
        self == Role::Admin || self == needed
    }
}

/// One `tokens` entry: `role:token`, or `role:token@tenant` for a token bound to one tenant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenEntry {
    pub role: Role,
    pub token: String,
    /// The tenant it is bound to; `None` (no `@`, or `@*`) is the operator's, over every tenant.
    pub tenant: Option<String>,
}

/// Parses the `tokens` setting, with errors that name the setting. A tenant named after `@`
/// must be one of `tenants`.
pub fn parse_tokens(entries: &[String], tenants: &[Tenant]) -> Result<Vec<TokenEntry>> {
    entries
        .iter()
        .map(|t| {
            let (role, rest) = t.split_once(':').ok_or_else(|| {
                Error::Config(
                    "a token is written role:token or role:token@tenant (roles ingest, read, send, admin)".into(),
                )
            })?;
            let role = Role::parse(role.trim()).ok_or_else(|| {
                Error::Config(format!("unknown token role {role:?}; roles are ingest, read, send, admin"))
            })?;
            let (token, tenant) = match rest.trim().rsplit_once('@') {
                Some((token, "*")) => (token, None),
                Some((token, name)) => {
                    if !tenants.iter().any(|t| t.name == name) {
                        return Err(Error::Config(format!(
                            "a {role:?} token names tenant {name:?}, which no [[tenant]] defines \
                             (a token is role:token@tenant; a token may not contain '@')"
                        )));
                    }
                    (token, Some(name.to_string()))
                }
                None => (rest.trim(), None),
            };
            if token.trim().len() < 8 {
                return Err(Error::Config(format!("the {role:?} token is shorter than 8 characters")));
            }
            Ok(TokenEntry { role, token: token.trim().to_string(), tenant })
        })
        .collect()
}

/// Who is asking: a token's role, the tenant it is bound to, and its id.
#[derive(Debug, Clone)]
pub struct Caller {
    pub role: Role,
    /// `None`: the operator, over every tenant.
    pub tenant: Option<Arc<Tenant>>,
    /// The token's id for the audit trail ([`token_id`]), which names it without giving it
    /// away.
    pub token_id: String,
}

impl Caller {
    /// The operator acting from inside the process (the demo, a command): every tenant.
    pub fn operator(token_id: &str) -> Caller {
        Caller { role: Role::Admin, tenant: None, token_id: token_id.to_string() }
    }

    /// The tenant's name, or `*` for the operator.
    pub fn tenant_name(&self) -> &str {
        self.tenant.as_deref().map_or("*", |t| t.name.as_str())
    }

    /// 403 unless the caller is the operator.
    pub fn operator_only(&self, what: &str) -> Result<(), ApiError> {
        match &self.tenant {
            None => Ok(()),
            Some(t) => Err(ApiError::Forbidden(format!(
                "{what} is the operator's: this token is bound to tenant {:?}",
                t.name
            ))),
        }
    }
}

/// The id of a token: a tag keyed with the deployment's PII key ([`PiiKey::tag`]), the same on
/// every collector sharing the key, and not found by hashing guessed tokens.
pub fn token_id(key: &PiiKey, token: &str) -> String {
    key.tag("api-token", token)
}

/// The configured tokens.
#[derive(Clone)]
pub struct Tokens {
    tokens: Vec<([u8; 32], Caller)>,
    /// The key token ids are made with.
    key: PiiKey,
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
    /// From parsed entries ([`parse_tokens`], which checked their tenants exist); their ids are
    /// made with `key`.
    pub fn new(entries: &[TokenEntry], tenants: &[Tenant], key: &PiiKey) -> Self {
        let tenants: Vec<Arc<Tenant>> = tenants.iter().cloned().map(Arc::new).collect();
        Tokens {
            tokens: entries
                .iter()
                .map(|e| {
                    let tenant = e.tenant.as_ref().and_then(|n| tenants.iter().find(|t| &t.name == n).cloned());
                    (digest(&e.token), Caller { role: e.role, tenant, token_id: token_id(key, &e.token) })
                })
                .collect(),
            key: key.clone(),
        }
    }

    /// The id of a presented token, known or not ([`token_id`]).
    pub fn id_of(&self, token: &str) -> String {
        token_id(&self.key, token)
    }

    /// The caller a presented token stands for, checking every configured token.
    pub fn caller_of(&self, token: &str) -> Option<Caller> {
        let d = digest(token);
        let mut found = None;
        for (t, caller) in &self.tokens {
            if bool::from(t.ct_eq(&d)) && found.is_none() {
                found = Some(caller.clone());
            }
        }
        found
    }

    /// Checks the request's bearer token allows `needed`: 401 without a valid token, 403 with
    /// a token of another role.
    pub fn authorize(&self, headers: &HeaderMap, needed: Role) -> Result<Caller, ApiError> {
        let token = bearer(headers)
            .ok_or_else(|| ApiError::Unauthorized("send an API token as `Authorization: Bearer <token>`".into()))?;
        self.check(token, needed)
    }

    /// Checks a token allows `needed`.
    pub fn check(&self, token: &str, needed: Role) -> Result<Caller, ApiError> {
        let caller = self.caller_of(token).ok_or_else(|| ApiError::Unauthorized("unknown API token".into()))?;
        if caller.role.allows(needed) {
            Ok(caller)
        } else {
            Err(ApiError::Forbidden(format!(
                "this token's role ({}) may not do this; it needs a {} token",
                caller.role.as_str(),
                needed.as_str()
            )))
        }
    }

    /// The tenant of this name, as the tokens hold it.
    pub fn tenant(&self, name: &str) -> Option<Arc<Tenant>> {
        self.tokens.iter().find_map(|(_, c)| c.tenant.clone().filter(|t| t.name == name))
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

    /// A cookie value for a read session of `caller` valid until `SESSION_TTL` from now: it
    /// carries the caller's tenant and token id (names and hex digits, never a `.`).
    pub fn issue(&self, caller: &Caller) -> String {
        let until = chrono::Utc::now().timestamp() + SESSION_TTL.as_secs() as i64;
        let payload = format!("read.{}.{}.{until}", caller.tenant_name(), caller.token_id);
        format!("{payload}.{}", self.mac(&payload))
    }

    /// The caller of a valid, unexpired session cookie (its tenant found in `tokens`, so a
    /// tenant removed from the settings ends its sessions at the restart).
    pub fn caller(&self, value: &str, tokens: &Tokens) -> Option<Caller> {
        let (payload, mac) = value.rsplit_once('.')?;
        if !secret_eq(&self.mac(payload), mac) {
            return None;
        }
        let mut parts = payload.split('.');
        let (Some("read"), Some(tenant), Some(token_id), Some(until), None) =
            (parts.next(), parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return None;
        };
        if until.parse::<i64>().ok()? <= chrono::Utc::now().timestamp() {
            return None;
        }
        let tenant = match tenant {
            "*" => None,
            name => Some(tokens.tenant(name)?),
        };
        Some(Caller { role: Role::Read, tenant, token_id: token_id.to_string() })
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
        let key = PiiKey::from_secret("k");
        let t = Tokens::new(
            &parse_tokens(&["read:reader-token".into(), "admin:admin-token".into()], &[]).unwrap(),
            &[],
            &key,
        );
        assert_eq!(t.check("reader-token", Role::Read).unwrap().role, Role::Read);
        assert!(matches!(t.check("reader-token", Role::Ingest), Err(ApiError::Forbidden(_))));
        assert!(matches!(t.check("nope", Role::Read), Err(ApiError::Unauthorized(_))));
        assert_eq!(t.check("admin-token", Role::Send).unwrap().role, Role::Admin);
        let mut h = HeaderMap::new();
        assert!(matches!(t.authorize(&h, Role::Read), Err(ApiError::Unauthorized(_))));
        h.insert(header::AUTHORIZATION, "Bearer reader-token".parse().unwrap());
        assert!(t.authorize(&h, Role::Read).is_ok());
        assert!(secret_eq("a", "a") && !secret_eq("a", "ab"));
    }

    #[test]
    fn token_errors_name_the_setting() {
        let e = parse_tokens(&["reader:abcdefgh".into()], &[]).unwrap_err().to_string();
        assert!(e.contains("role"), "{e}");
        assert!(parse_tokens(&["read:short".into()], &[]).unwrap_err().to_string().contains("shorter"));
        let entry = |role, token: &str, tenant: Option<&str>| TokenEntry {
            role,
            token: token.into(),
            tenant: tenant.map(str::to_string),
        };
        assert_eq!(
            parse_tokens(&["read:abcdefgh".into(), " ingest:ijklmnop ".into()], &[]).unwrap(),
            vec![entry(Role::Read, "abcdefgh", None), entry(Role::Ingest, "ijklmnop", None)]
        );
        let acme = Tenant { name: "acme".into(), account_ids: vec!["1".into()], ..Default::default() };
        assert_eq!(
            parse_tokens(&["read:abcdefgh@acme".into(), "send:ijklmnop@*".into()], std::slice::from_ref(&acme))
                .unwrap(),
            vec![entry(Role::Read, "abcdefgh", Some("acme")), entry(Role::Send, "ijklmnop", None)]
        );
        let e = parse_tokens(&["read:abcdefgh@globex".into()], &[acme]).unwrap_err().to_string();
        assert!(e.contains("globex") && e.contains("[[tenant]]"), "{e}");
    }

    #[test]
    fn tenant_tokens_and_sessions_carry_their_tenant() {
        let acme = Tenant { name: "acme".into(), phone_number_ids: vec!["9".into()], ..Default::default() };
        let tenants = [acme];
        let key = PiiKey::from_secret("k");
        let t = Tokens::new(
            &parse_tokens(&["read:acme-reader@acme".into(), "read:operator-1".into()], &tenants).unwrap(),
            &tenants,
            &key,
        );
        let a = t.check("acme-reader", Role::Read).unwrap();
        assert_eq!(a.tenant_name(), "acme");
        assert!(a.operator_only("the audit table").is_err());
        assert_eq!(a.token_id, token_id(&key, "acme-reader"));
        assert_ne!(a.token_id, token_id(&PiiKey::from_secret("another key"), "acme-reader"), "keyed");
        assert!(!a.token_id.contains("acme-reader") && a.token_id.len() == 12);
        let op = t.check("operator-1", Role::Read).unwrap();
        assert!(op.tenant.is_none() && op.operator_only("x").is_ok());
        let sessions = Sessions::default();
        let cookie = sessions.issue(&a);
        let back = sessions.caller(&cookie, &t).expect("a valid session");
        assert_eq!((back.tenant_name(), back.token_id.as_str()), ("acme", a.token_id.as_str()));
        let forged = cookie.replacen("acme", "*", 1);
        assert!(sessions.caller(&forged, &t).is_none(), "the tenant is signed");
        assert!(sessions.caller(&sessions.issue(&op), &t).is_some_and(|c| c.tenant.is_none()));
    }
}
