//! `pricing`: volume and cost per day, pricing category, pricing type and country, and what a
//! delivered, read, clicked and converted message cost (queries/pricing.sql).

use super::{Chart, Param, Spec};

pub(super) const SPEC: Spec = Spec {
    name: "pricing",
    title: "Pricing",
    about: "What the messages sent in the range cost, per day, pricing category, pricing type \
            (regular, free customer service, free entry point) and country: billable and unpriced \
            messages, and the cost per delivered, read, clicked and converted message.",
    sql: include_str!("../../../queries/pricing.sql"),
    params: &[Param::From, Param::To, Param::Campaign, Param::WindowSecs],
    chart: Chart::SumLines { title: "Cost per day by pricing category", x: "day", series: "category", value: "cost" },
    finish: None,
    by: &[],
    adaptive: true,
    statement: None,
};
