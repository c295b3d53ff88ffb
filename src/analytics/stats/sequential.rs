//! Always-valid inference: the two-sided asymptotic confidence sequence of Waudby-Smith et al.
//! (2023), in the form GrowthBook documents (`sequential.mdx`) and `gbstats` computes.
//!
//! A fixed-horizon interval covers the truth with 95% probability at one look decided in
//! advance; looked at every morning, it excludes zero by chance far more often than 5% of the
//! time. A confidence sequence covers the truth at every look at once, so a marketer may stop
//! the moment it excludes zero. The price is width: it is tuned to be narrowest near `N*`
//! units (`n_star`), the sample the experiment expects.
//!
//! For an estimate `d` with variance `v` (its squared standard error) after `N` units in the
//! two arms together, `s² = v·N` and `ρ² = (−2 ln α + ln(1 − 2 ln α)) / N*`:
//!
//! ```text
//! halfwidth = s · sqrt( 2 (N ρ² + 1) / (N² ρ²) · ln( sqrt(N ρ² + 1) / α ) )
//! p         = min(1, sqrt(N ρ² + 1) · exp( −N² ρ² d² / (2 s² (N ρ² + 1)) ))
//! ```
//!
//! The p-value is the reciprocal of the sequence's e-value: it is below α exactly when the
//! sequence at level α excludes zero.

/// GrowthBook's default tuning: the sequence is narrowest near this many units.
pub const DEFAULT_N_STAR: f64 = 5_000.0;

/// An always-valid interval and p-value of one estimate.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sequence {
    pub low: f64,
    pub high: f64,
    pub p_value: f64,
}

/// `ρ` for tuning `n_star` at level `alpha`.
pub fn rho(n_star: f64, alpha: f64) -> f64 {
    let l = -2.0 * alpha.ln();
    ((l + (l + 1.0).ln()) / n_star).sqrt()
}

