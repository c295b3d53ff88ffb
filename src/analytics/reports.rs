//! The reports of contract section 5: SQL in `queries/`, run by DataFusion over `events`, with
//! filters bound as query parameters (never pasted into SQL text).
//!
//! Every report shares one date semantics: `from`/`to` select the cohort (the sends, or the
//! conversations, that started in the range); what follows from them counts even after `to`.

use std::collections::BTreeMap;

use chrono::{NaiveDate, SecondsFormat, Utc};
use datafusion::execution::context::SQLOptions;
use datafusion::scalar::ScalarValue;
use serde_json::{Map, Value, json};

use super::stats::{self, MeanStats, Proportion};
use super::{Analytics, format};
use crate::error::{Error, Result};

/// Every report and its SQL.
pub const REPORTS: &[(&str, &str)] = &[
    ("funnel", include_str!("../../queries/funnel.sql")),
    ("delivery", include_str!("../../queries/delivery.sql")),
    ("failures", include_str!("../../queries/failures.sql")),
    ("containment", include_str!("../../queries/containment.sql")),
    ("sla", include_str!("../../queries/sla.sql")),
    ("experiment", include_str!("../../queries/experiment.sql")),
    ("engagement", include_str!("../../queries/engagement.sql")),
    ("cost", include_str!("../../queries/cost.sql")),
];

/// The send cohort shared by the message reports, spliced in where a report says `{{cohort}}`.
const COHORT: &str = include_str!("../../queries/cohort.sql");

/// The reports with a form that reads the rollups (`messages`, `conversations`, `exposures`:
/// [`crate::rollup`]), used where every events file has its rollups. Each gives the same rows
/// as its form over the events (tests/it/reports.rs checks both on every report).
pub const ROLLUP_REPORTS: &[(&str, &str)] = &[
    ("funnel", include_str!("../../queries/rollup/funnel.sql")),
    ("delivery", include_str!("../../queries/rollup/delivery.sql")),
    ("failures", include_str!("../../queries/rollup/failures.sql")),
    ("engagement", include_str!("../../queries/rollup/engagement.sql")),
    ("cost", include_str!("../../queries/rollup/cost.sql")),
    ("containment", include_str!("../../queries/rollup/containment.sql")),
    ("sla", include_str!("../../queries/rollup/sla.sql")),
    ("experiment", include_str!("../../queries/rollup/experiment.sql")),
];

/// The cohort from the message rollup, with each message's receipts, replies and billing.
const ROLLUP_COHORT: &str = include_str!("../../queries/rollup/cohort.sql");

/// What a report computes from its messages or conversations, the same whether they come from
/// the events or the rollups: spliced in where both forms of the report say `{{name}}`.
const PIECES: &[(&str, &str)] = &[
    ("{{cost_totals}}", include_str!("../../queries/cost_totals.sql")),
    ("{{containment_rates}}", include_str!("../../queries/containment_rates.sql")),
    ("{{sla_times}}", include_str!("../../queries/sla_times.sql")),
    ("{{sla_summary}}", include_str!("../../queries/sla_summary.sql")),
    ("{{experiment_totals}}", include_str!("../../queries/experiment_totals.sql")),
];

/// `sql` with `cohort` and the other shared pieces spliced in.
fn splice(sql: &str, cohort: &str) -> String {
    PIECES.iter().fold(sql.replace("{{cohort}}", cohort), |s, (name, piece)| s.replace(name, piece))
}

/// A report's SQL over the events, with the shared pieces spliced in.
pub fn sql_of(name: &str) -> Option<String> {
    REPORTS.iter().find(|(n, _)| *n == name).map(|(_, s)| splice(s, COHORT))
}

/// A report's SQL over the rollups, where it has one.
pub fn rollup_sql_of(name: &str) -> Option<String> {
    ROLLUP_REPORTS.iter().find(|(n, _)| *n == name).map(|(_, s)| splice(s, ROLLUP_COHORT))
}

/// Names of the reports, for help texts and errors.
pub fn names() -> Vec<&'static str> {
    REPORTS.iter().map(|(n, _)| *n).collect()
}

/// Filters of a report run.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Params {
    pub from: Option<NaiveDate>,
    pub to: Option<NaiveDate>,
    pub campaign: Option<String>,
    pub experiment: Option<String>,
    /// What counts as a conversion in the experiment report.
    pub metric: Metric,
}

