//! The experiment's chart: one line per variant and metric, its difference from the control as
//! a share of the control's value, so a rate and an amount share one axis and "right of zero"
//! always means "more than the control".
//!
//! The wide band is the always-valid interval the decision is taken on; the thin bar with
//! ticks the fixed-horizon 95% interval; the dot the estimate (CUPED-adjusted where CUPED
//! applies). The colour is the decision, named at the right.

use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use serde_json::Value;

use super::chart::{ChartError, err};
use crate::analytics::reports::Computed;

const W: u32 = 900;

/// One line of the chart, in shares of the control's value.
struct Item {
    label: String,
    decision: String,
    reason: String,
    estimate: f64,
    valid: (f64, f64),
    fixed: Option<(f64, f64)>,
}

fn colour(decision: &str) -> RGBColor {
    match decision {
        "ship" => RGBColor(26, 127, 55),
        "stop: harm" => RGBColor(200, 30, 30),
        "invalid: SRM" => RGBColor(214, 120, 0),
        "not enough data" => RGBColor(150, 150, 150),
        _ => RGBColor(40, 90, 170),
    }
}

/// The items of the report's overall rows (not its slices).
fn items(r: &Computed) -> Vec<Item> {
    let col = |n: &str| r.columns.iter().position(|c| c == n);
    let (Some(ie), Some(iv), Some(im), Some(ir), Some(ilo), Some(ihi), Some(iflo), Some(ifhi), Some(id), Some(isl)) = (
        col("experiment"),
        col("variant"),
        col("metric"),
        col("conversion_rate"),
        col("always_valid_low"),
        col("always_valid_high"),
        col("abs_diff_ci_low"),
        col("abs_diff_ci_high"),
        col("decision"),
        col("slice"),
    ) else {
        return Vec::new();
    };
    let reason = col("decision_reason");
    let overall: Vec<&Vec<Value>> = r.rows.iter().filter(|row| row[isl].is_null()).collect();
    let experiments: std::collections::BTreeSet<&str> = overall.iter().filter_map(|row| row[ie].as_str()).collect();
    let mut out = Vec::new();
    for row in &overall {
        let (Some(lo), Some(hi)) = (row[ilo].as_f64(), row[ihi].as_f64()) else { continue };
        // The control's row of the same experiment and metric: the one without a decision.
        let Some(base) = overall
            .iter()
            .find(|c| c[ie] == row[ie] && c[im] == row[im] && c[id].is_null())
            .and_then(|c| c[ir].as_f64())
            .filter(|b| *b > 0.0)
        else {
            continue;
        };
        let s = |v: f64| v / base;
        let mut label = format!("{} · {}", row[im].as_str().unwrap_or(""), row[iv].as_str().unwrap_or(""));
        if experiments.len() > 1 {
            label = format!("{} · {label}", row[ie].as_str().unwrap_or(""));
        }
        out.push(Item {
            label,
            decision: row[id].as_str().unwrap_or("").to_string(),
            reason: reason.and_then(|i| row[i].as_str()).unwrap_or("").to_string(),
            estimate: s((lo + hi) / 2.0),
            valid: (s(lo), s(hi)),
            fixed: row[iflo].as_f64().zip(row[ifhi].as_f64()).map(|(a, b)| (s(a), s(b))),
        });
    }
    out
}

/// Each variant's rate on the first goal with its 95% (Wald) interval: what there is to draw
/// before any variant has an always-valid interval (too few contacts, or no variance yet).
fn rates(r: &Computed) -> Result<Option<String>, ChartError> {
    let col = |n: &str| r.columns.iter().position(|c| c == n);
    let (Some(ie), Some(iv), Some(im), Some(irole), Some(ix), Some(ir), Some(isl)) = (
        col("experiment"),
        col("variant"),
        col("metric"),
        col("role"),
        col("exposures"),
        col("conversion_rate"),
        col("slice"),
    ) else {
        return Ok(None);
    };
    let first_goal = r.rows.iter().find(|row| row[irole] == "goal").map(|row| row[im].clone());
    let items: Vec<(String, f64, f64, f64)> = r
        .rows
        .iter()
        .filter(|row| row[isl].is_null() && Some(&row[im]) == first_goal.as_ref())
        .filter_map(|row| {
            let (n, p) = (row[ix].as_f64()?, row[ir].as_f64()?);
            let half = if n > 0.0 && (0.0..=1.0).contains(&p) {
                crate::analytics::stats::Z975 * (p * (1.0 - p) / n).sqrt()
            } else {
                0.0
            };
            let label = format!("{} / {}", row[ie].as_str().unwrap_or(""), row[iv].as_str().unwrap_or(""));
            Some((label, p, (p - half).max(0.0), p + half))
        })
        .collect();
    if items.is_empty() {
        return Ok(None);
    }
    let metric = first_goal.as_ref().and_then(|m| m.as_str()).unwrap_or("goal");
    super::chart::error_bars(&format!("{metric} per variant (95% interval); no always-valid interval yet"), items)
        .map(Some)
}

