//! Experiment statistics, computed in Rust over the per-variant counts
//! the `experiment` SQL produces.
//!
//! All p-values are upper tails computed directly (`erfc`, `sf`), never `1 - cdf`, so values
//! near 1e-7 keep their digits. Anything undefined for its inputs is `None`, never NaN.

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

fn finite(v: f64) -> Option<f64> {
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
    let lift_ci = if lift.is_some() && !degenerate(pc) && !degenerate(pt) {
        let var = pt * (1.0 - pt) / (nt * pc * pc) + pt * pt * pc * (1.0 - pc) / (nc * pc.powi(4));
        let se_rel = var.sqrt();
        lift.map(|l| (l - Z975 * se_rel, l + Z975 * se_rel))
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

/// Holm step-down adjusted p-values (undefined inputs stay undefined and are not counted).
pub fn holm(p: &[Option<f64>]) -> Vec<Option<f64>> {
    let mut idx: Vec<usize> = (0..p.len()).filter(|&i| p[i].is_some()).collect();
    idx.sort_by(|&a, &b| p[a].partial_cmp(&p[b]).unwrap_or(std::cmp::Ordering::Equal));
    let m = idx.len();
    let mut out = vec![None; p.len()];
    let mut running: f64 = 0.0;
    for (rank, &i) in idx.iter().enumerate() {
        let adj = ((m - rank) as f64 * p[i].unwrap_or(1.0)).min(1.0);
        running = running.max(adj);
        out[i] = Some(running);
    }
    out
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    fn close(got: Option<f64>, exp: &Value, abs: f64, rel: f64, what: &str) {
        match (got, exp.as_f64()) {
            (None, None) => {}
            (Some(g), Some(e)) => assert!((g - e).abs() <= abs.max(rel * e.abs()), "{what}: got {g}, expected {e}"),
            (g, _) => panic!("{what}: got {g:?}, expected {exp}"),
        }
    }

    fn pair(got: Option<(f64, f64)>, exp: &Value, what: &str) {
        match got {
            None => assert!(exp.is_null(), "{what}: got None, expected {exp}"),
            Some((lo, hi)) => {
                close(Some(lo), &exp[0], 1e-9, 1e-9, what);
                close(Some(hi), &exp[1], 1e-9, 1e-9, what);
            }
        }
    }

    fn vectors() -> Value {
        serde_json::from_str(include_str!("../../fixtures/ab_vectors.json")).unwrap()
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
    fn holm_matches_statsmodels() {
        let v = vectors();
        let case = v["cases"].as_array().unwrap().iter().find(|c| c["kind"] == "multiple_comparisons").unwrap();
        let p: Vec<Option<f64>> = case["input"]["p_values"].as_array().unwrap().iter().map(Value::as_f64).collect();
        let got = holm(&p);
        for (g, e) in got.iter().zip(case["expected"]["holm_adjusted"].as_array().unwrap()) {
            close(*g, e, 1e-12, 1e-9, "holm");
        }
    }

    #[test]
    fn tiny_p_values_keep_their_digits() {
        // 1 - cdf would give 0 or a rounded value here.
        let p = normal_two_sided_p(5.5);
        assert!((p - 3.797_912_493_177_e-8).abs() < 1e-15, "{p}");
        assert_eq!(srm_p_value(&[10], &[1.0]), None);
        assert_eq!(compare_proportions(Proportion { n: 0, x: 0 }, Proportion { n: 5, x: 1 }), Comparison::default());
    }
}