/// The experiment report's conversion metric.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Metric {
    /// A `conversion` event within the attribution window (the default).
    #[default]
    Converted,
    /// A reply to a message of the experiment.
    Replied,
    /// A message of the experiment read.
    Read,
}

impl Metric {
    /// Parses `converted`, `replied` or `read`.
    pub fn parse(s: &str) -> Result<Self> {
        match s {
            "converted" | "" => Ok(Metric::Converted),
            "replied" => Ok(Metric::Replied),
            "read" => Ok(Metric::Read),
            other => Err(Error::Invalid(format!("metric must be converted, replied or read, got {other:?}"))),
        }
    }

    fn column(self) -> &'static str {
        match self {
            Metric::Converted => "conversions",
            Metric::Replied => "replies",
            Metric::Read => "reads",
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            Metric::Converted => "converted",
            Metric::Replied => "replied",
            Metric::Read => "read",
        }
    }
}

impl Params {
    /// Parses the textual filters, with errors that name the bad one.
    pub fn parse(
        from: Option<&str>,
        to: Option<&str>,
        campaign: Option<&str>,
        experiment: Option<&str>,
    ) -> Result<Self> {
        let date = |name: &str, v: Option<&str>| -> Result<Option<NaiveDate>> {
            match v.map(str::trim).filter(|s| !s.is_empty()) {
                None => Ok(None),
                Some(s) => NaiveDate::parse_from_str(s, "%Y-%m-%d")
                    .map(Some)
                    .map_err(|_| Error::Invalid(format!("{name} must be a date like 2026-01-31, got {s:?}"))),
            }
        };
        let p = Params {
            from: date("from", from)?,
            to: date("to", to)?,
            campaign: campaign.map(str::to_string).filter(|s| !s.is_empty()),
            experiment: experiment.map(str::to_string).filter(|s| !s.is_empty()),
            metric: Metric::Converted,
        };
        if let (Some(f), Some(t)) = (p.from, p.to)
            && f > t
        {
            return Err(Error::Invalid(format!("the range is empty: from {f} is after to {t}")));
        }
        Ok(p)
    }

    fn to_json(&self) -> Value {
        json!({
            "from": self.from.map(|d| d.to_string()),
            "to": self.to.map(|d| d.to_string()),
            "campaign": self.campaign,
            "experiment": self.experiment,
            "metric": self.metric.as_str(),
        })
    }
}

/// A computed report.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    pub name: String,
    pub params: Params,
    pub generated_at: String,
    pub columns: Vec<String>,
    pub rows: Vec<Vec<Value>>,
}

impl Report {
    /// The contract's JSON form: `{"report", "params", "generated_at", "rows": [{column: value}]}`.
    pub fn to_json(&self) -> Value {
        let rows: Vec<Value> = self
            .rows
            .iter()
            .map(|r| Value::Object(self.columns.iter().cloned().zip(r.iter().cloned()).collect::<Map<_, _>>()))
            .collect();
        json!({"report": self.name, "params": self.params.to_json(), "generated_at": self.generated_at, "rows": rows})
    }

    /// Rows as CSV with a header.
    pub fn to_csv(&self) -> String {
        format::csv(&self.columns, &self.rows)
    }

    /// An aligned text table.
    pub fn to_table(&self) -> String {
        format::table(&self.columns, &self.rows)
    }
}

