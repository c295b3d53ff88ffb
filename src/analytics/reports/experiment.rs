//! `experiment`: the A/B statistics per variant (queries/experiment.sql gives the counts per
//! variant; the comparisons are computed here, in [`stats`]).

use std::collections::BTreeMap;

use serde_json::Value;

use super::{Chart, Param, Params, Spec};
use crate::analytics::stats::{self, MeanStats, Proportion};
use crate::error::{Error, Result};
use crate::experiments::Experiments;

pub(super) const SPEC: Spec = Spec {
    name: "experiment",
    title: "Experiments",
    about: "Contacts first exposed to each variant in the range and how many converted within the             attribution window, compared with the control: difference, lift, p-value, chance to             beat control, sample-ratio mismatch and revenue per exposure.",
    sql: include_str!("../../../queries/experiment.sql"),
    params: &[Param::From, Param::To, Param::Campaign, Param::Experiment, Param::WindowSecs],
    chart: Chart::Intervals {
        title: "Conversion rate per variant (95% interval)",
        label: &["experiment", "variant"],
        trials: "exposures",
        successes: "conversions",
    },
    finish: Some(stats),
};

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
fn stats(
    columns: &[String],
    rows: Vec<Vec<Value>>,
    params: &Params,
    defs: &Experiments,
) -> Result<(Vec<String>, Vec<Vec<Value>>)> {
    let metric = params.metric;
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
