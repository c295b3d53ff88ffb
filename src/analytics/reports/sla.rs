//! `sla`: first response and resolution times, per day and queue (queries/sla.sql).

use super::{Chart, Param, Spec};

pub(super) const SPEC: Spec = Spec {
    name: "sla",
    title: "Response and resolution times",
    about: "Support conversations opened in the range: seconds to the first reply and to \
            resolution (median and 90th percentile), and the share resolved at first contact.",
    sql: include_str!("../../../queries/sla.sql"),
    params: &[Param::From, Param::To],
    chart: Chart::LinesPer {
        title: "Median first response (s) by day and queue",
        x: "day",
        series: "queue",
        value: "p50_first_response_s",
    },
    finish: None,
    by: &[],
    adaptive: true,
    statement: None,
};