impl Analytics {
    /// Runs one report.
    pub async fn report(&self, name: &str, params: &Params) -> Result<Report> {
        let sql = sql_of(name)
            .ok_or_else(|| Error::NotFound(format!("no report {name:?}; reports are {}", names().join(", "))))?;
        let sql = match rollup_sql_of(name) {
            Some(rollup) if self.rollups_cover().await? => rollup,
            _ => sql,
        };
        let ctx = self.context().await?;
        let values: Vec<(&str, ScalarValue)> = vec![
            (
                "from",
                ScalarValue::Utf8(Some(params.from.map(|d| d.to_string()).unwrap_or_else(|| "0000-01-01".into()))),
            ),
            ("to", ScalarValue::Utf8(Some(params.to.map(|d| d.to_string()).unwrap_or_else(|| "9999-12-31".into())))),
            ("campaign", ScalarValue::Utf8(Some(params.campaign.clone().unwrap_or_default()))),
            ("experiment", ScalarValue::Utf8(Some(params.experiment.clone().unwrap_or_default()))),
            ("window_s", ScalarValue::Float64(Some((self.attribution_days * 86_400) as f64))),
            ("bot_cost", ScalarValue::Float64(Some(self.costs.bot_cost_per_conversation))),
            ("agent_cost_per_hour", ScalarValue::Float64(Some(self.costs.agent_cost_per_hour))),
        ];
        // Every report gets every parameter: names its SQL does not use are ignored (the plans
        // of materialized CTEs already get parameters only the rest of the query uses).
        let df = super::materialize::plan(&ctx, &sql, SQLOptions::new(), values).await?;
        let schema = std::sync::Arc::new(df.schema().as_arrow().clone());
        let batches = df.collect().await?;
        let columns = format::columns(&schema);
        let rows = format::rows(&batches)?;
        let (columns, rows) = if name == "experiment" {
            experiment_stats(&columns, rows, params.metric, &self.experiments)?
        } else {
            (columns, rows)
        };
        Ok(Report {
            name: name.to_string(),
            params: params.clone(),
            generated_at: Utc::now().to_rfc3339_opts(SecondsFormat::Secs, true),
            columns,
            rows,
        })
    }
}

/// Columns of the experiment report after its statistics are added.
pub const EXPERIMENT_COLUMNS: &[&str] = &[
    "experiment",
    "variant",
    "exposures",
    "conversions",
    "conversion_rate",
    "abs_diff",
    "abs_diff_ci_low",
    "abs_diff_ci_high",
    "lift",
    "lift_ci_low",
    "lift_ci_high",
    "p_value",
    "p_value_holm",
    "chance_to_beat_control",
    "srm_p_value",
    "srm_flag",
    "revenue_per_exposure",
    "revenue_diff",
    "revenue_diff_ci_low",
    "revenue_diff_ci_high",
    "revenue_p_value",
];

/// SRM is flagged below this p-value: with many experiments watched daily, a stricter level
/// than 0.05 keeps false alarms rare while real assignment bugs still stand out.
pub const SRM_ALPHA: f64 = 0.001;

struct ArmRow {
    variant: String,
    exposures: u64,
    conversions: u64,
    revenue_sum: f64,
    revenue_sq_sum: f64,
}

