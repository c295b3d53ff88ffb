//! `experiment`: the statistics of every experiment, per variant and metric
//! (queries/experiment.sql gives the sums per variant, slice and country; everything else is
//! computed here, from [`crate::analytics::stats`]).
//!
//! - [`sums`]: the SQL's sums, which add up over slices and strata;
//! - [`compare`]: one metric of one variant against the control;
//! - [`decide`]: the decision per variant and its reason;
//! - [`kept`]: the rows per exposed contact compaction keeps, which the report sums instead of
//!   computing them while they cover the store;
//! - [`newer`]: events files newer than that table, read as the rows of the contacts they touch.
//!
//! Rows: per experiment, for each goal and then each guardrail, one row per variant (the
//! control's first); with `--by`, the same again per slice (top 20 levels and `other`).

mod compare;
mod decide;
mod kept;
mod newer;
mod sums;

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, NaiveDate, Utc};
use serde_json::Value;

use self::compare::{Arm, Outcome, compare, mean_stats};
use self::decide::{Evidence, decide};
use self::sums::{Layout, Sums};
use super::{Breakdown, Chart, Param, Params, Spec};
use crate::analytics::stats::{self, correction};
use crate::error::Result;
use crate::experiments::{Analysis, Experiment, Experiments, Metric};

pub use self::decide::Decision;
pub(super) use self::kept::CONTACTS_SQL;
pub use self::kept::{Coverage, Kept};

pub(super) const SPEC: Spec = Spec {
    name: "experiment",
    title: "Experiments",
    about: "Contacts first exposed to each variant in the range, per goal and guardrail metric, \
            compared with the control: the always-valid interval the decision is taken on, the \
            fixed-horizon difference, lift and p-value, CUPED's adjusted difference, sample-ratio \
            mismatch and the decision with its reason.",
    sql: include_str!("../../../../queries/experiment.sql"),
    params: &[
        Param::From,
        Param::To,
        Param::Campaign,
        Param::Experiment,
        Param::WindowSecs,
        Param::LookbackFrom,
        Param::LookbackSecs,
        Param::CapQuantile,
        Param::By,
        Param::Metrics,
    ],
    chart: Chart::Effects {
        title: "Difference from the control per metric (always-valid interval, fixed-horizon ticks)",
    },
    finish: Some(stats),
    by: &[Breakdown::Country, Breakdown::Locale, Breakdown::Template],
    adaptive: false,
    statement: Some(|a, ctx, params, b| Box::pin(kept::statement(a, ctx, params, b))),
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
    "metric",
    "role",
    "always_valid_low",
    "always_valid_high",
    "always_valid_p_value",
    "always_valid_lift_low",
    "always_valid_lift_high",
    "p_value_adjusted",
    "always_valid_p_adjusted",
    "decision",
    "decision_reason",
    "cuped_abs_diff",
    "cuped_ci_low",
    "cuped_ci_high",
    "cuped_p_value",
    "variance_reduction",
    "cuped_method",
    "harm_margin",
    "harm_p_value",
    "always_valid_harm",
    "pre_period_p_value",
    "multiple_exposures",
    "health_warning",
    "stopped_at",
    "slice",
    "slice_srm_p_value",
    "slice_p_value",
    "slice_differs",
];

/// SRM is flagged below this p-value: with many experiments watched daily, a stricter level
/// than 0.05 keeps false alarms rare while real assignment bugs still stand out.
pub const SRM_ALPHA: f64 = 0.001;

/// Contacts met by more than one variant above this share of the exposed are worth a warning
/// (GrowthBook's health check): assignment is not sticky, or sends bypass it.
pub const MULTIPLE_EXPOSURE_WARNING: f64 = 0.01;

/// A breakdown shows this many slices by contacts and adds the rest up as `other`.
pub const TOP_SLICES: usize = 20;

/// One row of the SQL.
struct Group {
    variant: String,
    multi: bool,
    slice: String,
    country: String,
    sums: Sums,
}

