//! One metric of one variant against the control: the fixed-horizon figures (as before), the
//! always-valid interval, CUPED, and for a guardrail the one-sided test for harm.

use statrs::distribution::{ContinuousCDF, Normal};

use super::sums::Sums;
use crate::analytics::stats::cuped::{self, Adjusted, Moments};
use crate::analytics::stats::sequential::{self, Sequence};
use crate::analytics::stats::{self, MeanStats, Proportion, Z975};
use crate::experiments::{Analysis, Metric};

/// Strata with fewer contacts than this in an arm are pooled before post-stratification: an
/// adjustment fitted on a handful of contacts adds more noise than it removes.
pub const MIN_STRATUM: f64 = 50.0;

/// An arm: its total and its totals per country (the strata).
#[derive(Debug, Clone, Default)]
pub struct Arm {
    pub name: String,
    pub total: Sums,
    pub strata: Vec<Sums>,
}

/// What one metric says about one variant against the control (the control's own row has
/// only its rate).
#[derive(Debug, Clone, Default)]
pub struct Outcome {
    /// Contacts counted by a yes-or-no metric.
    pub count: Option<f64>,
    /// The metric per exposed contact (a rate, or an amount; a ratio for the ratio metric).
    pub rate: Option<f64>,
    pub abs_diff: Option<f64>,
    pub abs_diff_ci: Option<(f64, f64)>,
    /// The variance of `abs_diff` (unadjusted).
    pub variance: Option<f64>,
    pub lift: Option<f64>,
    pub lift_ci: Option<(f64, f64)>,
    pub p_value: Option<f64>,
    pub chance_to_beat_control: Option<f64>,
    /// The always-valid interval of the difference (CUPED-adjusted where CUPED applies).
    pub always_valid: Option<Sequence>,
    pub always_valid_lift: Option<Sequence>,
    pub cuped: Option<Adjusted>,
    pub cuped_method: Option<&'static str>,
    /// One-sided p-value of harm beyond the guardrail's margin (fixed horizon).
    pub harm_p_value: Option<f64>,
    /// The always-valid interval lies wholly beyond the margin on the side of harm.
    pub harmful: bool,
    /// The same beyond zero on the side of improvement.
    pub better: bool,
    /// Two-sided p-value of the arms' pre-period means differing (a balance check).
    pub balance_p_value: Option<f64>,
}

fn normal_cdf(z: f64) -> Option<f64> {
    Normal::new(0.0, 1.0).ok().map(|n| n.cdf(z))
}

/// The fixed-horizon comparison of a mean or ratio: difference, z interval and p, lift with its
/// delta-method interval, and the chance to beat control under flat priors.
struct Plain {
    diff: f64,
    variance: f64,
    lift_variance: Option<f64>,
    control_mean: f64,
}

fn plain(mean_c: f64, var_c: f64, mean_t: f64, var_t: f64) -> Plain {
    // var_c and var_t are the variances of the two means.
    Plain {
        diff: mean_t - mean_c,
        variance: var_c + var_t,
        lift_variance: stats::lift_variance(mean_c, var_c, mean_t, var_t),
        control_mean: mean_c,
    }
}

