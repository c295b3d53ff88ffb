//! CUPED: variance reduction with each unit's own history (Deng et al. 2013), as GrowthBook's
//! `gbstats` computes it, and its post-stratified form.
//!
//! Every unit has its metric after exposure `y` and the same metric over a window before its
//! first exposure `x`. Whatever part of `y` its own past predicts is noise the variants did not
//! cause; subtracting `θ·x` removes it. `θ` is pooled over both arms, so the adjustment is the
//! same for both and the difference stays unbiased; a unit with no history has `x = 0` and
//! still counts. The arms are summarised by [`Moments`], which add up over groups, so the SQL
//! hands over sums and never a row per unit.

use super::{Z975, finite, normal_two_sided_p};

/// Sums of one arm (or one stratum of an arm): `n` units, their post-exposure metric `y` and
/// pre-exposure metric `x`.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Moments {
    pub n: f64,
    pub sum_y: f64,
    pub sum_y2: f64,
    pub sum_x: f64,
    pub sum_x2: f64,
    pub sum_xy: f64,
}

impl std::ops::Add for Moments {
    type Output = Moments;
    fn add(self, o: Moments) -> Moments {
        Moments {
            n: self.n + o.n,
            sum_y: self.sum_y + o.sum_y,
            sum_y2: self.sum_y2 + o.sum_y2,
            sum_x: self.sum_x + o.sum_x,
            sum_x2: self.sum_x2 + o.sum_x2,
            sum_xy: self.sum_xy + o.sum_xy,
        }
    }
}

impl std::ops::Sub for Moments {
    type Output = Moments;
    fn sub(self, o: Moments) -> Moments {
        Moments {
            n: self.n - o.n,
            sum_y: self.sum_y - o.sum_y,
            sum_y2: self.sum_y2 - o.sum_y2,
            sum_x: self.sum_x - o.sum_x,
            sum_x2: self.sum_x2 - o.sum_x2,
            sum_xy: self.sum_xy - o.sum_xy,
        }
    }
}

impl Moments {
    pub fn mean_y(&self) -> f64 {
        self.sum_y / self.n
    }
    pub fn mean_x(&self) -> f64 {
        self.sum_x / self.n
    }
    /// Unbiased variance of `y` (0 below two units).
    pub fn var_y(&self) -> f64 {
        centered(self.sum_y2, self.sum_y, self.sum_y, self.n)
    }
    pub fn var_x(&self) -> f64 {
        centered(self.sum_x2, self.sum_x, self.sum_x, self.n)
    }
    pub fn cov_xy(&self) -> f64 {
        centered(self.sum_xy, self.sum_x, self.sum_y, self.n)
    }
    /// Variance of `y − θx`.
    pub fn adjusted_var(&self, theta: f64) -> f64 {
        (self.var_y() + theta * theta * self.var_x() - 2.0 * theta * self.cov_xy()).max(0.0)
    }
}

/// `(Σab − Σa·Σb/n) / (n − 1)`, clamped for a variance; 0 below two units.
fn centered(sum_ab: f64, sum_a: f64, sum_b: f64, n: f64) -> f64 {
    if n < 2.0 { 0.0 } else { (sum_ab - sum_a * sum_b / n) / (n - 1.0) }
}

/// `θ` pooled over the two arms: the joint covariance of `x` and `y` over the joint variance
/// of `x`; 0 where `x` does not vary (nobody has history), which leaves `y` as it is.
pub fn theta(a: &Moments, b: &Moments) -> f64 {
    let j = *a + *b;
    let var_x = j.var_x();
    if j.n <= 1.0 || var_x <= 0.0 || !var_x.is_finite() { 0.0 } else { j.cov_xy() / var_x }
}

/// A CUPED-adjusted difference of `treatment` over `control`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Adjusted {
    pub theta: f64,
    pub diff: f64,
    /// Variance of `diff`.
    pub variance: f64,
    pub ci: (f64, f64),
    pub p_value: f64,
    /// `1 − adjusted variance / unadjusted variance` of the difference.
    pub variance_reduction: f64,
}

/// The adjusted difference with its 95% z interval and two-sided p-value; `None` below two
/// units in an arm or without variance.
pub fn adjust(control: &Moments, treatment: &Moments) -> Option<Adjusted> {
    if control.n < 2.0 || treatment.n < 2.0 {
        return None;
    }
    let theta = theta(control, treatment);
    let adj = |m: &Moments| m.mean_y() - theta * m.mean_x();
    let diff = adj(treatment) - adj(control);
    let variance = control.adjusted_var(theta) / control.n + treatment.adjusted_var(theta) / treatment.n;
    let raw = control.var_y() / control.n + treatment.var_y() / treatment.n;
    adjusted(theta, diff, variance, raw)
}

