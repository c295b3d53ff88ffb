//! Tombstones: the contacts erased from the store (`convoscope erase`), kept as
//! `_convoscope/erased/<contact_key>.json`, so an event of theirs that arrives after the
//! erasure (a late receipt, a replayed log segment, a provider's retry) is dropped instead of
//! stored, and the send path refuses them until they opt in again.
//!
//! A tombstone names the contact by its `contact_key` (a keyed hash: the store never holds the
//! number) and, for an erasure of one tenant's rows, the ids that tenant owned. An event of
//! the contact is dropped when it occurred before the erasure, or after it while the contact
//! has not opted in again; a `consent.opt_in` that occurred after the erasure is kept and
//! reopens the contact ([`Tombstones::reopen`]) from that moment on.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use arrow::array::{AsArray, BooleanArray, RecordBatch};
use arrow::datatypes::TimestampMicrosecondType;
use futures::TryStreamExt;
use object_store::{ObjectStoreExt, PutPayload};
use serde::{Deserialize, Serialize};

use super::Storage;
use crate::error::{Error, Result};
use crate::event::{Event, cell};

/// Where tombstones are kept, under `_convoscope/`.
const DIR: &str = "_convoscope/erased";

/// One erased contact.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Tombstone {
    pub contact_key: String,
    /// When it was erased (microseconds since the epoch).
    pub erased_at: i64,
    /// The tenant whose rows alone were erased, and the ids it owned then; `None`: every row.
    #[serde(default)]
    pub tenant: Option<String>,
    #[serde(default)]
    pub owner_ids: Option<Vec<String>>,
    /// When the contact opted in again after the erasure; its events from then on are kept.
    #[serde(default)]
    pub reopened_at: Option<i64>,
    /// The sweeps of the store done so far: what they removed.
    #[serde(default)]
    pub sweeps: Vec<Sweep>,
}

/// One pass over the store for a tombstone.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sweep {
    /// When it finished (microseconds since the epoch).
    pub at: i64,
    /// Events files rewritten or deleted, and rows removed.
    pub files: usize,
    pub rows: usize,
}

impl Tombstone {
    /// A tombstone for a contact erased now: of every row, or of `tenant`'s rows only.
    pub fn new(contact_key: String, tenant: Option<&crate::config::Tenant>) -> Tombstone {
        Tombstone {
            contact_key,
            erased_at: crate::event::now_micros(),
            tenant: tenant.map(|t| t.name.clone()),
            owner_ids: tenant.map(|t| t.account_ids.iter().chain(&t.phone_number_ids).cloned().collect()),
            reopened_at: None,
            sweeps: Vec::new(),
        }
    }

    /// Whether an event of the contact with these owner ids falls under the erasure.
    fn covers_owner(&self, account_id: Option<&str>, phone_number_id: Option<&str>) -> bool {
        match &self.owner_ids {
            None => true,
            Some(ids) => [account_id, phone_number_id].into_iter().flatten().any(|id| ids.iter().any(|o| o == id)),
        }
    }

    /// Whether an event of the contact is dropped (see the module's docs).
    fn drops(
        &self,
        event_type: &str,
        occurred_at: i64,
        account_id: Option<&str>,
        phone_number_id: Option<&str>,
    ) -> bool {
        if !self.covers_owner(account_id, phone_number_id) {
            return false;
        }
        if occurred_at <= self.erased_at {
            return true;
        }
        let reopened = self.reopened_at.is_some_and(|r| occurred_at >= r);
        !(reopened || event_type == "consent.opt_in")
    }

    /// Whether a sweep began late enough to see every file flushed before every collector knew
    /// the tombstone: one started `settle` after the erasure.
    pub fn settled(&self, settle: std::time::Duration) -> bool {
        let after = self.erased_at + i64::try_from(settle.as_micros()).unwrap_or(i64::MAX);
        self.sweeps.iter().any(|s| s.at >= after)
    }
}

/// The tombstones a process knows, by contact key.
#[derive(Debug, Default, Clone)]
pub struct Tombstones {
    by_contact: Arc<RwLock<HashMap<String, Tombstone>>>,
    /// Whether the store's tombstones have been read at least once.
    loaded: Arc<std::sync::atomic::AtomicBool>,
}

