//! `funnel`: how far messages get, per campaign and template (queries/funnel.sql).

use super::{Breakdown, Chart, Param, Spec};

pub(super) const SPEC: Spec = Spec {
    name: "funnel",
    title: "Funnel",
    about: "Messages sent in the range, and how many were delivered, read, replied to and followed \
            by a conversion within the attribution window, per campaign and template.",
    sql: include_str!("../../../queries/funnel.sql"),
    params: &[Param::From, Param::To, Param::Campaign, Param::WindowSecs, Param::By, Param::ThenBy],
    chart: Chart::Steps {
        title: "Share of sent reaching each step, per campaign and template (and level)",
        label: &["campaign", "template", "breakdown"],
        // Conversions as their rate: the count waits for attribution windows to close, so over
        // everything sent it would read low for recent sends.
        steps: &[
            ("sent", "sent"),
            ("delivered", "delivered"),
            ("read", "read"),
            ("replied", "replied"),
            ("converted", "conversion_rate"),
        ],
    },
    finish: Some(super::without_unused_breakdown),
    by: &Breakdown::ALL,
    adaptive: true,
    statement: None,
};
