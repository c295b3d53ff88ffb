//! Charts as inline SVG, drawn with plotters: each report's chart as its spec describes it
//! ([`crate::analytics::reports::Chart`]), drawn by [`for_report`].

use std::collections::BTreeMap;

use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use serde_json::Value;

use crate::analytics::reports::{Chart as ChartSpec, Computed};

const W: u32 = 760;
const H: u32 = 340;

/// A chart failed to draw (plotters' error, as text).
#[derive(Debug, thiserror::Error)]
#[error("chart: {0}")]
pub struct ChartError(String);

pub(super) fn err<E: std::fmt::Display>(e: E) -> ChartError {
    ChartError(e.to_string())
}

fn col(r: &Computed, name: &str) -> Option<usize> {
    r.columns.iter().position(|c| c == name)
}

fn num(v: &Value) -> Option<f64> {
    v.as_f64()
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "(none)".into(),
        other => other.to_string(),
    }
}

/// The chart of a report, drawn as its [`ChartSpec`] says, or `None` when it has nothing to
/// draw.
pub fn for_report(r: &Computed) -> Result<Option<String>, ChartError> {
    if r.rows.is_empty() {
        return Ok(None);
    }
    let label = |row: &[Value], cols: &[&str]| {
        cols.iter().filter_map(|c| col(r, c)).map(|i| text(&row[i])).collect::<Vec<_>>().join(" / ")
    };
    let svg = match r.report.spec().chart {
        ChartSpec::Bars { title, label: by, series: names } => {
            let series = names
                .iter()
                .filter_map(|n| {
                    col(r, n).map(|i| (n.to_string(), r.rows.iter().map(|row| num(&row[i]).unwrap_or(0.0)).collect()))
                })
                .collect();
            bars(title, r.rows.iter().map(|row| label(row, by)).collect(), series)?
        }
        ChartSpec::SumBars { title, by, value } => {
            let mut sums: BTreeMap<String, f64> = BTreeMap::new();
            let (Some(c), Some(f)) = (col(r, by), col(r, value)) else { return Ok(None) };
            for row in &r.rows {
                *sums.entry(text(&row[c])).or_default() += num(&row[f]).unwrap_or(0.0);
            }
            bars(title, sums.keys().cloned().collect(), vec![(value.into(), sums.values().copied().collect())])?
        }
        ChartSpec::RateLines { title, x, denominator, rates } => {
            let (Some(d), Some(s)) = (col(r, x), col(r, denominator)) else { return Ok(None) };
            let Some(parts) = rates.iter().map(|(_, c)| col(r, c)).collect::<Option<Vec<usize>>>() else {
                return Ok(None);
            };
            // Per x: the denominator's sum, then each rate's numerator sum.
            let mut by: BTreeMap<String, Vec<f64>> = BTreeMap::new();
            for row in &r.rows {
                let e = by.entry(text(&row[d])).or_insert_with(|| vec![0.0; parts.len() + 1]);
                e[0] += num(&row[s]).unwrap_or(0.0);
                for (k, i) in parts.iter().enumerate() {
                    e[k + 1] += num(&row[*i]).unwrap_or(0.0);
                }
            }
            let series = rates
                .iter()
                .enumerate()
                .map(|(k, (name, _))| {
                    (name.to_string(), by.values().map(|v| (v[0] > 0.0).then(|| v[k + 1] / v[0])).collect())
                })
                .collect();
            lines(title, by.keys().cloned().collect(), series)?
        }
        ChartSpec::LinesPer { title, x, series, value } => {
            let (Some(d), Some(q), Some(m)) = (col(r, x), col(r, series), col(r, value)) else { return Ok(None) };
            let days = in_order(r.rows.iter().map(|row| text(&row[d])).collect());
            let mut per_series: BTreeMap<String, Vec<Option<f64>>> = BTreeMap::new();
            for row in &r.rows {
                let line = per_series.entry(text(&row[q])).or_insert_with(|| vec![None; days.len()]);
                // Rows sharing a point (pricing's types and countries of one category and day)
                // add up.
                if let (Some(i), Some(v)) = (days.iter().position(|x| *x == text(&row[d])), num(&row[m])) {
                    line[i] = Some(line[i].unwrap_or(0.0) + v);
                }
            }
            lines(title, days, per_series.into_iter().collect())?
        }
        ChartSpec::Effects { title } => return super::effects::effects(r, title),
    };
    Ok(Some(svg))
}

/// The distinct values of an x axis in order: as numbers when every one is a number (weeks
/// after a cohort: as text, 10 would come before 2), else as text (dates).
fn in_order(values: std::collections::BTreeSet<String>) -> Vec<String> {
    let numbers: Option<Vec<f64>> = values.iter().map(|x| x.parse::<f64>().ok()).collect();
    match numbers {
        Some(n) => {
            let mut keyed: Vec<(f64, String)> = n.into_iter().zip(values).collect();
            keyed.sort_by(|a, b| a.0.total_cmp(&b.0));
            keyed.into_iter().map(|(_, x)| x).collect()
        }
        None => values.into_iter().collect(),
    }
}

