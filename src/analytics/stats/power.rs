//! Power and sample size of a conversion-rate test, in the closed form of GrowthBook's
//! `power-technical.mdx`: a two-sided z test of the difference of two rates, each arm with its
//! own variance `p(1 − p)` at its own rate.
//!
//! ```text
//! se    = sqrt( p_c (1 − p_c) / n_c + p_t (1 − p_t) / n_t )
//! power = Φ(Δ / se − z_{1−α/2}) + Φ(−Δ / se − z_{1−α/2})
//! ```
//!
//! The sample is the smallest total that gives every treatment arm, against the control, the
//! power asked for, split by the arms' weights. Found by bisection over the total rather than
//! by inverting the formula, so the second tail and unequal weights are exact.

use statrs::distribution::{ContinuousCDF, Normal};

use crate::error::{Error, Result};

/// What to plan for.
#[derive(Debug, Clone, PartialEq)]
pub struct PlanInput {
    /// The control's conversion rate.
    pub baseline: f64,
    /// The smallest effect worth detecting: absolute (rate points) or, with `relative`, a
    /// share of the baseline.
    pub mde: f64,
    pub relative: bool,
    pub alpha: f64,
    pub power: f64,
    /// The arms' weights, the control first.
    pub weights: Vec<f64>,
}

/// A plan: units per arm (in the weights' order), their total and the power each treatment
/// arm has at `at_size` units in all (the planned total, or the recipients available).
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    pub per_arm: Vec<u64>,
    pub total: u64,
    pub power_at_size: f64,
    pub at_size: u64,
}

/// The power of comparing an arm of `n_t` units with the control's `n_c` for an absolute
/// effect `delta` over `baseline`.
pub fn power(baseline: f64, delta: f64, n_c: f64, n_t: f64, alpha: f64) -> f64 {
    let p_t = baseline + delta;
    let se = (baseline * (1.0 - baseline) / n_c + p_t * (1.0 - p_t) / n_t).sqrt();
    if se.is_nan() || se <= 0.0 || !se.is_finite() {
        return f64::NAN;
    }
    let Ok(z) = Normal::new(0.0, 1.0) else { return f64::NAN };
    let crit = z.inverse_cdf(1.0 - alpha / 2.0);
    // sf(a) instead of cdf(-a) keeps the small tail's digits.
    z.sf(crit - delta / se) + z.cdf(-crit - delta / se)
}

impl PlanInput {
    /// Checks the inputs, with errors that name the bad one.
    pub fn validate(&self) -> Result<f64> {
        let bad = |what: &str| Err(Error::Invalid(what.to_string()));
        if !(self.baseline > 0.0 && self.baseline < 1.0) {
            return bad("baseline must be a rate between 0 and 1, like 0.10");
        }
        if !(self.mde.is_finite() && self.mde > 0.0) {
            return bad("mde must be a positive number");
        }
        if !(self.alpha > 0.0 && self.alpha < 1.0) {
            return bad("alpha must be between 0 and 1");
        }
        if !(self.power > 0.0 && self.power < 1.0) {
            return bad("power must be between 0 and 1");
        }
        if self.weights.len() < 2 || self.weights.iter().any(|w| !(w.is_finite() && *w > 0.0)) {
            return bad("weights need at least two positive numbers, the control first");
        }
        let delta = if self.relative { self.baseline * self.mde } else { self.mde };
        if self.baseline + delta >= 1.0 {
            return bad("baseline plus the effect must stay below 1");
        }
        Ok(delta)
    }

    /// The smallest power over the treatment arms with `total` units split by weight.
    pub fn power_at(&self, total: f64) -> Result<f64> {
        let delta = self.validate()?;
        let sum: f64 = self.weights.iter().sum();
        let n_c = total * self.weights[0] / sum;
        Ok(self.weights[1..]
            .iter()
            .map(|w| power(self.baseline, delta, n_c, total * w / sum, self.alpha))
            .fold(f64::INFINITY, f64::min))
    }

    /// The plan; `available` is the recipients a file holds, at which the power is reported.
    pub fn plan(&self, available: Option<u64>) -> Result<Plan> {
        self.validate()?;
        let sum: f64 = self.weights.iter().sum();
        let enough = |t: f64| self.power_at(t).map(|p| p >= self.power);
        // Double until enough, then bisect over whole units.
        let (mut lo, mut hi) = (0.0_f64, 16.0_f64);
        while !enough(hi)? {
            lo = hi;
            hi *= 2.0;
            if hi > 1e13 {
                return Err(Error::Invalid("the effect is too small to detect with any sample".into()));
            }
        }
        while hi - lo > 1.0 {
            let mid = ((lo + hi) / 2.0).floor();
            if enough(mid)? { hi = mid } else { lo = mid }
        }
        let per_arm: Vec<u64> = self.weights.iter().map(|w| (hi * w / sum).ceil() as u64).collect();
        let total = per_arm.iter().sum();
        let at_size = available.unwrap_or(total);
        Ok(Plan { per_arm, total, power_at_size: self.power_at(at_size as f64)?, at_size })
    }
}

