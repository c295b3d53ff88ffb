//! `trends`: the cohort per day or week of its send, with its rates, and with `--compare
//! previous` each row beside the one a period earlier (queries/trends.sql).
//!
//! The SQL gives the rows of both periods, the earlier marked `previous`; pairing them here
//! keeps the SQL one cohort: the row of a day (or week) takes the columns of the day one period
//! before, where the period is as long as the range asked for (rounded to whole weeks for
//! weeks, so a Monday meets a Monday).

use chrono::NaiveDate;
use serde_json::Value;

use super::{Chart, Param, Params, Spec};
use crate::error::{Error, Result};
use crate::experiments::Experiments;

pub(super) const SPEC: Spec = Spec {
    name: "trends",
    title: "Trends",
    about: "Messages sent per day (or week) of the range: delivery, read, reply, failure and \
            conversion rates and cost, and with compare, the same beside the period before.",
    sql: include_str!("../../../queries/trends.sql"),
    params: &[Param::From, Param::To, Param::Campaign, Param::WindowSecs, Param::Interval, Param::PeriodFrom],
    chart: Chart::RateLines {
        title: "Rates by day of the send",
        x: "period",
        denominator: "sent",
        rates: &[
            ("delivery rate", "delivered"),
            ("read rate", "read"),
            ("reply rate", "replied"),
            ("failure rate", "failed"),
        ],
    },
    finish: Some(finish),
    by: &[],
    adaptive: true,
    statement: None,
};

/// The columns set beside the period before: `previous_<column>` and `<column>_change`, the
/// relative change from it.
const COMPARED: [&str; 7] =
    ["sent", "delivery_rate", "read_rate", "reply_rate", "failure_rate", "conversion_rate", "cost"];

/// Drops the SQL's `previous` column; when comparing, sets each row of the period asked for
/// beside the row one period earlier (`previous_period` and the [`COMPARED`] columns).
fn finish(
    columns: &[String],
    rows: Vec<Vec<Value>>,
    params: &Params,
    _: &Experiments,
) -> Result<(Vec<String>, Vec<Vec<Value>>)> {
    let at = |name: &str| super::column(columns, "trends", name);
    let (previous_at, period_at) = (at("previous")?, at("period")?);
    let keep: Vec<usize> = (0..columns.len()).filter(|&i| i != previous_at).collect();
    let mut names: Vec<String> = keep.iter().map(|&i| columns[i].clone()).collect();
    let (earlier, current): (Vec<_>, Vec<_>) = rows.into_iter().partition(|r| r[previous_at] == Value::Bool(true));
    let project = |r: &Vec<Value>| keep.iter().map(|&i| r[i].clone()).collect::<Vec<_>>();
    let Some((from, to)) = params.from.zip(params.to).filter(|_| params.compare) else {
        return Ok((names, current.iter().map(project).collect()));
    };
    let days = (to - from).num_days() + 1;
    let shift = match params.interval {
        super::params::Interval::Day => days,
        super::params::Interval::Week => ((days + 3) / 7).max(1) * 7,
    };
    let compared: Vec<usize> = COMPARED.iter().map(|c| at(c)).collect::<Result<_>>()?;
    let before: std::collections::HashMap<String, &Vec<Value>> =
        earlier.iter().map(|r| (text(&r[period_at]), r)).collect();
    names.push("previous_period".into());
    names.extend(COMPARED.iter().map(|c| format!("previous_{c}")));
    names.extend(COMPARED.iter().map(|c| format!("{c}_change")));
    let rows = current
        .iter()
        .map(|r| {
            let period = NaiveDate::parse_from_str(&text(&r[period_at]), "%Y-%m-%d")
                .map_err(|e| Error::Invalid(format!("trends period {}: {e}", r[period_at])))?;
            let then = (period - chrono::Duration::days(shift)).to_string();
            let old = before.get(&then);
            let mut row = project(r);
            row.push(Value::String(then));
            row.extend(compared.iter().map(|&i| old.map_or(Value::Null, |o| o[i].clone())));
            row.extend(compared.iter().map(|&i| change(&r[i], old.map(|o| &o[i]))));
            Ok(row)
        })
        .collect::<Result<_>>()?;
    Ok((names, rows))
}

