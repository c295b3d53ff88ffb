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
pub fn for_report(r: &Computed, currency: &str) -> Result<Option<String>, ChartError> {
    if r.rows.is_empty() {
        return Ok(None);
    }
    let label = |row: &[Value], cols: &[&str]| {
        cols.iter().filter_map(|c| col(r, c)).map(|i| text(&row[i])).collect::<Vec<_>>().join(" / ")
    };
    let spec = r.report.spec().chart;
    let svg = match spec {
        ChartSpec::Bars { title, label: by, series: names } => {
            let series = names
                .iter()
                .filter_map(|n| {
                    col(r, n).map(|i| (n.to_string(), r.rows.iter().map(|row| num(&row[i]).unwrap_or(0.0)).collect()))
                })
                .collect();
            bars_with(title, r.rows.iter().map(|row| label(row, by)).collect(), series, Axis::of(names, currency))?
        }
        ChartSpec::SumBars { title, by, value } => {
            let mut sums: BTreeMap<String, f64> = BTreeMap::new();
            let (Some(c), Some(f)) = (col(r, by), col(r, value)) else { return Ok(None) };
            for row in &r.rows {
                *sums.entry(text(&row[c])).or_default() += num(&row[f]).unwrap_or(0.0);
            }
            let axis = Axis::of(&[value], currency);
            bars_with(
                title,
                sums.keys().cloned().collect(),
                vec![(value.into(), sums.values().copied().collect())],
                axis,
            )?
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
            lines_with(title, by.keys().cloned().collect(), series, Axis::share_of(denominator))?
        }
        ChartSpec::LinesPer { title, x, series, value } | ChartSpec::SumLines { title, x, series, value } => {
            let sum = matches!(spec, ChartSpec::SumLines { .. });
            let Some((xs, lines)) = lines_per(r, x, series, value, sum) else { return Ok(None) };
            lines_with(title, xs, lines, Axis::of(&[value], currency))?
        }
        ChartSpec::Steps { title, label: by, steps } => {
            let Some(idx) = steps.iter().map(|(_, c)| col(r, c)).collect::<Option<Vec<usize>>>() else {
                return Ok(None);
            };
            let rate: Vec<bool> = steps.iter().map(|(_, c)| super::html::is_share(c)).collect();
            // The rows with the most at the first step: more lines than colours can tell apart
            // would be noise.
            let mut rows: Vec<&Vec<Value>> = r.rows.iter().collect();
            rows.sort_by(|a, b| num(&b[idx[0]]).unwrap_or(0.0).total_cmp(&num(&a[idx[0]]).unwrap_or(0.0)));
            rows.truncate(STEP_LINES);
            let series = rows
                .iter()
                .map(|row| {
                    let first = num(&row[idx[0]]).unwrap_or(0.0);
                    let shares = idx
                        .iter()
                        .zip(&rate)
                        .map(|(&i, &rate)| match rate {
                            true => num(&row[i]),
                            false => (first > 0.0).then(|| num(&row[i]).unwrap_or(0.0) / first),
                        })
                        .collect();
                    (label(row, by), shares)
                })
                .collect();
            let names: Vec<String> = steps.iter().map(|(name, _)| name.to_string()).collect();
            lines_with(title, names, series, Axis::share_of(steps[0].0))?
        }
        ChartSpec::Effects { title } => return super::effects::effects(r, title),
    };
    Ok(Some(svg))
}

/// Named lines: each a value (or a gap) per x.
type Lines = Vec<(String, Vec<Option<f64>>)>;

