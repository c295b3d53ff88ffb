//! `convoscope plan`: how many contacts an experiment needs, and how long that takes.

use std::path::{Path, PathBuf};

use anyhow::Context;

use crate::analytics::stats::power::PlanInput;
use crate::experiments::Experiments;

/// The command's flags.
#[derive(clap::Args, Debug)]
pub struct PlanArgs {
    /// The control's conversion rate, like 0.10.
    #[arg(long)]
    pub baseline: f64,
    /// The smallest effect worth detecting: rate points (0.01), or a share of the baseline
    /// with --relative.
    #[arg(long)]
    pub mde: f64,
    #[arg(long)]
    pub relative: bool,
    #[arg(long, default_value_t = 0.05)]
    pub alpha: f64,
    #[arg(long, default_value_t = 0.8)]
    pub power: f64,
    /// The arms' weights, the control first (default: the experiment's, else 50,50).
    #[arg(long, value_delimiter = ',')]
    pub weights: Vec<f64>,
    /// Take the weights and arm names from this experiment of experiments.toml.
    #[arg(long)]
    pub experiment: Option<String>,
    /// A recipients CSV (as `convoscope send` takes it): the power is reported at its rows.
    #[arg(long)]
    pub recipients: Option<PathBuf>,
    /// Sends a day, for the days the sample takes.
    #[arg(long)]
    pub rate: Option<f64>,
    #[arg(long, value_enum, default_value_t = PlanFormat::Table)]
    pub format: PlanFormat,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug)]
pub enum PlanFormat {
    Table,
    Json,
}

/// The plan, as the format asks.
pub fn run(args: &PlanArgs, experiments_file: &Path) -> anyhow::Result<String> {
    let (mut weights, mut arms) = (args.weights.clone(), None);
    if let Some(name) = &args.experiment {
        let defs = Experiments::load(experiments_file)?;
        let e = defs.get(name).with_context(|| format!("no experiment {name:?} in {}", experiments_file.display()))?;
        let order = e.control_first();
        if weights.is_empty() {
            weights = order.iter().map(|v| v.weight).collect();
        }
        arms = Some(order.iter().map(|v| v.name.clone()).collect::<Vec<_>>());
    }
    if weights.is_empty() {
        weights = vec![50.0, 50.0];
    }
    // The rows `convoscope send` would send: the same file, read the same way.
    let available = match &args.recipients {
        Some(path) => {
            let experiment = args.experiment.as_deref().unwrap_or_default();
            Some(crate::send::batch::read_recipients(path, experiment)?.0.len() as u64)
        }
        None => None,
    };
    let input = PlanInput {
        baseline: args.baseline,
        mde: args.mde,
        relative: args.relative,
        alpha: args.alpha,
        power: args.power,
        weights,
    };
    let plan = input.plan(available)?;
    Ok(match args.format {
        PlanFormat::Table => plan.to_table(arms.as_deref(), args.rate),
        PlanFormat::Json => format!("{}\n", serde_json::to_string_pretty(&plan.to_json(arms.as_deref(), args.rate))?),
    })
}
