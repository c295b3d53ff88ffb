//! The maintenance lease: which of the processes sharing a store may merge, heal and delete.
//!
//! Many collectors (`serve`) write to one store, and each runs the compaction round; an
//! operator may run `convoscope compact` or `retention` besides. Two of them merging the same
//! files would write the same rows twice, and one deleting what another is reading into a
//! merge (or retention deleting a day another is merging into) would waste or undo work. So
//! upkeep is done only under the lease, and the lease is an object in the store itself, with
//! no coordinator to run:
//!
//! ```text
//! _convoscope/lease/maintenance/<term>     {"holder": "<log id>", "acquired_at": "..."}
//! ```
//!
//! Time is cut into terms of [`TERM`] (term `n` is `[n·T, (n+1)·T)` by the clock). The object
//! of a term is created with `PutMode::Create`, which exactly one creator wins on every store
//! convoscope supports (S3's `If-None-Match`, GCS's and Azure's preconditions, a local
//! directory's hard link; an S3-compatible server must honour `If-None-Match`, which some test
//! servers check and write in two steps): whoever creates term `n` holds the lease for it. A holder whose work
//! runs past its term creates the next terms before they begin ([`Lease::hold_until`]), which
//! no one else tries until they have begun; anyone else takes the lease at the first round of a
//! term nobody extended into. A holder that dies is replaced at most a term after its last
//! extension ends; a process restarted on the same log is the same holder and carries on.
//!
//! Before every merge, every file a merge writes and every delete, the holder makes sure its
//! terms cover the step ([`Lease::hold_until`], extending them if it must), with
//! [`CLOCK_SKEW`] to spare, so its work ends before its terms do. Clocks are assumed to agree
//! within that margin (NTP keeps them within milliseconds). A step that overruns what it was
//! given (a merge far slower than [`step_for`] allows) is still correct: the merged file is
//! written only under the lease, the files it replaces are deleted only under it, and a report
//! counts an event once while both exist.

use std::time::Duration;

use object_store::path::Path as ObjPath;
use object_store::{ObjectStoreExt, PutMode, PutOptions};

use crate::error::{Error, Result};
use crate::store::Storage;

/// How far the clocks of two processes sharing a store may disagree: a holder stops this long
/// before its last term ends.
pub const CLOCK_SKEW: Duration = Duration::from_secs(5);

/// The length of a term. Every process sharing a store must cut time alike, so it is one
/// constant, not a setting: upkeep waits at most a minute after its holder dies beyond what
/// the holder had extended into (up to its grace period when it died waiting one out), and an
/// hourly round holds the lease for its merges and their grace period, not the hour.
pub const TERM: Duration = Duration::from_secs(60);

/// How long a step without much data (a delete, a small rollup) is taken to last, which the
/// lease must cover before it starts.
pub const STEP: Duration = Duration::from_secs(30);

/// The slowest a merge is taken to read its input: a fifth of what `compact` measured (10
/// million events, 0.37 GiB, in 23-26 s on two cores), so a merge is given five times its
/// expected time.
const MERGE_BYTES_PER_SEC: u64 = 3 << 20;

/// How long the lease must cover a merge of `bytes` of input: [`STEP`], plus its time at
/// [`MERGE_BYTES_PER_SEC`].
pub fn step_for(bytes: u64) -> Duration {
    STEP + Duration::from_secs(bytes / MERGE_BYTES_PER_SEC)
}

/// Where the terms' objects live.
const DIR: &str = "_convoscope/lease/maintenance";

/// The lease as one process sees it: who it is, and up to which term it holds.
#[derive(Debug)]
pub struct Lease {
    storage: Storage,
    holder: String,
    term: Duration,
    /// The last term this process is known to hold, with every term from the one it took.
    held: Option<(u64, u64)>,
}

impl Lease {
    /// The lease of `storage` for `holder` (a log id, or the name of a command run).
    pub fn new(storage: Storage, holder: impl Into<String>) -> Lease {
        Lease::with_term(storage, holder, TERM)
    }

    /// The lease in terms of `term` (tests; every process of a store must use one term).
    fn with_term(storage: Storage, holder: impl Into<String>, term: Duration) -> Lease {
        Lease { storage, holder: holder.into(), term: term.max(CLOCK_SKEW * 2), held: None }
    }