/// The metrics a run can show: every defined experiment's goals and guardrails, the default
/// analysis's (an experiment seen in the log but not defined), and the goal asked for. Every
/// metric the report compares is one of them ([`setting`] takes its analysis from the same
/// places), so the SQL computes only these of the metrics that read every message.
pub(crate) fn measured(defs: &Experiments, params: &Params) -> BTreeSet<Metric> {
    let default = Analysis::default();
    let analyses = defs.experiments.iter().map(|e| &e.analysis).chain(std::iter::once(&default));
    let mut metrics: BTreeSet<Metric> =
        analyses.flat_map(|a| a.goals.iter().copied().chain(a.guardrails.iter().map(|g| g.metric))).collect();
    metrics.extend(params.metric);
    metrics
}

/// [`measured`] as `$metrics` reads it: `,converted,opted_out,`.
pub(crate) fn measured_param(defs: &Experiments, params: &Params) -> String {
    measured(defs, params).iter().fold(",".to_string(), |s, m| s + m.as_str() + ",")
}

/// An experiment's rows of the SQL, its first exposure and its stopped variants.
type Gathered = (Vec<Group>, Option<String>, BTreeMap<String, Value>);

/// What an experiment's rows have in common.
struct Setting<'a> {
    name: &'a str,
    def: Option<&'a Experiment>,
    analysis: Analysis,
    variants: Vec<String>,
    control: usize,
    countries: Vec<String>,
    days: f64,
    multiple: f64,
    warning: Option<String>,
    stopped: BTreeMap<String, Value>,
}

fn stats(
    columns: &[String],
    mut rows: Vec<Vec<Value>>,
    params: &Params,
    defs: &Experiments,
) -> Result<(Vec<String>, Vec<Vec<Value>>)> {
    let layout = Layout::of(columns)?;
    let col = |name: &str| super::column(columns, "experiment", name);
    let (ie, iv, im, is, ic, ifirst, istop) = (
        col("experiment")?,
        col("variant")?,
        col("multi")?,
        col("slice")?,
        col("country")?,
        col("first_exposed_at")?,
        col("stopped_at")?,
    );
    let text = |v: &Value| v.as_str().unwrap_or_default().to_string();
    // In the SQL's key order (nulls last), which the SQL does not sort in: variants the
    // definitions do not name are taken in this order, and sums add up in it.
    let key = |r: &Vec<Value>| {
        let t = |i: usize| (r[i].is_null(), r[i].as_str().map(str::to_string));
        (t(ie), t(iv), r[im].as_bool().unwrap_or(false), t(is), t(ic))
    };
    rows.sort_by_cached_key(key);
    let mut by_exp: BTreeMap<String, Gathered> = BTreeMap::new();
    for r in &rows {
        let e = by_exp.entry(text(&r[ie])).or_default();
        let first = text(&r[ifirst]);
        if !first.is_empty() && e.1.as_ref().is_none_or(|f| first < *f) {
            e.1 = Some(first);
        }
        if !r[istop].is_null() {
            e.2.insert(text(&r[iv]), r[istop].clone());
        }
        e.0.push(Group {
            variant: text(&r[iv]),
            multi: r[im].as_bool().unwrap_or(false),
            slice: text(&r[is]),
            country: text(&r[ic]),
            sums: layout.read(r),
        });
    }
    let mut out = Vec::new();
    for (name, (groups, first, stopped)) in &by_exp {
        let s = setting(name, groups, first.as_deref(), stopped, params, defs);
        let valid: Vec<&Group> = groups.iter().filter(|g| !g.multi).collect();
        let arms = arms_of(&s, valid.iter().copied());
        let overall = rows_for(&s, &arms, None);
        out.extend(overall);
        if params.by.is_some() {
            out.extend(slices(&s, &valid, &arms));
        }
    }
    Ok((EXPERIMENT_COLUMNS.iter().map(|s| s.to_string()).collect(), out))
}

