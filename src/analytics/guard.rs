//! What a physical plan is checked for before it runs, and read for after: the joins that
//! would run for hours, the memory it could not get, and what it spilled.

use std::sync::Arc;

use datafusion::common::stats::Precision;
use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::error::DataFusionError;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::joins::{CrossJoinExec, NestedLoopJoinExec};
use datafusion::physical_plan::statistics::{StatisticsArgs, StatisticsContext};

use crate::error::{Error, Result};

/// Refuses a plan with a join without an equality condition (a nested-loop or cross join)
/// whose two inputs' row counts multiply past `limit`, or are not known: such a join compares
/// every row with every other, and over the store that is hours of CPU for one statement.
/// `limit` 0 turns the guard off. With `tell_sizes` false (a tenant's statement, whose
/// statistics are the whole store's), the refusal does not say how many rows each side has.
pub fn check_unkeyed_joins(plan: &Arc<dyn ExecutionPlan>, limit: u64, tell_sizes: bool) -> Result<()> {
    if limit == 0 {
        return Ok(());
    }
    let stats = StatisticsContext::new();
    let rows = |p: &Arc<dyn ExecutionPlan>| {
        stats.compute(p.as_ref(), &StatisticsArgs::new()).ok().and_then(|s| match s.num_rows {
            Precision::Exact(n) | Precision::Inexact(n) => Some(n as u64),
            Precision::Absent => None,
        })
    };
    let mut refused = None;
    plan.apply(|node| {
        if !(node.is::<NestedLoopJoinExec>() || node.is::<CrossJoinExec>()) {
            return Ok(TreeNodeRecursion::Continue);
        }
        let sides: Vec<Option<u64>> = node.children().into_iter().map(rows).collect();
        let product = match sides.as_slice() {
            [Some(a), Some(b)] => Some(a.saturating_mul(*b)),
            _ => None,
        };
        if product.is_none_or(|p| p > limit) {
            let size = |s: Option<&Option<u64>>| match s {
                Some(Some(n)) => format!("{n}"),
                _ => "an unknown number of".to_string(),
            };
            let what = if tell_sizes {
                format!("it joins {} rows with {} rows", size(sides.first()), size(sides.get(1)))
            } else {
                "it joins two inputs".to_string()
            };
            refused = Some(format!(
                "refused before it ran: {what} without an equality condition (a nested-loop or cross \
                 join compares every row with every other), past the guard of {limit} pairs \
                 (max_unkeyed_join_rows). Join on equal columns (a.message_id = b.message_id), narrow \
                 each side first (WHERE date = '2026-01-31', a campaign, LIMIT), or ask an operator to \
                 raise max_unkeyed_join_rows"
            ));
            return Ok(TreeNodeRecursion::Stop);
        }
        Ok(TreeNodeRecursion::Continue)
    })?;
    match refused {
        Some(why) => Err(Error::QueryRefused(why)),
        None => Ok(()),
    }
}

/// `plan` with the output of every join made cooperative: each batch it yields takes from the
/// task's scheduling budget, so the task returns to the runtime every hundred-odd batches.
///
/// DataFusion makes its scans cooperative, which suffices where every output batch needs an
/// input batch; a join emits many batches from one input batch (a join on a column of a
/// dozen values: billions of rows from the first probe), and its task would never yield. A
/// task that never yields cannot be cancelled (an abort takes effect when it next yields), so
/// a query past its time limit would hold its slot and its cores to the end.
pub fn yielding(plan: Arc<dyn ExecutionPlan>) -> Result<Arc<dyn ExecutionPlan>> {
    use datafusion::common::tree_node::Transformed;
    use datafusion::physical_plan::coop::CooperativeExec;
    use datafusion::physical_plan::joins::{HashJoinExec, SortMergeJoinExec, SymmetricHashJoinExec};
    Ok(plan
        .transform_up(|node| {
            let joins = node.is::<HashJoinExec>()
                || node.is::<NestedLoopJoinExec>()
                || node.is::<CrossJoinExec>()
                || node.is::<SortMergeJoinExec>()
                || node.is::<SymmetricHashJoinExec>();
            Ok(if joins { Transformed::yes(Arc::new(CooperativeExec::new(node)) as _) } else { Transformed::no(node) })
        })?
        .data)
}

/// Bytes the operators of an executed plan spilled to disk.
pub fn spilled_bytes(plan: &Arc<dyn ExecutionPlan>) -> usize {
    let mut bytes = 0;
    let _ = plan.apply(|node| {
        if let Some(m) = node.metrics() {
            bytes += m.spilled_bytes().unwrap_or(0);
        }
        Ok(TreeNodeRecursion::Continue)
    });
    bytes
}

/// Whether a query failed because the memory pool had no more to give, however the error was
/// wrapped on its way out (context, shared, external, inside an I/O error).
pub fn out_of_memory(e: &DataFusionError) -> bool {
    if matches!(e.find_root(), DataFusionError::ResourcesExhausted(_)) {
        return true;
    }
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if matches!(err.downcast_ref::<DataFusionError>(), Some(DataFusionError::ResourcesExhausted(_))) {
            return true;
        }
        if let Some(inner) = err.downcast_ref::<std::io::Error>().and_then(|io| io.get_ref())
            && matches!(inner.downcast_ref::<DataFusionError>(), Some(DataFusionError::ResourcesExhausted(_)))
        {
            return true;
        }
        cur = err.source();
    }
    false
}

/// The library's error for a failed query: a clear one for memory, the query error otherwise.
pub fn query_error(e: DataFusionError, memory_bytes: u64) -> Error {
    if out_of_memory(&e) {
        Error::QueryMemory(format!(
            "the query needs more memory than query_memory_bytes ({} MiB, shared by every query) \
             allows, even spilling to disk: narrow it (a shorter date range, fewer columns, an \
             aggregate instead of rows) or ask an operator to raise query_memory_bytes ({})",
            memory_bytes >> 20,
            e.find_root()
        ))
    } else {
        Error::Query(e)
    }
}
