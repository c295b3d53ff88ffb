//! `time_to_convert`: how long after the send people read, reply and convert, per campaign
//! (queries/time_to_convert.sql).

use super::{Chart, Param, Spec};

pub(super) const SPEC: Spec = Spec {
    name: "time_to_convert",
    title: "Time to read, reply and convert",
    about: "For the messages sent in the range, how long after the send their contacts read, \
            replied and converted: percentiles, and how many within a minute, ten minutes, an \
            hour, six hours, a day, a week and after.",
    sql: include_str!("../../../queries/time_to_convert.sql"),
    params: &[Param::From, Param::To, Param::Campaign, Param::WindowSecs],
    chart: Chart::Bars {
        title: "Messages by time from send, per campaign and step",
        label: &["campaign", "step"],
        series: &["under_1m", "1m_to_10m", "10m_to_1h", "1h_to_6h", "6h_to_1d", "1d_to_7d", "over_7d"],
    },
    finish: None,
    by: &[],
    adaptive: true,
    statement: None,
};
