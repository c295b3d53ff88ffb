//! `AS MATERIALIZED` common table expressions: computed once per query, not once per reference.
//!
//! DataFusion plans a CTE anew wherever it is referenced, so a CTE read twice is computed
//! twice (`funnel`'s send cohort: an aggregation of 4.7 million send rows into 2.4 million
//! messages, about a second of CPU, once for the per-message join and once for conversions).
//! DataFusion parses PostgreSQL's `AS MATERIALIZED` hint and ignores it; [`plan`] honours it:
//! it runs each such CTE on its own (with the CTEs written before it), keeps the result in
//! memory as the partitions it was computed in, and plans the query with that CTE reading them.
//!
//! The hint changes how a query runs, never what it means: without it (on another engine, or
//! on Ballista later) the same SQL gives the same rows. DuckDB honours the hint itself.
//!
//! The parser reads the hint only in PostgreSQL's dialect, whose syntax it is, so a statement
//! that contains the word `MATERIALIZED` is read in that dialect; any other in the configured
//! one.

use std::sync::Arc;

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::common::ParamValues;
use datafusion::config::Dialect;
use datafusion::dataframe::DataFrame;
use datafusion::datasource::MemTable;
use datafusion::execution::context::{SQLOptions, SessionContext};
use datafusion::sql::parser::Statement as DfStatement;
use datafusion::sql::sqlparser::ast::{CteAsMaterialized, Query, Statement};

use crate::error::{Error, Result};

/// Prefix of the in-memory tables that hold materialized CTEs, numbered per query.
const TABLE_PREFIX: &str = "convoscope_materialized_";

/// Plans one SQL statement in `ctx`, first running the CTEs it marks `AS MATERIALIZED`.
///
/// `options` is checked against every plan run (the CTEs' and the query's); `params` binds
/// `$name` placeholders wherever they occur (a name no plan uses is ignored).
pub async fn plan(
    ctx: &SessionContext,
    sql: &str,
    options: SQLOptions,
    params: impl Into<ParamValues>,
) -> Result<DataFrame> {
    let params: ParamValues = params.into();
    let state = ctx.state();
    let dialect = dialect_of(ctx, sql);
    let mut statement = state.sql_to_statement(sql, &dialect)?;
    if let Some(query) = materializable(&mut statement) {
        materialize(ctx, query, options, &params, &dialect).await?;
    }
    let plan = state.statement_to_plan(statement).await?;
    options.verify_plan(&plan)?;
    Ok(ctx.execute_logical_plan(plan).await?.with_param_values(params)?)
}

/// Plans `sql` as [`plan`] does, but with every `AS MATERIALIZED` CTE read where it is
/// referenced instead of run first: the same rows, and nothing runs, for checking a statement
/// before it runs.
pub async fn plan_inline(
    ctx: &SessionContext,
    sql: &str,
    options: SQLOptions,
    params: impl Into<ParamValues>,
) -> Result<DataFrame> {
    let state = ctx.state();
    let mut statement = state.sql_to_statement(sql, &dialect_of(ctx, sql))?;
    if let Some(with) = materializable(&mut statement).and_then(|q| q.with.as_mut()) {
        for cte in &mut with.cte_tables {
            cte.materialized = None;
        }
    }
    let plan = state.statement_to_plan(statement).await?;
    options.verify_plan(&plan)?;
    Ok(ctx.execute_logical_plan(plan).await?.with_param_values(params.into())?)
}

/// The dialect `sql` is parsed in: PostgreSQL's where it says `MATERIALIZED`, whose syntax
/// that is, else the configured one.
pub(crate) fn dialect_of(ctx: &SessionContext, sql: &str) -> Dialect {
    if sql.to_ascii_lowercase().contains("materialized") {
        Dialect::PostgreSQL
    } else {
        ctx.state().config().options().sql_parser.dialect
    }
}

