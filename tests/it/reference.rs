//! `docs/reference.md` is the project's interface reference: what it names must exist, and
//! what exists must be named there. Checked section by section against the code: commands
//! against the command line's parser, the event schema against the stored schema, metrics
//! against the families the service exports, reports and their columns against what each
//! report returns on the report fixture.

use std::collections::BTreeSet;

use clap::CommandFactory;
use convoscope::analytics::reports::{self, Params};

use crate::reports::loaded;

fn reference() -> String {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/reference.md");
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The text of the `## title` section.
fn section<'a>(doc: &'a str, title: &str) -> &'a str {
    let start = doc.find(&format!("\n## {title}\n")).unwrap_or_else(|| panic!("no section ## {title}"));
    let rest = &doc[start + title.len() + 5..];
    &rest[..rest.find("\n## ").unwrap_or(rest.len())]
}

/// The first column of every table row of `text` that holds a name in backticks.
fn first_column_names(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(|l| l.trim().strip_prefix("| `"))
        .filter_map(|l| l.split_once('`').map(|(name, _)| name.to_string()))
        .collect()
}

/// The `### heading` titles of `text`.
fn headings(text: &str) -> Vec<String> {
    text.lines().filter_map(|l| l.strip_prefix("### ")).map(|h| h.trim().to_string()).collect()
}

#[test]
fn every_command_is_documented() {
    let doc = reference();
    let documented: BTreeSet<String> = headings(section(&doc, "Commands"))
        .iter()
        .filter_map(|h| h.strip_prefix("convoscope ").map(|c| c.split_whitespace().next().unwrap_or("").to_string()))
        .collect();
    let commands: BTreeSet<String> = convoscope::cli::Cli::command()
        .get_subcommands()
        .filter(|c| !c.is_hide_set())
        .map(|c| c.get_name().to_string())
        .collect();
    assert_eq!(documented, commands, "### convoscope NAME headings of docs/reference.md vs the commands");
}

#[test]
fn the_event_schema_is_documented_in_order() {
    let doc = reference();
    let documented = first_column_names(section(&doc, "Event schema"));
    let schema: Vec<String> = convoscope::event::schema().fields().iter().map(|f| f.name().clone()).collect();
    assert_eq!(documented, schema);
}

#[test]
fn every_metric_is_documented_and_every_documented_metric_exported() {
    let doc = reference();
    let documented: BTreeSet<String> = first_column_names(section(&doc, "Metrics")).into_iter().collect();
    // convoscope's own families (a labelled one shows in the exposition only once it has a
    // series), and whatever else the exposition holds: the process collector's.
    let metrics = convoscope::metrics::Metrics::new(50, 1000);
    let mut exported: BTreeSet<String> = metrics.family_names().into_iter().collect();
    exported.extend(
        metrics
            .render()
            .lines()
            .filter_map(|l| l.strip_prefix("# TYPE "))
            .filter_map(|l| l.split(' ').next())
            .map(String::from),
    );
    assert_eq!(documented, exported);
}

#[tokio::test]
async fn every_report_and_its_columns_are_documented() {
    let doc = reference();
    let text = section(&doc, "Reports");
    let documented = headings(text);
    assert_eq!(documented, reports::names(), "### NAME headings of ## Reports, in the page's order");
    let (_dir, a) = loaded().await;
    for (i, name) in documented.iter().enumerate() {
        let body = text.split("\n### ").nth(i + 1).unwrap_or_default();
        let columns = first_column_names(body);
        let report = a.report(name, &Params::default()).await.unwrap();
        assert!(!report.rows.is_empty(), "{name}: the fixture gives rows, so its columns are real");
        assert_eq!(columns, report.columns, "{name}: the columns of docs/reference.md vs the report's");
    }
}
