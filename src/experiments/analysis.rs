//! How an experiment is judged: its goal metrics and guardrails from a fixed menu the log
//! supports, the always-valid test's tuning, the gates before a decision, the correction
//! across goals, and whether harm stops a variant on its own.
//!
//! ```toml
//! [metrics]                          # for every experiment of the file
//! lookback_days = 14                 # CUPED's pre-exposure window
//! revenue_cap_percentile = 99.9      # revenue per contact is capped here (winsorised)
//!
//! [[experiment]]
//! name = "spring_cta"
//! # ...
//! [experiment.analysis]
//! goals = ["converted"]              # tested for improvement, corrected across goals x variants
//! guardrails = [{ metric = "opted_out", margin = 0.002 }, { metric = "blocked" }]
//! n_star = 5000                      # units the always-valid interval is narrowest at
//! min_conversions = 150              # in the larger arm, before any decision
//! min_days = 3
//! correction = "benjamini_hochberg"  # or "holm", "none"
//! auto_stop = false                  # stop assigning a variant a guardrail shows harming
//! ```

use serde::{Deserialize, Serialize};

/// A metric from the menu, per exposed contact.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Metric {
    /// A `conversion` event within the attribution window after the first exposure.
    Converted,
    /// A reply to a message of the experiment.
    Replied,
    /// A message of the experiment read.
    Read,
    /// Revenue of the conversions within the window, capped at the file's percentile.
    Revenue,
    /// A `consent.opt_out` within the window.
    OptedOut,
    /// A message of the experiment failed.
    Failed,
    /// A message of the experiment failed because the number is restricted for blocks and
    /// spam reports (131048). 131049 (Meta's per-user marketing cap) is not counted: it says
    /// nothing about how recipients took the message.
    Blocked,
    /// What the experiment's messages cost, by the rate card.
    Cost,
    /// Revenue over delivered messages of the experiment, a ratio of two sums (delta method).
    RevenuePerDelivered,
}

impl Metric {
    pub const ALL: [Metric; 9] = [
        Metric::Converted,
        Metric::Replied,
        Metric::Read,
        Metric::Revenue,
        Metric::OptedOut,
        Metric::Failed,
        Metric::Blocked,
        Metric::Cost,
        Metric::RevenuePerDelivered,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Metric::Converted => "converted",
            Metric::Replied => "replied",
            Metric::Read => "read",
            Metric::Revenue => "revenue",
            Metric::OptedOut => "opted_out",
            Metric::Failed => "failed",
            Metric::Blocked => "blocked",
            Metric::Cost => "cost",
            Metric::RevenuePerDelivered => "revenue_per_delivered",
        }
    }

    /// Parses a metric's name, with an error that lists the menu.
    pub fn parse(s: &str) -> Result<Metric, String> {
        Metric::ALL.into_iter().find(|m| m.as_str() == s).ok_or_else(|| {
            let names: Vec<&str> = Metric::ALL.iter().map(|m| m.as_str()).collect();
            format!("no metric {s:?}; metrics are {}", names.join(", "))
        })
    }

    /// Yes or no per contact (a rate), rather than an amount.
    pub fn is_binary(self) -> bool {
        matches!(
            self,
            Metric::Converted | Metric::Replied | Metric::Read | Metric::OptedOut | Metric::Failed | Metric::Blocked
        )
    }

    /// More is better (a goal's direction); otherwise more is harm.
    pub fn higher_is_better(self) -> bool {
        matches!(
            self,
            Metric::Converted | Metric::Replied | Metric::Read | Metric::Revenue | Metric::RevenuePerDelivered
        )
    }
}

/// Which adjustment an experiment's goal metrics × variants get (`analytics::stats::correction`
/// computes them).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Correction {
    /// Benjamini-Hochberg: controls the false discovery rate (the default).
    #[default]
    #[serde(alias = "bh")]
    BenjaminiHochberg,
    /// Holm's step-down: controls the family-wise error rate.
    Holm,
    /// None: each test read alone.
    None,
}

impl Correction {
    pub fn as_str(self) -> &'static str {
        match self {
            Correction::BenjaminiHochberg => "benjamini_hochberg",
            Correction::Holm => "holm",
            Correction::None => "none",
        }
    }
}

