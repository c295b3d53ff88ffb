//! The sums `queries/experiment.sql` gives per variant, slice and country, read into numbers
//! that add: a variant's total is the sum of its rows, "other" the sum of the small slices,
//! "the rest" a total minus one slice.

use serde_json::Value;

use crate::analytics::stats::cuped::Moments;
use crate::error::{Error, Result};
use crate::experiments::Metric;

/// The summed columns of the SQL, in the order [`Sums::values`] holds them.
const COLUMNS: &[&str] = &[
    "exposures",
    "conversions",
    "reads",
    "replies",
    "revenue_sum",
    "revenue_sq_sum",
    "converted_y",
    "converted_y2",
    "converted_x",
    "converted_x2",
    "converted_xy",
    "replied_y",
    "replied_y2",
    "replied_x",
    "replied_x2",
    "replied_xy",
    "read_y",
    "read_y2",
    "read_x",
    "read_x2",
    "read_xy",
    "revenue_y",
    "revenue_y2",
    "revenue_x",
    "revenue_x2",
    "revenue_xy",
    "opted_out_y",
    "opted_out_y2",
    "opted_out_x",
    "opted_out_x2",
    "opted_out_xy",
    "failed_y",
    "failed_y2",
    "failed_x",
    "failed_x2",
    "failed_xy",
    "blocked_y",
    "blocked_y2",
    "blocked_x",
    "blocked_x2",
    "blocked_xy",
    "cost_y",
    "cost_y2",
    "cost_x",
    "cost_x2",
    "cost_xy",
    "delivered_y",
    "delivered_y2",
    "revenue_delivered",
];

const N: usize = 49;
const _: () = assert!(COLUMNS.len() == N);

/// The sums of a group of contacts.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sums {
    values: [f64; N],
}

impl Default for Sums {
    fn default() -> Self {
        Sums { values: [0.0; N] }
    }
}

impl std::ops::Add for Sums {
    type Output = Sums;
    fn add(mut self, o: Sums) -> Sums {
        for (a, b) in self.values.iter_mut().zip(o.values) {
            *a += b;
        }
        self
    }
}

impl std::ops::Sub for Sums {
    type Output = Sums;
    fn sub(mut self, o: Sums) -> Sums {
        for (a, b) in self.values.iter_mut().zip(o.values) {
            *a -= b;
        }
        self
    }
}

impl std::iter::Sum for Sums {
    fn sum<I: Iterator<Item = Sums>>(iter: I) -> Sums {
        iter.fold(Sums::default(), |a, b| a + b)
    }
}

/// Where each summed column is in the SQL's rows.
pub struct Layout {
    at: [usize; N],
}

impl Layout {
    pub fn of(columns: &[String]) -> Result<Layout> {
        let mut at = [0; N];
        for (k, name) in COLUMNS.iter().enumerate() {
            at[k] = columns
                .iter()
                .position(|c| c == name)
                .ok_or_else(|| Error::Invalid(format!("experiment.sql lacks {name}")))?;
        }
        Ok(Layout { at })
    }

    pub fn read(&self, row: &[Value]) -> Sums {
        let mut values = [0.0; N];
        for (v, &i) in values.iter_mut().zip(&self.at) {
            *v = row[i].as_f64().unwrap_or(0.0);
        }
        Sums { values }
    }
}

impl Sums {
    fn get(&self, name: &str) -> f64 {
        COLUMNS.iter().position(|c| *c == name).map(|i| self.values[i]).unwrap_or(0.0)
    }

    pub fn exposures(&self) -> f64 {
        self.values[0]
    }
    pub fn conversions(&self) -> f64 {
        self.values[1]
    }
    /// Uncapped revenue per contact as `y` (the report's `revenue_*` columns).
    pub fn uncapped_revenue(&self) -> Moments {
        Moments { n: self.exposures(), sum_y: self.values[4], sum_y2: self.values[5], ..Default::default() }
    }

    /// The metric's sums: `y` after exposure, `x` before it. For the ratio metric, `y` is the
    /// numerator (capped revenue) and `x` the denominator (delivered messages), whose cross
    /// products the delta method needs.
    pub fn moments(&self, metric: Metric) -> Moments {
        let n = self.exposures();
        if metric == Metric::RevenuePerDelivered {
            return Moments {
                n,
                sum_y: self.get("revenue_y"),
                sum_y2: self.get("revenue_y2"),
                sum_x: self.get("delivered_y"),
                sum_x2: self.get("delivered_y2"),
                sum_xy: self.get("revenue_delivered"),
            };
        }
        let p = metric.as_str();
        let g = |s: &str| self.get(&format!("{p}_{s}"));
        Moments { n, sum_y: g("y"), sum_y2: g("y2"), sum_x: g("x"), sum_x2: g("x2"), sum_xy: g("xy") }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_metric_reads_its_own_columns() {
        let columns: Vec<String> = COLUMNS.iter().map(|c| c.to_string()).collect();
        let row: Vec<Value> = (0..N).map(|i| Value::from(i as f64)).collect();
        let s = Layout::of(&columns).unwrap().read(&row);
        assert_eq!(s.moments(Metric::Converted).sum_y, 6.0);
        assert_eq!(s.moments(Metric::Cost).sum_xy, 45.0);
        assert_eq!(s.moments(Metric::RevenuePerDelivered).sum_xy, 48.0);
        let t = s + s - s;
        assert_eq!(t, s);
        assert!(Layout::of(&columns[1..]).is_err());
    }
}
