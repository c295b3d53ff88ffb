//! `retention`: weekly cohorts of contacts by first send, and the share that replied or
//! converted in each week after (queries/retention.sql).
//!
//! The SQL gives each cohort's size and the weeks it was active in; the weeks between, where no
//! contact of the cohort was active, are filled in here with 0, up to the last week with
//! activity of any cohort that had begun by the store's last reply or conversion. (Generating
//! the weeks in SQL takes `unnest(range(..))`, which a Ballista executor refuses.)

use std::collections::BTreeMap;

use chrono::{NaiveDate, Utc};
use serde_json::{Value, json};

use super::{Chart, Param, Params, Spec};
use crate::error::{Error, Result};
use crate::experiments::Experiments;

pub(super) const SPEC: Spec = Spec {
    name: "retention",
    title: "Retention",
    about: "Contacts by the week of their first send in the range, and the share of each week's \
            contacts that replied or converted in each week after (week 0: the same week).",
    sql: include_str!("../../../queries/retention.sql"),
    params: &[Param::From, Param::To, Param::Campaign],
    chart: Chart::LinesPer {
        title: "Share of each weekly cohort replying or converting, by week after the first send",
        x: "week",
        series: "cohort_week",
        value: "share",
    },
    finish: Some(finish),
    by: &[],
    adaptive: true,
    statement: None,
};

/// The report's columns.
const COLUMNS: [&str; 6] = ["cohort_week", "week", "contacts", "active", "share", "complete"];

/// Per cohort week: its contacts and the active contacts of each week it was active in.
type Cohorts = BTreeMap<NaiveDate, (i64, BTreeMap<i64, i64>)>;

fn finish(
    columns: &[String],
    rows: Vec<Vec<Value>>,
    _: &Params,
    _: &Experiments,
) -> Result<(Vec<String>, Vec<Vec<Value>>)> {
    let at = |name: &str| super::column(columns, "retention", name);
    let (c, w, n, a, l) = (at("cohort_week")?, at("week")?, at("contacts")?, at("active")?, at("last_activity")?);
    let date = |v: &Value| {
        v.as_str()
            .and_then(|s| NaiveDate::parse_from_str(s, "%Y-%m-%d").ok())
            .ok_or_else(|| Error::Invalid(format!("retention: {v} is not a date")))
    };
    let mut cohorts = Cohorts::new();
    let mut last = None;
    for row in &rows {
        let entry = cohorts.entry(date(&row[c])?).or_insert((row[n].as_i64().unwrap_or(0), BTreeMap::new()));
        if let Some(week) = row[w].as_i64() {
            entry.1.insert(week, row[a].as_i64().unwrap_or(0));
        }
        last = last.or(date(&row[l]).ok());
    }
    Ok((COLUMNS.map(str::to_string).to_vec(), fill(&cohorts, last, Utc::now().date_naive())))
}

/// Every week 0..=the last active week of any cohort, for each cohort, that had begun by
/// `last` (the day of the last activity); `complete` once the week has ended by `today`.
fn fill(cohorts: &Cohorts, last: Option<NaiveDate>, today: NaiveDate) -> Vec<Vec<Value>> {
    let (Some(last), Some(max_week)) = (last, cohorts.values().flat_map(|(_, weeks)| weeks.keys()).max()) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for (cohort, (contacts, weeks)) in cohorts {
        for week in 0..=*max_week {
            let start = *cohort + chrono::Duration::weeks(week);
            if start > last {
                break;
            }
            let active = weeks.get(&week).copied().unwrap_or(0);
            let share = if *contacts > 0 { json!(active as f64 / *contacts as f64) } else { Value::Null };
            let complete = start + chrono::Duration::weeks(1) <= today;
            out.push(vec![
                json!(cohort.to_string()),
                json!(week),
                json!(contacts),
                json!(active),
                share,
                json!(complete),
            ]);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
    }

    #[test]
    fn weeks_without_activity_are_rows_until_the_last_activity() {
        let mut cohorts = Cohorts::new();
        cohorts.insert(day("2026-01-05"), (4, BTreeMap::from([(0, 2), (2, 1)])));
        cohorts.insert(day("2026-01-12"), (2, BTreeMap::new()));
        let rows = fill(&cohorts, Some(day("2026-01-20")), day("2026-01-20"));
        let got: Vec<(String, i64, i64, bool)> = rows
            .iter()
            .map(|r| {
                (
                    r[0].as_str().unwrap().to_string(),
                    r[1].as_i64().unwrap(),
                    r[3].as_i64().unwrap(),
                    r[5].as_bool().unwrap(),
                )
            })
            .collect();
        // The 12 Jan cohort's week 2 begins on the 26th, after the last activity.
        assert_eq!(
            got,
            vec![
                ("2026-01-05".into(), 0, 2, true),
                ("2026-01-05".into(), 1, 0, true),
                ("2026-01-05".into(), 2, 1, false),
                ("2026-01-12".into(), 0, 0, true),
                ("2026-01-12".into(), 1, 0, false),
            ]
        );
        assert_eq!(rows[0][4], json!(0.5));
        assert!(fill(&Cohorts::new(), None, day("2026-01-20")).is_empty());
    }
}
