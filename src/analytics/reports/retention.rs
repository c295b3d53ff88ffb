//! `retention`: weekly cohorts of contacts by first send, and the share that replied or
//! converted in each week after (queries/retention.sql).

use super::{Chart, Param, Spec};

pub(super) const SPEC: Spec = Spec {
    name: "retention",
    title: "Retention",
    about: "Contacts by the week of their first send in the range, and the share of each week's \
            contacts that replied or converted in each week after (week 0: the same week).",
    sql: include_str!("../../../queries/retention.sql"),
    params: &[Param::From, Param::To, Param::Campaign],
    chart: Chart::LinesPer {
        title: "Share of each weekly cohort replying or converting, by week after the first send",
        x: "week",
        series: "cohort_week",
        value: "share",
    },
    finish: None,
    adaptive: true,
};