/// The experiment's definition, analysis, arms and health.
fn setting<'a>(
    name: &'a str,
    groups: &[Group],
    first: Option<&str>,
    stopped: &BTreeMap<String, Value>,
    params: &Params,
    defs: &'a Experiments,
) -> Setting<'a> {
    let def = defs.get(name);
    let mut analysis = def.map(|d| d.analysis.clone()).unwrap_or_default();
    if let Some(m) = params.metric {
        analysis.goals = vec![m];
        analysis.guardrails.retain(|g| g.metric != m);
    }
    let mut variants: Vec<String> = match def {
        Some(d) => d.variants.iter().map(|v| v.name.clone()).collect(),
        None => Vec::new(),
    };
    for g in groups {
        if !variants.contains(&g.variant) {
            variants.push(g.variant.clone());
        }
    }
    let control = match def {
        Some(d) => variants.iter().position(|v| *v == d.control().name).unwrap_or(0),
        None => variants.iter().position(|v| v == "control").unwrap_or(0),
    };
    let countries: Vec<String> =
        groups.iter().filter(|g| !g.multi).map(|g| g.country.clone()).collect::<BTreeSet<_>>().into_iter().collect();
    let multiple: f64 = groups.iter().filter(|g| g.multi).map(|g| g.sums.exposures()).sum();
    let all: f64 = groups.iter().map(|g| g.sums.exposures()).sum();
    let warning = (all > 0.0 && multiple / all > MULTIPLE_EXPOSURE_WARNING).then(|| {
        format!(
            "{multiple:.0} of {all:.0} contacts ({:.1}%) met more than one variant and are left out: \
             assignment is not sticky, or sends bypass it",
            100.0 * multiple / all
        )
    });
    Setting {
        name,
        def,
        analysis,
        variants,
        control,
        countries,
        days: days_since(first, params.to),
        multiple,
        warning,
        stopped: stopped.clone(),
    }
}

/// Days from the first exposure to now, or to the end of `to` when that is earlier.
fn days_since(first: Option<&str>, to: Option<NaiveDate>) -> f64 {
    let Some(first) = first.and_then(|f| DateTime::parse_from_rfc3339(f).ok()) else { return 0.0 };
    let now = Utc::now();
    let end = to
        .and_then(|d| d.succ_opt())
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|d| d.and_utc())
        .filter(|e| *e < now)
        .unwrap_or(now);
    (end - first.with_timezone(&Utc)).num_seconds() as f64 / 86_400.0
}

/// Each variant's total and strata over `groups`.
fn arms_of<'g>(s: &Setting, groups: impl Iterator<Item = &'g Group> + Clone) -> Vec<Arm> {
    s.variants
        .iter()
        .map(|v| {
            let mine = groups.clone().filter(|g| g.variant == *v);
            Arm {
                name: v.clone(),
                total: mine.clone().map(|g| g.sums).sum(),
                strata: s
                    .countries
                    .iter()
                    .map(|c| mine.clone().filter(|g| g.country == *c).map(|g| g.sums).sum())
                    .collect(),
            }
        })
        .collect()
}

/// What a slice's rows add: its name, SRM, and its goal effect against the rest's.
struct SliceInfo {
    name: String,
    srm: Option<f64>,
    p_value: Option<f64>,
}

/// The split's chi-square p-value. A variant `auto_stop` stopped takes no new contacts (they get
/// the control outside the experiment), so it is left out: the other arms keep their shares of
/// each other, which assignment by hash does not change.
fn srm_of(s: &Setting, arms: &[Arm]) -> Option<f64> {
    let arms: Vec<&Arm> = arms.iter().filter(|a| !s.stopped.contains_key(&a.name)).collect();
    let observed: Vec<u64> = arms.iter().map(|a| a.total.exposures() as u64).collect();
    let weights: Vec<f64> = match s.def {
        Some(d) => arms.iter().map(|a| d.weight_of(&a.name)).collect(),
        None => vec![1.0; arms.len()],
    };
    // Exposures in a variant the definition does not know make the weights meaningless.
    if weights.iter().all(|w| *w > 0.0) { stats::srm_p_value(&observed, &weights) } else { None }
}

