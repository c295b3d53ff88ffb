//! `cost`: what messages and support cost against what they brought, per campaign and
//! category (queries/cost.sql).

use super::{Chart, Param, Spec};

pub(super) const SPEC: Spec = Spec {
    name: "cost",
    title: "Cost",
    about: "What the messages sent in the range and the support conversations they led to cost, \
            against the conversions, revenue and resolutions that followed.",
    sql: include_str!("../../../queries/cost.sql"),
    params: &[Param::From, Param::To, Param::Campaign, Param::WindowSecs, Param::BotCost, Param::AgentCostPerHour],
    chart: Chart::Bars {
        title: "Cost per conversion by campaign and category",
        label: &["campaign", "category"],
        series: &["cost_per_conversion"],
    },
    finish: None,
    by: &[],
    adaptive: true,
    statement: None,
};
