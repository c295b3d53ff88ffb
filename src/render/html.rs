//! Server-rendered HTML for reports: the index page with every report, and one-report pages.

use crate::analytics::format;
use crate::analytics::reports::{Breakdown, Computed, Interval, Params};

/// Escapes text for HTML content and attribute values.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const STYLE: &str = r#"
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;margin:0;color:#1d2433;background:#f6f7f9}
header{background:#123b36;color:#fff;padding:14px 20px}header h1{margin:0;font-size:20px}
main{max-width:1100px;margin:0 auto;padding:12px}
section{background:#fff;border:1px solid #dde1e7;border-radius:8px;margin:14px 0;padding:12px 16px}
h2{font-size:18px;margin:4px 0 8px}.about{margin:0 0 8px;font-size:14px;color:#445}h2 code{font-size:13px;color:#667;font-weight:normal}.links a{margin-right:12px;font-size:14px}
.chart svg{max-width:100%;height:auto}
.table{overflow-x:auto;max-height:520px}table{border-collapse:collapse;font-size:13px;min-width:100%}
th,td{padding:4px 8px;border-bottom:1px solid #e6e9ee;text-align:left;white-space:nowrap;background:#fff}
th{position:sticky;top:0;z-index:2;cursor:pointer;user-select:none}th[aria-sort=ascending]::after{content:" \25B2"}
th[aria-sort=descending]::after{content:" \25BC"}
td:first-child,th:first-child{position:sticky;left:0;z-index:1;box-shadow:1px 0 0 #dde1e7}th:first-child{z-index:3}
td.num{text-align:right;font-variant-numeric:tabular-nums}td.key,th.key{background:#f1f6f5}
form{display:flex;flex-wrap:wrap;gap:8px;align-items:end}label{display:flex;flex-direction:column;font-size:13px}
label.check{flex-direction:row;align-items:center;gap:4px;padding-bottom:8px}
input,button,select{font-size:14px;padding:6px}.empty{color:#667}.error{color:#a11;font-weight:600}
"#;

/// Sorts a table's rows on the page (the first [`PAGE_ROWS`]) by the column whose header is
/// clicked (again: the other way), by each cell's `data-v` (the number it shows; empty for
/// none, which sorts last either way) or its text; a link ending `#sort=REPORT.COLUMN.desc` (or
/// `.asc`) opens the page sorted so. The page works without it; nothing is fetched.
const SORT: &str = r#"
document.querySelectorAll("table").forEach(function(t){t.querySelectorAll("th").forEach(function(th,i){
th.addEventListener("click",function(){var up=th.getAttribute("aria-sort")!=="ascending";
t.querySelectorAll("th").forEach(function(h){h.removeAttribute("aria-sort")});
th.setAttribute("aria-sort",up?"ascending":"descending");var b=t.tBodies[0];
var rows=Array.prototype.slice.call(b.rows);var key=function(r){var c=r.cells[i];var v=c.getAttribute("data-v");
return v===null?c.textContent:(v===""?null:parseFloat(v))};rows.sort(function(x,y){var a=key(x),c=key(y);
if(a===null||c===null){return (a===null)-(c===null)}
var o=(typeof a==="number"&&typeof c==="number")?a-c:String(a).localeCompare(String(c));return up?o:-o});
rows.forEach(function(r){b.appendChild(r)})})})});
var m=/^#sort=(\w+)\.(\w+)\.(asc|desc)$/.exec(location.hash);var sec=m&&document.getElementById(m[1]);
if(sec){sec.querySelectorAll("th").forEach(function(th){if(th.textContent===m[2]){th.click();
if(m[3]==="desc"){th.click()}}})}
"#;

fn shell(title: &str, body: &str) -> String {
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{}</title><style>{STYLE}</style></head><body>\
         <header><h1>{}</h1></header><main>{body}</main><script>{SORT}</script></body></html>",
        esc(title),
        esc(title)
    )
}

/// Query string of the filters (for links): every filter that is set, as the API takes it.
pub fn query_string(p: &Params) -> String {
    let serde_json::Value::Object(m) = p.to_json() else { return String::new() };
    let mut q = url::form_urlencoded::Serializer::new(String::new());
    for (k, v) in &m {
        match v {
            serde_json::Value::String(s) if !(k == "interval" && s == "day") => {
                q.append_pair(k, s);
            }
            _ => {}
        }
    }
    q.finish()
}

/// Rows shown in a page's table; the CSV and JSON links have them all.
pub const PAGE_ROWS: usize = 50;

/// Columns a reader compares first: on the page they follow a table's leading names, so a
/// wide table (the experiment's) shows them without scrolling.
const KEY_COLUMNS: &[&str] = &["metric", "decision", "chance_to_beat_control", "p_value", "always_valid_p_value"];

/// Metrics of the experiment report measured as amounts: their rows' `conversion_rate` is a
/// mean, not a share.
const AMOUNT_METRICS: &[&str] = &["revenue", "cost", "revenue_per_delivered"];

/// Whether a column holds a share of 0 to 1, shown as a percentage.
pub fn is_share(c: &str) -> bool {
    c.ends_with("_rate")
        || c.contains("_rate_")
        || c.ends_with("_change")
        || c.starts_with("lift")
        || matches!(c, "share" | "chance_to_beat_control" | "variance_reduction")
}

/// Whether a column holds money, shown in the configured currency.
pub fn is_money(c: &str) -> bool {
    !c.contains("p_value")
        && (c == "cost"
            || c.ends_with("_cost")
            || c.starts_with("cost_per_")
            || c == "revenue"
            || c.starts_with("revenue_")
            || c == "price")
}

/// A number with thousands separators and few decimals: 1,234, 12.5, 0.0123.
pub fn short_number(v: f64) -> String {
    let decimals = match v.abs() {
        a if a >= 100.0 || a == 0.0 => 1,
        a if a >= 1.0 => 2,
        _ => 4,
    };
    let fixed = format!("{:.*}", decimals, v.abs());
    let fixed = if fixed.contains('.') { fixed.trim_end_matches('0').trim_end_matches('.').to_string() } else { fixed };
    let (whole, frac) = fixed.split_once('.').map_or((fixed.as_str(), None), |(w, f)| (w, Some(f)));
    let mut grouped = String::new();
    for (i, c) in whole.chars().enumerate() {
        if i > 0 && (whole.len() - i) % 3 == 0 {
            grouped.push(',');
        }
        grouped.push(c);
    }
    let sign = if v < 0.0 && fixed.chars().any(|c| c.is_ascii_digit() && c != '0') { "-" } else { "" };
    match frac {
        Some(f) => format!("{sign}{grouped}.{f}"),
        None => format!("{sign}{grouped}"),
    }
}

fn currency_symbol(code: &str) -> String {
    match code {
        "USD" => "$".into(),
        "EUR" => "€".into(),
        "GBP" => "£".into(),
        "INR" => "₹".into(),
        "BRL" => "R$".into(),
        "JPY" => "¥".into(),
        other => format!("{other} "),
    }
}

/// A cell as a person reads it: shares as percentages, money with its currency, p-values to
/// four places, counts with thousands separators and no `.0`.
pub fn cell(column: &str, v: &serde_json::Value, amount_row: bool, currency: &str) -> String {
    use serde_json::Value;
    let Value::Number(n) = v else {
        return match v {
            Value::Bool(b) => (if *b { "yes" } else { "no" }).into(),
            other => format::plain(other),
        };
    };
    if let Some(i) = n.as_i64() {
        return short_number(i as f64);
    }
    let f = n.as_f64().unwrap_or(0.0);
    if column.contains("p_value") || column.contains("p_adjusted") {
        return if f < 0.0001 { "< 0.0001".into() } else { format!("{f:.4}") };
    }
    if is_share(column) && !(amount_row && column == "conversion_rate") {
        let pct = f * 100.0;
        return if pct.abs() < 1.0 && pct != 0.0 { format!("{pct:.2}%") } else { format!("{pct:.1}%") };
    }
    if is_money(column) {
        let sign = if f < 0.0 { "-" } else { "" };
        let amount = if f.abs() < 1.0 && f != 0.0 { format!("{:.4}", f.abs()) } else { money(f.abs()) };
        return format!("{sign}{}{amount}", currency_symbol(currency));
    }
    short_number(f)
}

fn money(v: f64) -> String {
    let s = short_number((v * 100.0).round() / 100.0);
    match s.split_once('.') {
        Some((w, f)) if f.len() == 1 => format!("{w}.{f}0"),
        Some(_) => s,
        None => format!("{s}.00"),
    }
}

/// The order the page shows columns in: the leading names (text columns before the first
/// number), then [`KEY_COLUMNS`], then the rest as the report gives them.
fn page_order(r: &Computed) -> Vec<usize> {
    let first = r.rows.first();
    let lead =
        r.columns.iter().enumerate().take_while(|(i, _)| first.is_some_and(|row| !row[*i].is_number())).count().max(1);
    let keys: Vec<usize> =
        KEY_COLUMNS.iter().filter_map(|k| r.columns.iter().position(|c| c == k)).filter(|&i| i >= lead).collect();
    let mut order: Vec<usize> = (0..lead.min(r.columns.len())).collect();
    order.extend(&keys);
    order.extend((lead..r.columns.len()).filter(|i| !keys.contains(i)));
    order
}

/// A report's table (the first [`PAGE_ROWS`] rows), sortable by any column on the page.
pub fn table(r: &Computed, currency: &str) -> String {
    if r.rows.is_empty() {
        return "<p class=\"empty\">No data for these filters.</p>".into();
    }
    let order = page_order(r);
    let keys: Vec<usize> = order.iter().copied().filter(|&i| KEY_COLUMNS.contains(&r.columns[i].as_str())).collect();
    let metric = r.columns.iter().position(|c| c == "metric");
    let mut s = String::from("<div class=\"table\"><table><thead><tr>");
    for &i in &order {
        let class = if keys.contains(&i) { " class=\"key\"" } else { "" };
        s.push_str(&format!("<th{class} title=\"sort\">{}</th>", esc(&r.columns[i])));
    }
    s.push_str("</tr></thead><tbody>");
    for row in r.rows.iter().take(PAGE_ROWS) {
        let amount_row = metric.and_then(|m| row[m].as_str()).is_some_and(|m| AMOUNT_METRICS.contains(&m));
        s.push_str("<tr>");
        for &i in &order {
            let v = &row[i];
            let mut class = Vec::new();
            if v.is_number() {
                class.push("num");
            }
            if keys.contains(&i) {
                class.push("key");
            }
            let class = if class.is_empty() { String::new() } else { format!(" class=\"{}\"", class.join(" ")) };
            let data = match v {
                serde_json::Value::Null => " data-v=\"\"".to_string(),
                v => v.as_f64().map(|f| format!(" data-v=\"{f}\"")).unwrap_or_default(),
            };
            s.push_str(&format!("<td{class}{data}>{}</td>", esc(&cell(&r.columns[i], v, amount_row, currency))));
        }
        s.push_str("</tr>");
    }
    s.push_str("</tbody></table></div>");
    if r.rows.len() > PAGE_ROWS {
        s.push_str(&format!(
            "<p class=\"empty\">First {PAGE_ROWS} of {} rows; the CSV has all of them.</p>",
            r.rows.len()
        ));
    }
    s
}

/// How a page is served, which decides where its links point.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Links {
    /// By `serve`: links are API URLs with the page's filters.
    Api,
    /// As files in one folder (the demo's output): links are the files beside the page, so it
    /// works opened from disk.
    Files,
}

/// What every page needs besides its reports.
#[derive(Debug, Clone, Copy)]
pub struct Page<'a> {
    /// The currency money is shown in (`currency` in the configuration).
    pub currency: &'a str,
    pub links: Links,
}

/// One report's section: heading, links (this report alone, its CSV, JSON, and its chart's SVG
/// and PNG, with the same filters), chart, table.
pub fn section(r: &Computed, svg: Option<&str>, page: &Page) -> String {
    let q = query_string(&r.params);
    let sep = if q.is_empty() { "" } else { "&" };
    let name = r.report.name();
    let link = |format: &str, label: &str| match page.links {
        Links::Api => format!("<a href=\"/v1/reports/{}?format={format}{sep}{}\">{label}</a>", esc(name), esc(&q)),
        Links::Files => format!("<a href=\"{}.{format}\">{label}</a>", esc(name)),
    };
    format!(
        "<section id=\"{name}\" data-report=\"{name}\"><h2>{title} <code>{name}</code></h2><p class=\"about\">{about}</p>\
         <div class=\"links\">{page}{csv}{json}{svg_link}{png}</div>\
         <div class=\"chart\">{chart}</div>{table}</section>",
        name = esc(r.report.name()),
        title = esc(r.report.spec().title),
        about = esc(r.report.spec().about),
        page = link("html", "Open alone"),
        csv = link("csv", "CSV"),
        json = link("json", "JSON"),
        // A report without rows has no chart to link to.
        svg_link = if svg.is_some() { link("svg", "SVG") } else { String::new() },
        png = if svg.is_some() { link("png", "PNG") } else { String::new() },
        chart = svg.unwrap_or(""),
        table = table(r, page.currency),
    )
}

/// What the index page's selectors offer: the campaigns and experiments there are.
#[derive(Debug, Default, Clone)]
pub struct Choices {
    pub campaigns: Vec<String>,
    pub experiments: Vec<String>,
}

fn select(name: &str, label: &str, none: &str, options: &[(String, String)], chosen: &str) -> String {
    let mut s =
        format!("<label>{}<select name=\"{}\"><option value=\"\">{}</option>", esc(label), esc(name), esc(none));
    for (value, text) in options {
        let sel = if value == chosen { " selected" } else { "" };
        s.push_str(&format!("<option value=\"{}\"{sel}>{}</option>", esc(value), esc(text)));
    }
    s.push_str("</select></label>");
    s
}

/// The filter form: dates, campaign, experiment, breakdown, interval and comparison. A GET
/// form, so applying it re-renders the page within the same session and the URL can be shared.
fn filter_form(p: &Params, choices: &Choices) -> String {
    let same = |v: &[String]| v.iter().map(|c| (c.clone(), c.clone())).collect::<Vec<_>>();
    let by = p.to_json()["by"].as_str().unwrap_or("").to_string();
    let mut by_options: Vec<(String, String)> =
        Breakdown::ALL.iter().map(|b| (b.as_str().to_string(), b.as_str().to_string())).collect();
    // Two keys come from a link or the API; the selector keeps them.
    if by.contains(',') {
        by_options.push((by.clone(), by.replace(',', " then ")));
    }
    let mut campaigns = choices.campaigns.clone();
    if let Some(c) = &p.campaign
        && !campaigns.contains(c)
    {
        campaigns.push(c.clone());
    }
    format!(
        "<section><form method=\"get\" action=\"/\">\
         <label>From<input type=\"date\" name=\"from\" value=\"{from}\"></label>\
         <label>To<input type=\"date\" name=\"to\" value=\"{to}\"></label>\
         {campaign}{experiment}{by}\
         <label>Trends per<select name=\"interval\"><option value=\"day\"{day}>day</option>\
         <option value=\"week\"{week}>week</option></select></label>\
         <label class=\"check\"><input type=\"checkbox\" name=\"compare\" value=\"previous\"{compare}>\
         Trends beside the period before</label>\
         <button type=\"submit\">Apply</button></form>\
         <p class=\"empty\">Dates select the sends (or conversations) that started in the range; \
         what followed counts even after it. The breakdown applies to the funnel and delivery, and \
         by country, locale or template to the experiment; comparing needs both dates.</p></section>",
        from = esc(&p.from.map(|d| d.to_string()).unwrap_or_default()),
        to = esc(&p.to.map(|d| d.to_string()).unwrap_or_default()),
        campaign =
            select("campaign", "Campaign", "all campaigns", &same(&campaigns), p.campaign.as_deref().unwrap_or("")),
        experiment = select(
            "experiment",
            "Experiment",
            "all experiments",
            &same(&choices.experiments),
            p.experiment.as_deref().unwrap_or("")
        ),
        by = select("by", "Break down by", "nothing", &by_options, &by),
        day = if p.interval == Interval::Day { " selected" } else { "" },
        week = if p.interval == Interval::Week { " selected" } else { "" },
        compare = if p.compare { " checked" } else { "" },
    )
}

/// The index page: the filter form, a message when the filters could not be applied, and every
/// report.
/// The filters are a form when `choices` are given (a served page); a page of files has the
/// filters it was made with in words.
pub fn index(
    reports: &[(Computed, Option<String>)],
    p: &Params,
    choices: Option<&Choices>,
    error: Option<&str>,
    page: &Page,
) -> String {
    let mut body = match choices {
        Some(c) => filter_form(p, c),
        None => {
            let q = query_string(p);
            let filters = if q.is_empty() { "every date and campaign".to_string() } else { q.replace('&', ", ") };
            format!(
                "<section><p class=\"empty\">Made for {}. Each section links to its files beside this page.</p></section>",
                esc(&filters)
            )
        }
    };
    if let Some(e) = error {
        body.push_str(&format!("<section><p class=\"error\" role=\"alert\">{}</p></section>", esc(e)));
    }
    for (r, svg) in reports {
        body.push_str(&section(r, svg.as_deref(), page));
    }
    shell("convoscope reports", &body)
}

/// A page with one report.
pub fn single(r: &Computed, svg: Option<&str>, page: &Page) -> String {
    shell(&format!("convoscope: {}", r.report.name()), &section(r, svg, page))
}

/// The sign-in form for the report pages.
pub fn login(message: Option<&str>) -> String {
    let msg = message.map(|m| format!("<p class=\"empty\">{}</p>", esc(m))).unwrap_or_default();
    shell(
        "convoscope reports",
        &format!(
            "<section><h2>Sign in</h2>{msg}<form method=\"post\" action=\"/login\">\
             <label>Read token<input type=\"password\" name=\"token\" autocomplete=\"current-password\"></label>\
             <button type=\"submit\">Open reports</button></form></section>"
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn cells_read_as_a_person_reads_them() {
        let c = |col: &str, v: serde_json::Value| cell(col, &v, false, "USD");
        assert_eq!(c("sent", json!(1234567)), "1,234,567");
        assert_eq!(c("sent", json!(12)), "12");
        assert_eq!(c("read_rate", json!(0.5)), "50.0%");
        assert_eq!(c("reply_rate", json!(0.00123)), "0.12%");
        assert_eq!(c("sent_change", json!(-0.25)), "-25.0%");
        assert_eq!(c("cost", json!(1234.5)), "$1,234.50");
        assert_eq!(c("cost_per_read", json!(0.0529)), "$0.0529");
        assert_eq!(c("revenue_diff", json!(-2.0)), "-$2.00");
        assert_eq!(c("p_value", json!(0.000001)), "< 0.0001");
        assert_eq!(c("revenue_p_value", json!(0.5)), "0.5000");
        assert_eq!(c("p50_resolution_s", json!(4704.5)), "4,704.5");
        assert_eq!(c("complete", json!(true)), "yes");
        assert_eq!(c("campaign", serde_json::Value::Null), "");
        assert_eq!(cell("cost", &json!(3.0), false, "EUR"), "€3.00");
        assert_eq!(cell("cost", &json!(3.0), false, "CHF"), "CHF 3.00");
        // An amount metric's mean is not a share.
        assert_eq!(cell("conversion_rate", &json!(12.5), true, "USD"), "12.5");
        assert_eq!(short_number(-0.00001), "0");
        assert_eq!(short_number(999.96), "1,000");
    }
}
