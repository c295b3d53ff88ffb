//! `failures`: why messages fail, per error code, title and template (queries/failures.sql).

use super::{Chart, Param, Spec};

pub(super) const SPEC: Spec = Spec {
    name: "failures",
    title: "Failures",
    about: "Messages sent in the range that failed, per provider error code and template, and \
            their share of that template's sends.",
    sql: include_str!("../../../queries/failures.sql"),
    params: &[Param::From, Param::To, Param::Campaign],
    chart: Chart::SumBars { title: "Failed messages by error code", by: "error_code", value: "failed" },
    finish: None,
    by: &[],
    adaptive: true,
    statement: None,
};
