//! `convoscope report NAME`: one report over the store, offline, in the form asked for.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use clap::ValueEnum;

use crate::analytics::Analytics;
use crate::analytics::reports::Filters;
use crate::config::{Config, Tenant};
use crate::store::Storage;

/// The command's flags.
#[derive(clap::Args, Debug)]
pub struct ReportArgs {
    /// Report name.
    #[arg(value_parser = clap::builder::PossibleValuesParser::new(crate::analytics::reports::names()))]
    pub name: String,
    /// First date of the cohort (inclusive, UTC), e.g. 2026-01-01.
    #[arg(long)]
    pub from: Option<String>,
    /// Last date of the cohort (inclusive, UTC).
    #[arg(long)]
    pub to: Option<String>,
    /// Only this campaign.
    #[arg(long)]
    pub campaign: Option<String>,
    /// Only this experiment.
    #[arg(long)]
    pub experiment: Option<String>,
    /// The experiment report's goal metric instead of each experiment's own (converted,
    /// replied, read, revenue, opted_out, failed, blocked, cost, revenue_per_delivered).
    #[arg(long)]
    pub metric: Option<String>,
    /// The experiment report per slice: country, locale or template.
    #[arg(long)]
    pub by: Option<String>,
    /// What trends has a row per: day or week.
    #[arg(long)]
    pub interval: Option<String>,
    /// `previous`: trends beside the period before, as long (needs --from and --to).
    #[arg(long)]
    pub compare: Option<String>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = ReportFormat::Table)]
    pub format: ReportFormat,
    /// Write to this file instead of standard output.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Only this tenant's rows (a [[tenant]] name), as its tokens see them.
    #[arg(long)]
    pub tenant: Option<String>,
}

/// Output formats of `report`.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ReportFormat {
    Table,
    Json,
    Csv,
    Html,
    Svg,
    Png,
}

/// Runs the report and writes it to `--out` or standard output.
pub async fn run(args: ReportArgs, config: &Config, tenant: Option<Arc<Tenant>>) -> anyhow::Result<()> {
    let ReportArgs { name, from, to, campaign, experiment, metric, by, interval, compare, format, out, .. } = args;
    let params = Filters { from, to, campaign, experiment, metric, by, interval, compare }.parse()?;
    let analytics =
        Analytics::from_settings(Storage::open(&config.storage)?, &config.analytics(), None)?.for_tenant(tenant);
    let report = analytics.report(&name, &params).await?;
    let chart = || -> anyhow::Result<String> {
        crate::render::chart::for_report(&report, &config.currency)?
            .ok_or_else(|| anyhow::anyhow!("the {name} report has no rows to chart for these filters"))
    };
    let text = match format {
        ReportFormat::Table => report.to_table(),
        ReportFormat::Csv => report.to_csv(),
        ReportFormat::Json => format!("{}\n", serde_json::to_string_pretty(&report.to_json())?),
        ReportFormat::Html => {
            let page = crate::render::html::Page { currency: &config.currency, links: crate::render::html::Links::Api };
            crate::render::html::single(
                &report,
                crate::render::chart::for_report(&report, &config.currency)?.as_deref(),
                &page,
            )
        }
        ReportFormat::Svg => chart()?,
        ReportFormat::Png => {
            let png = crate::render::chart::png(&chart()?)?;
            let path = out.ok_or_else(|| anyhow::anyhow!("--format png needs --out FILE"))?;
            std::fs::write(&path, png).with_context(|| format!("writing {}", path.display()))?;
            return Ok(());
        }
    };
    match out {
        Some(path) => std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?,
        None => print!("{text}"),
    }
    Ok(())
}