/// The rows of one set of arms: the whole experiment, or one slice.
fn rows_for(s: &Setting, arms: &[Arm], slice: Option<&SliceInfo>) -> Vec<Vec<Value>> {
    let a = &s.analysis;
    let ci = s.control;
    let control = &arms[ci];
    let srm = srm_of(s, arms);
    let metrics: Vec<(Metric, Option<f64>)> =
        a.goals.iter().map(|m| (*m, None)).chain(a.guardrails.iter().map(|g| (g.metric, Some(g.margin)))).collect();
    // outcomes[k][i]: metric k, arm i.
    let outcomes: Vec<Vec<Outcome>> = metrics
        .iter()
        .map(|(m, margin)| arms.iter().map(|arm| compare(*m, control, arm, a, *margin)).collect())
        .collect();
    // The correction runs over goals x variants, for the fixed-horizon and always-valid p.
    let goals = a.goals.len();
    let flat = |f: &dyn Fn(&Outcome) -> Option<f64>| -> Vec<Option<f64>> {
        outcomes[..goals]
            .iter()
            .flat_map(|row| row.iter().enumerate().map(|(i, o)| if i == ci { None } else { f(o) }))
            .collect()
    };
    let fixed = correction::adjust(a.correction, &flat(&|o| o.p_value));
    let valid = correction::adjust(a.correction, &flat(&|o| o.always_valid.map(|v| v.p_value)));
    let adjusted = |k: usize, i: usize, v: &[Option<f64>]| if k < goals { v[k * arms.len() + i] } else { None };
    let decisions: Vec<Option<(Decision, String)>> = (0..arms.len())
        .map(|i| {
            (i != ci).then(|| {
                decide(&Evidence {
                    analysis: a,
                    srm_p_value: srm,
                    srm_alpha: SRM_ALPHA,
                    goals: (0..goals).map(|k| (metrics[k].0, &outcomes[k][i], adjusted(k, i, &valid))).collect(),
                    guardrails: (goals..metrics.len())
                        .map(|k| (metrics[k].0, &outcomes[k][i], metrics[k].1.unwrap_or(0.0)))
                        .collect(),
                    conversions: (control.total.conversions(), arms[i].total.conversions()),
                    days: s.days,
                })
            })
        })
        .collect();
    let num = |v: Option<f64>| v.filter(|v| v.is_finite()).map(Value::from).unwrap_or(Value::Null);
    let txt = |v: Option<&str>| v.map(Value::from).unwrap_or(Value::Null);
    let mut rows = Vec::new();
    for (k, (metric, margin)) in metrics.iter().enumerate() {
        let pvals: Vec<Option<f64>> = outcomes[k].iter().map(|o| o.p_value).collect();
        let holm = if arms.len() > 2 { stats::holm(&pvals) } else { vec![None; arms.len()] };
        for (i, arm) in arms.iter().enumerate() {
            let o = &outcomes[k][i];
            let revenue = mean_stats(&arm.total.uncapped_revenue());
            let n = arm.total.exposures();
            let w = if i != ci {
                stats::welch(mean_stats(&control.total.uncapped_revenue()), revenue)
            } else {
                Default::default()
            };
            let decision = decisions[i].as_ref();
            rows.push(vec![
                Value::from(s.name),
                Value::from(arm.name.clone()),
                Value::from(n as u64),
                o.count.map(|c| Value::from(c.round() as u64)).unwrap_or(Value::Null),
                num(o.rate),
                num(o.abs_diff),
                num(o.abs_diff_ci.map(|x| x.0)),
                num(o.abs_diff_ci.map(|x| x.1)),
                num(o.lift),
                num(o.lift_ci.map(|x| x.0)),
                num(o.lift_ci.map(|x| x.1)),
                num(o.p_value),
                num(holm[i]),
                num(o.chance_to_beat_control),
                num(srm),
                srm.map(|p| Value::Bool(p < SRM_ALPHA)).unwrap_or(Value::Null),
                num((n > 0.0).then_some(revenue.mean)),
                num(w.diff),
                num(w.ci.map(|x| x.0)),
                num(w.ci.map(|x| x.1)),
                num(w.p_value),
                Value::from(metric.as_str()),
                Value::from(if margin.is_some() { "guardrail" } else { "goal" }),
                num(o.always_valid.map(|v| v.low)),
                num(o.always_valid.map(|v| v.high)),
                num(o.always_valid.map(|v| v.p_value)),
                num(o.always_valid_lift.map(|v| v.low)),
                num(o.always_valid_lift.map(|v| v.high)),
                num(adjusted(k, i, &fixed)),
                num(adjusted(k, i, &valid)),
                txt(decision.map(|d| d.0.as_str())),
                match (s.stopped.get(&arm.name), decision) {
                    (Some(at), Some(d)) => Value::from(format!(
                        "stopped by its guardrail at {}, its contacts now get the control; {}",
                        at.as_str().unwrap_or_default(),
                        d.1
                    )),
                    _ => txt(decision.map(|d| d.1.as_str()).or((i == ci).then_some("the control"))),
                },
                num(o.cuped.map(|c| c.diff)),
                num(o.cuped.map(|c| c.ci.0)),
                num(o.cuped.map(|c| c.ci.1)),
                num(o.cuped.map(|c| c.p_value)),
                num(o.cuped.map(|c| c.variance_reduction)),
                txt(o.cuped_method),
                num(*margin),
                num(o.harm_p_value),
                if margin.is_some() && i != ci { Value::Bool(o.harmful) } else { Value::Null },
                num(o.balance_p_value),
                Value::from(s.multiple as u64),
                txt(s.warning.as_deref()),
                s.stopped.get(&arm.name).cloned().unwrap_or(Value::Null),
                txt(slice.map(|x| x.name.as_str())),
                num(slice.and_then(|x| x.srm)),
                num(slice.and_then(|x| x.p_value)),
                slice.and_then(|x| x.p_value).map(|p| Value::Bool(p < a.alpha)).unwrap_or(Value::Null),
            ]);
        }
    }
    rows
}