/// The x values in order and a line per distinct `series`: the `value` of the row at each x,
/// or with `sum` the sum of the rows there.
fn lines_per(r: &Computed, x: &str, series: &str, value: &str, sum: bool) -> Option<(Vec<String>, Lines)> {
    let (d, q, m) = (col(r, x)?, col(r, series)?, col(r, value)?);
    let xs = in_order(r.rows.iter().map(|row| text(&row[d])).collect());
    let mut per_series: BTreeMap<String, Vec<Option<f64>>> = BTreeMap::new();
    for row in &r.rows {
        let line = per_series.entry(text(&row[q])).or_insert_with(|| vec![None; xs.len()]);
        if let (Some(i), Some(v)) = (xs.iter().position(|x| *x == text(&row[d])), num(&row[m])) {
            line[i] = Some(if sum { line[i].unwrap_or(0.0) + v } else { v });
        }
    }
    Some((xs, per_series.into_iter().collect()))
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

/// Lines a step chart draws at most: the rows with the most at its first step.
const STEP_LINES: usize = 8;

/// What the value axis measures: its name, and whether its values are shares (drawn as
/// percentages) or money.
#[derive(Clone, Debug, Default)]
pub struct Axis {
    name: String,
    percent: bool,
}

impl Axis {
    /// The axis of these columns: a share when every one is a rate, else the columns' names,
    /// with the currency when they are money.
    /// Seconds (`..._s`) say so; several counts are a count, not a list of their names.
    fn of(columns: &[&str], currency: &str) -> Axis {
        let all = |f: fn(&str) -> bool| !columns.is_empty() && columns.iter().all(|c| f(c));
        let name = |c: &&str| match c.strip_suffix("_s") {
            Some(stem) => format!("{} (seconds)", stem.replace('_', " ")),
            None => c.replace('_', " "),
        };
        let names = columns.iter().map(name).collect::<Vec<_>>().join(", ");
        match (all(super::html::is_share), all(super::html::is_money)) {
            (true, _) => Axis { name: "share".into(), percent: true },
            (_, true) => Axis { name: format!("{names} ({currency})"), percent: false },
            _ if columns.len() > 2 => Axis { name: "count".into(), percent: false },
            _ => Axis { name: names, percent: false },
        }
    }

    /// Shares of a column (rates over sent, steps over the first one).
    fn share_of(column: &str) -> Axis {
        Axis { name: format!("share of {}", column.replace('_', " ")), percent: true }
    }

    /// A tick's label. Shares stop at 100%: the room above is the legend's.
    fn label(&self, v: f64) -> String {
        match self.percent {
            true if v > 1.0 + 1e-9 => String::new(),
            true => format!("{:.0}%", v * 100.0),
            false => super::html::short_number(v),
        }
    }
}

/// The common frame of every chart: title, margins, label areas, value axis from 0 with its
/// name, and room above the highest value for a legend of `legend` series, so it never covers
/// a bar or a line.
fn frame<'a, DB: DrawingBackend>(
    root: &'a DrawingArea<DB, plotters::coord::Shift>,
    title: &str,
    x: std::ops::Range<f64>,
    ymax: f64,
    legend: usize,
) -> Result<Chart<'a, DB>, ChartError> {
    // The plot is about 240 pixels high; a legend line is about 20.
    let legend_px = if legend > 1 { 20.0 * legend as f64 + 16.0 } else { 0.0 };
    let top = if ymax <= 0.0 { 1.0 } else { ymax * 1.08 / (1.0 - (legend_px / 240.0).min(0.6)) };
    ChartBuilder::on(root)
        .caption(title, ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(46)
        .y_label_area_size(64)
        .build_cartesian_2d(x, 0f64..top)
        .map_err(err)
}

