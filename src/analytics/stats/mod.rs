//! Experiment statistics, computed in Rust over the per-variant counts
//! the `experiment` SQL produces.
//!
//! All p-values are upper tails computed directly (`erfc`, `sf`), never `1 - cdf`, so values
//! near 1e-7 keep their digits. Anything undefined for its inputs is `None`, never NaN.
//!
//! One file per idea beside this one, which holds the fixed-horizon tests:
//!
//! - [`sequential`]: always-valid confidence sequences and p-values;
//! - [`cuped`]: variance reduction with the pre-exposure period, and its post-stratified form;
//! - [`correction`]: Holm, Benjamini-Hochberg and Bonferroni across many tests;
//! - [`ratio`]: ratio metrics (revenue per delivered message) by the delta method;
//! - [`power`]: power and sample size, for planning.
//!
//! Every one is checked against `fixtures/ab_vectors.json` (scipy, statsmodels and gbstats,
//! from `scripts/make_ab_vectors.py`).

pub mod correction;
pub mod cuped;
pub mod power;
pub mod ratio;
pub mod sequential;

pub use correction::{Correction, benjamini_hochberg, bonferroni, holm};

use statrs::distribution::{ChiSquared, ContinuousCDF, StudentsT};
use statrs::function::beta::ln_beta;
use statrs::function::erf::erfc;

/// The 97.5% standard normal quantile (two-sided 95%).
pub const Z975: f64 = 1.959_963_984_540_054;

/// Conversions `x` among `n` units of one arm.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Proportion {
    pub n: u64,
    pub x: u64,
}

impl Proportion {
    /// The rate, `None` without units.
    pub fn rate(&self) -> Option<f64> {
        (self.n > 0).then(|| self.x as f64 / self.n as f64)
    }
}

/// A variant compared with the control.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Comparison {
    pub abs_diff: Option<f64>,
    pub abs_diff_ci: Option<(f64, f64)>,
    pub lift: Option<f64>,
    pub lift_ci: Option<(f64, f64)>,
    pub p_value: Option<f64>,
    pub chance_to_beat_control: Option<f64>,
}

pub(crate) fn finite(v: f64) -> Option<f64> {
    v.is_finite().then_some(v)
}

/// Two-sided p-value of a standard normal statistic.
pub fn normal_two_sided_p(z: f64) -> f64 {
    erfc(z.abs() / std::f64::consts::SQRT_2)
}

/// Compares `variant` with `control`: Wald interval and unpooled z-test for the difference,
/// delta-method interval for the relative lift, exact Beta(1,1) chance to beat control.
pub fn compare_proportions(control: Proportion, variant: Proportion) -> Comparison {
    let (Some(pc), Some(pt)) = (control.rate(), variant.rate()) else {
        return Comparison::default();
    };
    let (nc, nt) = (control.n as f64, variant.n as f64);
    let d = pt - pc;
    let se = (pc * (1.0 - pc) / nc + pt * (1.0 - pt) / nt).sqrt();
    let (abs_diff_ci, p_value) = if se > 0.0 {
        (Some((d - Z975 * se, d + Z975 * se)), finite(normal_two_sided_p(d / se)))
    } else {
        (None, None)
    };
    let lift = (pc > 0.0).then(|| d / pc);
    // The delta method degenerates when either arm has no variance (a 0% or 100% rate).
    let degenerate = |p: f64| p <= 0.0 || p >= 1.0;
    let lift_ci = if !degenerate(pc) && !degenerate(pt) {
        lift.zip(lift_variance(pc, pc * (1.0 - pc) / nc, pt, pt * (1.0 - pt) / nt))
            .map(|(l, var)| (l - Z975 * var.sqrt(), l + Z975 * var.sqrt()))
    } else {
        None
    };
    Comparison {
        abs_diff: Some(d),
        abs_diff_ci,
        lift,
        lift_ci,
        p_value,
        chance_to_beat_control: Some(chance_to_beat(control, variant)),
    }
}

