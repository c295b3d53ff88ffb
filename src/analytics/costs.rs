//! What messages and support cost: the rate card and the agent and bot costs the `cost` report
//! prices with, and the rate card as the `rate_card` table.

use std::sync::Arc;

use crate::error::{Error, Result};

/// What messages and support cost, in the account's currency.
#[derive(Clone, Debug, PartialEq)]
pub struct Costs {
    /// Price per billable message by (category, country); country `*` is the fallback.
    pub rate_card: Vec<(String, String, f64)>,
    /// Cost of an hour of an agent's handled time.
    pub agent_cost_per_hour: f64,
    /// Cost of a conversation the bot answered.
    pub bot_cost_per_conversation: f64,
}

/// The shipped rate card: per-message prices for common countries (illustrative list prices,
/// replace them with your own through `rate_card` in the configuration).
pub const DEFAULT_RATE_CARD: &str = include_str!("../../queries/rate_card.csv");

impl Costs {
    /// `rate_card (category, country, price)` as a view over `VALUES`: a plan, which a cluster's
    /// nodes can rebuild, where a table in memory could not be sent to them.
    pub(crate) fn rate_card_view(&self) -> Result<Arc<datafusion::catalog::view::ViewTable>> {
        use datafusion::logical_expr::{LogicalPlanBuilder, col, lit};
        let rc = &self.rate_card;
        // VALUES needs a row: an empty card is one row filtered out.
        let rows: Vec<Vec<_>> = if rc.is_empty() {
            vec![vec![lit(""), lit(""), lit(0.0)]]
        } else {
            rc.iter()
                .map(|(category, country, price)| vec![lit(category.as_str()), lit(country.as_str()), lit(*price)])
                .collect()
        };
        let plan = LogicalPlanBuilder::values(rows)?
            .filter(lit(!rc.is_empty()))?
            .project(vec![
                col("column1").alias("category"),
                col("column2").alias("country"),
                col("column3").alias("price"),
            ])?
            .build()?;
        Ok(Arc::new(datafusion::catalog::view::ViewTable::new(plan, None)))
    }

    /// Parses a `category,country,price` CSV with a header line.
    pub fn parse_rate_card(csv: &str) -> Result<Vec<(String, String, f64)>> {
        let mut out = Vec::new();
        for (i, line) in csv.lines().enumerate().skip(1) {
            if line.trim().is_empty() {
                continue;
            }
            let f: Vec<&str> = line.split(',').map(str::trim).collect();
            let price = match f.as_slice() {
                [_, _, p] => p.parse::<f64>().ok().filter(|p| p.is_finite() && *p >= 0.0),
                _ => None,
            };
            let Some(price) = price else {
                return Err(Error::Config(format!("rate card line {}: expected category,country,price", i + 1)));
            };
            out.push((f[0].to_ascii_lowercase(), f[1].to_ascii_uppercase(), price));
        }
        Ok(out)
    }
}

impl Default for Costs {
    fn default() -> Self {
        Costs {
            rate_card: Costs::parse_rate_card(DEFAULT_RATE_CARD).unwrap_or_default(),
            agent_cost_per_hour: 20.0,
            bot_cost_per_conversation: 0.10,
        }
    }
}