/// The query of `statement` when it has a non-recursive `WITH` with a CTE marked
/// `AS MATERIALIZED`. (A recursive CTE's body refers to itself, so the hint is ignored there.)
fn materializable(statement: &mut DfStatement) -> Option<&mut Query> {
    let DfStatement::Statement(s) = statement else { return None };
    let Statement::Query(query) = s.as_mut() else { return None };
    let with = query.with.as_ref()?;
    let hinted = with.cte_tables.iter().any(|c| c.materialized == Some(CteAsMaterialized::Materialized));
    (!with.recursive && hinted).then_some(query.as_mut())
}

/// Runs each CTE of `query` marked `AS MATERIALIZED`, in order, and rewrites its body to read
/// the result: a later materialized CTE that reads an earlier one reads the stored result too.
async fn materialize(
    ctx: &SessionContext,
    query: &mut Query,
    options: SQLOptions,
    params: &ParamValues,
    dialect: &Dialect,
) -> Result<()> {
    let state = ctx.state();
    let Some(with) = query.with.as_mut() else { return Ok(()) };
    for i in 0..with.cte_tables.len() {
        if with.cte_tables[i].materialized != Some(CteAsMaterialized::Materialized) {
            continue;
        }
        with.cte_tables[i].materialized = None;
        let name = with.cte_tables[i].alias.name.to_string();
        let ctes: Vec<String> = with.cte_tables[..=i].iter().map(ToString::to_string).collect();
        let alone = format!("WITH {} SELECT * FROM {name}", ctes.join(",\n"));
        let plan = state.statement_to_plan(state.sql_to_statement(&alone, dialect)?).await?;
        options.verify_plan(&plan)?;
        let df = ctx.execute_logical_plan(plan).await?.with_param_values(params.clone())?;
        let planned = Arc::new(df.schema().as_arrow().clone());
        let task = Arc::new(df.task_ctx());
        let physical = super::guard::yielding(df.create_physical_plan().await?)?;
        let partitions = datafusion::physical_plan::collect_partitioned(physical, task).await?;
        let table = format!("{TABLE_PREFIX}{i}");
        ctx.register_table(table.as_str(), Arc::new(held(planned, partitions)?))?;
        let read = state.sql_to_statement(&format!("SELECT * FROM {table}"), dialect)?;
        with.cte_tables[i].query = into_query(read)
            .ok_or_else(|| Error::Invalid(format!("materializing CTE {name}: SELECT did not parse as a query")))?;
    }
    Ok(())
}

/// A table holding `partitions` in memory, with the schema of what was computed (`planned`
/// where nothing was): the batches may differ from the plan's schema (a list of `array_agg` is
/// planned with another item field than the one it builds), and the table must hold them.
pub(crate) fn held(planned: SchemaRef, partitions: Vec<Vec<RecordBatch>>) -> Result<MemTable> {
    let schema = partitions.iter().flatten().next().map(|b| b.schema()).unwrap_or(planned);
    Ok(MemTable::try_new(schema, partitions)?)
}