    /// Waits until this process holds the lease for `span` (polling every few seconds) or
    /// `wait` has passed: for a command run beside collectors, whose rounds hold it for a
    /// minute or two at a time.
    pub async fn wait_for(&mut self, span: Duration, wait: Duration) -> Result<()> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            if self.hold_until(span).await? {
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                let holder = self.current_holder().await?.unwrap_or_else(|| "another process".into());
                return Err(Error::Invalid(format!(
                    "{holder} holds the store's maintenance lease (waited {}s); run this again in a minute",
                    wait.as_secs()
                )));
            }
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
    }

    fn term_of(&self, at: Duration) -> u64 {
        (at.as_millis() / self.term.as_millis().max(1)) as u64
    }

    fn path(&self, term: u64) -> ObjPath {
        self.storage.path(&format!("{DIR}/{term:020}"))
    }

    /// Whether the terms held cover `now .. now + span` with [`CLOCK_SKEW`] to spare, by the
    /// local clock alone (the tests' look at what [`Lease::hold_until`] left).
    #[cfg(test)]
    fn covers(&self, span: Duration) -> bool {
        let now = since_epoch();
        match self.held {
            Some((first, last)) => {
                let end = self.term * u32::try_from(last + 1).unwrap_or(u32::MAX);
                self.term_of(now) >= first && now + span + CLOCK_SKEW <= end
            }
            None => false,
        }
    }

    /// Makes sure this process holds the lease from now until `now + span`, taking the current
    /// term and creating the following ones as needed. `false`: another holds a term of it,
    /// and this process must do no upkeep meanwhile.
    pub async fn hold_until(&mut self, span: Duration) -> Result<bool> {
        let now = since_epoch();
        let current = self.term_of(now);
        let needed = self.term_of(now + span + CLOCK_SKEW);
        if let Some((first, last)) = self.held
            && (current < first || current > last)
        {
            self.held = None;
        }
        let mut from = match self.held {
            Some((_, last)) => last + 1,
            None => current,
        };
        while from <= needed {
            if !self.take(from).await? {
                // Keep what was held before: a later term someone else took does not undo it.
                return Ok(false);
            }
            let first = self.held.map_or(from, |(first, _)| first);
            self.held = Some((first, from));
            from += 1;
        }
        Ok(self.held.is_some_and(|(first, last)| first <= current && needed <= last))
    }

    /// Takes term `n`: creates its object, or finds it is this holder's already.
    async fn take(&self, n: u64) -> Result<bool> {
        let record = serde_json::json!({"holder": self.holder, "acquired_at": chrono::Utc::now().to_rfc3339()});
        let create = PutOptions { mode: PutMode::Create, ..Default::default() };
        match self.storage.store.put_opts(&self.path(n), record.to_string().into(), create).await {
            Ok(_) => {
                tracing::debug!(term = n, holder = %self.holder, "took the maintenance lease");
                if n == self.term_of(since_epoch()) {
                    self.forget_old_terms(n).await;
                }
                Ok(true)
            }
            Err(object_store::Error::AlreadyExists { .. } | object_store::Error::Precondition { .. }) => {
                Ok(self.holder_of(n).await?.as_deref() == Some(self.holder.as_str()))
            }
            Err(object_store::Error::NotImplemented { .. }) => Err(Error::Config(format!(
                "the store {} cannot create an object only if it is absent (a conditional put), \
                 which the maintenance lease needs",
                self.storage.url
            ))),
            Err(e) => Err(e.into()),
        }
    }

    /// Gives the lease up: deletes the terms this process holds, so another can take it at
    /// once instead of when they run out (a collector that stops, a command that is done). A
    /// failure only leaves the terms to run out.
    pub async fn release(&mut self) {
        let Some((first, last)) = self.held.take() else { return };
        // Latest first: a process that takes the current term once it is gone finds the later
        // ones gone too, rather than holding a term it cannot extend.
        for n in (first..=last).rev() {
            if let Err(e) = self.storage.store.delete(&self.path(n)).await {
                tracing::debug!(term = n, error = %e, "could not give up a lease term; it runs out instead");
            }
        }
    }

    /// Who holds term `n`, if anyone.
    pub async fn holder_of(&self, n: u64) -> Result<Option<String>> {
        let got = match self.storage.store.get(&self.path(n)).await {
            Ok(got) => got.bytes().await?,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        let record: serde_json::Value = serde_json::from_slice(&got)
            .map_err(|e| Error::Invalid(format!("maintenance lease term {n} is not JSON: {e}")))?;
        Ok(record.get("holder").and_then(|h| h.as_str()).map(str::to_string))
    }

    /// Who holds the lease now, if anyone.
    pub async fn current_holder(&self) -> Result<Option<String>> {
        self.holder_of(self.term_of(since_epoch())).await
    }

    /// Deletes the objects of terms over before `current - 1` (anyone's): one list per term
    /// taken. A failure only leaves small objects behind.
    async fn forget_old_terms(&self, current: u64) {
        use futures::TryStreamExt;
        let listed: std::result::Result<Vec<_>, _> =
            self.storage.store.list(Some(&self.storage.path(DIR))).try_collect().await;
        let Ok(listed) = listed else { return };
        for meta in listed {
            let old = meta.location.filename().and_then(|f| f.parse::<u64>().ok()).is_some_and(|t| t + 1 < current);
            if old && let Err(e) = self.storage.store.delete(&meta.location).await {
                tracing::debug!(error = %e, "could not delete an old lease term");
            }
        }
    }
}

