//! `engagement`: read and reply rates and CSAT per locale of the send
//! (queries/engagement.sql).

use super::{Chart, Param, Spec};

pub(super) const SPEC: Spec = Spec {
    name: "engagement",
    title: "Engagement",
    about: "Messages sent in the range per locale: the share read and replied to, and the mean \
            CSAT score of the contacts they reached.",
    sql: include_str!("../../../queries/engagement.sql"),
    params: &[Param::From, Param::To, Param::Campaign],
    chart: Chart::Bars {
        title: "Read and reply rate by locale",
        label: &["locale"],
        series: &["read_rate", "reply_rate"],
    },
    finish: None,
    by: &[],
    adaptive: true,
    statement: None,
};
