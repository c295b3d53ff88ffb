//! `serve`'s own upkeep: a round every interval merges the small files of every day
//! ([`compact_small_files_of_every_day`]), brings the rollups up to date ([`heal_rollups`]),
//! sweeps again for recent erasures ([`super::settle`]) and removes what is past its retention
//! period ([`super::retention()`]); erasures asked of the service run between rounds.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use chrono::NaiveDate;
use object_store::ObjectMeta;

use super::Grace;
use super::compact::{Compacted, delete_replaced, merge_small_files};
use super::heal::{Healed, heal_rollups};
use super::lease::{Lease, STEP, step_for};
use crate::error::Result;
use crate::store::Storage;

/// Merges the small files of every day, in groups of at most `max_events` events (counted
/// from the files' footers), since a merge holds part of what it merges in memory (the
/// rollups' columns, the new file's pages): a quiet day's files become one, a busy day's many
/// minute-by-minute files a few. Today's files are merged as they come (the small merged file
/// again with the next ones, until it is half of `max_events`), so reports over today read tens
/// of files, not a file per flush. Files of at least half of `max_events` are left as they are;
/// `convoscope compact` merges whole days.
///
/// `settled` remembers the file count of days with nothing to merge, so their footers are read
/// again only when files are added. The files a merge replaced are deleted after `grace`; once
/// `grace` says `serve` is stopping, no further merge starts. Merges and deletes are made under
/// `lease` only ([`Lease`]); without it, nothing.
pub async fn compact_small_files_of_every_day(
    storage: &Storage,
    max_events: u64,
    grace: &Grace,
    settled: &mut HashMap<NaiveDate, usize>,
    lease: &mut Lease,
) -> Result<Vec<Compacted>> {
    let mut by_date: BTreeMap<NaiveDate, Vec<ObjectMeta>> = BTreeMap::new();
    for (d, m) in storage.list_event_files().await? {
        by_date.entry(d).or_default().push(m);
    }
    settled.retain(|d, _| by_date.contains_key(d));
    let mut merged = Vec::new();
    for (date, files) in by_date {
        if grace.stopped() {
            break;
        }
        if files.len() < 2 || settled.get(&date) == Some(&files.len()) {
            continue;
        }
        // One day's unreadable file must not keep the other days from being merged.
        let before = merged.len();
        match merge_small_files(storage, date, &files, max_events, grace, lease, &mut merged).await {
            Ok(()) if merged.len() == before => {
                settled.insert(date, files.len());
            }
            Ok(()) => {}
            Err(e) => tracing::warn!(%date, error = %e, "could not compact the day; the next round retries"),
        }
    }
    // One grace period for the whole round, not one per merge, under a lease that lasts it
    // (without it, the deletes below are skipped: the files are merged again by the holder).
    if !merged.is_empty() && lease.hold_until(grace.wait + STEP).await? {
        grace.elapse().await;
    }
    if grace.stopped() && !merged.is_empty() {
        // Other processes (collectors sharing the store, a cluster's executors) may still be
        // reading what this round replaced: it stays, and is merged again by the next holder.
        tracing::info!(
            merges = merged.len(),
            "stopping: the files this round merged stay until the next round merges them again"
        );
        return Ok(Vec::new());
    }
    delete_replaced(storage, merged, lease).await
}

/// An erasure for the compaction task to run between its rounds ([`super::erase()`]), with
/// where to send what it removed.
pub struct EraseRequest {
    pub tombstone: crate::store::tombstones::Tombstone,
    pub done: tokio::sync::oneshot::Sender<Result<super::Erased>>,
}

/// How long an erasure waits for the lease another process holds (its round's merges and
/// their grace period).
const ERASE_LEASE_WAIT: Duration = Duration::from_secs(600);