/// The rows per slice: the top slices by contacts and `other`, each with its SRM and whether
/// its effect on the first goal differs from the rest's (a z test of the two differences,
/// Bonferroni across slices and variants).
fn slices(s: &Setting, valid: &[&Group], overall: &[Arm]) -> Vec<Vec<Value>> {
    let mut size: BTreeMap<&str, f64> = BTreeMap::new();
    for g in valid {
        *size.entry(g.slice.as_str()).or_default() += g.sums.exposures();
    }
    let mut order: Vec<(&str, f64)> = size.into_iter().collect();
    order.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(b.0)));
    let top: Vec<&str> = order.iter().take(TOP_SLICES).map(|(n, _)| *n).collect();
    let mut named: Vec<(String, Vec<Arm>)> = top
        .iter()
        .map(|name| (name.to_string(), arms_of(s, valid.iter().copied().filter(|g| g.slice == *name))))
        .collect();
    if order.len() > TOP_SLICES {
        named.push(("other".into(), arms_of(s, valid.iter().copied().filter(|g| !top.contains(&g.slice.as_str())))));
    }
    let goal = s.analysis.goals[0];
    let ci = s.control;
    // p of each slice's effect against the rest's, per variant, before Bonferroni.
    let mut raw: Vec<Vec<Option<f64>>> = Vec::new();
    for (_, arms) in &named {
        let rest: Vec<Arm> = overall
            .iter()
            .zip(arms)
            .map(|(o, a)| Arm { name: o.name.clone(), total: o.total - a.total, strata: Vec::new() })
            .collect();
        let plain = Analysis { cuped: false, ..s.analysis.clone() };
        raw.push(
            (0..arms.len())
                .map(|i| {
                    if i == ci {
                        return None;
                    }
                    let one = compare(goal, &arms[ci], &arms[i], &plain, None);
                    let other = compare(goal, &rest[ci], &rest[i], &plain, None);
                    stats::difference_p_value(one.abs_diff?, one.variance?, other.abs_diff?, other.variance?)
                })
                .collect(),
        );
    }
    let flat: Vec<Option<f64>> = raw.iter().flatten().copied().collect();
    let adjusted = stats::bonferroni(&flat);
    let mut rows = Vec::new();
    for (j, (name, arms)) in named.iter().enumerate() {
        // One p per slice: the smallest over its variants.
        let p = (0..arms.len())
            .filter_map(|i| adjusted[j * arms.len() + i])
            .fold(None, |m: Option<f64>, p| Some(m.map_or(p, |m| m.min(p))));
        let info = SliceInfo { name: name.clone(), srm: srm_of(s, arms), p_value: p };
        rows.extend(rows_for(s, arms, Some(&info)));
    }
    rows
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{Float64Array, RecordBatch};
    use arrow::datatypes::{DataType, Field, Schema};
    use datafusion::prelude::SessionContext;

    use crate::analytics::stats::test_vectors::{close, vectors};

    /// What the SQL measures covers every metric a run compares: each experiment's goals and
    /// guardrails, the default goal of an experiment not defined, and the goal asked for.
    #[test]
    fn the_run_measures_every_metric_it_can_show() {
        use super::{Params, measured, measured_param};
        use crate::experiments::{Experiments, Metric};
        let defs = Experiments::parse(
            r#"
[[experiment]]
name = "a"
salt = "a1"
[experiment.analysis]
goals = ["cost"]
guardrails = [{ metric = "blocked", margin = 0.0 }]
[[experiment.variant]]
name = "control"
weight = 50
control = true
template = "t_control"
[[experiment.variant]]
name = "b"
weight = 50
template = "t_b"
"#,
            "test",
        )
        .unwrap();
        let plain = Params::default();
        assert_eq!(
            measured(&defs, &plain).into_iter().collect::<Vec<_>>(),
            vec![Metric::Converted, Metric::Blocked, Metric::Cost]
        );
        assert_eq!(measured_param(&defs, &plain), ",converted,blocked,cost,");
        let asked = Params { metric: Some(Metric::Read), ..Params::default() };
        assert!(measured(&defs, &asked).contains(&Metric::Read));
        assert_eq!(measured_param(&Experiments::default(), &plain), ",converted,");
    }

    /// The revenue cap is DataFusion's `percentile_cont`, as `queries/experiment.sql` writes it
    /// (zeros left out): the same value as numpy's linear percentile, and the capped sums with it.
    #[tokio::test]
    async fn the_revenue_cap_is_numpys_linear_percentile() {
        let v = vectors();
        let case = v["cases"].as_array().unwrap().iter().find(|c| c["kind"] == "winsorize").unwrap();
        let mut values: Vec<f64> =
            case["input"]["values"].as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect();
        let q = case["input"]["percentile"].as_f64().unwrap() / 100.0;
        // Contacts without revenue take no part in the cap.
        values.extend([0.0; 500]);
        let schema = Arc::new(Schema::new(vec![Field::new("revenue", DataType::Float64, false)]));
        let batch = RecordBatch::try_new(schema, vec![Arc::new(Float64Array::from(values))]).unwrap();
        let ctx = SessionContext::new();
        ctx.register_batch("per_contact", batch).unwrap();
        let sql = format!(
            "WITH caps AS (SELECT percentile_cont({q}) WITHIN GROUP (ORDER BY revenue) FILTER (WHERE revenue > 0) AS cap \
             FROM per_contact) \
             SELECT MAX(c.cap), SUM(CASE WHEN p.revenue > c.cap THEN c.cap ELSE p.revenue END), \
                    SUM(CASE WHEN p.revenue > c.cap THEN c.cap * c.cap ELSE p.revenue * p.revenue END) \
             FROM per_contact p CROSS JOIN caps c WHERE p.revenue > 0"
        );
        let rows = crate::analytics::format::rows(&ctx.sql(&sql).await.unwrap().collect().await.unwrap()).unwrap();
        let e = &case["expected"];
        close(rows[0][0].as_f64(), &e["cap"], 1e-9, 1e-9, "cap");
        let (n, sum, sq) = (e["n"].as_f64().unwrap(), rows[0][1].as_f64().unwrap(), rows[0][2].as_f64().unwrap());
        close(Some(sum), &e["capped_sum"], 1e-6, 1e-9, "capped sum");
        close(Some(sum / n), &e["capped_mean"], 1e-9, 1e-9, "capped mean");
        close(Some((sq - sum * sum / n) / (n - 1.0)), &e["capped_variance"], 1e-6, 1e-8, "capped variance");
    }
}
