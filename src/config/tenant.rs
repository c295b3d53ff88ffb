//! A tenant: a brand served from a shared deployment (`[[tenant]]`), and the checks its
//! settings get.

use serde::Deserialize;

use crate::error::{Error, Result};

/// A tenant: a brand served from a shared deployment, and the WhatsApp ids that make an event
/// its own (an event is the tenant's when its `account_id` or its `phone_number_id` is one of
/// these).
#[derive(Debug, Clone, Deserialize, PartialEq, Eq, Default)]
#[serde(deny_unknown_fields)]
pub struct Tenant {
    /// Its name, as tokens name it (`role:token@name`): letters, digits, `-` and `_`.
    pub name: String,
    /// Its WhatsApp business account ids (Meta's `entry[].id`; UltraMsg's `instance…`).
    #[serde(default)]
    pub account_ids: Vec<String>,
    /// Its phone number ids (Meta's `metadata.phone_number_id`).
    #[serde(default)]
    pub phone_number_ids: Vec<String>,
    /// Days its events are kept, when not the deployment's `retention_days` (consent changes
    /// and the audit trail keep their own periods).
    #[serde(default)]
    pub retention_days: Option<u32>,
}

impl Tenant {
    /// Whether an event with these ids is the tenant's.
    pub fn owns(&self, account_id: Option<&str>, phone_number_id: Option<&str>) -> bool {
        account_id.is_some_and(|a| self.account_ids.iter().any(|x| x == a))
            || phone_number_id.is_some_and(|p| self.phone_number_ids.iter().any(|x| x == p))
    }

    /// Checks the `[[tenant]]` tables: valid unique names, at least one id each, and no id
    /// owned by two tenants (an event must be one tenant's or none's).
    pub fn check_all(tenants: &[Tenant]) -> Result<()> {
        let mut names = std::collections::HashSet::new();
        let mut ids: std::collections::HashMap<&str, &str> = std::collections::HashMap::new();
        for t in tenants {
            let valid = !t.name.is_empty()
                && t.name.len() <= 64
                && t.name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
            if !valid {
                return Err(Error::Config(format!("tenant name {:?}: use 1-64 letters, digits, '-' or '_'", t.name)));
            }
            if !names.insert(t.name.as_str()) {
                return Err(Error::Config(format!("tenant {:?} is defined twice", t.name)));
            }
            if t.account_ids.is_empty() && t.phone_number_ids.is_empty() {
                return Err(Error::Config(format!(
                    "tenant {:?} owns no ids: give it account_ids or phone_number_ids",
                    t.name
                )));
            }
            for id in t.account_ids.iter().chain(&t.phone_number_ids) {
                if id.trim().is_empty() {
                    return Err(Error::Config(format!("tenant {:?} has an empty id", t.name)));
                }
                if let Some(other) = ids.insert(id.as_str(), t.name.as_str())
                    && other != t.name
                {
                    return Err(Error::Config(format!("id {id:?} belongs to both tenant {other:?} and {:?}", t.name)));
                }
            }
        }
        Ok(())
    }
}
