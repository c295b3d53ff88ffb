//! What a report run is filtered by, and the SQL parameters those filters become.
//!
//! Filters are bound as query parameters (`$from`, `$campaign`, ...), never pasted into SQL
//! text, so no filter value can change what a statement does.

use chrono::NaiveDate;
use datafusion::scalar::ScalarValue;
use serde_json::{Value, json};

use crate::error::{Error, Result};
pub use crate::experiments::Metric;

/// A parameter a report's SQL may use, with what it stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Param {
    /// `$from`: first date of the cohort (`0000-01-01` without one).
    From,
    /// `$to`: last date of the cohort (`9999-12-31` without one).
    To,
    /// `$campaign`: only this campaign (`''`: every campaign).
    Campaign,
    /// `$experiment`: only this experiment (`''`: every experiment).
    Experiment,
    /// `$window_s`: the attribution window, in seconds.
    WindowSecs,
    /// `$bot_cost`: cost of a conversation the bot answered.
    BotCost,
    /// `$agent_cost_per_hour`: cost of an hour of an agent's handled time.
    AgentCostPerHour,
    /// `$lookback_from`: the first date the pre-exposure period can reach (`$from` less the
    /// lookback).
    LookbackFrom,
    /// `$lookback_s`: the pre-exposure period, in seconds before each first exposure.
    LookbackSecs,
    /// `$cap_q`: the quantile revenue per contact is capped at (0.999).
    CapQuantile,
    /// `$by`: the breakdown (`country`, `locale`, `template`, `variant`, `category`; `''`: none).
    By,
    /// `$then_by`: a second breakdown within the first (`''`: none).
    ThenBy,
    /// `$interval`: what rows are per (`day` or `week`).
    Interval,
    /// `$period_from`: first date of the period asked for. `$from` is the first date of the
    /// period before it when the report compares with it (`--compare previous`), else the same.
    PeriodFrom,
    /// `$metrics`: the experiment metrics the run can show, between commas
    /// (`,converted,opted_out,`): the experiments' goals and guardrails and the goal asked for.
    Metrics,
}

impl Param {
    /// Its name in SQL, without the `$`.
    pub fn name(self) -> &'static str {
        match self {
            Param::From => "from",
            Param::To => "to",
            Param::Campaign => "campaign",
            Param::Experiment => "experiment",
            Param::WindowSecs => "window_s",
            Param::BotCost => "bot_cost",
            Param::AgentCostPerHour => "agent_cost_per_hour",
            Param::LookbackFrom => "lookback_from",
            Param::LookbackSecs => "lookback_s",
            Param::CapQuantile => "cap_q",
            Param::By => "by",
            Param::ThenBy => "then_by",
            Param::Interval => "interval",
            Param::PeriodFrom => "period_from",
            Param::Metrics => "metrics",
        }
    }
}

/// What the SQL parameters are bound to besides the filters: the settings of the analytics.
pub(crate) struct Bindings {
    pub attribution_days: i64,
    pub bot_cost: f64,
    pub agent_cost_per_hour: f64,
    /// The experiments' metric settings (lookback, revenue cap).
    pub metrics: crate::experiments::MetricSettings,
    /// `$metrics`' value for this run.
    pub measured: String,
}

/// Filters of a report run.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Params {
    pub from: Option<NaiveDate>,
    pub to: Option<NaiveDate>,
    pub campaign: Option<String>,
    pub experiment: Option<String>,
    /// The experiment report's one goal metric, instead of each experiment's own goals.
    pub metric: Option<Metric>,
    /// The breakdown: the experiment's statistics per slice, or the funnel and delivery per
    /// level.
    pub by: Option<Breakdown>,
    /// A second breakdown within the first (funnel and delivery).
    pub then_by: Option<Breakdown>,
    /// What `trends` has a row per.
    pub interval: Interval,
    /// `trends` beside the period before, as long as the one asked for (`--compare previous`).
    pub compare: bool,
}

/// What `trends` has a row per (`--interval`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Interval {
    #[default]
    Day,
    /// An ISO week, from Monday.
    Week,
}

impl Interval {
    /// Parses `day` or `week`; `""` is a day.
    pub fn parse(s: &str) -> Result<Self> {
        match s.trim() {
            "" | "day" => Ok(Interval::Day),
            "week" => Ok(Interval::Week),
            other => Err(Error::Invalid(format!("interval must be day or week, got {other:?}"))),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Interval::Day => "day",
            Interval::Week => "week",
        }
    }
}