/// Takes the lease for an erasure, retrying while another process holds it, for at most
/// [`ERASE_LEASE_WAIT`] or until `serve` stops.
async fn wait_for_lease(lease: &mut Lease, stop: &tokio::sync::watch::Receiver<bool>) -> Result<()> {
    let deadline = tokio::time::Instant::now() + ERASE_LEASE_WAIT;
    loop {
        if lease.hold_until(STEP).await? {
            return Ok(());
        }
        if *stop.borrow() || tokio::time::Instant::now() >= deadline {
            return Err(crate::error::Error::Invalid(
                "another process held the store's maintenance lease throughout; erase again in a few minutes".into(),
            ));
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

/// What `serve`'s upkeep task works on and how often ([`compact_every`]).
pub struct Upkeep {
    pub storage: Storage,
    /// Time between rounds.
    pub every: Duration,
    /// Most events one merge takes.
    pub max_events: u64,
    /// How long replaced files stay (see [`Grace`]).
    pub wait: Duration,
    /// Who holds the lease: the collector's log id.
    pub holder: String,
    /// The erased contacts, swept again once every collector knows them ([`super::settle`]).
    pub tombstones: crate::store::tombstones::Tombstones,
    /// The retention periods every round applies ([`super::retention()`]).
    pub retention: super::Policy,
    /// Where a failed step is counted (`convoscope_errors_total{stage}`).
    pub metrics: std::sync::Arc<crate::metrics::Metrics>,
    /// The last step of a round, which `serve` gives because this layer cannot name it: the
    /// experiment report's kept table (`crate::analytics`), computed from the settled files.
    pub last_step: Option<LastStep>,
}

/// A round's last step ([`Upkeep::last_step`]): its `convoscope_errors_total` stage, and the
/// step, run under the lease.
pub type LastStep = (&'static str, Step);

/// A step of a round that `serve` gives ([`LastStep`]).
pub type Step = std::sync::Arc<dyn Fn() -> futures::future::BoxFuture<'static, Result<()>> + Send + Sync>;

/// Runs [`compact_small_files_of_every_day`], then [`heal_rollups`], an erasure's settling sweep
/// ([`super::settle`]) and retention ([`super::retention()`]), every `every` (first after
/// one interval) until `stop` turns true, keeping replaced files for `wait` (see [`Grace`]); a
/// failed round is logged and the next one tries again (compaction loses nothing when it stops
/// half-way). A round runs only in the process that holds the store's maintenance lease as
/// `holder` (its log id): of many collectors sharing a store, one does the upkeep at a time.
/// Erasures sent on `erasures` run between rounds, under the same lease.
pub async fn compact_every(
    upkeep: Upkeep,
    mut erasures: tokio::sync::mpsc::Receiver<EraseRequest>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let Upkeep { storage, every, max_events, wait, holder, tombstones, retention, metrics, last_step } = upkeep;
    let grace = Grace { wait, stop: Some(stop.clone()) };
    let mut lease = Lease::new(storage.clone(), holder);
    let mut settled = HashMap::new();
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let (stopping, request) = tokio::select! {
            _ = tick.tick() => (false, None),
            _ = stop.wait_for(|s| *s) => (true, None),
            Some(request) = erasures.recv() => (false, Some(request)),
        };
        if let Some(request) = request {
            // Between rounds, under this process's lease: never beside one of its merges.
            let done = match wait_for_lease(&mut lease, &stop).await {
                Ok(()) => super::erase(&storage, &tombstones, request.tombstone, &mut lease).await,
                Err(e) => Err(e),
            };
            if done.is_err() {
                metrics.error("erasure");
            }
            let _ = request.done.send(done);
            continue;
        }
        if stopping {
            // The lease goes to a sibling at once, not when its terms run out.
            lease.release().await;
            return;
        }
        match lease.hold_until(STEP).await {
            Ok(true) => {}
            Ok(false) => {
                tracing::debug!("another process holds the maintenance lease; it runs this round");
                continue;
            }
            Err(e) => {
                tracing::warn!(error = %e, "could not take the maintenance lease; the next round retries");
                continue;
            }
        }
        if let Err(e) = compact_small_files_of_every_day(&storage, max_events, &grace, &mut settled, &mut lease).await {
            metrics.error("compaction");
            tracing::warn!(error = %e, "background compaction failed; the next round retries");
        }
        if *stop.borrow() || !matches!(lease.hold_until(STEP).await, Ok(true)) {
            continue;
        }
        // A store of an older version heals on its own: until every events file has every
        // rollup, reports read the events (right, but slower).
        match heal_rollups(&storage, &mut lease).await {
            Ok(Healed { written: 0, deleted: 0 }) => {}
            Ok(h) => tracing::info!(written = h.written, deleted = h.deleted, "rollups brought up to date"),
            Err(e) => {
                metrics.error("rollup_healing");
                tracing::warn!(error = %e, "could not bring the rollups up to date; the next round retries")
            }
        }
        // An erasure sweeps once more when every collector knows its tombstone.
        if *stop.borrow() || !matches!(lease.hold_until(STEP).await, Ok(true)) {
            continue;
        }
        match super::settle(&storage, &tombstones, &mut lease).await {
            Ok(done) => {
                for (_, e) in done {
                    tracing::info!(files = e.files, rows = e.rows, "an erasure's settling sweep finished");
                }
            }
            Err(e) => {
                metrics.error("erasure");
                tracing::warn!(error = %e, "an erasure's settling sweep failed; the next round retries")
            }
        }
        if *stop.borrow() || !matches!(lease.hold_until(STEP).await, Ok(true)) {
            continue;
        }
        match super::retention(&storage, &retention, chrono::Utc::now().date_naive(), &mut lease).await {
            Ok(r) if r.deleted.is_empty() && r.trimmed.is_empty() => {}
            Ok(r) => tracing::info!(
                deleted = r.deleted.len(),
                trimmed = r.trimmed.len(),
                "removed events past their retention period"
            ),
            Err(e) => {
                metrics.error("retention");
                tracing::warn!(error = %e, "retention failed; the next round retries")
            }
        }
        if let Some((stage, step)) = &last_step {
            let span = match storage.list_event_files().await {
                Ok(files) => STEP.max(step_for(files.iter().map(|(_, m)| m.size).sum())),
                Err(_) => STEP,
            };
            if *stop.borrow() || !matches!(lease.hold_until(span).await, Ok(true)) {
                continue;
            }
            if let Err(e) = step().await {
                metrics.error(stage);
                tracing::warn!(error = %e, stage, "the round's last step failed; the next round retries");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use object_store::ObjectStoreExt;

    use super::*;
    use crate::maintenance::ev;

    #[tokio::test]
    async fn an_unreadable_file_holds_back_its_day_only() {
        let s = Storage::open("memory://").unwrap();
        let d = |dd| NaiveDate::from_ymd_opt(2026, 1, dd).unwrap();
        let at = |date: NaiveDate| date.and_hms_opt(12, 0, 0).unwrap().and_utc().timestamp_micros();
        for (date, name) in [(d(1), "a"), (d(1), "b"), (d(2), "a"), (d(2), "b")] {
            s.write_events(vec![ev(&format!("{date}-{name}"), at(date), 0)], name).await.unwrap();
        }
        s.store.put(&s.event_file(d(1), "torn"), b"PAR1 not a parquet file".to_vec().into()).await.unwrap();
        let mut settled = HashMap::new();
        let mut lease = Lease::new(s.clone(), "test");
        let done =
            compact_small_files_of_every_day(&s, 1000, &Grace::default(), &mut settled, &mut lease).await.unwrap();
        assert_eq!(done.iter().map(|c| (c.date, c.files_before)).collect::<Vec<_>>(), [(d(2), 2)]);
        assert!(settled.is_empty(), "the failed day is tried again next round");
        // Next round: day 2 is one file now, day 1 still fails and is still not settled.
        let again = compact_small_files_of_every_day(&s, 1000, &Grace::default(), &mut settled, &mut lease).await;
        assert!(again.unwrap().is_empty());
        assert!(!settled.contains_key(&d(1)));
    }
}