fn legend<'a, DB: DrawingBackend + 'a>(chart: &mut Chart<'a, DB>, series: usize) -> Result<(), ChartError> {
    if series < 2 {
        return Ok(());
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .border_style(BLACK.mix(0.4))
        .background_style(WHITE.mix(0.9))
        .draw()
        .map_err(err)
}

/// Grouped bars: one group per category, one bar per series.
pub fn bars(title: &str, categories: Vec<String>, series: Vec<(String, Vec<f64>)>) -> Result<String, ChartError> {
    bars_with(title, categories, series, Axis::default())
}

fn bars_with(
    title: &str,
    categories: Vec<String>,
    series: Vec<(String, Vec<f64>)>,
    axis: Axis,
) -> Result<String, ChartError> {
    svg(|root| {
        let ymax = series.iter().flat_map(|(_, v)| v.iter().copied()).fold(0.0, f64::max);
        let n = categories.len().max(1);
        let mut chart = frame(root, title, 0f64..n as f64, ymax, series.len())?;
        categorical_mesh(&mut chart, n, &axis)?;
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
        legend(&mut chart, series.len())?;
        category_labels(root, &chart, &categories)?;
        Ok(())
    })
}

/// Value grid only: category names are drawn by [`category_labels`].
fn categorical_mesh<DB: DrawingBackend>(chart: &mut Chart<DB>, n: usize, axis: &Axis) -> Result<(), ChartError> {
    let a = axis.clone();
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(n + 1)
        .x_label_formatter(&|_| String::new())
        .light_line_style(RGBColor(244, 245, 247))
        .y_desc(axis.name.as_str())
        .y_label_formatter(&move |v| a.label(*v))
        .draw()
        .map_err(err)
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
    let (left, _) = chart.backend_coord(&(0.0, 0.0));
    let (right, _) = chart.backend_coord(&(labels.len().max(1) as f64, 0.0));
    // About 6.5 pixels a character at this size.
    let fit = (((right - left) as f64 / labels.len().max(1) as f64) / 6.5).floor().max(5.0) as usize;
    for (i, lines) in short_labels(labels, fit).into_iter().enumerate() {
        let (x, y) = chart.backend_coord(&(i as f64 + 0.5, 0.0));
        for (k, line) in lines.into_iter().enumerate() {
            root.draw(&Text::new(line, (x, y + 6 + 13 * k as i32), style.clone())).map_err(err)?;
        }
    }
    Ok(())
}

/// The x labels of a line chart under their points: every one when they fit, else every k-th
/// (always the first and the last).
fn point_labels<DB: DrawingBackend>(
    root: &DrawingArea<DB, plotters::coord::Shift>,
    chart: &ChartContext<
        DB,
        Cartesian2d<plotters::coord::types::RangedCoordf64, plotters::coord::types::RangedCoordf64>,
    >,
    xs: &[String],
) -> Result<(), ChartError> {
    let style = TextStyle::from(("sans-serif", 11).into_font()).pos(Pos::new(HPos::Center, VPos::Top));
    let (left, _) = chart.backend_coord(&(0.0, 0.0));
    let (right, _) = chart.backend_coord(&((xs.len().max(2) - 1) as f64, 0.0));
    let widest = xs.iter().map(|x| x.chars().count()).max().unwrap_or(1) as f64 * 6.5 + 10.0;
    let fits = (((right - left) as f64 / widest).floor() as usize + 1).max(2);
    let step = xs.len().div_ceil(fits).max(1);
    for (i, x) in xs.iter().enumerate() {
        if i % step != 0 && i != xs.len() - 1 {
            continue;
        }
        // The last label is drawn; the one before it only where they do not collide.
        if i != xs.len() - 1 && i + step > xs.len() - 1 && (xs.len() - 1 - i) < step {
            continue;
        }
        let (px, py) = chart.backend_coord(&(i as f64, 0.0));
        root.draw(&Text::new(x.clone(), (px, py + 6), style.clone())).map_err(err)?;
    }
    Ok(())
}

/// Labels that fit `fit` characters a line and stay apart: the parts every label shares
/// (`spring_sale / ` of each variant of one campaign) are left out, each remaining part is a
/// line of its own (at most two), and a part too long loses its middle, not its end, which is
/// where names that share a beginning differ.
fn short_labels(labels: &[String], fit: usize) -> Vec<Vec<String>> {
    let parts: Vec<Vec<&str>> = labels.iter().map(|l| l.split(" / ").collect()).collect();
    let width = parts.iter().map(Vec::len).max().unwrap_or(0);
    let shared = |k: usize| labels.len() > 1 && parts.iter().all(|p| p.get(k) == parts[0].get(k));
    let keep: Vec<usize> = (0..width).filter(|&k| !shared(k)).collect();
    parts
        .iter()
        .map(|p| {
            let mut kept: Vec<String> = keep.iter().filter_map(|&k| p.get(k).map(|s| s.to_string())).collect();
            if kept.is_empty() {
                kept = p.iter().map(|s| s.to_string()).collect();
            }
            if kept.len() > 2 {
                let rest = kept.split_off(1).join(" / ");
                kept.push(rest);
            }
            kept.iter().map(|part| middle_ellipsis(part, fit)).collect()
        })
        .collect()
}

fn middle_ellipsis(s: &str, fit: usize) -> String {
    let chars: Vec<char> = s.chars().collect();
    if chars.len() <= fit {
        return s.to_string();
    }
    let head = (fit - 1) / 2;
    let tail = fit - 1 - head;
    chars[..head].iter().chain(['…'].iter()).chain(chars[chars.len() - tail..].iter()).collect()
}

/// Lines over ordered labels (days); gaps where a value is missing.
pub fn lines(title: &str, xs: Vec<String>, series: Lines) -> Result<String, ChartError> {
    lines_with(title, xs, series, Axis::default())
}

fn lines_with(title: &str, xs: Vec<String>, series: Lines, axis: Axis) -> Result<String, ChartError> {
    // A line needs two points: one x is drawn as labelled bars, not a lone dot in a grid.
    if xs.len() == 1 {
        let bars = series.into_iter().map(|(name, v)| (name, vec![v[0].unwrap_or(0.0)])).collect();
        return bars_with(title, xs, bars, axis);
    }
    svg(|root| {
        let ymax = series.iter().flat_map(|(_, v)| v.iter().flatten().copied()).fold(0.0, f64::max);
        let n = xs.len().max(2);
        // A margin of a third of a step each side, so the first and last labels are not cut.
        let mut chart = frame(root, title, -0.35f64..(n - 1) as f64 + 0.35, ymax, series.len())?;
        let a = axis.clone();
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_label_formatter(&|_| String::new())
            .light_line_style(RGBColor(244, 245, 247))
            .y_desc(axis.name.as_str())
            .y_label_formatter(&move |v| a.label(*v))
            .draw()
            .map_err(err)?;
        point_labels(root, &chart, &xs)?;
        // Earlier series are drawn wider, so a later one lying on top of them leaves their
        // colour showing at its edges: series that coincide stay visible.
        let widths = series.len() as u32;
        for (si, (name, vals)) in series.iter().enumerate() {
            let color = Palette99::pick(si).to_rgba();
            let stroke = 2 + 2 * (widths - 1 - si as u32).min(3);
            let pts: Vec<(f64, f64)> = vals.iter().enumerate().filter_map(|(i, v)| v.map(|v| (i as f64, v))).collect();
            chart
                .draw_series(LineSeries::new(pts.clone(), color.stroke_width(stroke)))
                .map_err(err)?
                .label(name.clone())
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 12, y)], color.stroke_width(2)));
            chart.draw_series(pts.iter().map(|p| Circle::new(*p, 3, color.filled()))).map_err(err)?;
        }
        legend(&mut chart, series.len())?;
        Ok(())
    })
}