/// The delta method's variance of the relative lift `(mean_t − mean_c) / mean_c`, from each
/// mean and the variance of each mean; `None` without a control mean or a positive variance.
pub fn lift_variance(mean_c: f64, var_c: f64, mean_t: f64, var_t: f64) -> Option<f64> {
    (mean_c != 0.0)
        .then(|| var_t / (mean_c * mean_c) + mean_t * mean_t * var_c / mean_c.powi(4))
        .filter(|v| v.is_finite() && *v > 0.0)
}

/// P(p_variant > p_control) with Beta(1 + x, 1 + n - x) posteriors, exact (Evan Miller's
/// closed form for integer parameters), summed in log space.
pub fn chance_to_beat(control: Proportion, variant: Proportion) -> f64 {
    let (a_a, b_a) = (1.0 + control.x as f64, 1.0 + (control.n - control.x) as f64);
    let (a_b, b_b) = (1.0 + variant.x as f64, 1.0 + (variant.n - variant.x) as f64);
    // P(B > A) = sum_{i=0}^{a_b-1} B(a_a+i, b_a+b_b) / ((b_b+i) B(1+i, b_b) B(a_a, b_a)).
    // The sum runs over the smaller alpha: P(B > A) = 1 - P(A > B).
    let sum = |a_a: f64, b_a: f64, a_b: f64, b_b: f64| -> f64 {
        let mut total = 0.0;
        let base = ln_beta(a_a, b_a);
        let mut i = 0.0;
        while i < a_b {
            total += (ln_beta(a_a + i, b_a + b_b) - (b_b + i).ln() - ln_beta(1.0 + i, b_b) - base).exp();
            i += 1.0;
        }
        total
    };
    let p = if a_b <= a_a { sum(a_a, b_a, a_b, b_b) } else { 1.0 - sum(a_b, b_b, a_a, b_a) };
    p.clamp(0.0, 1.0)
}

/// Pearson chi-square p-value of observed counts against intended weights (df = k - 1).
/// `None` with fewer than two arms or no units.
pub fn srm_p_value(observed: &[u64], weights: &[f64]) -> Option<f64> {
    if observed.len() < 2 || observed.len() != weights.len() {
        return None;
    }
    let total: f64 = observed.iter().map(|&o| o as f64).sum();
    let wsum: f64 = weights.iter().sum();
    if total <= 0.0 || wsum <= 0.0 || weights.iter().any(|w| *w <= 0.0) {
        return None;
    }
    let chi2: f64 = observed
        .iter()
        .zip(weights)
        .map(|(&o, w)| {
            let e = total * w / wsum;
            (o as f64 - e).powi(2) / e
        })
        .sum();
    let dist = ChiSquared::new((observed.len() - 1) as f64).ok()?;
    finite(dist.sf(chi2))
}

/// One-sided p-value that `harm`, a difference in the direction of harm (e.g. the variant's
/// opt-out rate minus the control's), exceeds `margin`: the non-inferiority test of a
/// guardrail. H0 is "no more harm than the margin"; a small p says the variant harms.
pub fn harm_p_value(harm: f64, se: f64, margin: f64) -> Option<f64> {
    if !(se > 0.0 && se.is_finite() && harm.is_finite()) {
        return None;
    }
    finite(0.5 * erfc((harm - margin) / se / std::f64::consts::SQRT_2))
}

/// Two-sided p-value that two independent estimates differ (a slice's effect against the
/// rest's): `(d1 - d2) / sqrt(v1 + v2)` against the normal.
pub fn difference_p_value(d1: f64, v1: f64, d2: f64, v2: f64) -> Option<f64> {
    let se = (v1 + v2).sqrt();
    (se > 0.0 && se.is_finite()).then(|| normal_two_sided_p((d1 - d2) / se)).and_then(finite)
}

/// Mean, unbiased variance and count of a per-unit metric in one arm.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MeanStats {
    pub n: u64,
    pub mean: f64,
    pub variance: f64,
}