impl Tombstones {
    /// Every tombstone in the store.
    pub async fn load(storage: &Storage) -> Result<Tombstones> {
        let t = Tombstones::default();
        t.refresh(storage).await?;
        Ok(t)
    }

    /// Reads the store's tombstones again (others' erasures, others' reopenings), keeping the
    /// latest of each.
    pub async fn refresh(&self, storage: &Storage) -> Result<()> {
        let metas: Vec<object_store::ObjectMeta> = storage.store.list(Some(&storage.path(DIR))).try_collect().await?;
        for m in metas {
            let bytes = storage.store.get(&m.location).await?.bytes().await?;
            let t: Tombstone =
                serde_json::from_slice(&bytes).map_err(|e| Error::Invalid(format!("tombstone {}: {e}", m.location)))?;
            self.remember(t);
        }
        self.loaded.store(true, std::sync::atomic::Ordering::Release);
        Ok(())
    }

    /// Whether the store's tombstones have been read at least once: until then, what is known
    /// is only what this process erased.
    pub fn loaded(&self) -> bool {
        self.loaded.load(std::sync::atomic::Ordering::Acquire)
    }

    fn remember(&self, t: Tombstone) {
        if let Ok(mut map) = self.by_contact.write() {
            let keep_newer = map.get(&t.contact_key).is_some_and(|old| {
                (old.erased_at, old.reopened_at, old.sweeps.len()) > (t.erased_at, t.reopened_at, t.sweeps.len())
            });
            if !keep_newer {
                map.insert(t.contact_key.clone(), t);
            }
        }
    }

    /// Writes a tombstone to the store and knows it from now on.
    pub async fn save(&self, storage: &Storage, t: &Tombstone) -> Result<()> {
        let body = serde_json::to_vec(t).map_err(|e| Error::Invalid(e.to_string()))?;
        storage.store.put(&path(storage, &t.contact_key), PutPayload::from(body)).await?;
        self.remember(t.clone());
        Ok(())
    }

    /// The tombstone of a contact, if it was erased.
    pub fn get(&self, contact_key: &str) -> Option<Tombstone> {
        self.by_contact.read().ok()?.get(contact_key).cloned()
    }

    /// Every tombstone known.
    pub fn all(&self) -> Vec<Tombstone> {
        self.by_contact.read().map(|m| m.values().cloned().collect()).unwrap_or_default()
    }

    fn is_empty(&self) -> bool {
        self.by_contact.read().map(|m| m.is_empty()).unwrap_or(true)
    }

    /// Whether the send path must refuse the contact: erased, and not opted in since.
    pub fn blocks_send(&self, contact_key: &str) -> bool {
        self.get(contact_key).is_some_and(|t| t.reopened_at.is_none())
    }

    /// Whether an event is dropped. Every ingested event asks, so it only reads.
    pub fn drops(&self, e: &Event) -> bool {
        let Some(ck) = e.contact_key.as_deref() else { return false };
        let Ok(map) = self.by_contact.read() else { return false };
        map.get(ck).is_some_and(|t| {
            t.drops(&e.event_type, e.occurred_at, e.account_id.as_deref(), e.phone_number_id.as_deref())
        })
    }

    /// The tombstones a kept `consent.opt_in` after an erasure reopens: returned updated, to be
    /// saved.
    pub fn reopen(&self, events: &[Event]) -> Vec<Tombstone> {
        let mut reopened = Vec::new();
        for e in events.iter().filter(|e| e.event_type == "consent.opt_in") {
            let Some(mut t) = e.contact_key.as_deref().and_then(|ck| self.get(ck)) else { continue };
            if e.occurred_at > t.erased_at && t.reopened_at.is_none_or(|r| e.occurred_at < r) {
                t.reopened_at = Some(e.occurred_at);
                self.remember(t.clone());
                reopened.push(t);
            }
        }
        reopened
    }