/// The filters of a report run as text, as the command line and the API take them.
#[derive(Debug, Clone, Default, serde::Deserialize)]
pub struct Filters {
    pub from: Option<String>,
    pub to: Option<String>,
    pub campaign: Option<String>,
    pub experiment: Option<String>,
    pub metric: Option<String>,
    pub by: Option<String>,
    pub interval: Option<String>,
    /// `previous`, or nothing.
    pub compare: Option<String>,
}

impl Filters {
    /// The filters, each checked, with an error that names the bad one.
    pub fn parse(&self) -> Result<Params> {
        let text = |v: &Option<String>| v.as_deref().unwrap_or("").to_string();
        let p = Params::parse(
            self.from.as_deref(),
            self.to.as_deref(),
            self.campaign.as_deref(),
            self.experiment.as_deref(),
        )?;
        let compare = match text(&self.compare).trim() {
            "" => false,
            "previous" => true,
            other => return Err(Error::Invalid(format!("compare must be previous, got {other:?}"))),
        };
        if compare && (p.from.is_none() || p.to.is_none()) {
            return Err(Error::Invalid("compare previous needs both from and to: the period before is as long".into()));
        }
        let (by, then_by) = Breakdown::parse_keys(&text(&self.by))?;
        Ok(Params {
            metric: parse_metric(&text(&self.metric))?,
            by,
            then_by,
            interval: Interval::parse(&text(&self.interval))?,
            compare,
            ..p
        })
    }
}

/// What a report breaks its rows down by (`--by`): the experiment its statistics, funnel and
/// delivery their rows; each report's [`super::Spec::by`] says which it takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Breakdown {
    Country,
    Locale,
    Template,
    Variant,
    Category,
}

impl Breakdown {
    /// Every breakdown, in the order help texts list them.
    pub const ALL: [Breakdown; 5] =
        [Breakdown::Country, Breakdown::Locale, Breakdown::Template, Breakdown::Variant, Breakdown::Category];

    /// Parses one of [`Self::ALL`] by name; `""` is no breakdown.
    pub fn parse(s: &str) -> Result<Option<Self>> {
        match s.trim() {
            "" => Ok(None),
            name => Self::ALL.into_iter().find(|b| b.as_str() == name).map(Some).ok_or_else(|| {
                let names: Vec<&str> = Self::ALL.iter().map(|b| b.as_str()).collect();
                Error::Invalid(format!("by must be one of {}, got {name:?}", names.join(", ")))
            }),
        }
    }

    /// Parses one key or two (`country,template`): the breakdown and the one within it.
    pub fn parse_keys(s: &str) -> Result<(Option<Self>, Option<Self>)> {
        let keys: Vec<&str> = s.split(',').map(str::trim).filter(|k| !k.is_empty()).collect();
        match keys.as_slice() {
            [] => Ok((None, None)),
            [one] => Ok((Self::parse(one)?, None)),
            [one, two] if one != two => Ok((Self::parse(one)?, Self::parse(two)?)),
            [_, _] => Err(Error::Invalid(format!("by names {s:?} twice"))),
            _ => Err(Error::Invalid(format!("by takes one key or two, got {s:?}"))),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Breakdown::Country => "country",
            Breakdown::Locale => "locale",
            Breakdown::Template => "template",
            Breakdown::Variant => "variant",
            Breakdown::Category => "category",
        }
    }
}

/// Parses the experiment report's `--metric`: `""` leaves each experiment's own goals.
pub fn parse_metric(s: &str) -> Result<Option<Metric>> {
    match s.trim() {
        "" => Ok(None),
        name => Metric::parse(name).map(Some).map_err(Error::Invalid),
    }
}

impl Params {
    /// Parses the textual filters, with errors that name the bad one.
    pub fn parse(
        from: Option<&str>,
        to: Option<&str>,
        campaign: Option<&str>,
        experiment: Option<&str>,
    ) -> Result<Self> {
        let date = |name: &str, v: Option<&str>| -> Result<Option<NaiveDate>> {
            match v.map(str::trim).filter(|s| !s.is_empty()) {
                None => Ok(None),
                Some(s) => NaiveDate::parse_from_str(s, "%Y-%m-%d")
                    .map(Some)
                    .map_err(|_| Error::Invalid(format!("{name} must be a date like 2026-01-31, got {s:?}"))),
            }
        };
        let p = Params {
            from: date("from", from)?,
            to: date("to", to)?,
            campaign: campaign.map(str::to_string).filter(|s| !s.is_empty()),
            experiment: experiment.map(str::to_string).filter(|s| !s.is_empty()),
            metric: None,
            by: None,
            then_by: None,
            interval: Interval::Day,
            compare: false,
        };
        if let (Some(f), Some(t)) = (p.from, p.to)
            && f > t
        {
            return Err(Error::Invalid(format!("the range is empty: from {f} is after to {t}")));
        }
        Ok(p)
    }

