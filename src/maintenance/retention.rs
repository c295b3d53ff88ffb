//! `retention`: removes events past their retention period, with their rollups, and records
//! what it removed.
//!
//! Each event's period is its class's and its tenant's ([`Policy`]): consent changes are kept
//! for `consent_retention_days` (regulators ask for proof of consent long after the messages),
//! the events of a tenant with its own `retention_days` for that, every other event for the
//! deployment's `retention_days`; the audit trail (`_audit/`) for `audit_retention_days`. A
//! partition all of whose events are past every period is deleted whole without being read; a
//! partition inside every period is not read either; one in between is read, and each of its
//! files rewritten without the rows past their period (or deleted when none is left), as
//! erasure rewrites ([`super::rewrite`]).

use std::collections::BTreeMap;

use arrow::array::{AsArray, BooleanArray, RecordBatch};
use chrono::NaiveDate;
use object_store::{ObjectMeta, ObjectStoreExt};

use super::lease::{Lease, STEP, step_for};
use super::merge::kept_rows;
use crate::config::Tenant;
use crate::error::{Error, Result};
use crate::event;
use crate::store::Storage;

/// How long each class of event is kept, in days.
#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    /// Events of no tenant, and of tenants without their own period.
    pub keep_days: u32,
    /// Consent changes (`consent.opt_in`, `consent.opt_out`), of every tenant.
    pub consent_days: u32,
    /// The audit trail.
    pub audit_days: u32,
    /// Tenants with a period of their own, for their other events.
    pub tenants: Vec<(Tenant, u32)>,
    /// No period may be shorter (`min_retention_days`).
    pub min_days: u32,
}

impl Policy {
    /// The configured periods: `retention_days` (or `keep_days`), `consent_retention_days`,
    /// `audit_retention_days`, each tenant's `retention_days`.
    pub fn of(config: &crate::config::Config, keep_days: Option<u32>) -> Policy {
        Policy {
            keep_days: keep_days.unwrap_or(config.retention_days),
            consent_days: config.consent_retention_days,
            audit_days: config.audit_retention_days,
            tenants: config.tenants.iter().filter_map(|t| Some((t.clone(), t.retention_days?))).collect(),
            min_days: config.min_retention_days,
        }
    }

    /// The period of one event.
    fn days_of(&self, event_type: &str, account_id: Option<&str>, phone_number_id: Option<&str>) -> u32 {
        if event_type.starts_with("consent.") {
            return self.consent_days;
        }
        self.tenants.iter().find(|(t, _)| t.owns(account_id, phone_number_id)).map_or(self.keep_days, |(_, d)| *d)
    }

    /// The shortest and longest periods of any event.
    fn bounds(&self) -> (u32, u32) {
        let all = || [self.keep_days, self.consent_days].into_iter().chain(self.tenants.iter().map(|(_, d)| *d));
        (all().min().unwrap_or(self.keep_days), all().max().unwrap_or(self.keep_days))
    }

    fn check(&self) -> Result<()> {
        let periods = [
            ("retention_days (--keep-days)", self.keep_days),
            ("consent_retention_days", self.consent_days),
            ("audit_retention_days", self.audit_days),
        ];
        let tenants = self.tenants.iter().map(|(t, d)| (t.name.as_str(), *d));
        for (name, days) in periods.into_iter().chain(tenants) {
            if days < self.min_days {
                return Err(Error::Config(format!(
                    "{name}: {days} days is below the configured minimum of {} (min_retention_days)",
                    self.min_days
                )));
            }
        }
        Ok(())
    }
}

/// What retention deleted: whole files of a partition.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Deleted {
    pub date: NaiveDate,
    pub files: usize,
    pub bytes: u64,
}

/// What retention trimmed: files of a partition rewritten without some of their rows.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Trimmed {
    pub date: NaiveDate,
    pub files: usize,
    pub rows: usize,
}

/// What one run removed.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct Removed {
    pub deleted: Vec<Deleted>,
    pub trimmed: Vec<Trimmed>,
}

