//! Tombstones: the contacts erased from the store (`convoscope erase`), kept as
//! `_convoscope/erased/<contact_key>/<scope>.json` (scope `=all`, or the tenant whose rows
//! alone were erased), so an event of theirs that arrives after the erasure (a late receipt, a
//! replayed log segment, a provider's retry) is dropped instead of stored, and the send path
//! refuses them until they opt in again.
//!
//! A tombstone names the contact by its `contact_key` (a keyed hash: the store never holds the
//! number), for a tenant's erasure the ids that tenant owned, and the messages and
//! conversations the sweeps found to be the contact's (`linked`), so their later events that
//! do not name the contact (a conversion, a receipt) are dropped too. An event falls under a
//! tombstone when its owner is the tombstone's and it occurred before the erasure, or after it
//! while the contact has not opted in again; a `consent.opt_in` of that owner that occurred
//! after the erasure is kept and reopens the contact ([`Tombstones::reopen`]) from then on.
//! Erasures of one contact by different tenants (or by the operator) are separate tombstones.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use arrow::array::{AsArray, BooleanArray, RecordBatch, StringArray};
use arrow::datatypes::TimestampMicrosecondType;
use futures::TryStreamExt;
use object_store::{ObjectStoreExt, PutPayload};
use serde::{Deserialize, Serialize};

use super::Storage;
use crate::error::{Error, Result};
use crate::event::{Event, cell};

/// Where tombstones are kept, under `_convoscope/`.
const DIR: &str = "_convoscope/erased";

/// The scope of an erasure of every row (a tenant's name cannot contain `=`).
const ALL: &str = "=all";

/// One erasure of a contact.
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
    /// The message and conversation ids the sweeps found to be the contact's.
    #[serde(default)]
    pub linked: Vec<String>,
}

/// One pass over the store for a tombstone.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sweep {
    /// When it began listing the store, and when it finished (microseconds since the epoch).
    #[serde(default)]
    pub started_at: i64,
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
            linked: Vec::new(),
        }
    }

    /// Its scope in the store: the tenant's name, or `=all`.
    pub fn scope(&self) -> &str {
        self.tenant.as_deref().unwrap_or(ALL)
    }

    /// Whether an event with these owner ids is one the erasure covers.
    pub fn covers_owner(&self, account_id: Option<&str>, phone_number_id: Option<&str>) -> bool {
        match &self.owner_ids {
            None => true,
            Some(ids) => [account_id, phone_number_id].into_iter().flatten().any(|id| ids.iter().any(|o| o == id)),
        }
    }

    /// Whether an event of the contact (or of its linked messages) is dropped (see the
    /// module's docs).
    pub fn drops(
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
    /// the tombstone: one that started listing `settle` after the erasure.
    pub fn settled(&self, settle: std::time::Duration) -> bool {
        let after = self.erased_at + i64::try_from(settle.as_micros()).unwrap_or(i64::MAX);
        self.sweeps.iter().any(|s| s.started_at >= after)
    }
}

/// What a process knows of the erasures: tombstones by contact, and the contact of each
/// linked message and conversation id.
#[derive(Debug, Default)]
struct Known {
    by_contact: HashMap<String, Vec<Tombstone>>,
    linked: HashMap<String, String>,
}

impl Known {
    /// Whether an event with these fields falls under a tombstone.
    #[allow(clippy::too_many_arguments)]
    fn drops(
        &self,
        contact: Option<&str>,
        ids: [Option<&str>; 3],
        event_type: &str,
        occurred_at: i64,
        account_id: Option<&str>,
        phone_number_id: Option<&str>,
    ) -> bool {
        let linked = ids.into_iter().flatten().filter_map(|id| self.linked.get(id).map(String::as_str));
        contact.into_iter().chain(linked).any(|ck| {
            self.by_contact
                .get(ck)
                .is_some_and(|ts| ts.iter().any(|t| t.drops(event_type, occurred_at, account_id, phone_number_id)))
        })
    }
}

/// The tombstones a process knows.
#[derive(Debug, Default, Clone)]
pub struct Tombstones {
    known: Arc<RwLock<Known>>,
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