/// Adds the comparison columns to the per-variant counts. With a definition, the control and
/// the SRM weights are the definition's (a defined variant nobody was exposed to counts as 0
/// exposures); without one, the control is the variant named `control`, else the first, and
/// weights are equal.
fn experiment_stats(
    columns: &[String],
    rows: Vec<Vec<Value>>,
    metric: Metric,
    defs: &crate::experiments::Experiments,
) -> Result<(Vec<String>, Vec<Vec<Value>>)> {
    let col = |name: &str| {
        columns.iter().position(|c| c == name).ok_or_else(|| Error::Invalid(format!("experiment.sql lacks {name}")))
    };
    let (ie, iv, ix, ic, irs, irq) = (
        col("experiment")?,
        col("variant")?,
        col("exposures")?,
        col(metric.column())?,
        col("revenue_sum")?,
        col("revenue_sq_sum")?,
    );
    let mut by_exp: BTreeMap<String, Vec<ArmRow>> = BTreeMap::new();
    for r in rows {
        let s = |i: usize| r[i].as_str().unwrap_or_default().to_string();
        by_exp.entry(s(ie)).or_default().push(ArmRow {
            variant: s(iv),
            exposures: r[ix].as_u64().unwrap_or(0),
            conversions: r[ic].as_u64().unwrap_or(0),
            revenue_sum: r[irs].as_f64().unwrap_or(0.0),
            revenue_sq_sum: r[irq].as_f64().unwrap_or(0.0),
        });
    }
    let num = |v: Option<f64>| v.map(Value::from).unwrap_or(Value::Null);
    let mut out = Vec::new();
    for (exp, mut arms) in by_exp {
        let def = defs.get(&exp);
        if let Some(d) = def {
            for v in &d.variants {
                if !arms.iter().any(|a| a.variant == v.name) {
                    arms.push(ArmRow {
                        variant: v.name.clone(),
                        exposures: 0,
                        conversions: 0,
                        revenue_sum: 0.0,
                        revenue_sq_sum: 0.0,
                    });
                }
            }
        }
        let ci = match def {
            Some(d) => arms.iter().position(|a| a.variant == d.control().name).unwrap_or(0),
            None => arms.iter().position(|a| a.variant == "control").unwrap_or(0),
        };
        let control = &arms[ci];
        let prop = |a: &ArmRow| Proportion { n: a.exposures, x: a.conversions };
        let mean = |a: &ArmRow| {
            let n = a.exposures as f64;
            let m = if n > 0.0 { a.revenue_sum / n } else { 0.0 };
            let var = if n > 1.0 { ((a.revenue_sq_sum - n * m * m) / (n - 1.0)).max(0.0) } else { 0.0 };
            MeanStats { n: a.exposures, mean: m, variance: var }
        };
        let observed: Vec<u64> = arms.iter().map(|a| a.exposures).collect();
        let weights: Vec<f64> = match def {
            Some(d) => arms.iter().map(|a| d.weight_of(&a.variant)).collect(),
            None => vec![1.0; arms.len()],
        };
        // Exposures in a variant the definition does not know make the weights meaningless.
        let srm = if weights.iter().all(|w| *w > 0.0) { stats::srm_p_value(&observed, &weights) } else { None };
        let comparisons: Vec<Option<stats::Comparison>> = arms
            .iter()
            .enumerate()
            .map(|(i, a)| (i != ci).then(|| stats::compare_proportions(prop(control), prop(a))))
            .collect();
        let pvals: Vec<Option<f64>> = comparisons.iter().map(|c| c.as_ref().and_then(|c| c.p_value)).collect();
        let holm = if arms.len() > 2 { stats::holm(&pvals) } else { vec![None; arms.len()] };
        for (i, a) in arms.iter().enumerate() {
            let c = comparisons[i].clone().unwrap_or_default();
            let w = if i != ci { stats::welch(mean(control), mean(a)) } else { Default::default() };
            out.push(vec![
                Value::from(exp.clone()),
                Value::from(a.variant.clone()),
                Value::from(a.exposures),
                Value::from(a.conversions),
                num(prop(a).rate()),
                num(c.abs_diff),
                num(c.abs_diff_ci.map(|x| x.0)),
                num(c.abs_diff_ci.map(|x| x.1)),
                num(c.lift),
                num(c.lift_ci.map(|x| x.0)),
                num(c.lift_ci.map(|x| x.1)),
                num(c.p_value),
                num(holm[i]),
                num(c.chance_to_beat_control),
                num(srm),
                srm.map(|p| Value::Bool(p < SRM_ALPHA)).unwrap_or(Value::Null),
                num((a.exposures > 0).then(|| mean(a).mean)),
                num(w.diff),
                num(w.ci.map(|x| x.0)),
                num(w.ci.map(|x| x.1)),
                num(w.p_value),
            ]);
        }
    }
    Ok((EXPERIMENT_COLUMNS.iter().map(|s| s.to_string()).collect(), out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn params_are_validated() {
        assert!(Params::parse(Some("2026-13-01"), None, None, None).unwrap_err().to_string().contains("from"));
        assert!(
            Params::parse(Some("2026-02-01"), Some("2026-01-01"), None, None)
                .unwrap_err()
                .to_string()
                .contains("empty")
        );
        let p = Params::parse(Some("2026-01-01"), Some("2026-01-31"), Some(""), Some("x")).unwrap();
        assert_eq!(p.campaign, None);
        assert_eq!(p.experiment.as_deref(), Some("x"));
    }

    #[test]
    fn every_report_uses_only_known_parameters() {
        for name in names() {
            let sql = sql_of(name).unwrap();
            assert!(!sql.contains("{{"), "{name}: unspliced piece");
            for word in sql.split(|c: char| !(c.is_alphanumeric() || c == '_' || c == '$')) {
                if let Some(p) = word.strip_prefix('$') {
                    assert!(
                        ["from", "to", "campaign", "experiment", "window_s", "bot_cost", "agent_cost_per_hour"]
                            .contains(&p),
                        "{name}: ${p}"
                    );
                }
            }
        }
    }
}