    /// Which rows of a batch of the events table to keep: `None` when every row is kept.
    pub fn keep(&self, batch: &RecordBatch) -> Result<Option<BooleanArray>> {
        if self.is_empty() {
            return Ok(None);
        }
        let text = |n: &str| {
            batch
                .column_by_name(n)
                .and_then(|c| c.as_string_opt::<i32>())
                .ok_or_else(|| Error::Invalid(format!("events batch without {n}")))
        };
        let (contact, kind, account, phone) =
            (text("contact_key")?, text("event_type")?, text("account_id")?, text("phone_number_id")?);
        let occurred = batch
            .column_by_name("occurred_at")
            .and_then(|c| c.as_primitive_opt::<TimestampMicrosecondType>())
            .ok_or_else(|| Error::Invalid("events batch without occurred_at".into()))?;
        let map = self.by_contact.read().map_err(|_| Error::Invalid("tombstones lock poisoned".into()))?;
        let mut dropped = 0;
        let keep: BooleanArray = (0..batch.num_rows())
            .map(|i| {
                let drop = cell(contact, i)
                    .and_then(|ck| map.get(ck))
                    .is_some_and(|t| t.drops(kind.value(i), occurred.value(i), cell(account, i), cell(phone, i)));
                dropped += usize::from(drop);
                Some(!drop)
            })
            .collect();
        Ok((dropped > 0).then_some(keep))
    }
}

/// The object of a contact's tombstone.
fn path(storage: &Storage, contact_key: &str) -> object_store::path::Path {
    storage.path(&format!("{DIR}/{contact_key}.json"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(kind: &str, at: i64, contact: &str) -> Event {
        let mut e = Event::new(format!("{kind}-{at}"), kind, at, at, "api");
        e.contact_key = Some(contact.into());
        e
    }

    #[tokio::test]
    async fn an_erased_contacts_events_are_dropped_until_it_opts_in_again() {
        let s = Storage::open("memory://").unwrap();
        let t = Tombstones::default();
        let stone = Tombstone {
            contact_key: "ck".into(),
            erased_at: 100,
            tenant: None,
            owner_ids: None,
            reopened_at: None,
            sweeps: vec![],
        };
        t.save(&s, &stone).await.unwrap();
        let loaded = Tombstones::load(&s).await.unwrap();
        assert_eq!(loaded.get("ck"), Some(stone.clone()));
        assert!(t.drops(&ev("message.read", 50, "ck")), "a late receipt of before");
        assert!(t.drops(&ev("message.read", 150, "ck")), "after, without a new opt-in");
        assert!(!t.drops(&ev("message.read", 50, "other")));
        assert!(t.blocks_send("ck"));
        assert!(!t.drops(&ev("consent.opt_in", 200, "ck")), "a new opt-in is kept");
        assert!(t.reopen(&[ev("consent.opt_in", 50, "ck")]).is_empty(), "an opt-in from before does not reopen");
        let reopened = t.reopen(&[ev("consent.opt_in", 200, "ck")]);
        assert_eq!(reopened.len(), 1);
        assert!(!t.blocks_send("ck"));
        assert!(!t.drops(&ev("message.read", 250, "ck")) && t.drops(&ev("message.read", 150, "ck")));
        assert!(t.drops(&ev("message.read", 99, "ck")), "what occurred before the erasure stays erased");
        let batch =
            crate::event::to_record_batch(&[ev("message.read", 50, "ck"), ev("message.read", 50, "x")]).unwrap();
        assert_eq!(t.keep(&batch).unwrap().map(|k| k.iter().collect::<Vec<_>>()), Some(vec![Some(false), Some(true)]));
        // One tenant's erasure leaves another's rows of the same contact.
        let scoped = Tombstones::default();
        scoped.remember(Tombstone { owner_ids: Some(vec!["acme-phone".into()]), ..stone });
        let mut theirs = ev("message.read", 50, "ck");
        theirs.phone_number_id = Some("globex-phone".into());
        assert!(!scoped.drops(&theirs));
        theirs.phone_number_id = Some("acme-phone".into());
        assert!(scoped.drops(&theirs));
    }
}