fn adjusted(theta: f64, diff: f64, variance: f64, raw: f64) -> Option<Adjusted> {
    if !(variance > 0.0 && raw > 0.0) {
        return None;
    }
    let se = variance.sqrt();
    Some(Adjusted {
        theta,
        diff,
        variance,
        ci: (diff - Z975 * se, diff + Z975 * se),
        p_value: finite(normal_two_sided_p(diff / se))?,
        variance_reduction: 1.0 - variance / raw,
    })
}

/// Post-stratified CUPED (GrowthBook's CUPEDps, `post-stratification.mdx`): within each
/// stratum (country) both arms together fit `y = g0 + g1·treated + g2·x` by least squares, so
/// each country gets its own slope; the stratum's effect is `g1` with the regression's variance
/// `σ²·(X'X)⁻¹[1,1]`, `σ² = RSS / (n − 3)`. Effects are weighted by each stratum's share of all
/// units `ν = n_k / N`, and the variance adds the randomness of those shares:
///
/// ```text
/// d = Σ ν_k d_k        Var(d) = Σ ν_k² Var(d_k) + Σ ν_k (d_k − d)² / N
/// ```
///
/// `strata` pairs each stratum's control and treatment sums. Strata with fewer than
/// `min_per_arm` units in an arm, or whose regression is singular, are pooled into one (itself
/// joining the largest stratum when still too small). `None` with fewer than two strata left
/// (plain [`adjust`] then applies).
pub fn adjust_stratified(strata: &[(Moments, Moments)], min_per_arm: f64) -> Option<Adjusted> {
    let mut kept: Vec<(Moments, Moments, (f64, f64))> = Vec::new();
    let mut pooled = (Moments::default(), Moments::default());
    for (c, t) in strata {
        match (c.n >= min_per_arm && t.n >= min_per_arm).then(|| regression(c, t)).flatten() {
            Some(fit) => kept.push((*c, *t, fit)),
            None => pooled = (pooled.0 + *c, pooled.1 + *t),
        }
    }
    if pooled.0.n + pooled.1.n > 0.0 {
        match (pooled.0.n >= min_per_arm && pooled.1.n >= min_per_arm)
            .then(|| regression(&pooled.0, &pooled.1))
            .flatten()
        {
            Some(fit) => kept.push((pooled.0, pooled.1, fit)),
            None => {
                let largest = kept.iter_mut().max_by(|a, b| (a.0.n + a.1.n).total_cmp(&(b.0.n + b.1.n)))?;
                let (c, t) = (largest.0 + pooled.0, largest.1 + pooled.1);
                *largest = (c, t, regression(&c, &t)?);
            }
        }
    }
    if kept.len() < 2 {
        return None;
    }
    let total: f64 = kept.iter().map(|(c, t, _)| c.n + t.n).sum();
    let nu = |c: &Moments, t: &Moments| (c.n + t.n) / total;
    let diff: f64 = kept.iter().map(|(c, t, (d, _))| nu(c, t) * d).sum();
    let variance: f64 =
        kept.iter().map(|(c, t, (d, v))| nu(c, t).powi(2) * v + nu(c, t) * (d - diff).powi(2) / total).sum();
    let (c, t) = kept.iter().fold((Moments::default(), Moments::default()), |a, (c, t, _)| (a.0 + *c, a.1 + *t));
    let raw = c.var_y() / c.n + t.var_y() / t.n;
    adjusted(f64::NAN, diff, variance, raw)
}

/// The treatment coefficient of `y = g0 + g1·treated + g2·x` over one stratum's two arms, and
/// its variance; `None` when singular or without residual degrees of freedom.
fn regression(c: &Moments, t: &Moments) -> Option<(f64, f64)> {
    let j = *c + *t;
    if j.n <= 3.0 {
        return None;
    }
    // X'X and X'y with X = [1, treated, x].
    let xtx = [[j.n, t.n, j.sum_x], [t.n, t.n, t.sum_x], [j.sum_x, t.sum_x, j.sum_x2]];
    let xty = [j.sum_y, t.sum_y, j.sum_xy];
    let inv = invert3(&xtx)?;
    let g: Vec<f64> = (0..3).map(|r| (0..3).map(|k| inv[r][k] * xty[k]).sum()).collect();
    let rss = j.sum_y2 - (0..3).map(|k| g[k] * xty[k]).sum::<f64>();
    let sigma2 = rss.max(0.0) / (j.n - 3.0);
    let var = sigma2 * inv[1][1];
    (g[1].is_finite() && var.is_finite() && var > 0.0).then_some((g[1], var))
}

