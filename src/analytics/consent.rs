//! Consent anyone can verify: one contact's history of opt-ins and opt-outs with their sources
//! (`queries/consent/history.sql`), and every contact's current consent per category for an
//! auditor (`queries/consent/current.sql`), both over every change classified once
//! (`queries/consent/changes.sql`). Both read through the analytics' session, so a tenant's
//! reads see its own rows only.

use datafusion::scalar::ScalarValue;
use serde::Serialize;

use super::{Analytics, format};
use crate::error::Result;

/// One change of a contact's consent.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Change {
    /// When it occurred, RFC 3339.
    pub at: String,
    /// `opt_in`, `opt_out` or `erased`.
    pub change: String,
    /// Where it came from: `first_party` (the brand's event), `stop_reply`,
    /// `meta_user_preferences`, `error_131050`, `erasure`.
    pub source: String,
    /// The category it applies to; none: every category.
    pub category: Option<String>,
}

/// `query` (a statement over `changes`) with `changes` defined as changes.sql.
fn over_changes(query: &str) -> String {
    format!("WITH changes AS ({}) {query}", include_str!("../../queries/consent/changes.sql"))
}

/// The stored consent changes of the contact `contact_key`, oldest first.
pub async fn history(analytics: &Analytics, contact_key: &str) -> Result<Vec<Change>> {
    let sql = over_changes(include_str!("../../queries/consent/history.sql"));
    let (_, batches) =
        analytics.read_with(&sql, vec![("contact", ScalarValue::Utf8(Some(contact_key.to_string())))]).await?;
    Ok(format::rows(&batches)?
        .into_iter()
        .map(|r| Change {
            at: crate::event::micros_to_datetime(r[0].as_i64().unwrap_or(0))
                .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            change: r[1].as_str().unwrap_or("").to_string(),
            source: r[2].as_str().unwrap_or("").to_string(),
            category: r[3].as_str().map(str::to_string),
        })
        .collect())
}

/// Every contact's current consent per category, as CSV: `contact_key,category,state,since,source`.
pub async fn current_csv(analytics: &Analytics) -> Result<String> {
    let (schema, batches) = analytics.read(&over_changes(include_str!("../../queries/consent/current.sql"))).await?;
    Ok(format::csv(&format::columns(&schema), &format::rows(&batches)?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Event;
    use crate::store::Storage;

    #[tokio::test]
    async fn history_names_each_source_and_current_takes_the_latest() {
        let s = Storage::open("memory://").unwrap();
        let day = 1_767_225_600_000_000i64;
        let ev = |id: &str, kind: &str, at: i64, source: &str| {
            let mut e = Event::new(id.into(), kind, day + at, 0, source);
            e.contact_key = Some("ck".into());
            e
        };
        let mut failed = ev("meta:wamid.F:failed:131050:opt_out", "consent.opt_out", 3, "meta");
        failed.category = Some("marketing".into());
        let mut pref = ev("meta:pref:ck:stop:1", "consent.opt_out", 2, "meta");
        pref.category = Some("marketing".into());
        s.write_events(
            vec![
                ev("a", "consent.opt_in", 1, "api"),
                pref,
                failed,
                ev("r", "consent.opt_out", 4, "meta"),
                ev("b", "consent.opt_in", 5, "api"),
            ],
            "x",
        )
        .await
        .unwrap();
        let a = Analytics::new(s, 7).unwrap();
        let h = history(&a, "ck").await.unwrap();
        let seen: Vec<(&str, &str)> = h.iter().map(|c| (c.change.as_str(), c.source.as_str())).collect();
        assert_eq!(
            seen,
            [
                ("opt_in", "first_party"),
                ("opt_out", "meta_user_preferences"),
                ("opt_out", "error_131050"),
                ("opt_out", "stop_reply"),
                ("opt_in", "first_party")
            ]
        );
        assert!(history(&a, "nobody").await.unwrap().is_empty());
        let csv = current_csv(&a).await.unwrap();
        let lines: Vec<&str> = csv.lines().collect();
        assert_eq!(lines[0], "contact_key,category,state,since,source");
        assert_eq!(lines.len(), 3, "one row per category: all, marketing: {csv}");
        assert!(lines[1].starts_with("ck,all,opted_in,") && lines[1].ends_with(",first_party"), "{csv}");
        assert!(lines[2].starts_with("ck,marketing,opted_out,"), "{csv}");
    }
}
