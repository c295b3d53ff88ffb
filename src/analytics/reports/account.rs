//! `account`: the business account's and its numbers' changes as a timeline: quality, messaging
//! limit, alerts, restrictions and errors (queries/account.sql).

use super::{Chart, Param, Spec};

pub(super) const SPEC: Spec = Spec {
    name: "account",
    title: "Account health",
    about: "What Meta said about the account and its numbers in the range, in time order: quality \
            flags and messaging limit changes, alerts, restrictions and violations, and errors \
            that are not of one message.",
    sql: include_str!("../../../queries/account.sql"),
    params: &[Param::From, Param::To],
    chart: Chart::LinesPer {
        title: "Messaging limit (conversations a day) per number, at each quality update",
        x: "day",
        series: "phone_number_id",
        value: "messaging_limit",
    },
    finish: None,
    by: &[],
    adaptive: true,
    statement: None,
};