/// Welch's t-test of `variant` against `control`: difference, its 95% interval, p-value.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct WelchResult {
    pub diff: Option<f64>,
    pub ci: Option<(f64, f64)>,
    pub p_value: Option<f64>,
    pub dof: Option<f64>,
}

/// Welch's unequal-variance t-test.
pub fn welch(control: MeanStats, variant: MeanStats) -> WelchResult {
    if control.n < 2 || variant.n < 2 {
        return WelchResult::default();
    }
    let d = variant.mean - control.mean;
    let (vc, vt) = (control.variance / control.n as f64, variant.variance / variant.n as f64);
    let se = (vc + vt).sqrt();
    if se <= 0.0 || !se.is_finite() {
        return WelchResult { diff: Some(d), ..Default::default() };
    }
    let dof = (vc + vt).powi(2) / (vc * vc / (control.n - 1) as f64 + vt * vt / (variant.n - 1) as f64);
    let Ok(t) = StudentsT::new(0.0, 1.0, dof) else {
        return WelchResult { diff: Some(d), ..Default::default() };
    };
    let q = t.inverse_cdf(0.975);
    WelchResult {
        diff: Some(d),
        ci: Some((d - q * se, d + q * se)),
        p_value: finite(2.0 * t.sf((d / se).abs())),
        dof: Some(dof),
    }
}

/// The reference vectors and the comparison every test of this module uses.
#[cfg(test)]
pub(crate) mod test_vectors {
    use serde_json::Value;

    /// Passes when `|got - exp| <= max(abs, rel * |exp|)`; `None` must meet `null`.
    pub fn close(got: Option<f64>, exp: &Value, abs: f64, rel: f64, what: &str) {
        match (got, exp.as_f64()) {
            (None, None) => {}
            (Some(g), Some(e)) => assert!((g - e).abs() <= abs.max(rel * e.abs()), "{what}: got {g}, expected {e}"),
            (g, _) => panic!("{what}: got {g:?}, expected {exp}"),
        }
    }

    /// `fixtures/ab_vectors.json`.
    pub fn vectors() -> Value {
        serde_json::from_str(include_str!("../../../fixtures/ab_vectors.json")).unwrap()
    }
}

#[cfg(test)]
mod tests {
    use super::test_vectors::{close, vectors};
    use super::*;
    use serde_json::Value;

    fn pair(got: Option<(f64, f64)>, exp: &Value, what: &str) {
        match got {
            None => assert!(exp.is_null(), "{what}: got None, expected {exp}"),
            Some((lo, hi)) => {
                close(Some(lo), &exp[0], 1e-9, 1e-9, what);
                close(Some(hi), &exp[1], 1e-9, 1e-9, what);
            }
        }
    }

    #[test]
    fn proportion_cases_match_scipy_and_statsmodels() {
        let v = vectors();
        let mut checked = 0;
        for case in v["cases"].as_array().unwrap().iter().filter(|c| c["kind"] == "proportion") {
            let arms: Vec<(String, Proportion)> = case["input"]["arms"]
                .as_array()
                .unwrap()
                .iter()
                .map(|a| {
                    let n = a["users"].as_u64().unwrap();
                    (a["name"].as_str().unwrap().to_string(), Proportion { n, x: a["conversions"].as_u64().unwrap() })
                })
                .collect();
            let control = arms[0].1;
            for cmp in case["expected"]["comparisons"].as_array().unwrap() {
                let arm = arms.iter().find(|(n, _)| cmp["variant"] == n.as_str()).unwrap().1;
                let got = compare_proportions(control, arm);
                let id = case["id"].as_str().unwrap();
                close(got.abs_diff, &cmp["abs_diff"], 1e-9, 1e-9, &format!("{id} abs_diff"));
                pair(got.abs_diff_ci, &cmp["ci95_abs_diff_wald"], &format!("{id} wald"));
                close(got.p_value, &cmp["p_value_unpooled"], 1e-10, 1e-6, &format!("{id} p"));
                close(got.lift, &cmp["rel_lift"], 1e-9, 1e-9, &format!("{id} lift"));
                pair(got.lift_ci, &cmp["ci95_rel_lift_delta"], &format!("{id} lift ci"));
                close(
                    got.chance_to_beat_control,
                    &cmp["bayes_beta11"]["chance_to_beat_control"],
                    1e-6,
                    0.0,
                    &format!("{id} chance"),
                );
                checked += 1;
            }
            let observed: Vec<u64> = arms.iter().map(|(_, a)| a.n).collect();
            let weights: Vec<f64> =
                case["input"]["intended_weights"].as_array().unwrap().iter().map(|w| w.as_f64().unwrap()).collect();
            close(srm_p_value(&observed, &weights), &case["expected"]["srm"]["p_value"], 1e-10, 1e-6, "srm");
        }
        assert!(checked >= 6, "only {checked} comparisons checked");
    }