impl Plan {
    /// `{"per_arm": [...], "total", "power_at_size", "at_size", "days_at_rate"}`, with the
    /// arms' names when known; `days_at_rate` is the total at `rate_per_day` sends a day (null
    /// without a rate).
    pub fn to_json(&self, arms: Option<&[String]>, rate_per_day: Option<f64>) -> serde_json::Value {
        let days = rate_per_day.filter(|r| *r > 0.0).map(|r| ((self.total as f64 / r) * 10.0).ceil() / 10.0);
        serde_json::json!({
            "per_arm": self.per_arm,
            "arms": arms,
            "total": self.total,
            "power_at_size": self.power_at_size,
            "at_size": self.at_size,
            "days_at_rate": days,
        })
    }

    /// A few lines for a terminal.
    pub fn to_table(&self, arms: Option<&[String]>, rate_per_day: Option<f64>) -> String {
        let mut out = String::new();
        for (i, n) in self.per_arm.iter().enumerate() {
            let name = arms.and_then(|a| a.get(i)).cloned().unwrap_or_else(|| format!("arm {}", i + 1));
            out.push_str(&format!("{name:<24} {n:>12}\n"));
        }
        out.push_str(&format!("{:<24} {:>12}\n", "total", self.total));
        out.push_str(&format!("power at {} contacts: {:.3}\n", self.at_size, self.power_at_size));
        if let Some(r) = rate_per_day.filter(|r| *r > 0.0) {
            out.push_str(&format!("days at {r} sends a day: {:.1}\n", (self.total as f64 / r * 10.0).ceil() / 10.0));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(baseline: f64, mde: f64, relative: bool, weights: &[f64]) -> PlanInput {
        PlanInput { baseline, mde, relative, alpha: 0.05, power: 0.8, weights: weights.to_vec() }
    }

    #[test]
    fn plan_has_the_power_asked_and_one_unit_less_does_not() {
        let i = input(0.10, 0.01, false, &[50.0, 50.0]);
        let p = i.plan(None).unwrap();
        assert_eq!(p.per_arm.len(), 2);
        assert!(p.power_at_size >= 0.8, "{p:?}");
        assert!(i.power_at(p.total as f64 - 2.0).unwrap() < 0.8);
        // The textbook approximation: 2 (z_.975 + z_.8)^2 p(1-p)-ish, about 14,750 per arm.
        assert!((14_000..15_500).contains(&p.per_arm[0]), "{p:?}");
        let r = input(0.10, 0.10, true, &[50.0, 50.0]).plan(None).unwrap();
        assert_eq!(r.per_arm, p.per_arm, "10% of 0.10 is 0.01");
    }

    #[test]
    fn bad_inputs_say_which() {
        assert!(input(1.5, 0.01, false, &[1.0, 1.0]).plan(None).unwrap_err().to_string().contains("baseline"));
        assert!(input(0.1, 0.0, false, &[1.0, 1.0]).plan(None).unwrap_err().to_string().contains("mde"));
        assert!(input(0.1, 0.01, false, &[1.0]).plan(None).unwrap_err().to_string().contains("weights"));
        assert!(input(0.95, 0.1, false, &[1.0, 1.0]).plan(None).unwrap_err().to_string().contains("below 1"));
    }

    /// statsmodels' NormalIndPower, with the effect size over the two arms' average variance:
    /// the same as each arm's own variance when the arms are equal.
    #[test]
    fn equal_arms_match_statsmodels_within_half_a_percent() {
        use crate::analytics::stats::test_vectors::vectors;
        let v = vectors();
        let mut checked = 0;
        for case in v["cases"].as_array().unwrap().iter().filter(|c| c["kind"] == "power") {
            let i = &case["input"];
            let weights: Vec<f64> = i["weights"].as_array().unwrap().iter().map(|w| w.as_f64().unwrap()).collect();
            if weights.len() != 2 {
                continue;
            }
            let plan = input(
                i["baseline"].as_f64().unwrap(),
                i["mde"].as_f64().unwrap(),
                i["mde_type"] == "relative",
                &weights,
            )
            .plan(None)
            .unwrap();
            let expected = case["expected"]["n_per_arm_unpooled"].as_f64().unwrap();
            let got = plan.per_arm[0] as f64;
            assert!((got - expected).abs() / expected < 0.005, "{}: {got} vs statsmodels {expected}", case["id"]);
            checked += 1;
        }
        assert_eq!(checked, 2);
    }
}
