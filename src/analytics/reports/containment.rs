//! `containment`: how much the bot resolves alone, per day and queue
//! (queries/containment.sql).

use super::{Chart, Param, Spec};

pub(super) const SPEC: Spec = Spec {
    name: "containment",
    title: "Containment",
    about: "Support conversations opened in the range: how many were resolved, and how many of \
            those without a handoff to an agent.",
    sql: include_str!("../../../queries/containment.sql"),
    params: &[Param::From, Param::To],
    chart: Chart::LinesPer {
        title: "Containment rate by day and queue",
        x: "day",
        series: "queue",
        value: "containment_rate",
    },
    finish: None,
    by: &[],
    adaptive: true,
    statement: None,
};