    #[test]
    fn welch_matches_scipy() {
        let v = vectors();
        let case = v["cases"].as_array().unwrap().iter().find(|c| c["kind"] == "mean").unwrap();
        let arm = |i: usize| {
            let a = &case["input"]["arms"][i];
            MeanStats {
                n: a["n"].as_u64().unwrap(),
                mean: a["mean"].as_f64().unwrap(),
                variance: a["variance"].as_f64().unwrap(),
            }
        };
        let cmp = &case["expected"]["comparisons"][0];
        let got = welch(arm(0), arm(1));
        close(got.dof, &cmp["welch_dof"], 1e-8, 1e-7, "dof");
        close(got.p_value, &cmp["p_value_welch_t"], 1e-8, 1e-7, "p");
        let ci = got.ci.unwrap();
        close(Some(ci.0), &cmp["ci95_abs_diff_welch_t"][0], 1e-8, 1e-7, "lo");
        close(Some(ci.1), &cmp["ci95_abs_diff_welch_t"][1], 1e-8, 1e-7, "hi");
    }

    #[test]
    fn tiny_p_values_keep_their_digits() {
        // 1 - cdf would give 0 or a rounded value here.
        let p = normal_two_sided_p(5.5);
        assert!((p - 3.797_912_493_177_e-8).abs() < 1e-15, "{p}");
        assert_eq!(srm_p_value(&[10], &[1.0]), None);
        assert_eq!(compare_proportions(Proportion { n: 0, x: 0 }, Proportion { n: 5, x: 1 }), Comparison::default());
    }

    #[test]
    fn harm_matches_statsmodels_one_sided() {
        let v = vectors();
        let mut checked = 0;
        for case in v["cases"].as_array().unwrap().iter().filter(|c| c["kind"] == "noninferiority") {
            let e = &case["expected"];
            let p = harm_p_value(
                e["abs_diff"].as_f64().unwrap(),
                e["se_wald"].as_f64().unwrap(),
                case["input"]["margin"].as_f64().unwrap(),
            );
            close(p, &e["p_value_harm"], 1e-10, 1e-6, "harm");
            checked += 1;
        }
        assert_eq!(checked, 2);
    }

    #[test]
    fn slice_against_rest_matches_statsmodels() {
        let v = vectors();
        let case = v["cases"].as_array().unwrap().iter().find(|c| c["kind"] == "welch_slice_vs_rest").unwrap();
        let mut raw = Vec::new();
        for s in case["expected"]["slices"].as_array().unwrap() {
            let f = |k: &str| s[k].as_f64().unwrap();
            let p = difference_p_value(f("d_slice"), f("v_slice"), f("d_rest"), f("v_rest"));
            close(p, &s["p_value"], 1e-10, 1e-6, "slice p");
            raw.push(p);
        }
        for (g, s) in bonferroni(&raw).iter().zip(case["expected"]["slices"].as_array().unwrap()) {
            close(*g, &s["p_value_bonferroni"], 1e-10, 1e-6, "bonferroni");
        }
    }
}
