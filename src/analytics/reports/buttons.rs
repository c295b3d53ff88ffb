//! `buttons`: per template, variant and button or list choice, taps and tappers over the
//! messages delivered and read, and links followed (queries/buttons.sql).

use super::{Chart, Param, Spec};

pub(super) const SPEC: Spec = Spec {
    name: "buttons",
    title: "Buttons",
    about: "For the messages sent in the range, per template, variant and button or list choice: \
            how often it was tapped and by how many contacts, as a share of the messages \
            delivered and read, and the links followed where the brand posts link.click.",
    sql: include_str!("../../../queries/buttons.sql"),
    params: &[Param::From, Param::To, Param::Campaign],
    chart: Chart::Bars {
        title: "Tap rate over delivered messages, per template, variant and button",
        label: &["template", "variant", "button"],
        series: &["tap_rate_delivered", "tap_rate_read"],
    },
    finish: None,
    by: &[],
    adaptive: true,
    statement: None,
};
