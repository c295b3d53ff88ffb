//! The reports: one file per report, each holding its SQL (in `queries/`), the parameters it
//! takes, its chart and the words of its section on the report page, behind the [`Report`]
//! enum. Adding a report is one file here, one SQL file and one enum arm.
//!
//! Every report reads the facts tables (`message_facts`, `conversation_facts`,
//! `exposure_facts`: [`crate::analytics::facts`]) and, where it needs conversions, CSAT or
//! error codes, the `events` table. It is written once: the facts come from the rollups where
//! every events file has them, else from views over the events, with the same answers.
//!
//! Every report shares one date semantics: `from`/`to` select the cohort (the sends, or the
//! conversations, that started in the range); what follows from them counts even after `to`.

mod account;
mod buttons;
mod containment;
mod cost;
mod delivery;
mod engagement;
mod experiment;
mod failures;
mod funnel;
mod params;
mod pricing;
mod retention;
mod sla;
mod templates;
mod time_to_convert;
mod trends;

use chrono::{SecondsFormat, Utc};
use datafusion::scalar::ScalarValue;
use serde_json::{Map, Value, json};

pub use self::experiment::{Coverage, Decision, EXPERIMENT_COLUMNS, Kept, SRM_ALPHA};
pub use self::params::{Breakdown, Filters, Interval, Metric, Param, Params, parse_metric};
use super::executor::Work;
use super::{Analytics, format};
use crate::error::{Error, Result};
use crate::experiments::Experiments;

/// A report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Report {
    Funnel,
    Delivery,
    Failures,
    Containment,
    Sla,
    Experiment,
    Engagement,
    Cost,
    Trends,
    TimeToConvert,
    Retention,
    Buttons,
    Templates,
    Pricing,
    Account,
}

impl Report {
    /// Every report, in the order the report page shows them.
    pub const ALL: [Report; 15] = [
        Report::Trends,
        Report::Funnel,
        Report::Delivery,
        Report::Failures,
        Report::Containment,
        Report::Sla,
        Report::Experiment,
        Report::Engagement,
        Report::Cost,
        Report::TimeToConvert,
        Report::Retention,
        Report::Buttons,
        Report::Templates,
        Report::Pricing,
        Report::Account,
    ];

    /// What the report is: its file's [`Spec`].
    pub fn spec(self) -> &'static Spec {
        match self {
            Report::Funnel => &funnel::SPEC,
            Report::Delivery => &delivery::SPEC,
            Report::Failures => &failures::SPEC,
            Report::Containment => &containment::SPEC,
            Report::Sla => &sla::SPEC,
            Report::Experiment => &experiment::SPEC,
            Report::Engagement => &engagement::SPEC,
            Report::Cost => &cost::SPEC,
            Report::Trends => &trends::SPEC,
            Report::TimeToConvert => &time_to_convert::SPEC,
            Report::Retention => &retention::SPEC,
            Report::Buttons => &buttons::SPEC,
            Report::Templates => &templates::SPEC,
            Report::Pricing => &pricing::SPEC,
            Report::Account => &account::SPEC,
        }
    }

    /// Its name: in URLs, on the command line, in JSON.
    pub fn name(self) -> &'static str {
        self.spec().name
    }

    /// The report of this name, or an error that lists them all.
    pub fn parse(name: &str) -> Result<Report> {
        Report::ALL
            .into_iter()
            .find(|r| r.name() == name)
            .ok_or_else(|| Error::NotFound(format!("no report {name:?}; reports are {}", names().join(", "))))
    }

    /// Its SQL, with the shared pieces spliced in where it names them in double braces:
    /// `cohort`, `priced`, `conversions`, `clicks`, `breakdown`.
    pub fn sql(self) -> String {
        self.spec()
            .sql
            .replace("{{cohort}}", COHORT)
            .replace("{{priced}}", PRICED)
            .replace("{{conversions}}", CONVERSIONS)
            .replace("{{clicks}}", CLICKS)
            .replace("{{breakdown}}", BREAKDOWN)
            .replace("{{experiment_contacts}}", experiment::CONTACTS_SQL)
    }
}

