//! `templates`: per template and language, its status, quality and category with Meta and
//! their history, and how its messages did (queries/templates.sql).

use super::{Chart, Param, Spec};

pub(super) const SPEC: Spec = Spec {
    name: "templates",
    title: "Templates",
    about: "Per template and language: its status, quality and category with Meta and their \
            history (a pause shows on the day it happened), and how its messages sent in the range \
            did: delivered, read, clicked, replied, converted and the codes they failed with.",
    sql: include_str!("../../../queries/templates.sql"),
    params: &[Param::From, Param::To, Param::Campaign, Param::WindowSecs],
    chart: Chart::Bars {
        title: "Read, click, reply and conversion rate per template and language",
        label: &["template", "locale"],
        series: &["read_rate", "click_rate", "reply_rate", "conversion_rate"],
    },
    finish: None,
    by: &[],
    adaptive: true,
    statement: None,
};