/// The inverse of a 3×3 matrix by cofactors; `None` when (nearly) singular.
fn invert3(m: &[[f64; 3]; 3]) -> Option<[[f64; 3]; 3]> {
    let c = |r: usize, k: usize| {
        let (r1, r2) = ((r + 1) % 3, (r + 2) % 3);
        let (k1, k2) = ((k + 1) % 3, (k + 2) % 3);
        m[r1][k1] * m[r2][k2] - m[r1][k2] * m[r2][k1]
    };
    let det = m[0][0] * c(0, 0) + m[0][1] * c(0, 1) + m[0][2] * c(0, 2);
    let scale = m.iter().flatten().fold(0.0_f64, |a, v| a.max(v.abs()));
    if !det.is_finite() || det.abs() <= 1e-12 * scale.powi(3) {
        return None;
    }
    let mut out = [[0.0; 3]; 3];
    for (r, row) in out.iter_mut().enumerate() {
        for (k, v) in row.iter_mut().enumerate() {
            *v = c(k, r) / det;
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analytics::stats::test_vectors::{close, vectors};
    use serde_json::Value;

    fn moments(a: &Value) -> Moments {
        let f = |k: &str| a[k].as_f64().unwrap();
        Moments {
            n: f("n"),
            sum_y: f("sum_y"),
            sum_y2: f("sum_y2"),
            sum_x: f("sum_x"),
            sum_x2: f("sum_x2"),
            sum_xy: f("sum_xy"),
        }
    }

    #[test]
    fn cuped_matches_gbstats() {
        let v = vectors();
        let case = v["cases"].as_array().unwrap().iter().find(|c| c["kind"] == "cuped_mean").unwrap();
        let (c, t) = (moments(&case["input"]["arms"][0]), moments(&case["input"]["arms"][1]));
        let e = &case["expected"];
        let tol = |g: f64, k: &Value, what: &str| close(Some(g), k, 1e-8, 1e-8, what);
        tol(theta(&c, &t), &e["theta"], "theta");
        tol(c.var_y(), &e["arms"]["control"]["var_y"], "var_y");
        tol(c.cov_xy(), &e["arms"]["control"]["cov_xy"], "cov");
        tol(t.adjusted_var(theta(&c, &t)), &e["arms"]["treatment"]["adjusted_var"], "adjusted var");
        let a = adjust(&c, &t).unwrap();
        tol(a.diff, &e["cuped"]["abs_diff"], "diff");
        tol(a.variance.sqrt(), &e["cuped"]["se"], "se");
        tol(a.ci.0, &e["cuped"]["ci95_abs_diff_z"][0], "lo");
        tol(a.ci.1, &e["cuped"]["ci95_abs_diff_z"][1], "hi");
        close(Some(a.p_value), &e["cuped"]["p_value_z"], 1e-10, 1e-6, "p");
        tol(a.variance_reduction, &e["cuped"]["variance_reduction"], "reduction");
    }

    #[test]
    fn units_without_history_leave_the_plain_difference() {
        let arm = |n: f64, s: f64, s2: f64| Moments { n, sum_y: s, sum_y2: s2, ..Default::default() };
        let (c, t) = (arm(100.0, 10.0, 10.0), arm(100.0, 20.0, 20.0));
        let a = adjust(&c, &t).unwrap();
        assert_eq!(a.theta, 0.0);
        assert!((a.diff - 0.1).abs() < 1e-12);
        assert!(a.variance_reduction.abs() < 1e-12);
        assert!(adjust(&arm(1.0, 1.0, 1.0), &t).is_none());
    }

    #[test]
    fn post_stratified_matches_growthbooks_regression() {
        let v = vectors();
        let case = v["cases"].as_array().unwrap().iter().find(|c| c["kind"] == "cuped_ps").unwrap();
        assert_eq!(case["skipped"], false, "{}", case["note"]);
        let strata: Vec<(Moments, Moments)> = case["input"]["strata"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| (moments(&s["arms"][0]), moments(&s["arms"][1])))
            .collect();
        for (k, (c, t)) in strata.iter().enumerate() {
            let (g1, var) = regression(c, t).unwrap();
            let e = &case["expected"]["strata"][k];
            close(Some(g1), &e["effect"], 1e-9, 1e-9, "stratum effect");
            close(Some(var * (c.n + t.n)), &e["effect_cov"], 1e-9, 1e-8, "stratum variance");
        }
        let a = adjust_stratified(&strata, 50.0).unwrap();
        let e = &case["expected"]["absolute"];
        close(Some(a.diff), &e["point_estimate"], 1e-9, 1e-9, "estimate");
        close(Some(a.variance), &e["variance"], 1e-12, 1e-8, "variance");
        close(Some(a.ci.0), &e["ci95_z"][0], 1e-9, 1e-8, "lo");
        close(Some(a.ci.1), &e["ci95_z"][1], 1e-9, 1e-8, "hi");
        close(Some(a.p_value), &e["p_value_z"], 1e-20, 1e-6, "p");
    }
}