fn text(v: &Value) -> String {
    v.as_str().map_or_else(|| v.to_string(), str::to_string)
}

/// `(now - then) / then`; null where either is missing or `then` is 0.
fn change(now: &Value, then: Option<&Value>) -> Value {
    match (now.as_f64(), then.and_then(Value::as_f64)) {
        (Some(n), Some(t)) if t != 0.0 => serde_json::Number::from_f64((n - t) / t).map_or(Value::Null, Value::Number),
        _ => Value::Null,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn cols() -> Vec<String> {
        let mut c = vec!["previous".to_string(), "period".to_string()];
        c.extend(COMPARED.iter().map(|s| s.to_string()));
        c
    }

    fn row(previous: bool, period: &str, sent: i64, rate: f64) -> Vec<Value> {
        let mut r = vec![json!(previous), json!(period), json!(sent)];
        r.extend((0..5).map(|_| json!(rate)));
        r.push(json!(2.5));
        r
    }

    #[test]
    fn without_compare_the_previous_column_goes() {
        let p = Params::default();
        let (names, rows) =
            finish(&cols(), vec![row(false, "2026-01-02", 4, 0.5)], &p, &Experiments::default()).unwrap();
        assert_eq!(names[0], "period");
        assert_eq!(rows, vec![row(false, "2026-01-02", 4, 0.5)[1..].to_vec()]);
    }

    #[test]
    fn each_day_meets_the_day_one_period_earlier() {
        let mut p = Params::parse(Some("2026-01-08"), Some("2026-01-14"), None, None).unwrap();
        p.compare = true;
        assert_eq!(p.previous_period(), NaiveDate::from_ymd_opt(2026, 1, 1).zip(NaiveDate::from_ymd_opt(2026, 1, 7)));
        let rows = vec![
            row(true, "2026-01-01", 4, 0.25),
            row(true, "2026-01-02", 9, 0.5),
            row(false, "2026-01-08", 6, 0.5),
            row(false, "2026-01-10", 2, 0.0),
        ];
        let (names, out) = finish(&cols(), rows, &p, &Experiments::default()).unwrap();
        let at = |n: &str| names.iter().position(|c| c == n).unwrap();
        assert_eq!(out.len(), 2);
        assert_eq!(out[0][at("previous_period")], json!("2026-01-01"));
        assert_eq!(out[0][at("previous_sent")], json!(4));
        assert_eq!(out[0][at("sent_change")], json!(0.5));
        assert_eq!(out[0][at("read_rate_change")], json!(1.0));
        assert_eq!(out[0][at("cost_change")], json!(0.0));
        // No row a period before the 10th: nothing to compare with.
        assert_eq!(out[1][at("previous_period")], json!("2026-01-03"));
        assert_eq!(out[1][at("previous_sent")], Value::Null);
        assert_eq!(out[1][at("sent_change")], Value::Null);
    }

    #[test]
    fn weeks_meet_the_week_whole_weeks_earlier() {
        let mut p = Params::parse(Some("2026-01-05"), Some("2026-02-01"), None, None).unwrap();
        p.compare = true;
        p.interval = super::super::params::Interval::Week;
        let rows = vec![row(true, "2025-12-08", 10, 0.5), row(false, "2026-01-05", 5, 0.5)];
        let (names, out) = finish(&cols(), rows, &p, &Experiments::default()).unwrap();
        let at = |n: &str| names.iter().position(|c| c == n).unwrap();
        assert_eq!(out[0][at("previous_period")], json!("2025-12-08"));
        assert_eq!(out[0][at("sent_change")], json!(-0.5));
    }
}
