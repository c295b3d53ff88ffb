//! Server-rendered HTML for reports: the index page with every report, and one-report pages.

use crate::analytics::format;
use crate::analytics::reports::{Computed, Params};

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
.table{overflow-x:auto}table{border-collapse:collapse;font-size:13px;min-width:100%}
th,td{padding:4px 8px;border-bottom:1px solid #e6e9ee;text-align:left;white-space:nowrap}
td.num{text-align:right;font-variant-numeric:tabular-nums}
form{display:flex;flex-wrap:wrap;gap:8px;align-items:end}label{display:flex;flex-direction:column;font-size:13px}
input,button{font-size:14px;padding:6px}.empty{color:#667}
"#;

fn shell(title: &str, body: &str) -> String {
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{}</title><style>{STYLE}</style></head><body>\
         <header><h1>{}</h1></header><main>{body}</main></body></html>",
        esc(title),
        esc(title)
    )
}

/// Query string of the filters (for links).
pub fn query_string(p: &Params) -> String {
    let mut parts = Vec::new();
    if let Some(f) = p.from {
        parts.push(format!("from={f}"));
    }
    if let Some(t) = p.to {
        parts.push(format!("to={t}"));
    }
    if let Some(c) = &p.campaign {
        parts.push(format!("campaign={}", url::form_urlencoded::byte_serialize(c.as_bytes()).collect::<String>()));
    }
    if let Some(e) = &p.experiment {
        parts.push(format!("experiment={}", url::form_urlencoded::byte_serialize(e.as_bytes()).collect::<String>()));
    }
    parts.join("&")
}

/// Rows shown in a page's table; the CSV and JSON links have them all.
pub const PAGE_ROWS: usize = 50;

/// A report's table (the first [`PAGE_ROWS`] rows).
pub fn table(r: &Computed) -> String {
    if r.rows.is_empty() {
        return "<p class=\"empty\">No data for these filters.</p>".into();
    }
    let mut s = String::from("<div class=\"table\"><table><thead><tr>");
    for c in &r.columns {
        s.push_str(&format!("<th>{}</th>", esc(c)));
    }
    s.push_str("</tr></thead><tbody>");
    for row in r.rows.iter().take(PAGE_ROWS) {
        s.push_str("<tr>");
        for v in row {
            let class = if v.is_number() { " class=\"num\"" } else { "" };
            s.push_str(&format!("<td{class}>{}</td>", esc(&format::plain(v))));
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

/// One report's section: heading, links, chart, table.
pub fn section(r: &Computed, svg: Option<&str>) -> String {
    let q = query_string(&r.params);
    let sep = if q.is_empty() { "" } else { "&" };
    format!(
        "<section id=\"{name}\" data-report=\"{name}\"><h2>{title} <code>{name}</code></h2><p class=\"about\">{about}</p>\
         <div class=\"links\"><a href=\"/v1/reports/{name}?format=json{sep}{q}\">JSON</a>\
         <a href=\"/v1/reports/{name}?format=csv{sep}{q}\">CSV</a>\
         <a href=\"/v1/reports/{name}?format=svg{sep}{q}\">SVG</a></div>\
         <div class=\"chart\">{chart}</div>{table}</section>",
        name = esc(r.report.name()),
        title = esc(r.report.spec().title),
        about = esc(r.report.spec().about),
        chart = svg.unwrap_or(""),
        table = table(r),
    )
}

/// The index page: the filter form and every report.
pub fn index(reports: &[(Computed, Option<String>)], p: &Params) -> String {
    let v = |o: Option<String>| esc(&o.unwrap_or_default());
    let mut body = format!(
        "<section><form method=\"get\" action=\"/\">\
         <label>From<input type=\"date\" name=\"from\" value=\"{}\"></label>\
         <label>To<input type=\"date\" name=\"to\" value=\"{}\"></label>\
         <label>Campaign<input name=\"campaign\" value=\"{}\"></label>\
         <label>Experiment<input name=\"experiment\" value=\"{}\"></label>\
         <button type=\"submit\">Apply</button></form>\
         <p class=\"empty\">Dates select the sends (or conversations) that started in the range; \
         what followed counts even after it.</p></section>",
        v(p.from.map(|d| d.to_string())),
        v(p.to.map(|d| d.to_string())),
        v(p.campaign.clone()),
        v(p.experiment.clone()),
    );
    for (r, svg) in reports {
        body.push_str(&section(r, svg.as_deref()));
    }
    shell("convoscope reports", &body)
}

/// A page with one report.
pub fn single(r: &Computed, svg: Option<&str>) -> String {
    shell(&format!("convoscope: {}", r.report.name()), &section(r, svg))
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