/// Compares `arm` with `control` on `metric`; `guardrail_margin` is set for a guardrail.
pub fn compare(metric: Metric, control: &Arm, arm: &Arm, a: &Analysis, guardrail_margin: Option<f64>) -> Outcome {
    let (mc, mt) = (control.total.moments(metric), arm.total.moments(metric));
    let mut out =
        Outcome { count: metric.is_binary().then_some(mt.sum_y), rate: rate(metric, &mt), ..Default::default() };
    if std::ptr::eq(control, arm) || mc.n < 1.0 || mt.n < 1.0 {
        return out;
    }
    // The difference, its variance and, for the lift, the delta method's variance.
    let raw: Option<Plain> = if metric == Metric::RevenuePerDelivered {
        match (stats::ratio::ratio(&mc), stats::ratio::ratio(&mt)) {
            (Some((rc, vc)), Some((rt, vt))) => Some(plain(rc, vc, rt, vt)),
            _ => None,
        }
    } else if metric.is_binary() {
        let (pc, pt) =
            (Proportion { n: mc.n as u64, x: mc.sum_y as u64 }, Proportion { n: mt.n as u64, x: mt.sum_y as u64 });
        let c = stats::compare_proportions(pc, pt);
        out.abs_diff = c.abs_diff;
        out.abs_diff_ci = c.abs_diff_ci;
        out.lift = c.lift;
        out.lift_ci = c.lift_ci;
        out.p_value = c.p_value;
        out.chance_to_beat_control = c.chance_to_beat_control;
        match (pc.rate(), pt.rate()) {
            (Some(rc), Some(rt)) => Some(plain(rc, rc * (1.0 - rc) / mc.n, rt, rt * (1.0 - rt) / mt.n)),
            _ => None,
        }
    } else {
        let w = stats::welch(mean_stats(&mc), mean_stats(&mt));
        out.abs_diff = w.diff;
        out.abs_diff_ci = w.ci;
        out.p_value = w.p_value;
        Some(plain(mc.mean_y(), mc.var_y() / mc.n, mt.mean_y(), mt.var_y() / mt.n))
    };
    let Some(raw) = raw else { return out };
    out.variance = Some(raw.variance).filter(|v| *v > 0.0);
    if !metric.is_binary() {
        let se = raw.variance.sqrt();
        out.abs_diff = Some(raw.diff);
        if metric == Metric::RevenuePerDelivered && se > 0.0 {
            out.abs_diff_ci = Some((raw.diff - Z975 * se, raw.diff + Z975 * se));
            out.p_value = Some(stats::normal_two_sided_p(raw.diff / se));
        }
        out.lift = (raw.control_mean != 0.0).then(|| raw.diff / raw.control_mean);
        out.lift_ci = out.lift.zip(raw.lift_variance).map(|(l, v)| (l - Z975 * v.sqrt(), l + Z975 * v.sqrt()));
        out.chance_to_beat_control = (se > 0.0).then(|| normal_cdf(raw.diff / se)).flatten();
    }
    if a.cuped && metric != Metric::RevenuePerDelivered {
        let strata: Vec<(Moments, Moments)> =
            control.strata.iter().zip(&arm.strata).map(|(c, t)| (c.moments(metric), t.moments(metric))).collect();
        out.cuped = cuped::adjust_stratified(&strata, MIN_STRATUM)
            .map(|c| (c, "cuped_ps"))
            .or_else(|| cuped::adjust(&mc, &mt).map(|c| (c, "cuped")))
            .map(|(c, method)| {
                out.cuped_method = Some(method);
                c
            });
    }
    let (estimate, variance) = match &out.cuped {
        Some(c) => (c.diff, c.variance),
        None => (raw.diff, raw.variance),
    };
    let n = mc.n + mt.n;
    out.always_valid = sequential::confidence_sequence(estimate, variance, n, a.n_star, a.alpha);
    out.always_valid_lift =
        out.lift.zip(raw.lift_variance).and_then(|(l, v)| sequential::confidence_sequence(l, v, n, a.n_star, a.alpha));
    let sign = if metric.higher_is_better() { 1.0 } else { -1.0 };
    if let Some(s) = &out.always_valid {
        let (worst, best) = if sign > 0.0 { (-s.high, s.low) } else { (s.low, -s.high) };
        out.harmful = worst > guardrail_margin.unwrap_or(0.0);
        out.better = best > 0.0;
    }
    if let Some(margin) = guardrail_margin {
        out.harm_p_value = stats::harm_p_value(-sign * raw.diff, raw.variance.sqrt(), margin);
    }
    // The ratio metric's x is its denominator after exposure, not a pre-period.
    let var_x = mc.var_x() / mc.n + mt.var_x() / mt.n;
    out.balance_p_value = (var_x > 0.0 && metric != Metric::RevenuePerDelivered)
        .then(|| stats::normal_two_sided_p((mt.mean_x() - mc.mean_x()) / var_x.sqrt()));
    out
}

fn rate(metric: Metric, m: &Moments) -> Option<f64> {
    if m.n <= 0.0 {
        return None;
    }
    if metric == Metric::RevenuePerDelivered {
        return (m.sum_x > 0.0).then(|| m.sum_y / m.sum_x);
    }
    Some(m.mean_y())
}

/// A metric's mean and variance per unit, as Welch's test takes them.
pub fn mean_stats(m: &Moments) -> MeanStats {
    // Rounding can take a zero variance a hair below zero.
    MeanStats { n: m.n as u64, mean: if m.n > 0.0 { m.mean_y() } else { 0.0 }, variance: m.var_y().max(0.0) }
}