type Chart<'a, DB> =
    ChartContext<'a, DB, Cartesian2d<plotters::coord::types::RangedCoordf64, plotters::coord::types::RangedCoordf64>>;

/// Draws into a fresh SVG document with `draw`, and returns it.
fn svg(
    draw: impl FnOnce(&DrawingArea<SVGBackend, plotters::coord::Shift>) -> Result<(), ChartError>,
) -> Result<String, ChartError> {
    let mut buf = String::new();
    {
        let root = SVGBackend::with_string(&mut buf, (W, H)).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        draw(&root)?;
        root.present().map_err(err)?;
    }
    Ok(buf)
}

/// The common frame of every chart: title, margins, label areas, value axis from 0.
fn frame<'a, DB: DrawingBackend>(
    root: &'a DrawingArea<DB, plotters::coord::Shift>,
    title: &str,
    x: std::ops::Range<f64>,
    ymax: f64,
) -> Result<Chart<'a, DB>, ChartError> {
    ChartBuilder::on(root)
        .caption(title, ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(46)
        .y_label_area_size(60)
        .build_cartesian_2d(x, 0f64..ymax)
        .map_err(err)
}

fn nice_max(v: f64) -> f64 {
    if v <= 0.0 { 1.0 } else { v * 1.1 }
}

/// Grouped bars: one group per category, one bar per series.
pub fn bars(title: &str, categories: Vec<String>, series: Vec<(String, Vec<f64>)>) -> Result<String, ChartError> {
    svg(|root| {
        let ymax = nice_max(series.iter().flat_map(|(_, v)| v.iter().copied()).fold(0.0, f64::max));
        let n = categories.len().max(1);
        let mut chart = frame(root, title, 0f64..n as f64, ymax)?;
        categorical_mesh(&mut chart, n)?;
        let width = 0.8 / series.len().max(1) as f64;
        for (si, (name, vals)) in series.iter().enumerate() {
            let color = Palette99::pick(si).mix(0.9);
            chart
                .draw_series(vals.iter().enumerate().map(|(ci, v)| {
                    let x0 = ci as f64 + 0.1 + si as f64 * width;
                    Rectangle::new([(x0, 0.0), (x0 + width * 0.95, *v)], color.filled())
                }))
                .map_err(err)?
                .label(name.clone())
                .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 10, y + 5)], color.filled()));
        }
        chart.configure_series_labels().border_style(BLACK).background_style(WHITE.mix(0.85)).draw().map_err(err)?;
        category_labels(root, &chart, &categories)?;
        Ok(())
    })
}

/// Value grid only: category names are drawn by [`category_labels`].
fn categorical_mesh<DB: DrawingBackend>(chart: &mut Chart<DB>, n: usize) -> Result<(), ChartError> {
    chart.configure_mesh().disable_x_mesh().x_labels(n + 1).x_label_formatter(&|_| String::new()).draw().map_err(err)
}

/// Category names centred under their groups. Drawn by hand because plotters places mesh
/// labels at "nice" numbers, not at group centres.
fn category_labels<DB: DrawingBackend>(
    root: &DrawingArea<DB, plotters::coord::Shift>,
    chart: &ChartContext<
        DB,
        Cartesian2d<plotters::coord::types::RangedCoordf64, plotters::coord::types::RangedCoordf64>,
    >,
    labels: &[String],
) -> Result<(), ChartError> {
    let style = TextStyle::from(("sans-serif", 11).into_font()).pos(Pos::new(HPos::Center, VPos::Top));
    for (i, l) in labels.iter().enumerate() {
        let (x, y) = chart.backend_coord(&(i as f64 + 0.5, 0.0));
        let short: String =
            if l.chars().count() > 22 { l.chars().take(21).chain(['…']).collect() } else { l.clone() };
        root.draw(&Text::new(short, (x, y + 6), style.clone())).map_err(err)?;
    }
    Ok(())
}

/// Lines over ordered labels (days); gaps where a value is missing.
pub fn lines(title: &str, xs: Vec<String>, series: Vec<(String, Vec<Option<f64>>)>) -> Result<String, ChartError> {
    svg(|root| {
        let ymax = nice_max(series.iter().flat_map(|(_, v)| v.iter().flatten().copied()).fold(0.0, f64::max));
        let n = xs.len().max(2);
        let mut chart = frame(root, title, 0f64..(n - 1) as f64, ymax)?;
        let labels = xs.clone();
        chart
            .configure_mesh()
            .x_labels(n.min(10))
            .x_label_formatter(&move |x| labels.get(x.round() as usize).cloned().unwrap_or_default())
            .draw()
            .map_err(err)?;
        for (si, (name, vals)) in series.iter().enumerate() {
            let color = Palette99::pick(si).to_rgba();
            let pts: Vec<(f64, f64)> = vals.iter().enumerate().filter_map(|(i, v)| v.map(|v| (i as f64, v))).collect();
            chart
                .draw_series(LineSeries::new(pts.clone(), color.stroke_width(2)))
                .map_err(err)?
                .label(name.clone())
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 12, y)], color.stroke_width(2)));
            chart.draw_series(pts.iter().map(|p| Circle::new(*p, 3, color.filled()))).map_err(err)?;
        }
        chart.configure_series_labels().border_style(BLACK).background_style(WHITE.mix(0.85)).draw().map_err(err)?;
        Ok(())
    })
}

