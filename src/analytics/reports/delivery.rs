//! `delivery`: receipts and their latencies, per send date, template and locale
//! (queries/delivery.sql).

use super::{Breakdown, Chart, Param, Spec};

pub(super) const SPEC: Spec = Spec {
    name: "delivery",
    title: "Delivery",
    about: "Receipts of the messages sent in the range and how long they took: delivered, read and \
            failed counts, with median and 95th-percentile seconds to delivery and to read.",
    sql: include_str!("../../../queries/delivery.sql"),
    params: &[Param::From, Param::To, Param::Campaign, Param::By, Param::ThenBy],
    chart: Chart::RateLines {
        title: "Delivery and read rate by send day",
        x: "day",
        denominator: "sent",
        rates: &[("delivery rate", "delivered"), ("read rate", "read")],
    },
    finish: Some(super::without_unused_breakdown),
    by: &Breakdown::ALL,
    adaptive: true,
    statement: None,
};
