//! The decision per variant, in words a marketer acts on, taken on the always-valid test so
//! that reading the page every morning does not make a winner out of noise.
//!
//! In order, the first that holds:
//!
//! 1. `invalid: SRM`: the split of contacts is not the split asked for (p < 0.001); the
//!    assignment or the logging is broken and no figure can be trusted.
//! 2. `stop: harm`: a guardrail's always-valid interval lies wholly beyond its margin on the
//!    side of harm. Valid at any look, so no gate holds it back.
//! 3. `not enough data`: GrowthBook's gates: fewer conversions than `min_conversions` in the
//!    larger arm, an arm without any, or fewer than `min_days` since the first exposure.
//! 4. `stop: harm`: a goal is significantly worse (always-valid, after the correction).
//! 5. `ship`: a goal is significantly better and none is worse.
//! 6. `keep running`.

use super::compare::Outcome;
use crate::experiments::{Analysis, Metric};

/// What to do with a variant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Ship,
    KeepRunning,
    StopHarm,
    InvalidSrm,
    NotEnoughData,
}

impl Decision {
    pub fn as_str(self) -> &'static str {
        match self {
            Decision::Ship => "ship",
            Decision::KeepRunning => "keep running",
            Decision::StopHarm => "stop: harm",
            Decision::InvalidSrm => "invalid: SRM",
            Decision::NotEnoughData => "not enough data",
        }
    }
}

/// What one variant's decision is taken on.
pub struct Evidence<'a> {
    pub analysis: &'a Analysis,
    pub srm_p_value: Option<f64>,
    pub srm_alpha: f64,
    /// Each goal with its outcome and its always-valid p-value after the correction.
    pub goals: Vec<(Metric, &'a Outcome, Option<f64>)>,
    /// Each guardrail with its outcome and margin.
    pub guardrails: Vec<(Metric, &'a Outcome, f64)>,
    /// Conversions of the control and of the variant.
    pub conversions: (f64, f64),
    /// Days since the experiment's first exposure.
    pub days: f64,
}

/// A difference in a metric's units: rate points for a rate, the amount otherwise.
pub fn amount(metric: Metric, v: f64) -> String {
    if metric.is_binary() { format!("{:.2} points", v * 100.0) } else { format!("{v:.3}") }
}

fn interval(metric: Metric, o: &Outcome) -> String {
    match &o.always_valid {
        Some(s) => format!("always-valid interval {} to {}", amount(metric, s.low), amount(metric, s.high)),
        None => "no always-valid interval yet".into(),
    }
}

fn direction(metric: Metric, o: &Outcome) -> String {
    let d = o.cuped.map(|c| c.diff).or(o.abs_diff).unwrap_or(0.0);
    let word = if d >= 0.0 { "higher" } else { "lower" };
    format!("{} is {} {word} than the control's", metric.as_str(), amount(metric, d.abs()))
}

fn p_text(p: f64) -> String {
    if p < 0.0001 { "< 0.0001".into() } else { format!("= {p:.4}") }
}

/// The decision and its reason.
pub fn decide(e: &Evidence) -> (Decision, String) {
    if let Some(p) = e.srm_p_value.filter(|p| *p < e.srm_alpha) {
        return (
            Decision::InvalidSrm,
            format!(
                "the contacts are not split as the weights say (sample ratio mismatch, p = {p:.2e}): the \
                 assignment or the logging is broken, so no result can be trusted"
            ),
        );
    }
    if let Some((m, o, margin)) = e.guardrails.iter().find(|(_, o, _)| o.harmful) {
        return (
            Decision::StopHarm,
            format!(
                "guardrail {}: {} ({}; margin {})",
                m.as_str(),
                direction(*m, o),
                interval(*m, o),
                amount(*m, *margin)
            ),
        );
    }
    let a = e.analysis;
    let larger = e.conversions.0.max(e.conversions.1);
    let mut short = Vec::new();
    if larger < a.min_conversions as f64 {
        short.push(format!("{larger:.0} conversions in the larger arm of {} needed", a.min_conversions));
    }
    if e.conversions.0 <= 0.0 || e.conversions.1 <= 0.0 {
        short.push("an arm has no conversions".to_string());
    }
    if e.days < a.min_days {
        short.push(format!("{:.1} days since the first exposure of {} needed", e.days.max(0.0), a.min_days));
    }
    if !short.is_empty() {
        return (Decision::NotEnoughData, short.join("; "));
    }
    let significant = |p: &Option<f64>| p.is_some_and(|p| p < a.alpha);
    if let Some((m, o, _)) = e.goals.iter().find(|(_, o, p)| o.harmful && significant(p)) {
        return (Decision::StopHarm, format!("goal {}: {} ({})", m.as_str(), direction(*m, o), interval(*m, o)));
    }
    if let Some((m, o, p)) = e.goals.iter().find(|(_, o, p)| o.better && significant(p)) {
        return (
            Decision::Ship,
            format!(
                "{} ({}; always-valid p {} after {})",
                direction(*m, o),
                interval(*m, o),
                p_text(p.unwrap_or(1.0)),
                a.correction.as_str().replace('_', "-")
            ),
        );
    }
    let about: Vec<String> = e.goals.iter().map(|(m, o, _)| format!("{}: {}", m.as_str(), interval(*m, o))).collect();
    (Decision::KeepRunning, format!("no goal differs from the control yet ({})", about.join("; ")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analytics::stats::sequential::Sequence;

    fn outcome(low: f64, high: f64, better: bool, harmful: bool) -> Outcome {
        Outcome {
            abs_diff: Some((low + high) / 2.0),
            always_valid: Some(Sequence { low, high, p_value: 0.01 }),
            better,
            harmful,
            ..Default::default()
        }
    }

    fn evidence<'a>(
        analysis: &'a Analysis,
        goal: &'a Outcome,
        guardrail: Option<&'a Outcome>,
        conversions: f64,
        days: f64,
        srm: f64,
    ) -> Evidence<'a> {
        Evidence {
            analysis,
            srm_p_value: Some(srm),
            srm_alpha: 0.001,
            goals: vec![(Metric::Converted, goal, Some(0.01))],
            guardrails: guardrail.map(|g| (Metric::OptedOut, g, 0.0)).into_iter().collect(),
            conversions: (conversions, conversions),
            days,
        }
    }

    #[test]
    fn each_decision_in_its_order() {
        let a = Analysis::default();
        let good = outcome(0.01, 0.03, true, false);
        let flat = outcome(-0.01, 0.01, false, false);
        let hurt = outcome(0.002, 0.01, false, true);
        assert_eq!(decide(&evidence(&a, &good, None, 500.0, 5.0, 1e-5)).0, Decision::InvalidSrm);
        let (d, why) = decide(&evidence(&a, &good, Some(&hurt), 10.0, 1.0, 0.5));
        assert_eq!(d, Decision::StopHarm, "harm needs no gate");
        assert!(why.contains("opted_out") && why.contains("points"), "{why}");
        let (d, why) = decide(&evidence(&a, &good, None, 100.0, 1.0, 0.5));
        assert_eq!(d, Decision::NotEnoughData);
        assert!(why.contains("100 conversions") && why.contains("1.0 days"), "{why}");
        assert_eq!(decide(&evidence(&a, &good, None, 500.0, 5.0, 0.5)).0, Decision::Ship);
        assert_eq!(decide(&evidence(&a, &flat, None, 500.0, 5.0, 0.5)).0, Decision::KeepRunning);
    }
}