/// Removes what `policy` no longer keeps as of `today` (see the module's docs), and records it
/// under `_convoscope/retention/`. Every delete and rewrite is made under `lease` ([`Lease`]),
/// so no collector is merging into a day as it goes.
pub async fn retention(storage: &Storage, policy: &Policy, today: NaiveDate, lease: &mut Lease) -> Result<Removed> {
    policy.check()?;
    let cutoff = |days: u32| today - chrono::Duration::days(i64::from(days));
    let (shortest, longest) = policy.bounds();
    let lost = || {
        Error::Invalid("the maintenance lease passed to another process during retention; run retention again".into())
    };
    for (d, m) in storage.list_audit_files().await? {
        if d < cutoff(policy.audit_days) {
            if !lease.hold_until(STEP).await? {
                return Err(lost());
            }
            storage.store.delete(&m.location).await?;
        }
    }
    let mut by_date: BTreeMap<NaiveDate, Vec<ObjectMeta>> = BTreeMap::new();
    for (d, m) in storage.list_event_files().await? {
        if d < cutoff(shortest) {
            by_date.entry(d).or_default().push(m);
        }
    }
    let mut removed = Removed::default();
    for (date, files) in by_date {
        if date < cutoff(longest) {
            // Past every period: deleted whole, unread.
            if !lease.hold_until(STEP).await? {
                return Err(lost());
            }
            let bytes = files.iter().map(|f| f.size).sum();
            for f in &files {
                storage.store.delete(&f.location).await?;
            }
            removed.deleted.push(Deleted { date, files: files.len(), bytes });
            continue;
        }
        let (mut trimmed, mut rows, mut deleted, mut bytes) = (0, 0, 0, 0);
        for f in &files {
            if !lease.hold_until(STEP.max(step_for(f.size))).await? {
                return Err(lost());
            }
            let data = storage.store.get(&f.location).await?.bytes().await?;
            let mut kept = Vec::new();
            let (mut gone, mut left) = (0, 0);
            for b in kept_rows(&f.location, &data, event::COLUMNS, None)? {
                let keep = keep_mask(policy, &b, date, today)?;
                gone += keep.false_count();
                left += keep.true_count();
                kept.push(super::in_events_schema(&f.location, arrow::compute::filter_record_batch(&b, &keep)?)?);
            }
            if gone == 0 {
                continue;
            }
            let name =
                format!("retain-{:016x}", xxhash_rust::xxh3::xxh3_64(format!("{}|{today}", f.location).as_bytes()));
            super::rewrite::replace(storage, &f.location, date, kept, &name).await?;
            if left == 0 {
                (deleted, bytes) = (deleted + 1, bytes + f.size);
            } else {
                (trimmed, rows) = (trimmed + 1, rows + gone);
            }
        }
        if deleted > 0 {
            removed.deleted.push(Deleted { date, files: deleted, bytes });
        }
        if trimmed > 0 {
            removed.trimmed.push(Trimmed { date, files: trimmed, rows });
        }
    }
    // Every rollup file of a date past every period, not only those of the files just deleted:
    // a rollup left without its events file (a failed delete after compaction) would otherwise
    // bring deleted messages back into the reports that read the rollup.
    for (d, m) in storage.list_rollup_files().await? {
        if d < cutoff(longest) {
            if !lease.hold_until(STEP).await? {
                return Err(lost());
            }
            storage.store.delete(&m.location).await?;
        }
    }
    if !removed.deleted.is_empty() || !removed.trimmed.is_empty() {
        // The experiment report's kept rows were computed from the removed events too.
        storage.delete_experiment_contacts().await?;
        let record = serde_json::json!({"at": chrono::Utc::now().to_rfc3339(), "keep_days": policy.keep_days,
                                        "consent_days": policy.consent_days, "removed": removed});
        let path =
            storage.path(&format!("_convoscope/retention/{}.json", chrono::Utc::now().format("%Y%m%dT%H%M%S%.3fZ")));
        storage.store.put(&path, record.to_string().into()).await?;
    }
    Ok(removed)
}

