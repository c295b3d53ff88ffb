//! `retention`: deletes whole partitions past the retention period, with their rollups, and
//! records what it deleted.

use std::collections::BTreeMap;

use chrono::NaiveDate;
use object_store::{ObjectMeta, ObjectStoreExt};

use super::lease::{Lease, STEP};
use crate::error::{Error, Result};
use crate::store::Storage;

/// What retention deleted.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Deleted {
    pub date: NaiveDate,
    pub files: usize,
    pub bytes: u64,
}

/// Deletes whole partitions dated before `today - keep_days`, and audit partitions
/// (`_audit/`) dated before `today - audit_keep_days`, and records what it deleted under
/// `_convoscope/retention/`. Each partition is deleted under `lease` ([`Lease`]), so no
/// collector is merging into a day as it goes.
pub async fn retention(
    storage: &Storage,
    keep_days: u32,
    audit_keep_days: u32,
    min_days: u32,
    today: NaiveDate,
    lease: &mut Lease,
) -> Result<Vec<Deleted>> {
    if keep_days < min_days {
        return Err(Error::Config(format!(
            "--keep-days {keep_days} is below the configured minimum of {min_days} (min_retention_days)"
        )));
    }
    if audit_keep_days < min_days {
        return Err(Error::Config(format!(
            "audit_retention_days {audit_keep_days} is below the configured minimum of {min_days} (min_retention_days)"
        )));
    }
    let audit_cutoff = today - chrono::Duration::days(audit_keep_days as i64);
    for (d, m) in storage.list_audit_files().await? {
        if d < audit_cutoff {
            if !lease.hold_until(STEP).await? {
                return Err(Error::Invalid(
                    "the maintenance lease passed to another process before the audit trail was trimmed; run retention again"
                        .into(),
                ));
            }
            storage.store.delete(&m.location).await?;
        }
    }
    let cutoff = today - chrono::Duration::days(keep_days as i64);
    let mut by_date: BTreeMap<NaiveDate, Vec<ObjectMeta>> = BTreeMap::new();
    for (d, m) in storage.list_event_files().await? {
        if d < cutoff {
            by_date.entry(d).or_default().push(m);
        }
    }
    let mut deleted = Vec::new();
    for (date, files) in by_date {
        if !lease.hold_until(STEP).await? {
            return Err(Error::Invalid(format!(
                "the maintenance lease passed to another process before {date} was deleted; run retention again"
            )));
        }
        let bytes = files.iter().map(|f| f.size).sum();
        for f in &files {
            storage.store.delete(&f.location).await?;
        }
        deleted.push(Deleted { date, files: files.len(), bytes });
    }
    // Every rollup file of those dates, not only those of the files just deleted: a rollup
    // left without its events file (a failed delete after compaction) would otherwise bring
    // deleted messages back into the reports that read the rollup.
    for (d, m) in storage.list_rollup_files().await? {
        if d < cutoff {
            if !lease.hold_until(STEP).await? {
                return Err(Error::Invalid(
                    "the maintenance lease passed to another process before every rollup was deleted; run retention again"
                        .into(),
                ));
            }
            storage.store.delete(&m.location).await?;
        }
    }
    if !deleted.is_empty() {
        let record = serde_json::json!({"at": chrono::Utc::now().to_rfc3339(), "keep_days": keep_days,
                                        "cutoff": cutoff.to_string(), "deleted": deleted});
        let path =
            storage.path(&format!("_convoscope/retention/{}.json", chrono::Utc::now().format("%Y%m%dT%H%M%S%.3fZ")));
        storage.store.put(&path, record.to_string().into()).await?;
    }
    Ok(deleted)
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
        assert!(
            retention(&s, 3, 400, 7, d(2026, 2, 2), &mut Lease::new(s.clone(), "test"))
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
        let gone = retention(&s, 14, 60, 7, d(2026, 2, 2), &mut Lease::new(s.clone(), "test")).await.unwrap();
        let audit_days: Vec<NaiveDate> = s.list_audit_files().await.unwrap().into_iter().map(|f| f.0).collect();
        assert_eq!(audit_days, [d(2026, 1, 1)], "the audit trail keeps its own period");
        assert_eq!(gone.iter().map(|g| g.date).collect::<Vec<_>>(), [d(2026, 1, 1)]);
        let left: Vec<NaiveDate> = s.list_event_files().await.unwrap().into_iter().map(|f| f.0).collect();
        assert_eq!(left, [d(2026, 1, 20), d(2026, 2, 1)]);
        let rollups: Vec<NaiveDate> = s.list_rollup_files().await.unwrap().into_iter().map(|f| f.0).collect();
        let kept = [d(2026, 1, 20), d(2026, 2, 1)];
        assert_eq!(rollups, kept.repeat(Kind::ALL.len()), "the old file's rollups and the orphan are gone, per kind");
    }
}