/// A point per item with its interval as an error bar.
pub fn error_bars(title: &str, items: Vec<(String, f64, f64, f64)>) -> Result<String, ChartError> {
    svg(|root| {
        let ymax = items.iter().map(|i| i.3).fold(0.0, f64::max);
        let n = items.len().max(1);
        let mut chart = frame(root, title, 0f64..n as f64, ymax, 0)?;
        categorical_mesh(&mut chart, n, &Axis::default())?;
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
    fn labels_keep_what_tells_them_apart() {
        let l = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        // The campaign all three share is left out; what differs stays whole.
        assert_eq!(
            short_labels(&l(&["spring_sale / spring_promo_bold", "spring_sale / spring_promo_emoji"]), 30),
            vec![vec!["spring_promo_bold".to_string()], vec!["spring_promo_emoji".to_string()]]
        );
        // Too long for its room: the middle goes, the differing end stays.
        assert_eq!(middle_ellipsis("spring_promo_control", 11), "sprin…ntrol");
        // Three parts that differ: the first, then the rest on a second line.
        assert_eq!(short_labels(&l(&["a / b / c", "d / e / f"]), 30)[0], vec!["a".to_string(), "b / c".to_string()]);
        // One label keeps all of itself.
        assert_eq!(short_labels(&l(&["x / y"]), 30), vec![vec!["x".to_string(), "y".to_string()]]);
    }

    #[test]
    fn lines_take_a_points_last_row_or_add_its_rows_up() {
        use crate::analytics::reports::{Params, Report};
        use serde_json::json;
        // Two quality updates of one number on one day: the limit is the later one, not the
        // sum; pricing's rows of one category and day add up.
        let r = Computed {
            report: Report::Account,
            params: Params::default(),
            generated_at: String::new(),
            columns: vec!["day".into(), "phone_number_id".into(), "messaging_limit".into()],
            rows: vec![
                vec![json!("2026-02-01"), json!("pn-1"), json!(1000)],
                vec![json!("2026-02-01"), json!("pn-1"), json!(10000)],
                vec![json!("2026-02-02"), json!("pn-1"), serde_json::Value::Null],
            ],
        };
        let (xs, last) = lines_per(&r, "day", "phone_number_id", "messaging_limit", false).unwrap();
        assert_eq!(xs, ["2026-02-01", "2026-02-02"]);
        assert_eq!(last, vec![("pn-1".to_string(), vec![Some(10000.0), None])]);
        let (_, sum) = lines_per(&r, "day", "phone_number_id", "messaging_limit", true).unwrap();
        assert_eq!(sum[0].1[0], Some(11000.0));
    }

    #[test]
    fn an_axis_says_what_it_measures() {
        assert_eq!(Axis::of(&["p50_first_response_s"], "USD").name, "p50 first response (seconds)");
        assert_eq!(Axis::of(&["cost_per_conversion"], "EUR").name, "cost per conversion (EUR)");
        assert!(Axis::of(&["read_rate", "reply_rate"], "USD").percent);
        assert_eq!(Axis::of(&["under_1m", "1m_to_10m", "over_7d"], "USD").name, "count");
        assert_eq!(Axis::of(&["messaging_limit"], "USD").name, "messaging limit");
    }

    #[test]
    fn one_point_is_drawn_as_a_labelled_bar() {
        let svg =
            lines_with("t", vec!["2026-01-05".into()], vec![("r".into(), vec![Some(0.4)])], Axis::default()).unwrap();
        let two = lines_with(
            "t",
            vec!["a".into(), "b".into()],
            vec![("r".into(), vec![Some(0.4), Some(0.5)])],
            Axis::default(),
        )
        .unwrap();
        assert!(svg.matches("<rect").count() > two.matches("<rect").count(), "a bar");
        assert!(svg.lines().any(|x| x.trim() == "2026-01-05"), "its label");
    }

    #[test]
    fn an_axis_of_numbers_is_in_numeric_order_and_of_dates_in_date_order() {
        let set = |v: &[&str]| v.iter().map(|s| s.to_string()).collect();
        assert_eq!(in_order(set(&["10", "2", "0", "1"])), ["0", "1", "2", "10"]);
        assert_eq!(in_order(set(&["2026-01-12", "2026-01-05"])), ["2026-01-05", "2026-01-12"]);
    }
}
