//! Adjusting p-values when many tests are read together: an experiment with three variants
//! and two goal metrics is six chances for one to look significant by luck.
//!
//! Undefined p-values stay undefined and are not counted among the tests.

pub use crate::experiments::Correction;

/// The p-values adjusted as `correction` says.
pub fn adjust(correction: Correction, p: &[Option<f64>]) -> Vec<Option<f64>> {
    match correction {
        Correction::BenjaminiHochberg => benjamini_hochberg(p),
        Correction::Holm => holm(p),
        Correction::None => p.to_vec(),
    }
}

/// The indices of the defined p-values, smallest first.
fn ranked(p: &[Option<f64>]) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..p.len()).filter(|&i| p[i].is_some()).collect();
    idx.sort_by(|&a, &b| p[a].partial_cmp(&p[b]).unwrap_or(std::cmp::Ordering::Equal));
    idx
}

/// Holm step-down adjusted p-values.
pub fn holm(p: &[Option<f64>]) -> Vec<Option<f64>> {
    let idx = ranked(p);
    let m = idx.len();
    let mut out = vec![None; p.len()];
    let mut running: f64 = 0.0;
    for (rank, &i) in idx.iter().enumerate() {
        let adj = ((m - rank) as f64 * p[i].unwrap_or(1.0)).min(1.0);
        running = running.max(adj);
        out[i] = Some(running);
    }
    out
}

/// Benjamini-Hochberg step-up adjusted p-values (statsmodels' `fdr_bh`).
pub fn benjamini_hochberg(p: &[Option<f64>]) -> Vec<Option<f64>> {
    let idx = ranked(p);
    let m = idx.len() as f64;
    let mut out = vec![None; p.len()];
    let mut running: f64 = 1.0;
    for (rank, &i) in idx.iter().enumerate().rev() {
        let adj = (m / (rank + 1) as f64 * p[i].unwrap_or(1.0)).min(1.0);
        running = running.min(adj);
        out[i] = Some(running);
    }
    out
}

/// Bonferroni: each p-value times the number of tests, at most 1.
pub fn bonferroni(p: &[Option<f64>]) -> Vec<Option<f64>> {
    let m = p.iter().flatten().count() as f64;
    p.iter().map(|v| v.map(|v| (v * m).min(1.0))).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analytics::stats::test_vectors::{close, vectors};
    use serde_json::Value;

    #[test]
    fn every_correction_matches_statsmodels() {
        let v = vectors();
        let mut checked = 0;
        for case in v["cases"].as_array().unwrap().iter().filter(|c| c["kind"] == "multiple_comparisons") {
            let p: Vec<Option<f64>> = case["input"]["p_values"].as_array().unwrap().iter().map(Value::as_f64).collect();
            for (name, f) in [
                ("holm_adjusted", holm as fn(&[Option<f64>]) -> Vec<Option<f64>>),
                ("bh_adjusted", benjamini_hochberg),
                ("bonferroni_adjusted", bonferroni),
            ] {
                let Some(expected) = case["expected"][name].as_array() else { continue };
                for (g, e) in f(&p).iter().zip(expected) {
                    close(*g, e, 1e-12, 1e-9, &format!("{} {name}", case["id"]));
                    checked += 1;
                }
            }
        }
        assert!(checked >= 45, "only {checked} adjusted p-values checked");
    }

    #[test]
    fn undefined_stay_undefined_and_do_not_count() {
        let p = [Some(0.01), None, Some(0.04)];
        assert_eq!(bonferroni(&p), vec![Some(0.02), None, Some(0.08)]);
        assert_eq!(benjamini_hochberg(&p)[1], None);
        assert_eq!(adjust(Correction::None, &p), p.to_vec());
    }
}