/// A point per item with its interval as an error bar.
pub fn error_bars(title: &str, items: Vec<(String, f64, f64, f64)>) -> Result<String, ChartError> {
    svg(|root| {
        let ymax = nice_max(items.iter().map(|i| i.3).fold(0.0, f64::max));
        let n = items.len().max(1);
        let mut chart = frame(root, title, 0f64..n as f64, ymax)?;
        categorical_mesh(&mut chart, n)?;
        let color = Palette99::pick(0).to_rgba();
        chart
            .draw_series(items.iter().enumerate().map(|(i, it)| {
                ErrorBar::new_vertical(i as f64 + 0.5, it.2, it.1, it.3, color.filled().stroke_width(2), 14)
            }))
            .map_err(err)?;
        chart
            .draw_series(items.iter().enumerate().map(|(i, it)| Circle::new((i as f64 + 0.5, it.1), 5, color.filled())))
            .map_err(err)?;
        let names: Vec<String> = items.iter().map(|i| i.0.clone()).collect();
        category_labels(root, &chart, &names)?;
        Ok(())
    })
}

/// Rasterises a chart's SVG to PNG (at 2x for sharp text). Text uses the system's fonts; on a
/// machine without any, the PNG has the chart without its labels.
pub fn png(svg: &str) -> Result<Vec<u8>, ChartError> {
    use std::sync::{Arc, OnceLock};
    static FONTS: OnceLock<Arc<resvg::usvg::fontdb::Database>> = OnceLock::new();
    let fonts = FONTS
        .get_or_init(|| {
            let mut db = resvg::usvg::fontdb::Database::new();
            db.load_system_fonts();
            // fontdb maps `sans-serif` to Arial, which Linux rarely has: use a sans face that is.
            let families: Vec<String> =
                db.faces().flat_map(|f| f.families.iter().map(|(name, _)| name.clone())).collect();
            let pick = ["DejaVu Sans", "Liberation Sans", "Noto Sans", "FreeSans"]
                .iter()
                .map(|s| s.to_string())
                .find(|want| families.contains(want))
                .or_else(|| families.iter().find(|f| f.contains("Sans") && !f.contains("Mono")).cloned());
            if let Some(family) = pick {
                db.set_sans_serif_family(family);
            }
            Arc::new(db)
        })
        .clone();
    let opts = resvg::usvg::Options { fontdb: fonts, ..Default::default() };
    let tree = resvg::usvg::Tree::from_str(svg, &opts).map_err(err)?;
    let size = tree.size().to_int_size();
    let scale = 2.0;
    let mut pixmap = resvg::tiny_skia::Pixmap::new(size.width() * 2, size.height() * 2)
        .ok_or_else(|| ChartError("chart has no size".into()))?;
    resvg::render(&tree, resvg::tiny_skia::Transform::from_scale(scale, scale), &mut pixmap.as_mut());
    pixmap.encode_png().map_err(err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn charts_render_to_svg_and_png() {
        let svg = bars("t", vec!["a".into(), "b".into()], vec![("x".into(), vec![1.0, 2.0])]).unwrap();
        let has_label = |svg: &str, l: &str| svg.lines().any(|x| x.trim() == l);
        assert!(svg.starts_with("<svg") && has_label(&svg, "a") && has_label(&svg, "b"));
        let png = png(&svg).unwrap();
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
        assert!(png.len() > 1000);
        let lines = lines("t", vec!["d1".into(), "d2".into()], vec![("r".into(), vec![Some(0.5), None])]).unwrap();
        assert!(lines.contains("<svg"));
        let e = error_bars("t", vec![("v".into(), 0.1, 0.05, 0.15)]).unwrap();
        assert!(has_label(&e, "v"));
    }

    #[test]
    fn an_axis_of_numbers_is_in_numeric_order_and_of_dates_in_date_order() {
        let set = |v: &[&str]| v.iter().map(|s| s.to_string()).collect();
        assert_eq!(in_order(set(&["10", "2", "0", "1"])), ["0", "1", "2", "10"]);
        assert_eq!(in_order(set(&["2026-01-12", "2026-01-05"])), ["2026-01-05", "2026-01-12"]);
    }
}