/// A guardrail: a metric tested one-sided for harm beyond `margin` (in the metric's units:
/// rate points for a rate).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Guardrail {
    pub metric: Metric,
    #[serde(default)]
    pub margin: f64,
}

/// How one experiment is analysed; every field has a default.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Analysis {
    pub goals: Vec<Metric>,
    pub guardrails: Vec<Guardrail>,
    /// The always-valid interval's tuning: the sample it is narrowest at.
    pub n_star: f64,
    pub alpha: f64,
    /// Gates before `ship` or `stop: harm` on a goal: conversions in the larger arm, days
    /// since the first exposure.
    pub min_conversions: u64,
    pub min_days: f64,
    pub correction: Correction,
    /// Adjust by the pre-exposure period (CUPED, post-stratified by country where it can).
    pub cuped: bool,
    /// Stop assigning a variant whose guardrail shows harm on the always-valid test.
    pub auto_stop: bool,
}

impl Default for Analysis {
    fn default() -> Self {
        Analysis {
            goals: vec![Metric::Converted],
            guardrails: Vec::new(),
            n_star: 5_000.0,
            alpha: 0.05,
            min_conversions: 150,
            min_days: 3.0,
            correction: Default::default(),
            cuped: true,
            auto_stop: false,
        }
    }
}

impl Analysis {
    /// Checks the settings; the error names the field.
    pub fn validate(&self) -> Result<(), String> {
        if self.goals.is_empty() {
            return Err("analysis.goals: name at least one metric".into());
        }
        if !(self.n_star.is_finite() && self.n_star >= 1.0) {
            return Err("analysis.n_star: must be at least 1".into());
        }
        if !(self.alpha > 0.0 && self.alpha < 0.5) {
            return Err("analysis.alpha: must be between 0 and 0.5".into());
        }
        if !(self.min_days.is_finite() && self.min_days >= 0.0) {
            return Err("analysis.min_days: must be 0 or more".into());
        }
        for g in &self.guardrails {
            if !(g.margin.is_finite() && g.margin >= 0.0) {
                return Err(format!("analysis.guardrails: {}: margin must be 0 or more", g.metric.as_str()));
            }
            if self.goals.contains(&g.metric) {
                return Err(format!("analysis: {} is both a goal and a guardrail", g.metric.as_str()));
            }
        }
        if self.auto_stop && self.guardrails.is_empty() {
            return Err("analysis.auto_stop: needs a guardrail to watch".into());
        }
        Ok(())
    }
}

/// Settings of the metrics, the same for every experiment of a file (the report computes
/// every experiment's metrics in one pass).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricSettings {
    /// CUPED's pre-exposure window, in days before each contact's first exposure.
    pub lookback_days: f64,
    /// Revenue per contact is capped at this percentile of the amounts of the experiment's
    /// contacts with revenue (Statsig's winsorisation; zeros left out, as GrowthBook can, since
    /// with them a 99.9th percentile under 0.1% of buyers would cap every order at 0).
    pub revenue_cap_percentile: f64,
}

impl Default for MetricSettings {
    fn default() -> Self {
        MetricSettings { lookback_days: 14.0, revenue_cap_percentile: 99.9 }
    }
}

impl MetricSettings {
    pub fn validate(&self) -> Result<(), String> {
        if !(self.lookback_days.is_finite() && self.lookback_days >= 0.0) {
            return Err("metrics.lookback_days: must be 0 or more".into());
        }
        if !(self.revenue_cap_percentile > 0.0 && self.revenue_cap_percentile <= 100.0) {
            return Err("metrics.revenue_cap_percentile: must be in (0, 100]".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_growthbooks_and_settings_are_checked() {
        let a = Analysis::default();
        assert_eq!((a.n_star, a.min_conversions, a.min_days), (5000.0, 150, 3.0));
        assert!(a.validate().is_ok());
        let bad = Analysis { auto_stop: true, ..Analysis::default() };
        assert!(bad.validate().unwrap_err().contains("guardrail"));
        let both =
            Analysis { guardrails: vec![Guardrail { metric: Metric::Converted, margin: 0.0 }], ..Analysis::default() };
        assert!(both.validate().unwrap_err().contains("both"));
        assert!(Metric::parse("opted_out").is_ok());
        assert!(Metric::parse("clicks").unwrap_err().contains("revenue_per_delivered"));
    }
}