/// Which rows of a batch of the partition `date` are still inside their period.
fn keep_mask(policy: &Policy, b: &RecordBatch, date: NaiveDate, today: NaiveDate) -> Result<BooleanArray> {
    let col = |n: &str| {
        b.column_by_name(n)
            .and_then(|c| c.as_string_opt::<i32>())
            .ok_or_else(|| Error::Invalid(format!("an events file without {n}")))
    };
    let (kind, account, phone) = (col("event_type")?, col("account_id")?, col("phone_number_id")?);
    let age = (today - date).num_days();
    Ok((0..b.num_rows())
        .map(|i| Some(age <= i64::from(policy.days_of(kind.value(i), event::cell(account, i), event::cell(phone, i)))))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::maintenance::ev;
    use crate::rollup::Kind;

    #[tokio::test]
    async fn retention_deletes_old_partitions_and_refuses_short_periods() {
        let s = Storage::open("memory://").unwrap();
        let d = |y, m, dd| NaiveDate::from_ymd_opt(y, m, dd).unwrap();
        let at = |date: NaiveDate| date.and_hms_opt(12, 0, 0).unwrap().and_utc().timestamp_micros();
        for (i, date) in [d(2026, 1, 1), d(2026, 1, 20), d(2026, 2, 1)].into_iter().enumerate() {
            s.write_events(vec![ev(&format!("e{i}"), at(date), 0)], "x").await.unwrap();
        }
        // A rollup whose events file is already gone.
        let orphan = s.rollup_file(Kind::Conversations, d(2026, 1, 2), "orphan");
        s.store.put(&orphan, bytes::Bytes::from_static(b"x").into()).await.unwrap();
        let policy =
            |keep_days| Policy { keep_days, consent_days: keep_days, audit_days: 60, tenants: vec![], min_days: 7 };
        assert!(
            retention(&s, &policy(3), d(2026, 2, 2), &mut Lease::new(s.clone(), "test"))
                .await
                .unwrap_err()
                .to_string()
                .contains("minimum")
        );
        // Audit records of the oldest day outlive its events (a longer period of their own).
        let audit = |date: NaiveDate| crate::audit::Record {
            at: at(date),
            token_id: "t".into(),
            role: "read".into(),
            tenant: "*".into(),
            action: "GET /v1/reports/{name}".into(),
            outcome: "ok".into(),
            ..Default::default()
        };
        s.put_audit(&[audit(d(2025, 1, 1)), audit(d(2026, 1, 1))]).await.unwrap();
        let gone = retention(&s, &policy(14), d(2026, 2, 2), &mut Lease::new(s.clone(), "test")).await.unwrap().deleted;
        let audit_days: Vec<NaiveDate> = s.list_audit_files().await.unwrap().into_iter().map(|f| f.0).collect();
        assert_eq!(audit_days, [d(2026, 1, 1)], "the audit trail keeps its own period");
        assert_eq!(gone.iter().map(|g| g.date).collect::<Vec<_>>(), [d(2026, 1, 1)]);
        let left: Vec<NaiveDate> = s.list_event_files().await.unwrap().into_iter().map(|f| f.0).collect();
        assert_eq!(left, [d(2026, 1, 20), d(2026, 2, 1)]);
        let rollups: Vec<NaiveDate> = s.list_rollup_files().await.unwrap().into_iter().map(|f| f.0).collect();
        let kept = [d(2026, 1, 20), d(2026, 2, 1)];
        assert_eq!(rollups, kept.repeat(Kind::ALL.len()), "the old file's rollups and the orphan are gone, per kind");
    }

    #[tokio::test]
    async fn each_tenant_and_consent_keep_their_own_periods() {
        let s = Storage::open("memory://").unwrap();
        let today = NaiveDate::from_ymd_opt(2026, 6, 1).unwrap();
        let day = |ago: i64| {
            (today - chrono::Duration::days(ago)).and_hms_opt(12, 0, 0).unwrap().and_utc().timestamp_micros()
        };
        let of = |id: &str, kind: &str, ago: i64, phone: Option<&str>| {
            let mut e = event::Event::new(id.into(), kind, day(ago), 0, "api");
            e.phone_number_id = phone.map(str::to_string);
            e
        };
        // 40 days old: Acme's sends past its 30 days, the rest inside the deployment's 400.
        s.write_events(
            vec![
                of("a1", "message.sent", 40, Some("acme-1")),
                of("g1", "message.sent", 40, Some("globex-1")),
                of("c1", "consent.opt_in", 40, Some("acme-1")),
            ],
            "mixed",
        )
        .await
        .unwrap();
        s.write_events(vec![of("a2", "message.sent", 40, Some("acme-1"))], "acme").await.unwrap();
        // 500 days old: only the consent change is still inside its period.
        s.write_events(vec![of("o1", "message.sent", 500, None), of("o2", "consent.opt_out", 500, None)], "old")
            .await
            .unwrap();
        // 2000 days old: past every period, deleted unread.
        s.write_events(vec![of("x", "consent.opt_out", 2000, None)], "ancient").await.unwrap();
        let acme = Tenant { name: "acme".into(), phone_number_ids: vec!["acme-1".into()], ..Default::default() };
        let policy =
            Policy { keep_days: 400, consent_days: 1826, audit_days: 400, tenants: vec![(acme, 30)], min_days: 7 };
        let removed = retention(&s, &policy, today, &mut Lease::new(s.clone(), "test")).await.unwrap();
        let ids = crate::maintenance::stored_ids(&s).await;
        assert_eq!(ids, ["c1", "g1", "o2"]);
        assert_eq!(
            removed.trimmed.iter().map(|t| (t.files, t.rows)).collect::<Vec<_>>(),
            [(1, 1), (1, 1)],
            "{removed:?}"
        );
        assert_eq!(
            removed.deleted.iter().map(|d| d.files).sum::<usize>(),
            2,
            "Acme's file and the ancient one: {removed:?}"
        );
        let again = retention(&s, &policy, today, &mut Lease::new(s.clone(), "test")).await.unwrap();
        assert_eq!(again, Removed::default(), "a second run finds nothing past its period");
        let short = Policy { tenants: vec![(Tenant::default(), 3)], ..policy };
        assert!(retention(&s, &short, today, &mut Lease::new(s.clone(), "test")).await.is_err());
    }
}
