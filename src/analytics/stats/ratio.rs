//! Ratio metrics: a sum over a sum of the same units, such as revenue per delivered message.
//! The units are contacts, the ratio is not a per-contact mean, so its variance comes from the
//! delta method over the two sums and their covariance (as gbstats' `RatioStatistic`).

use super::cuped::Moments;

/// The ratio of one arm and its variance. `m` holds the numerator as `y` and the denominator
/// as `x` (`sum_xy` their cross products). `None` without units or denominator.
pub fn ratio(m: &Moments) -> Option<(f64, f64)> {
    if m.n < 2.0 || m.sum_x <= 0.0 {
        return None;
    }
    let (mean_n, mean_d) = (m.mean_y(), m.mean_x());
    let r = mean_n / mean_d;
    let var = (m.var_y() / (mean_d * mean_d) - 2.0 * m.cov_xy() * mean_n / mean_d.powi(3)
        + m.var_x() * mean_n * mean_n / mean_d.powi(4))
        / m.n;
    (var.is_finite() && var >= 0.0).then_some((r, var))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_constant_denominator_gives_the_mean_and_its_variance() {
        // Every unit had one message delivered: the ratio is the mean revenue.
        let m = Moments { n: 4.0, sum_y: 10.0, sum_y2: 30.0, sum_x: 4.0, sum_x2: 4.0, sum_xy: 10.0 };
        let (r, v) = ratio(&m).unwrap();
        assert!((r - 2.5).abs() < 1e-12);
        assert!((v - m.var_y() / 4.0).abs() < 1e-12, "{v}");
        assert!(ratio(&Moments { n: 4.0, ..Default::default() }).is_none());
    }

    #[test]
    fn matches_gbstats_ratio_statistic() {
        use crate::analytics::stats::test_vectors::{close, vectors};
        let v = vectors();
        let case = v["cases"].as_array().unwrap().iter().find(|c| c["kind"] == "ratio_delta").unwrap();
        for (k, arm) in case["input"]["arms"].as_array().unwrap().iter().enumerate() {
            let f = |key: &str| arm[key].as_f64().unwrap();
            let m = Moments {
                n: f("n"),
                sum_y: f("sum_m"),
                sum_y2: f("sum_m2"),
                sum_x: f("sum_d"),
                sum_x2: f("sum_d2"),
                sum_xy: f("sum_md"),
            };
            let (r, var) = ratio(&m).unwrap();
            let e = &case["expected"]["arms"][k];
            close(Some(r), &e["ratio"], 1e-12, 1e-10, "ratio");
            close(Some(var), &e["variance_of_ratio"], 1e-15, 1e-8, "variance");
        }
    }
}