    /// Reads the store's tombstones again (others' erasures, others' reopenings). One that
    /// cannot be read is logged and skipped: collecting goes on.
    pub async fn refresh(&self, storage: &Storage) -> Result<()> {
        let metas: Vec<object_store::ObjectMeta> = storage.store.list(Some(&storage.path(DIR))).try_collect().await?;
        for m in metas {
            match read(storage, &m.location).await {
                Ok(Some(t)) => self.remember(t),
                Ok(None) => {}
                Err(e) => {
                    tracing::error!(tombstone = %m.location, error = %e, "an erased contact's tombstone cannot be read; its events are not dropped until it is mended")
                }
            }
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
        let Ok(mut known) = self.known.write() else { return };
        for id in &t.linked {
            known.linked.insert(id.clone(), t.contact_key.clone());
        }
        let all = known.by_contact.entry(t.contact_key.clone()).or_default();
        match all.iter_mut().find(|o| o.scope() == t.scope()) {
            Some(old) => *old = t,
            None => all.push(t),
        }
    }

    /// Writes a new tombstone to the store (replacing one of the same contact and scope) and
    /// knows it from now on.
    pub async fn save(&self, storage: &Storage, t: &Tombstone) -> Result<()> {
        write(storage, t).await?;
        self.remember(t.clone());
        Ok(())
    }

    /// Changes the stored tombstone of `t`'s contact and scope as `change` says, on its latest
    /// version in the store (another collector may have reopened it meanwhile), and knows it.
    pub async fn update(
        &self,
        storage: &Storage,
        t: &Tombstone,
        change: impl FnOnce(&mut Tombstone),
    ) -> Result<Tombstone> {
        let mut latest = read(storage, &path(storage, &t.contact_key, t.scope())).await?.unwrap_or_else(|| t.clone());
        change(&mut latest);
        self.save(storage, &latest).await?;
        Ok(latest)
    }

    /// The tombstone of a contact in a scope (`None`: every row), if it was erased so.
    pub fn get(&self, contact_key: &str, tenant: Option<&str>) -> Option<Tombstone> {
        let known = self.known.read().ok()?;
        known.by_contact.get(contact_key)?.iter().find(|t| t.tenant.as_deref() == tenant).cloned()
    }

    /// Every tombstone of a contact.
    pub fn of(&self, contact_key: &str) -> Vec<Tombstone> {
        self.known.read().ok().and_then(|k| k.by_contact.get(contact_key).cloned()).unwrap_or_default()
    }

    /// Every tombstone known.
    pub fn all(&self) -> Vec<Tombstone> {
        self.known.read().map(|k| k.by_contact.values().flatten().cloned().collect()).unwrap_or_default()
    }

    /// Whether no contact is erased (what the ingest path asks once per request, before
    /// asking per event).
    pub fn is_empty(&self) -> bool {
        self.known.read().map(|k| k.by_contact.is_empty()).unwrap_or(true)
    }

    /// Whether the send path, sending from these ids, must refuse the contact: erased there,
    /// and not opted in since.
    pub fn blocks_send(&self, contact_key: &str, account_id: Option<&str>, phone_number_id: Option<&str>) -> bool {
        self.of(contact_key).iter().any(|t| t.reopened_at.is_none() && t.covers_owner(account_id, phone_number_id))
    }

    /// Whether an event is dropped. Every ingested event asks, so it only reads.
    pub fn drops(&self, e: &Event) -> bool {
        let Ok(known) = self.known.read() else { return false };
        if known.by_contact.is_empty() {
            return false;
        }
        known.drops(
            e.contact_key.as_deref(),
            [e.message_id.as_deref(), e.reply_to.as_deref(), e.conversation_id.as_deref()],
            &e.event_type,
            e.occurred_at,
            e.account_id.as_deref(),
            e.phone_number_id.as_deref(),
        )
    }

    /// The tombstones a kept `consent.opt_in` of their owner after the erasure reopens:
    /// returned updated, to be saved.
    pub fn reopen(&self, events: &[Event]) -> Vec<Tombstone> {
        let mut reopened = Vec::new();
        for e in events.iter().filter(|e| e.event_type == "consent.opt_in") {
            let Some(ck) = e.contact_key.as_deref() else { continue };
            for mut t in self.of(ck) {
                let owner = t.covers_owner(e.account_id.as_deref(), e.phone_number_id.as_deref());
                if owner && e.occurred_at > t.erased_at && t.reopened_at.is_none_or(|r| e.occurred_at < r) {
                    t.reopened_at = Some(e.occurred_at);
                    self.remember(t.clone());
                    reopened.push(t);
                }
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
        let cols: Vec<&StringArray> =
            ["contact_key", "message_id", "reply_to", "conversation_id", "event_type", "account_id", "phone_number_id"]
                .iter()
                .map(|n| text(n))
                .collect::<Result<_>>()?;
        let occurred = batch
            .column_by_name("occurred_at")
            .and_then(|c| c.as_primitive_opt::<TimestampMicrosecondType>())
            .ok_or_else(|| Error::Invalid("events batch without occurred_at".into()))?;
        let known = self.known.read().map_err(|_| Error::Invalid("tombstones lock poisoned".into()))?;
        let mut dropped = 0;
        let keep: BooleanArray = (0..batch.num_rows())
            .map(|i| {
                let drop = known.drops(
                    cell(cols[0], i),
                    [cell(cols[1], i), cell(cols[2], i), cell(cols[3], i)],
                    cols[4].value(i),
                    occurred.value(i),
                    cell(cols[5], i),
                    cell(cols[6], i),
                );
                dropped += usize::from(drop);
                Some(!drop)
            })
            .collect();
        Ok((dropped > 0).then_some(keep))
    }
}

/// The object of a contact's tombstone in a scope.
fn path(storage: &Storage, contact_key: &str, scope: &str) -> object_store::path::Path {
    storage.path(&format!("{DIR}/{contact_key}/{scope}.json"))
}

async fn write(storage: &Storage, t: &Tombstone) -> Result<()> {
    let body = serde_json::to_vec(t).map_err(|e| Error::Invalid(e.to_string()))?;
    storage.store.put(&path(storage, &t.contact_key, t.scope()), PutPayload::from(body)).await?;
    Ok(())
}

/// The tombstone at `location`, if there is one.
async fn read(storage: &Storage, location: &object_store::path::Path) -> Result<Option<Tombstone>> {
    let bytes = match storage.store.get(location).await {
        Ok(got) => got.bytes().await?,
        Err(object_store::Error::NotFound { .. }) => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    serde_json::from_slice(&bytes).map(Some).map_err(|e| Error::Invalid(format!("tombstone {location}: {e}")))
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
        let stone = Tombstone { erased_at: 100, ..Tombstone::new("ck".into(), None) };
        t.save(&s, &stone).await.unwrap();
        let loaded = Tombstones::load(&s).await.unwrap();
        assert_eq!(loaded.get("ck", None), Some(stone.clone()));
        assert!(t.drops(&ev("message.read", 50, "ck")), "a late receipt of before");
        assert!(t.drops(&ev("message.read", 150, "ck")), "after, without a new opt-in");
        assert!(!t.drops(&ev("message.read", 50, "other")));
        assert!(t.blocks_send("ck", None, Some("any-number")));
        assert!(!t.drops(&ev("consent.opt_in", 200, "ck")), "a new opt-in is kept");
        assert!(t.reopen(&[ev("consent.opt_in", 50, "ck")]).is_empty(), "an opt-in from before does not reopen");
        let reopened = t.reopen(&[ev("consent.opt_in", 200, "ck")]);
        assert_eq!(reopened.len(), 1);
        assert!(!t.blocks_send("ck", None, None));
        assert!(!t.drops(&ev("message.read", 250, "ck")) && t.drops(&ev("message.read", 150, "ck")));
        assert!(t.drops(&ev("message.read", 99, "ck")), "what occurred before the erasure stays erased");
        let batch =
            crate::event::to_record_batch(&[ev("message.read", 50, "ck"), ev("message.read", 50, "x")]).unwrap();
        assert_eq!(t.keep(&batch).unwrap().map(|k| k.iter().collect::<Vec<_>>()), Some(vec![Some(false), Some(true)]));
        // One tenant's erasure leaves another's rows of the same contact, and is a tombstone of
        // its own beside an erasure of every row.
        let scoped = Tombstones::default();
        let acme =
            Tombstone { tenant: Some("acme".into()), owner_ids: Some(vec!["acme-phone".into()]), ..stone.clone() };
        scoped.save(&s, &acme).await.unwrap();
        let mut theirs = ev("message.read", 50, "ck");
        theirs.phone_number_id = Some("globex-phone".into());
        assert!(!scoped.drops(&theirs));
        assert!(
            !scoped.blocks_send("ck", None, Some("globex-phone")) && scoped.blocks_send("ck", None, Some("acme-phone"))
        );
        theirs.phone_number_id = Some("acme-phone".into());
        assert!(scoped.drops(&theirs));
        let both = Tombstones::load(&s).await.unwrap();
        assert_eq!(both.of("ck").len(), 2, "the operator's erasure and Acme's");
        // A message the sweep found to be the contact's: its later events go too.
        let linked = Tombstone { linked: vec!["m-of-ck".into()], ..stone };
        let l = Tombstones::default();
        l.remember(linked);
        let mut conversion = Event::new("c".into(), "conversion", 150, 150, "api");
        conversion.message_id = Some("m-of-ck".into());
        assert!(l.drops(&conversion), "a conversion of its message, without the contact");
        // A tombstone that cannot be read is skipped, not fatal.
        s.store.put(&s.path("_convoscope/erased/bad/=all.json"), PutPayload::from_static(b"{")).await.unwrap();
        assert!(Tombstones::load(&s).await.is_ok());
    }
}