/// The query a statement is, if it is one.
fn into_query(statement: DfStatement) -> Option<Box<Query>> {
    match statement {
        DfStatement::Statement(s) => match *s {
            Statement::Query(q) => Some(q),
            _ => None,
        },
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Int64Array, RecordBatch};
    use arrow::datatypes::{DataType, Field, Schema};
    use datafusion::logical_expr::{ColumnarValue, ScalarUDF, Volatility, create_udf};
    use datafusion::scalar::ScalarValue;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A context with a table `t` of 1..=5 and a UDF `counted(x)` that returns x and counts
    /// the rows it saw, so a test can tell how many times a CTE was computed.
    fn context(calls: Arc<AtomicUsize>) -> SessionContext {
        let ctx = SessionContext::new();
        let schema = Arc::new(Schema::new(vec![Field::new("x", DataType::Int64, false)]));
        let batch =
            RecordBatch::try_new(schema.clone(), vec![Arc::new(Int64Array::from(vec![1, 2, 3, 4, 5]))]).expect("batch");
        let table = MemTable::try_new(schema, vec![vec![batch]]).expect("table");
        ctx.register_table("t", Arc::new(table)).expect("register");
        let udf: ScalarUDF = create_udf(
            "counted",
            vec![DataType::Int64],
            DataType::Int64,
            Volatility::Volatile,
            Arc::new(move |args: &[ColumnarValue]| {
                let n = match &args[0] {
                    ColumnarValue::Array(a) => a.len(),
                    ColumnarValue::Scalar(_) => 1,
                };
                calls.fetch_add(n, Ordering::SeqCst);
                Ok(args[0].clone())
            }),
        );
        ctx.register_udf(udf);
        ctx
    }

    async fn rows(df: DataFrame) -> Vec<i64> {
        let batches = df.collect().await.expect("collect");
        let mut out: Vec<i64> = batches
            .iter()
            .flat_map(|b| b.column(0).as_any().downcast_ref::<Int64Array>().expect("int64").values().to_vec())
            .collect();
        out.sort_unstable();
        out
    }

    const TWICE: &str = "WITH big AS {hint} (SELECT counted(x) AS x FROM t WHERE x >= $min), \
                         other AS (SELECT x + 10 AS x FROM big) \
                         SELECT x FROM big UNION ALL SELECT x FROM other";

    #[tokio::test]
    async fn a_materialized_cte_is_computed_once_and_gives_the_same_rows() {
        let params = || vec![("min", ScalarValue::Int64(Some(3)))];
        let plain_calls = Arc::new(AtomicUsize::new(0));
        let plain = plan(&context(plain_calls.clone()), &TWICE.replace("{hint}", ""), SQLOptions::new(), params())
            .await
            .expect("plain");
        let plain = rows(plain).await;
        let hinted_calls = Arc::new(AtomicUsize::new(0));
        let hinted =
            plan(&context(hinted_calls.clone()), &TWICE.replace("{hint}", "MATERIALIZED"), SQLOptions::new(), params())
                .await
                .expect("hinted");
        assert_eq!(rows(hinted).await, plain);
        assert_eq!(plain, vec![3, 4, 5, 13, 14, 15]);
        // Three rows pass the filter: read twice without the hint, once with it.
        assert_eq!(plain_calls.load(Ordering::SeqCst), 6);
        assert_eq!(hinted_calls.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn read_only_options_allow_a_materialized_query_and_still_refuse_ddl() {
        let ctx = context(Arc::new(AtomicUsize::new(0)));
        let no_ddl = SQLOptions::new().with_allow_ddl(false).with_allow_dml(false).with_allow_statements(false);
        let ok = plan(
            &ctx,
            "WITH a AS MATERIALIZED (SELECT x FROM t) SELECT x FROM a",
            no_ddl,
            Vec::<(&str, ScalarValue)>::new(),
        )
        .await
        .expect("a query");
        assert_eq!(rows(ok).await, vec![1, 2, 3, 4, 5]);
        let err = plan(&ctx, "CREATE TABLE u AS SELECT 1", no_ddl, Vec::<(&str, ScalarValue)>::new()).await;
        assert!(err.is_err(), "DDL must be refused");
    }

    #[tokio::test]
    async fn a_later_materialized_cte_reads_the_earlier_result() {
        let calls = Arc::new(AtomicUsize::new(0));
        let ctx = context(calls.clone());
        let sql = "WITH a AS MATERIALIZED (SELECT counted(x) AS x FROM t), \
                   b AS MATERIALIZED (SELECT x * 2 AS x FROM a) \
                   SELECT x FROM a UNION ALL SELECT x FROM b UNION ALL SELECT x FROM b";
        let df = plan(&ctx, sql, SQLOptions::new(), Vec::<(&str, ScalarValue)>::new()).await.expect("plan");
        assert_eq!(rows(df).await, vec![1, 2, 2, 2, 3, 4, 4, 4, 5, 6, 6, 8, 8, 10, 10]);
        assert_eq!(calls.load(Ordering::SeqCst), 5);
    }
}