/// Time since the Unix epoch by the local clock.
fn since_epoch() -> Duration {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn one_holder_per_term_and_a_holder_extends_its_own() {
        let s = Storage::open("memory://").unwrap();
        let mut a = Lease::with_term(s.clone(), "log-a", Duration::from_secs(60));
        let mut b = Lease::with_term(s.clone(), "log-b", Duration::from_secs(60));
        assert!(a.hold_until(Duration::ZERO).await.unwrap());
        assert!(!b.hold_until(Duration::ZERO).await.unwrap(), "b must not share a's term");
        assert!(!b.covers(Duration::ZERO));
        // a extends into the next terms before they begin; b cannot take them.
        assert!(a.hold_until(Duration::from_secs(150)).await.unwrap());
        assert!(a.covers(Duration::from_secs(150)));
        assert!(!b.hold_until(Duration::from_secs(150)).await.unwrap());
        assert_eq!(b.current_holder().await.unwrap().as_deref(), Some("log-a"));
        // A process restarted on the same log is the same holder.
        let mut a2 = Lease::with_term(s.clone(), "log-a", Duration::from_secs(60));
        assert!(a2.hold_until(Duration::from_secs(10)).await.unwrap());
    }

    #[tokio::test]
    async fn a_lapsed_lease_is_taken_by_the_next_process() {
        let s = Storage::open("memory://").unwrap();
        let term = Duration::from_secs(10);
        let mut a = Lease::with_term(s.clone(), "log-a", term);
        let now = a.term_of(since_epoch());
        // a held a term long over (it died then); b takes the current one.
        a.take(now - 5).await.unwrap();
        let mut b = Lease::with_term(s.clone(), "log-b", term);
        assert!(b.hold_until(Duration::ZERO).await.unwrap());
        assert!(!a.hold_until(Duration::ZERO).await.unwrap());
        // b's taking the current term deleted the old one.
        assert_eq!(b.holder_of(now - 5).await.unwrap(), None);
    }

    #[tokio::test]
    async fn a_released_lease_is_free_at_once() {
        let s = Storage::open("memory://").unwrap();
        let mut a = Lease::with_term(s.clone(), "log-a", Duration::from_secs(10));
        let mut b = Lease::with_term(s.clone(), "log-b", Duration::from_secs(10));
        assert!(a.hold_until(Duration::from_secs(25)).await.unwrap());
        assert!(!b.hold_until(Duration::ZERO).await.unwrap());
        a.release().await;
        assert!(!a.covers(Duration::ZERO));
        assert!(b.hold_until(Duration::from_secs(25)).await.unwrap(), "a released lease is free");
    }

    #[tokio::test]
    async fn racing_processes_get_one_holder() {
        let s = Storage::open("memory://").unwrap();
        let tasks: Vec<_> = (0..8)
            .map(|i| {
                let s = s.clone();
                tokio::spawn(async move {
                    // An hour's terms: the race cannot straddle two.
                    let mut l = Lease::with_term(s, format!("log-{i}"), Duration::from_secs(3600));
                    l.hold_until(Duration::ZERO).await.unwrap()
                })
            })
            .collect();
        let mut winners = 0;
        for t in tasks {
            winners += usize::from(t.await.unwrap());
        }
        assert_eq!(winners, 1);
    }
}
