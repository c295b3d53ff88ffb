//! A tenant's session: the same tables under the same names, each one a view that keeps only
//! the tenant's rows, so every report, page and ad hoc statement of a tenant's token reads
//! its own events and nothing else.
//!
//! The filter is part of the plan the session builds, not of the statement: `events` in a
//! tenant's session is a view whose plan scans the store and keeps the rows whose
//! `account_id` or `phone_number_id` the tenant owns, and the store itself is reachable by no
//! other name. A CTE, a UNION, a subquery or a join reads the same views. The rollup tables
//! are filtered alike (a rollup row is one key's events of one owner: [`crate::rollup`]), and
//! the facts tables the reports read are those views, so a tenant's reports read the rollups as
//! the operator's do; where the rollups do not cover the store, the rollup tables and facts are
//! the facts views over the tenant's events (`queries/facts/`), as for the operator.
//!
//! A tenant's ad hoc statement is also checked before it is planned ([`check_statement`]):
//! it may name only the tenant's tables (a 403 otherwise, never an empty answer), and may not
//! `EXPLAIN`, whose plan and metrics describe the whole store's files and row counts.

use std::sync::Arc;

use datafusion::catalog::TableProvider;
use datafusion::catalog::view::ViewTable;
use datafusion::execution::context::SessionContext;
use datafusion::logical_expr::{Expr, LogicalPlanBuilder, col, lit};

use crate::config::Tenant;
use crate::error::{Error, Result};

/// The tables a tenant's statement may name: its filtered events, the rollup-shaped and facts
/// views over them (every facts table's, as [`restrict`] registers them), and the rate card
/// (prices, nobody's rows).
pub fn tenant_tables() -> Vec<&'static str> {
    let facts = super::facts::Fact::ALL.into_iter();
    std::iter::once("events")
        .chain(facts.clone().map(|f| f.rollup().table()))
        .chain(facts.map(|f| f.table()))
        .chain(["rate_card"])
        .collect()
}

/// `account_id IN (...) OR phone_number_id IN (...)` over the tenant's ids.
fn owned_by(tenant: &Tenant) -> Expr {
    let list = |column: &str, ids: &[String]| {
        (!ids.is_empty()).then(|| col(column).in_list(ids.iter().map(|id| lit(id.as_str())).collect(), false))
    };
    match (list("account_id", &tenant.account_ids), list("phone_number_id", &tenant.phone_number_ids)) {
        (Some(a), Some(p)) => a.or(p),
        (Some(one), None) | (None, Some(one)) => one,
        // A tenant owns at least one id (checked with the settings); none owns nothing.
        (None, None) => lit(false),
    }
}

/// `provider` (a table with the owner columns) as a view of the tenant's rows only, named
/// `name` inside its plan: the rows the tenant owns, every column but the partition's `date`
/// masked (`CASE WHEN owned THEN column END`).
///
/// The filter alone would not do: the optimizer merges a statement's own predicates with the
/// view's into one conjunction and may push it below the view, and a conjunction evaluates
/// its second term on every row of a batch where most rows pass the first; a predicate that
/// fails on a value (a cast, a division) would then report another tenant's value in its
/// error. Masked, every value the statement's expressions can reach on another tenant's row is
/// a null, wherever the optimizer places them, and a predicate over a masked column prunes no
/// row group by another tenant's statistics. `date` stays bare, so dates still prune
/// partitions: which days hold rows is all it tells.
pub fn only_tenant(name: &str, provider: Arc<dyn TableProvider>, tenant: &Tenant) -> Result<Arc<ViewTable>> {
    use datafusion::logical_expr::when;
    let source = datafusion::datasource::provider_as_source(provider);
    let scan = LogicalPlanBuilder::scan(name, source, None)?;
    let owned = owned_by(tenant);
    let columns = scan
        .schema()
        .fields()
        .iter()
        .map(|f| {
            let c = col(datafusion::common::Column::new(Some(name), f.name()));
            if f.name() == "date" { Ok(c) } else { Ok(when(owned.clone(), c).end()?.alias(f.name())) }
        })
        .collect::<Result<Vec<_>>>()?;
    let plan = scan.filter(owned)?.project(columns)?.build()?;
    Ok(Arc::new(ViewTable::new(plan, None)))
}

/// Checks a tenant's statement before it is planned: it names only [`tenant_tables`] (a CTE
/// of its own is not a table) and is not an `EXPLAIN`. Refusals are [`Error::Forbidden`].
pub fn check_statement(ctx: &SessionContext, sql: &str, dialect: &datafusion::config::Dialect) -> Result<()> {
    use datafusion::sql::parser::Statement as DfStatement;
    let state = ctx.state();
    let statement = state.sql_to_statement(sql, dialect)?;
    if matches!(statement, DfStatement::Explain(_))
        || matches!(&statement, DfStatement::Statement(s) if matches!(**s, datafusion::sql::sqlparser::ast::Statement::Explain { .. }))
    {
        return Err(Error::Forbidden(
            "a tenant's token may not EXPLAIN: a plan describes the whole store's files and rows".into(),
        ));
    }
    let tables = tenant_tables();
    for table in state.resolve_table_references(&statement)? {
        let allowed = table.schema().is_none_or(|s| s == "public")
            && table.catalog().is_none_or(|c| c == "datafusion")
            && tables.contains(&table.table());
        if !allowed {
            return Err(Error::Forbidden(format!(
                "a tenant's token reads only its own tables ({}); {table} is not one of them",
                tables.join(", ")
            )));
        }
    }
    Ok(())
}

/// Registers the tenant's views in `ctx`, whose `events` and rollup tables are the store's
/// (registered already): each becomes the tenant's rows. Where the rollups do not cover the
/// store (`rollups` false), each rollup table becomes the facts view over the tenant's events
/// instead (the same columns but the owner's), as the facts tables will.
pub async fn restrict(ctx: &SessionContext, tenant: &Tenant, rollups: bool) -> Result<()> {
    let rollup_tables = super::facts::Fact::ALL.map(|f| f.rollup().table());
    let owned = if rollups { &rollup_tables[..] } else { &[] };
    for name in std::iter::once("events").chain(owned.iter().copied()) {
        let provider = ctx.table_provider(name).await?;
        ctx.deregister_table(name)?;
        ctx.register_table(name, only_tenant(name, provider, tenant)?)?;
    }
    if !rollups {
        for fact in super::facts::Fact::ALL {
            let view = ctx.sql(fact.view_sql()).await?.into_view();
            ctx.deregister_table(fact.rollup().table())?;
            ctx.register_table(fact.rollup().table(), view)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_filter_names_the_tenants_ids() {
        let t = Tenant {
            name: "acme".into(),
            account_ids: vec!["1".into()],
            phone_number_ids: vec!["9".into()],
            ..Default::default()
        };
        let f = owned_by(&t).to_string();
        assert!(f.contains("account_id IN") && f.contains("phone_number_id IN") && f.contains(" OR "), "{f}");
        let only_phones = Tenant { account_ids: vec![], ..t };
        assert!(!owned_by(&only_phones).to_string().contains("account_id"));
    }
}