/// The chart as SVG; before any variant has an always-valid interval, each variant's rate on
/// the first goal; `None` without rows to draw.
pub fn effects(r: &Computed, title: &str) -> Result<Option<String>, ChartError> {
    let items = items(r);
    if items.is_empty() {
        return rates(r);
    }
    let extent = items
        .iter()
        .flat_map(|i| [i.valid.0, i.valid.1, i.fixed.map_or(0.0, |f| f.0), i.fixed.map_or(0.0, |f| f.1)])
        .filter(|v| v.is_finite())
        .fold(0.05_f64, |m, v| m.max(v.abs()));
    let x = -extent * 1.1..extent * 1.1;
    let n = items.len();
    // The plot, then one line per item under it: the decision's reason, in words.
    let plot_h = 110 + 38 * n as u32;
    let h = plot_h + 10 + 18 * n as u32;
    let mut buf = String::new();
    {
        let root = SVGBackend::with_string(&mut buf, (W, h)).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        let (top, bottom) = root.split_vertically(plot_h);
        let mut chart = ChartBuilder::on(&top)
            .caption(title, ("sans-serif", 17))
            .margin(12)
            .margin_right(150)
            .x_label_area_size(40)
            .y_label_area_size(210)
            .build_cartesian_2d(x, 0f64..n as f64)
            .map_err(err)?;
        let labels: Vec<String> = items.iter().map(|i| i.label.clone()).collect();
        chart
            .configure_mesh()
            .disable_y_mesh()
            .y_labels(n * 2 + 1)
            .y_label_formatter(&move |y| {
                let k = y - 0.5;
                if (k - k.round()).abs() < 1e-6 && k >= 0.0 {
                    labels.get(n - 1 - k.round() as usize).cloned().unwrap_or_default()
                } else {
                    String::new()
                }
            })
            .x_desc("difference from the control, % of the control's value")
            .x_label_formatter(&|v| format!("{:+.0}%", v * 100.0))
            .draw()
            .map_err(err)?;
        chart
            .draw_series(std::iter::once(PathElement::new(vec![(0.0, 0.0), (0.0, n as f64)], BLACK.stroke_width(1))))
            .map_err(err)?;
        for (k, it) in items.iter().enumerate() {
            let y = (n - 1 - k) as f64 + 0.5;
            let c = colour(&it.decision);
            chart
                .draw_series(std::iter::once(Rectangle::new(
                    [(it.valid.0, y - 0.22), (it.valid.1, y + 0.22)],
                    c.mix(0.3).filled(),
                )))
                .map_err(err)?;
            if let Some((a, b)) = it.fixed {
                chart
                    .draw_series(std::iter::once(ErrorBar::new_horizontal(y, a, it.estimate, b, c.stroke_width(2), 10)))
                    .map_err(err)?;
            }
            chart.draw_series(std::iter::once(Circle::new((it.estimate, y), 5, c.filled()))).map_err(err)?;
            let (px, py) = chart.backend_coord(&(extent * 1.1, y));
            let style =
                TextStyle::from(("sans-serif", 13).into_font()).color(&c).pos(Pos::new(HPos::Left, VPos::Center));
            top.draw(&Text::new(it.decision.clone(), (px + 10, py), style)).map_err(err)?;
        }
        for (k, it) in items.iter().enumerate() {
            let c = colour(&it.decision);
            let style = TextStyle::from(("sans-serif", 12).into_font()).color(&c);
            let line = format!("{}: {} — {}", it.label, it.decision, it.reason);
            let line: String =
                if line.chars().count() > 150 { line.chars().take(149).chain(['…']).collect() } else { line };
            bottom.draw(&Text::new(line, (16, 4 + 18 * k as i32), style)).map_err(err)?;
        }
        root.present().map_err(err)?;
    }
    Ok(Some(buf))
}