/// Names of the reports, for help texts and errors.
pub fn names() -> Vec<&'static str> {
    Report::ALL.iter().map(|r| r.name()).collect()
}

/// The messages a message report is about, with their receipts, replies and billing, merged
/// from `message_facts`: spliced in where a report says `{{cohort}}`, so each report names it
/// instead of repeating it.
const COHORT: &str = include_str!("../../../queries/cohort.sql");

/// The cohort with what each message cost (`priced_cohort`), spliced in where a report says
/// `{{priced}}`.
const PRICED: &str = include_str!("../../../queries/priced.sql");

/// The messages with a button tapped or a link followed, spliced in where a report says
/// `{{clicks}}`.
const CLICKS: &str = include_str!("../../../queries/clicks.sql");

/// The cohort's messages followed by a conversion within the window, spliced in where a report
/// says `{{conversions}}`.
const CONVERSIONS: &str = include_str!("../../../queries/conversions.sql");

/// The cohort with each message's `--by` level (`cohort_levels`), spliced in where a report says
/// `{{breakdown}}`.
const BREAKDOWN: &str = include_str!("../../../queries/breakdown.sql");

/// The position of `name` among a report's SQL columns, for its finish.
fn column(columns: &[String], report: &str, name: &str) -> Result<usize> {
    columns
        .iter()
        .position(|c| c == name)
        .ok_or_else(|| Error::Invalid(format!("the {report} report's SQL has no {name} column")))
}

/// The finish of a report with a `breakdown` column (funnel, delivery): the column goes when
/// the run has no breakdown, where it holds only `''`.
fn without_unused_breakdown(
    columns: &[String],
    rows: Vec<Vec<Value>>,
    params: &Params,
    _: &Experiments,
) -> Result<(Vec<String>, Vec<Vec<Value>>)> {
    let Some(i) = columns.iter().position(|c| c == "breakdown").filter(|_| params.by.is_none()) else {
        return Ok((columns.to_vec(), rows));
    };
    let mut columns = columns.to_vec();
    columns.remove(i);
    Ok((
        columns,
        rows.into_iter()
            .map(|mut r| {
                r.remove(i);
                r
            })
            .collect(),
    ))
}

/// What a report is, in one place: its file under this module holds one.
pub struct Spec {
    /// Its name ([`Report::name`]).
    pub name: &'static str,
    /// The heading of its section on the report page.
    pub title: &'static str,
    /// What it answers, in a sentence under that heading.
    pub about: &'static str,
    /// Its SQL (from `queries/`).
    pub sql: &'static str,
    /// The parameters its SQL uses.
    pub params: &'static [Param],
    /// How its rows are drawn.
    pub chart: Chart,
    /// Work done on its rows after the SQL: the experiment's statistics, trends set beside
    /// the period before, retention's weeks without activity, an unused breakdown column
    /// dropped.
    pub finish: Option<Finish>,
    /// The breakdowns it takes (`--by`); none when empty. It takes two keys when its SQL
    /// uses [`Param::ThenBy`].
    pub by: &'static [Breakdown],
    /// Whether a cluster may plan it adaptively. Ballista 55's adaptive planner never finishes
    /// the experiment report's plan: it makes new stages without end (and logs stages "to be
    /// cancelled but not implemented"). Its static planner runs it to the same rows; the other
    /// reports keep the adaptive one, which also reruns the work of an executor lost mid-job.
    pub adaptive: bool,
    /// Its statement for a run, where that is not its SQL as written: the experiment report
    /// reads the rows compaction kept where they cover the store.
    pub(crate) statement: Option<Statement>,
}

/// A report's statement for one run, chosen (and its tables registered) in the run's session.
pub(crate) type Statement = for<'a> fn(
    &'a Analytics,
    &'a datafusion::execution::context::SessionContext,
    &'a Params,
    &'a params::Bindings,
) -> futures::future::BoxFuture<'a, Result<String>>;