    /// The period before the one asked for, as long, when the run compares with it.
    pub fn previous_period(&self) -> Option<(NaiveDate, NaiveDate)> {
        let (from, to) = (self.from?, self.to?);
        self.compare.then(|| (from - (to - from) - chrono::Duration::days(1), from - chrono::Duration::days(1)))
    }

    /// The value of `param` for this run.
    pub(crate) fn value(&self, param: Param, b: &Bindings) -> ScalarValue {
        let text = |s: String| ScalarValue::Utf8(Some(s));
        let from = self.previous_period().map(|(f, _)| f).or(self.from);
        match param {
            Param::From => text(from.map(|d| d.to_string()).unwrap_or_else(|| "0000-01-01".into())),
            Param::PeriodFrom => text(self.from.map(|d| d.to_string()).unwrap_or_else(|| "0000-01-01".into())),
            Param::Interval => text(self.interval.as_str().to_string()),
            Param::To => text(self.to.map(|d| d.to_string()).unwrap_or_else(|| "9999-12-31".into())),
            Param::Campaign => text(self.campaign.clone().unwrap_or_default()),
            Param::Experiment => text(self.experiment.clone().unwrap_or_default()),
            Param::WindowSecs => ScalarValue::Float64(Some((b.attribution_days * 86_400) as f64)),
            Param::BotCost => ScalarValue::Float64(Some(b.bot_cost)),
            Param::AgentCostPerHour => ScalarValue::Float64(Some(b.agent_cost_per_hour)),
            Param::LookbackFrom => text(match self.from {
                Some(d) => {
                    (d - chrono::Duration::seconds((b.metrics.lookback_days * 86_400.0).ceil() as i64)).to_string()
                }
                None => "0000-01-01".into(),
            }),
            Param::LookbackSecs => ScalarValue::Float64(Some(b.metrics.lookback_days * 86_400.0)),
            Param::CapQuantile => ScalarValue::Float64(Some(b.metrics.revenue_cap_percentile / 100.0)),
            Param::By => text(self.by.map(Breakdown::as_str).unwrap_or_default().to_string()),
            Param::ThenBy => text(self.then_by.map(Breakdown::as_str).unwrap_or_default().to_string()),
            Param::Metrics => text(b.measured.clone()),
        }
    }

    pub(crate) fn to_json(&self) -> Value {
        json!({
            "from": self.from.map(|d| d.to_string()),
            "to": self.to.map(|d| d.to_string()),
            "campaign": self.campaign,
            "experiment": self.experiment,
            "metric": self.metric.map(Metric::as_str),
            "by": match (self.by, self.then_by) {
                (Some(a), Some(b)) => Some(format!("{},{}", a.as_str(), b.as_str())),
                (a, _) => a.map(|a| a.as_str().to_string()),
            },
            "interval": self.interval.as_str(),
            "compare": self.compare.then_some("previous"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn breakdowns_parse_one_key_or_two() {
        assert_eq!(Breakdown::parse_keys("").unwrap(), (None, None));
        assert_eq!(Breakdown::parse_keys("variant").unwrap(), (Some(Breakdown::Variant), None));
        assert_eq!(
            Breakdown::parse_keys("country, template").unwrap(),
            (Some(Breakdown::Country), Some(Breakdown::Template))
        );
        for bad in ["country,country", "a,b,c", "country,planet"] {
            assert!(Breakdown::parse_keys(bad).is_err(), "{bad}");
        }
        assert!(Breakdown::parse_keys("planet").unwrap_err().to_string().contains("country, locale, template"));
    }

    #[test]
    fn params_are_validated() {
        assert!(Params::parse(Some("2026-13-01"), None, None, None).unwrap_err().to_string().contains("from"));
        assert!(
            Params::parse(Some("2026-02-01"), Some("2026-01-01"), None, None)
                .unwrap_err()
                .to_string()
                .contains("empty")
        );
        let p = Params::parse(Some("2026-01-01"), Some("2026-01-31"), Some(""), Some("x")).unwrap();
        assert_eq!(p.campaign, None);
        assert_eq!(p.experiment.as_deref(), Some("x"));
    }
}