/// The sequence around `estimate`, whose variance is `variance`, after `n` units in all arms.
/// `None` when undefined: no units, no variance, or settings outside their range.
pub fn confidence_sequence(estimate: f64, variance: f64, n: f64, n_star: f64, alpha: f64) -> Option<Sequence> {
    let usable = |x: f64| x.is_finite() && x > 0.0;
    if !(estimate.is_finite() && usable(variance) && usable(n) && usable(n_star) && alpha > 0.0 && alpha < 1.0) {
        return None;
    }
    let r2 = rho(n_star, alpha).powi(2);
    let s2 = variance * n;
    let t = n * r2 + 1.0;
    let half = s2.sqrt() * (2.0 * t / (n * n * r2) * (t.sqrt() / alpha).ln()).sqrt();
    // The e-value's logarithm, kept in logs so a huge statistic gives p = 0 and not NaN.
    let log_e = n * n * r2 * estimate * estimate / (2.0 * s2 * t) - 0.5 * t.ln();
    let p_value = (-log_e).exp().min(1.0);
    (half.is_finite() && p_value.is_finite()).then_some(Sequence {
        low: estimate - half,
        high: estimate + half,
        p_value,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analytics::stats::test_vectors::{close, vectors};

    #[test]
    fn rho_matches_growthbook_default() {
        let v = vectors();
        let case = &v["cases"][0]["expected"]["comparisons"][0];
        close(Some(rho(5000.0, 0.05)), &case["growthbook_sequential_absolute"]["rho"], 1e-12, 1e-12, "rho");
    }

    /// The proportion and mean cases carry GrowthBook's sequential intervals for the absolute
    /// difference (unpooled variance) and the relative lift (delta-method variance).
    #[test]
    fn intervals_and_p_values_match_gbstats() {
        let v = vectors();
        let mut checked = 0;
        for case in v["cases"].as_array().unwrap() {
            let comparisons = case["expected"]["comparisons"].as_array();
            for cmp in comparisons.into_iter().flatten() {
                for (kind, se_key, est_key) in [
                    ("growthbook_sequential_absolute", "se_unpooled", "abs_diff"),
                    ("growthbook_sequential_absolute", "se_diff", "abs_diff"),
                    ("growthbook_sequential_relative", "se_rel_delta", "rel_lift"),
                ] {
                    let (Some(se), Some(est)) = (cmp[se_key].as_f64(), cmp[est_key].as_f64()) else { continue };
                    let exp = &cmp[kind];
                    if exp.is_null() {
                        continue;
                    }
                    let n: f64 = if case["kind"] == "mean" {
                        case["input"]["arms"].as_array().unwrap().iter().map(|a| a["n"].as_f64().unwrap()).sum()
                    } else {
                        case["input"]["arms"].as_array().unwrap()[..2]
                            .iter()
                            .map(|a| a["users"].as_f64().unwrap())
                            .sum()
                    };
                    // Three-arm cases compare each arm with the control: N is that pair's.
                    let n = if case["input"]["arms"].as_array().unwrap().len() > 2 {
                        let arms = case["input"]["arms"].as_array().unwrap();
                        let other = arms.iter().find(|a| cmp["variant"] == a["name"]).unwrap();
                        arms[0]["users"].as_f64().unwrap() + other["users"].as_f64().unwrap()
                    } else {
                        n
                    };
                    let id = format!("{} {} {kind}", case["id"], cmp["variant"]);
                    let got = confidence_sequence(est, se * se, n, DEFAULT_N_STAR, 0.05);
                    if exp["ci"].is_null() {
                        assert!(got.is_none(), "{id}: expected undefined, got {got:?}");
                        continue;
                    }
                    let got = got.unwrap_or_else(|| panic!("{id}: undefined"));
                    close(Some(got.low), &exp["ci"][0], 1e-9, 1e-9, &id);
                    close(Some(got.high), &exp["ci"][1], 1e-9, 1e-9, &id);
                    close(Some(got.p_value), &exp["p_value"], 1e-10, 1e-6, &id);
                    checked += 1;
                }
            }
        }
        assert!(checked >= 8, "only {checked} sequences checked");
    }

    #[test]
    fn undefined_inputs_give_none_and_huge_statistics_give_zero() {
        assert!(confidence_sequence(0.1, 0.0, 100.0, 5000.0, 0.05).is_none());
        assert!(confidence_sequence(0.1, 0.01, 0.0, 5000.0, 0.05).is_none());
        assert!(confidence_sequence(f64::NAN, 0.01, 10.0, 5000.0, 0.05).is_none());
        let s = confidence_sequence(1.0, 1e-9, 1e6, 5000.0, 0.05).unwrap();
        assert_eq!(s.p_value, 0.0);
        // The p-value crosses alpha where the interval stops covering zero.
        for d in [0.01, 0.02, 0.03, 0.04, 0.05, 0.06] {
            let s = confidence_sequence(d, 0.0002, 2000.0, 5000.0, 0.05).unwrap();
            assert_eq!(s.low > 0.0, s.p_value < 0.05, "d = {d}: {s:?}");
        }
    }

    /// gbstats' SequentialTwoSidedTTest on sufficient statistics, two tunings.
    #[test]
    fn sequential_cases_match_gbstats() {
        let v = vectors();
        let mut checked = 0;
        for case in v["cases"].as_array().unwrap().iter().filter(|c| c["kind"] == "sequential") {
            let i = &case["input"];
            let arm = |k: usize| {
                let a = &i["arms"][k];
                let (n, s, ss) =
                    (a["n"].as_f64().unwrap(), a["sum"].as_f64().unwrap(), a["sum_squares"].as_f64().unwrap());
                let mean = s / n;
                // gbstats: p(1-p) for a proportion, the unbiased variance for a mean.
                let var =
                    if i["statistic"] == "proportion" { mean * (1.0 - mean) } else { (ss - s * s / n) / (n - 1.0) };
                (n, mean, var)
            };
            let ((nc, mc, vc), (nt, mt, vt)) = (arm(0), arm(1));
            let (n_star, alpha) = (i["sequential_tuning_parameter"].as_f64().unwrap(), i["alpha"].as_f64().unwrap());
            let abs = confidence_sequence(mt - mc, vc / nc + vt / nt, nc + nt, n_star, alpha).unwrap();
            let rel_var = crate::analytics::stats::lift_variance(mc, vc / nc, mt, vt / nt).unwrap();
            let rel = confidence_sequence((mt - mc) / mc, rel_var, nc + nt, n_star, alpha).unwrap();
            for (got, exp) in [(abs, &case["expected"]["absolute"]), (rel, &case["expected"]["relative"])] {
                let id = format!("{}", case["id"]);
                close(Some(got.low), &exp["ci"][0], 1e-9, 1e-9, &id);
                close(Some(got.high), &exp["ci"][1], 1e-9, 1e-9, &id);
                close(Some(got.p_value), &exp["p_value"], 1e-10, 1e-6, &id);
                checked += 1;
            }
        }
        assert!(checked >= 12, "only {checked} checked");
    }

    /// The reason the sequence exists: A/A experiments (no true difference), looked at daily for
    /// 30 days, stopped at the first look that says "significant". The fixed-horizon z test
    /// stops far more often than alpha; the always-valid test stays under it.
    #[test]
    fn a_a_experiments_looked_at_daily_stay_under_alpha_only_when_always_valid() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(20261205);
        let (experiments, days, per_day, rate, alpha) = (400, 30, 150, 0.10, 0.05);
        let (mut fixed_hits, mut valid_hits) = (0, 0);
        for _ in 0..experiments {
            let (mut n, mut xc, mut xt) = (0.0, 0.0, 0.0);
            let (mut fixed, mut valid) = (false, false);
            for _ in 0..days {
                for _ in 0..per_day {
                    xc += f64::from(u8::from(rng.random::<f64>() < rate));
                    xt += f64::from(u8::from(rng.random::<f64>() < rate));
                }
                n += per_day as f64;
                let (pc, pt) = (xc / n, xt / n);
                let var = pc * (1.0 - pc) / n + pt * (1.0 - pt) / n;
                if var <= 0.0 {
                    continue;
                }
                let d = pt - pc;
                fixed |= crate::analytics::stats::normal_two_sided_p(d / var.sqrt()) < alpha;
                valid |= confidence_sequence(d, var, 2.0 * n, DEFAULT_N_STAR, alpha).is_some_and(|s| s.p_value < alpha);
            }
            fixed_hits += usize::from(fixed);
            valid_hits += usize::from(valid);
        }
        let (fixed_rate, valid_rate) = (fixed_hits as f64 / experiments as f64, valid_hits as f64 / experiments as f64);
        println!("A/A, 30 daily looks: fixed-horizon false positives {fixed_rate:.3}, always-valid {valid_rate:.3}");
        assert!(valid_rate < alpha, "always-valid: {valid_rate}");
        assert!(fixed_rate > 2.0 * alpha, "fixed-horizon: {fixed_rate}");
    }
}