/// Computes a report's final columns and rows from its SQL's.
pub type Finish = fn(&[String], Vec<Vec<Value>>, &Params, &Experiments) -> Result<(Vec<String>, Vec<Vec<Value>>)>;

/// How a report's rows are drawn: which columns, in which kind of chart
/// ([`crate::render::chart`] draws it).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Chart {
    /// A group of bars per row, labelled by the `label` columns, one bar per `series` column.
    Bars { title: &'static str, label: &'static [&'static str], series: &'static [&'static str] },
    /// One bar per distinct value of `by`: the sum of `value` over its rows.
    SumBars { title: &'static str, by: &'static str, value: &'static str },
    /// Lines over the distinct values of `x`: per `(name, column)` of `rates`, the sum of
    /// `column` over the sum of `denominator`.
    RateLines {
        title: &'static str,
        x: &'static str,
        denominator: &'static str,
        rates: &'static [(&'static str, &'static str)],
    },
    /// One line per distinct value of `series`: `value` over the distinct values of `x` (rows
    /// share no point: the last one's value is drawn).
    LinesPer { title: &'static str, x: &'static str, series: &'static str, value: &'static str },
    /// As [`Chart::LinesPer`], with the sum of `value` over the rows that share a point
    /// (pricing's types and countries of one category and day).
    SumLines { title: &'static str, x: &'static str, series: &'static str, value: &'static str },
    /// The experiment's differences from the control: per variant and metric, the always-valid
    /// interval as a band, the fixed-horizon interval as ticks, coloured by the decision.
    Effects { title: &'static str },
    /// A funnel: per row (labelled by `label`), a line over the `steps`, each `(name, column)`
    /// a count as a share of the first step's, or a rate column (`..._rate`) as it is, for the
    /// rows with the most at the first step.
    Steps { title: &'static str, label: &'static [&'static str], steps: &'static [(&'static str, &'static str)] },
}

/// A computed report.
#[derive(Debug, Clone, PartialEq)]
pub struct Computed {
    pub report: Report,
    pub params: Params,
    pub generated_at: String,
    pub columns: Vec<String>,
    pub rows: Vec<Vec<Value>>,
}

impl Computed {
    /// Its JSON form: `{"report", "params", "generated_at", "rows": [{column: value}]}`.
    pub fn to_json(&self) -> Value {
        let rows: Vec<Value> = self
            .rows
            .iter()
            .map(|r| Value::Object(self.columns.iter().cloned().zip(r.iter().cloned()).collect::<Map<_, _>>()))
            .collect();
        json!({
            "report": self.report.name(),
            "params": self.params.to_json(),
            "generated_at": self.generated_at,
            "rows": rows,
        })
    }

    /// Rows as CSV with a header.
    pub fn to_csv(&self) -> String {
        format::csv(&self.columns, &self.rows)
    }

    /// An aligned text table.
    pub fn to_table(&self) -> String {
        format::table(&self.columns, &self.rows)
    }
}

impl Params {
    /// These filters as `report` takes them: a breakdown, interval or comparison it has not is
    /// left out rather than refused, so one set of filters (the report page's) serves every
    /// report.
    pub fn for_report(&self, report: Report) -> Params {
        let spec = report.spec();
        let takes = |p: Param| spec.params.contains(&p);
        let mut p = self.clone();
        if !p.by.is_some_and(|b| spec.by.contains(&b)) || p.then_by.is_some_and(|b| !spec.by.contains(&b)) {
            p.by = None;
            p.then_by = None;
        }
        if !takes(Param::ThenBy) {
            p.then_by = None;
        }
        if !takes(Param::Interval) {
            p.interval = Interval::Day;
        }
        if !takes(Param::PeriodFrom) {
            p.compare = false;
        }
        p
    }
}

/// What a run of `analytics` with `params` binds besides the filters.
fn bindings(analytics: &Analytics, params: &Params) -> params::Bindings {
    params::Bindings {
        attribution_days: analytics.attribution_days,
        bot_cost: analytics.costs.bot_cost_per_conversation,
        agent_cost_per_hour: analytics.costs.agent_cost_per_hour,
        metrics: analytics.experiments.metrics.clone(),
        measured: experiment::measured_param(&analytics.experiments, params),
    }
}

impl Analytics {
    /// Runs the report of this name.
    pub async fn report(&self, name: &str, params: &Params) -> Result<Computed> {
        self.run(Report::parse(name)?, params).await
    }

    /// Runs one report, on the query threads within `report_timeout_secs`
    /// ([`super::executor`]).
    pub async fn run(&self, report: Report, params: &Params) -> Result<Computed> {
        let takes = |p: Param| report.spec().params.contains(&p);
        if params.compare && !takes(Param::PeriodFrom) {
            return Err(Error::Invalid(format!(
                "{} cannot compare with the previous period; trends can",
                report.name()
            )));
        }
        if params.interval != Interval::Day && !takes(Param::Interval) {
            return Err(Error::Invalid(format!("{} has no interval; trends has", report.name())));
        }
        for key in params.by.iter().chain(&params.then_by) {
            if !report.spec().by.contains(key) {
                let names: Vec<&str> = report.spec().by.iter().map(|b| b.as_str()).collect();
                return Err(Error::Invalid(match names.is_empty() {
                    true => format!("{} has no breakdown", report.name()),
                    false => format!("{} breaks down by {}, not {}", report.name(), names.join(", "), key.as_str()),
                }));
            }
        }
        if params.then_by.is_some() && !takes(Param::ThenBy) {
            return Err(Error::Invalid(format!("{} breaks down by one key at a time", report.name())));
        }
        let this = self.clone();
        let given = params.clone();
        let (schema, batches) = self
            .executor()
            .run(Work::Report, async move {
                let ctx = this.context().await?;
                if this.distributed() && !report.spec().adaptive {
                    super::cluster::without_adaptive_planner(&ctx)?;
                }
                let bindings = bindings(&this, &given);
                let values: Vec<(&str, ScalarValue)> =
                    report.spec().params.iter().map(|p| (p.name(), given.value(*p, &bindings))).collect();
                let sql = match report.spec().statement {
                    Some(statement) => statement(&this, &ctx, &given, &bindings).await?,
                    None => report.sql(),
                };
                let df = this.plan(&ctx, &sql, values).await?;
                this.execute(df, Work::Report, None).await
            })
            .await?;
        let spec = report.spec();
        let columns = format::columns(&schema);
        let rows = format::rows(&batches)?;
        let (columns, rows) = match spec.finish {
            Some(finish) => finish(&columns, rows, params, &self.experiments)?,
            None => (columns, rows),
        };
        Ok(Computed {
            report,
            params: params.clone(),
            generated_at: Utc::now().to_rfc3339_opts(SecondsFormat::Secs, true),
            columns,
            rows,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The `$name`s a report's SQL uses.
    fn used(sql: &str) -> std::collections::BTreeSet<String> {
        sql.split(|c: char| !(c.is_alphanumeric() || c == '_' || c == '$'))
            .filter_map(|w| w.strip_prefix('$'))
            .map(str::to_string)
            .collect()
    }

    #[test]
    fn every_report_uses_exactly_the_parameters_it_declares() {
        for r in Report::ALL {
            let sql = r.sql();
            assert!(!sql.contains("{{"), "{}: unspliced piece", r.name());
            let declared = r.spec().params.iter().map(|p| p.name().to_string()).collect();
            assert_eq!(used(&sql), declared, "{}", r.name());
        }
    }

    #[test]
    fn names_are_unique_and_parse_back() {
        let names = names();
        assert_eq!(names.iter().collect::<std::collections::BTreeSet<_>>().len(), Report::ALL.len());
        for r in Report::ALL {
            assert_eq!(Report::parse(r.name()).unwrap(), r);
        }
        assert!(Report::parse("nope").unwrap_err().to_string().contains("funnel"));
    }
}
