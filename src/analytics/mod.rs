//! DataFusion over the store: the tables, convoscope's SQL functions, read-only ad hoc
//! queries, and (in [`reports`]) the reports whose SQL lives in `queries/`.
//!
//! `events` is a listing table over `events/date=*/` with `date` as a hive partition column,
//! so a filter on `date` skips whole directories. `messages`, `conversations` and `exposures`
//! are the same over the rollups ([`crate::rollup`]): one row per message (conversation,
//! experiment exposure) and events file, to be merged per key. The reports read the facts
//! tables ([`facts`]), backed by those rollups where every events file has them and by views
//! over `events` otherwise.

pub mod cluster;
pub mod consent;
pub mod costs;
pub mod earliest_text;
mod engine;
pub mod executor;
pub mod facts;
pub mod format;
pub mod guard;
pub mod id_key;
pub mod json_text;
pub mod materialize;
pub mod reports;
pub mod stats;
pub mod tenancy;
pub mod text_extreme;

use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::{DataType, SchemaRef};
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::{ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl};
use datafusion::execution::context::{SQLOptions, SessionConfig, SessionContext};
use datafusion::execution::runtime_env::RuntimeEnv;

use crate::config::{AnalyticsSettings, Engine, QueryLimits, Tenant};
use crate::error::{Error, Result};
use crate::event;
use crate::experiments::Experiments;
use crate::store::Storage;
pub use costs::{Costs, DEFAULT_RATE_CARD};
use engine::{engine_config, engine_runtime};
use executor::{Executor, Work};

/// URL under which the store is registered with DataFusion: one scheme for every backend,
/// so the same SQL runs over a local directory, memory or a bucket.
const STORE_URL: &str = "convoscope://store";

/// What a caller's statement may do: read.
fn read_only() -> SQLOptions {
    SQLOptions::new().with_allow_ddl(false).with_allow_dml(false).with_allow_statements(false)
}

/// No parameters, for a statement that has none.
fn no_params() -> Vec<(&'static str, datafusion::scalar::ScalarValue)> {
    Vec::new()
}

/// [`STORE_URL`] parsed.
fn store_url() -> Result<url::Url> {
    url::Url::parse(STORE_URL).map_err(|e| Error::Invalid(e.to_string()))
}

/// convoscope's SQL functions: `id_key`, `json_text`, and the aggregates `max_text`,
/// `min_text` and `earliest_text`. Every session registers them, and so does every node of a cluster
/// ([`crate::cluster`]), which finds a plan's functions by name.
pub fn functions() -> (Vec<datafusion::logical_expr::ScalarUDF>, Vec<datafusion::logical_expr::AggregateUDF>) {
    (
        vec![id_key::udf(), json_text::udf()],
        vec![text_extreme::udaf(true), text_extreme::udaf(false), earliest_text::udaf()],
    )
}

/// Registers `storage`'s object store under the URL the tables name, in a node's runtime
/// ([`crate::cluster`]): every node reads the same files by the same paths.
pub fn register_store(runtime: &RuntimeEnv, storage: &Storage) -> Result<()> {
    runtime.register_object_store(&store_url()?, storage.store.clone());
    Ok(())
}

/// The schema `events` is read with: the stored schema with strings as `Utf8View`.
///
/// A view array points into the decoded Parquet pages instead of copying every string into
/// one buffer (that copying was two thirds of the 15% memmove in `funnel`'s profile): 4-33%
/// less time per report at 3 million events. DataFusion reads
/// strings as views only when it infers a file's schema, not with a schema given.
fn read_schema() -> SchemaRef {
    static READ: std::sync::LazyLock<SchemaRef> = std::sync::LazyLock::new(|| views(event::schema()));
    READ.clone()
}

/// `schema` with its strings as `Utf8View` (see [`read_schema`]).
fn views(schema: SchemaRef) -> SchemaRef {
    use arrow::datatypes::{Field, Schema};
    let fields: Vec<Field> = schema
        .fields()
        .iter()
        .map(|f| match f.data_type() {
            DataType::Utf8 => f.as_ref().clone().with_data_type(DataType::Utf8View),
            _ => f.as_ref().clone(),
        })
        .collect();
    Arc::new(Schema::new(fields))
}

/// A statement planned to run: its result's schema, its physical plan and the task context
/// it runs in.
pub(crate) struct Planned {
    schema: SchemaRef,
    plan: Arc<dyn datafusion::physical_plan::ExecutionPlan>,
    task: Arc<datafusion::execution::TaskContext>,
}

/// Query access to stored events.
#[derive(Clone, Debug)]
pub struct Analytics {
    storage: Storage,
    /// DataFusion settings, read from the environment once.
    session: SessionConfig,
    /// DataFusion's runtime, shared by every query so its caches outlive one query.
    runtime: Arc<RuntimeEnv>,
    /// Days after a send in which a conversion is attributed to it.
    pub attribution_days: i64,
    /// Prices and support costs for the `cost` report.
    pub costs: Arc<Costs>,
    /// Experiment definitions: the experiment report's control and weights.
    pub experiments: Arc<Experiments>,
    /// Whether reports read the rollups ([`crate::rollup`]) where every events file has them;
    /// false reads the events always (the same answers, slower).
    pub rollups: bool,
    /// Where queries and reports run, and within what limits.
    executor: Arc<Executor>,
    /// Which engine plans run on: this process, or a cluster.
    engine: Engine,
    /// The tenant whose rows alone its sessions read ([`tenancy`]); `None`: every row.
    tenant: Option<Arc<Tenant>>,
}

impl Analytics {
    /// Analytics over this storage with the default costs. Fails on a malformed
    /// `DATAFUSION_*` environment variable.
    pub fn new(storage: Storage, attribution_days: i64) -> Result<Self> {
        let limits = QueryLimits::default();
        Ok(Analytics {
            storage,
            session: engine_config(&limits)?,
            runtime: engine_runtime(&limits)?,
            attribution_days,
            costs: Arc::new(Costs::default()),
            experiments: Arc::default(),
            rollups: true,
            executor: Arc::new(Executor::new(limits, None)?),
            engine: Engine::Local,
            tenant: None,
        })
    }

    /// The same analytics running its plans on `engine`.
    pub fn with_engine(mut self, engine: Engine) -> Self {
        self.engine = engine;
        self
    }

    /// The same analytics reading only `tenant`'s rows ([`tenancy`]), or every row (`None`),
    /// and only its experiments' definitions (a report naming another's shows none of it).
    pub fn for_tenant(mut self, tenant: Option<Arc<Tenant>>) -> Self {
        if let Some(t) = &tenant {
            let mut own = (*self.experiments).clone();
            own.experiments.retain(|e| e.tenant.as_deref() == Some(t.name.as_str()));
            self.experiments = Arc::new(own);
        }
        self.tenant = tenant;
        self
    }

    /// The tenant whose rows alone it reads, if any.
    pub fn tenant(&self) -> Option<&Tenant> {
        self.tenant.as_deref()
    }

    /// The same analytics with these experiment definitions.
    pub fn with_experiments(mut self, experiments: Experiments) -> Self {
        self.experiments = Arc::new(experiments);
        self
    }

    /// The same analytics reading the events even where the rollups could answer.
    pub fn without_rollups(mut self) -> Self {
        self.rollups = false;
        self
    }

    /// Analytics with these settings, counting its queries in `metrics` where given.
    pub fn from_settings(
        storage: Storage,
        settings: &AnalyticsSettings,
        metrics: Option<Arc<crate::metrics::Metrics>>,
    ) -> Result<Self> {
        let rate_card = match &settings.rate_card {
            Some(p) => Costs::parse_rate_card(
                &std::fs::read_to_string(p).map_err(|e| Error::io(format!("reading {}", p.display()), e))?,
            )?,
            None => Costs::default().rate_card,
        };
        Ok(Analytics {
            storage,
            session: engine_config(&settings.limits)?,
            runtime: engine_runtime(&settings.limits)?,
            executor: Arc::new(Executor::new(settings.limits.clone(), metrics)?),
            experiments: Arc::new(Experiments::load_if_present(&settings.experiments)?),
            attribution_days: settings.attribution_days,
            costs: Arc::new(Costs {
                rate_card,
                agent_cost_per_hour: settings.agent_cost_per_hour,
                bot_cost_per_conversation: settings.bot_cost_per_conversation,
            }),
            rollups: true,
            engine: settings.engine.clone(),
            tenant: None,
        })
    }

    /// A session with `events`, the rollups (`messages`, `conversations`, `exposures`:
    /// [`crate::rollup`]), the facts tables ([`facts`]) and `rate_card` registered.
    ///
    /// On a cluster engine its plans run on the cluster ([`cluster`]); the scheduler is
    /// checked first, so one that is down fails here, at once, naming its address.
    pub async fn context(&self) -> Result<SessionContext> {
        let ctx = match &self.engine {
            Engine::Local => SessionContext::new_with_config_rt(self.session.clone(), self.runtime.clone()),
            Engine::Ballista(addr) => {
                cluster::reachable(addr).await?;
                SessionContext::new_with_state(cluster::session(self.session.clone(), self.runtime.clone(), addr)?)
            }
        };
        let rollups = self.rollups_cover().await?;
        ctx.register_object_store(&store_url()?, self.storage.store.clone());
        ctx.register_table("events", self.partitioned_table("events", read_schema())?)?;
        for kind in crate::rollup::Kind::ALL {
            ctx.register_table(kind.table(), self.partitioned_table(kind.dir(), views(kind.schema()))?)?;
        }
        ctx.register_table("rate_card", self.costs.rate_card_view()?)?;
        if self.tenant.is_none() {
            // The audit trail is the operator's ([`crate::audit`]); a tenant's session has no
            // such table, and its statements may not name it.
            ctx.register_table(
                "audit",
                self.partitioned_table(crate::store::AUDIT_DIR, views(crate::audit::schema()))?,
            )?;
        }
        let (scalars, aggregates) = functions();
        scalars.into_iter().for_each(|f| ctx.register_udf(f));
        aggregates.into_iter().for_each(|f| ctx.register_udaf(f));
        if let Some(tenant) = &self.tenant {
            tenancy::restrict(&ctx, tenant, rollups).await?;
        }
        facts::register(&ctx, rollups).await?;
        Ok(ctx)
    }

    /// Whether plans run on a cluster rather than in this process.
    pub fn distributed(&self) -> bool {
        !matches!(self.engine, Engine::Local)
    }

    /// A listing table over the Parquet files of `dir`'s `date=` partitions, `date` a column.
    fn partitioned_table(&self, dir: &str, schema: SchemaRef) -> Result<Arc<ListingTable>> {
        let table_url = self.table_url(dir);
        let options = ListingOptions::new(Arc::new(ParquetFormat::default()))
            .with_file_extension(".parquet")
            .with_table_partition_cols(vec![("date".to_string(), DataType::Utf8)]);
        let cfg = ListingTableConfig::new(ListingTableUrl::parse(&table_url)?)
            .with_listing_options(options)
            .with_schema(schema);
        Ok(Arc::new(ListingTable::try_new(cfg)?))
    }

    /// The URL of the table over the files under `dir` (a directory under the store's prefix).
    fn table_url(&self, dir: &str) -> String {
        let prefix = self.storage.prefix.as_ref();
        if prefix.is_empty() { format!("{STORE_URL}/{dir}/") } else { format!("{STORE_URL}/{prefix}/{dir}/") }
    }

    /// Whether reports can read the rollups: they are wanted, and every events file has every
    /// rollup file. A store written before a rollup (until `convoscope compact` writes them) or
    /// by another tool has files without one, and its reports read the events.
    pub async fn rollups_cover(&self) -> Result<bool> {
        if !self.rollups {
            return Ok(false);
        }
        let events = self.storage.list_event_files().await?;
        let rollups = self.storage.list_rollup_files().await?;
        let covered = crate::rollup::covers(
            events.iter().map(|(_, m)| m.location.as_ref()),
            rollups.iter().map(|(_, m)| m.location.as_ref()),
        );
        if !covered {
            static WARNED: std::sync::Once = std::sync::Once::new();
            WARNED.call_once(|| {
                tracing::warn!(
                    "some events files lack a rollup: reports read the events, which is slower; \
                     `serve` (each compaction round) and `convoscope compact` write the missing rollups"
                )
            });
        }
        Ok(covered)
    }

    /// Runs one read-only SQL statement: DDL, DML, `COPY`, `SET` and the like are refused,
    /// and no tables are reachable but `events`, the rollups (`messages`, `conversations`,
    /// `exposures`), the facts tables and `rate_card` (no URL tables, no file functions).
    /// Returns the result's schema too, so an empty result still has its columns.
    ///
    /// It runs within the query limits ([`executor`]): on the query threads, in a free slot,
    /// within `query_timeout_secs`; a join without an equality condition over more rows than
    /// `max_unkeyed_join_rows` is refused before it runs ([`guard`]). `EXPLAIN` plans without
    /// running anything. What runs is the plan that was checked: CTEs marked `AS MATERIALIZED`
    /// are read where referenced, as written without the hint (the same rows), so none runs
    /// unchecked or holds its result outside the memory budget.
    pub async fn query(&self, sql: &str) -> Result<(SchemaRef, Vec<RecordBatch>)> {
        self.ad_hoc(sql, None, |schema, batches| Ok((schema, batches))).await
    }

    /// [`Analytics::query`] for a caller over the network: at most `max_result_rows` rows, and
    /// the answer `{"columns": [...], "rows": [[...]]}` written as JSON on the query threads,
    /// within the time limit, not on the caller's.
    pub async fn query_json(&self, sql: &str) -> Result<Vec<u8>> {
        let max = self.executor.limits().max_result_rows;
        self.ad_hoc(sql, Some(max), |schema, batches| format::answer_json(&schema, &batches)).await
    }

    async fn ad_hoc<T: Send + 'static>(
        &self,
        sql: &str,
        max_rows: Option<usize>,
        finish: fn(SchemaRef, Vec<RecordBatch>) -> Result<T>,
    ) -> Result<T> {
        // Planned once and checked on a thread of its own (a refused statement never takes
        // the query threads); then that plan runs. EXPLAIN plans only, so it passes.
        let check = {
            let (this, sql) = (self.clone(), sql.to_string());
            async move {
                let ctx = this.context().await?;
                if this.tenant.is_some() {
                    tenancy::check_statement(&ctx, &sql, &materialize::dialect_of(&ctx, &sql))?;
                }
                let df = materialize::plan_inline(&ctx, &sql, read_only(), no_params())
                    .await
                    .map_err(|e| this.classify(e))?;
                let explain = matches!(df.logical_plan(), datafusion::logical_expr::LogicalPlan::Explain(_));
                let max_pairs = this.executor.limits().max_unkeyed_join_rows;
                if !explain && this.distributed() {
                    // The cluster's plan is one node that sends the statement away: the guard
                    // reads the plan this process would have run, from the same statistics.
                    let state = ctx.state();
                    let optimized = state.optimize(df.logical_plan()).map_err(|e| this.classify(e.into()))?;
                    let local = datafusion::physical_planner::PhysicalPlanner::create_physical_plan(
                        &datafusion::physical_planner::DefaultPhysicalPlanner::default(),
                        &optimized,
                        &state,
                    )
                    .await
                    .map_err(|e| this.classify(e.into()))?;
                    guard::check_unkeyed_joins(&local, max_pairs, this.tenant.is_none())?;
                }
                let planned = this.physical(df).await?;
                if !explain && !this.distributed() {
                    guard::check_unkeyed_joins(&planned.plan, max_pairs, this.tenant.is_none())?;
                }
                Ok(planned)
            }
        };
        let this = self.clone();
        self.executor
            .run_checked(Work::Query, check, move |planned| async move {
                let (schema, batches) = this.collect(planned, Work::Query, max_rows).await?;
                finish(schema, batches)
            })
            .await
    }

    /// [`Analytics::query`] with the CTEs marked `AS MATERIALIZED` run once first, as the
    /// reports run theirs (on a cluster, read where referenced, as reports are there), for
    /// `convoscope query --materialize` on the operator's own machine: their results are held
    /// outside the query memory budget, so a server never runs a caller's statement this way.
    /// Read-only; no join guard (the operator's own process).
    pub async fn query_materialized(&self, sql: &str) -> Result<(SchemaRef, Vec<RecordBatch>)> {
        let (this, sql) = (self.clone(), sql.to_string());
        self.executor
            .run(Work::Query, async move {
                let ctx = this.context().await?;
                let df = this.plan_with(&ctx, &sql, read_only(), no_params()).await?;
                this.execute(df, Work::Query, None).await
            })
            .await
    }

    /// Reads with one of convoscope's own statements (not a caller's): no join guard and no
    /// row limit, within a report's time limit.
    pub async fn read(&self, sql: &str) -> Result<(SchemaRef, Vec<RecordBatch>)> {
        self.read_with(sql, no_params()).await
    }

    /// [`Analytics::read`] with `$name` parameters bound.
    pub async fn read_with(
        &self,
        sql: &str,
        params: Vec<(&'static str, datafusion::scalar::ScalarValue)>,
    ) -> Result<(SchemaRef, Vec<RecordBatch>)> {
        let (this, sql) = (self.clone(), sql.to_string());
        self.executor
            .run(Work::Report, async move {
                let ctx = this.context().await?;
                let df = this.plan(&ctx, &sql, params).await?;
                this.execute(df, Work::Report, None).await
            })
            .await
    }

    /// Plans one of convoscope's own statements with these parameters: its `AS MATERIALIZED`
    /// CTEs collected first in this process ([`materialize`]), or read inline on a cluster,
    /// which cannot be sent rows held here ([`cluster`]).
    pub(crate) async fn plan(
        &self,
        ctx: &SessionContext,
        sql: &str,
        params: Vec<(&str, datafusion::scalar::ScalarValue)>,
    ) -> Result<datafusion::dataframe::DataFrame> {
        self.plan_with(ctx, sql, SQLOptions::new(), params).await
    }

    async fn plan_with(
        &self,
        ctx: &SessionContext,
        sql: &str,
        options: SQLOptions,
        params: Vec<(&str, datafusion::scalar::ScalarValue)>,
    ) -> Result<datafusion::dataframe::DataFrame> {
        let planned = if self.distributed() {
            materialize::plan_inline(ctx, sql, options, params).await
        } else {
            materialize::plan(ctx, sql, options, params).await
        };
        planned.map_err(|e| self.classify(e))
    }

    /// Runs a planned statement on the calling (query) thread: [`Analytics::physical`], then
    /// [`Analytics::collect`].
    pub(crate) async fn execute(
        &self,
        df: datafusion::dataframe::DataFrame,
        kind: Work,
        max_rows: Option<usize>,
    ) -> Result<(SchemaRef, Vec<RecordBatch>)> {
        let planned = self.physical(df).await?;
        self.collect(planned, kind, max_rows).await
    }

    /// The physical plan of a statement, its joins made to yield ([`guard::yielding`]).
    pub(crate) async fn physical(&self, df: datafusion::dataframe::DataFrame) -> Result<Planned> {
        let schema: SchemaRef = Arc::new(df.schema().as_arrow().clone());
        let task = Arc::new(df.task_ctx());
        let plan = df.create_physical_plan().await.map_err(|e| self.classify(e.into()))?;
        Ok(Planned { schema, plan: guard::yielding(plan)?, task })
    }

    /// Runs a physical plan on the calling (query) thread: its rows collected (at most
    /// `max_rows`), what it spilled counted.
    pub(crate) async fn collect(
        &self,
        planned: Planned,
        kind: Work,
        max_rows: Option<usize>,
    ) -> Result<(SchemaRef, Vec<RecordBatch>)> {
        use futures::StreamExt;
        let Planned { schema, plan, task } = planned;
        let job = match &self.engine {
            Engine::Ballista(addr) => Some(cluster::JobGuard::new(addr, plan.clone())),
            Engine::Local => None,
        };
        let mut stream =
            datafusion::physical_plan::execute_stream(plan.clone(), task).map_err(|e| self.classify(e.into()))?;
        let (mut batches, mut rows) = (Vec::new(), 0usize);
        while let Some(batch) = stream.next().await {
            let batch = batch.map_err(|e| self.classify(e.into()))?;
            rows += batch.num_rows();
            if let Some(max) = max_rows
                && rows > max
            {
                return Err(Error::QueryRefused(format!(
                    "the result has more than {max} rows (max_result_rows): aggregate it (GROUP BY), \
                     add a LIMIT, or narrow it with WHERE"
                )));
            }
            batches.push(batch);
        }
        drop(stream);
        if let Some(job) = job {
            job.finished();
        }
        self.executor.spilled(kind, guard::spilled_bytes(&plan));
        Ok((schema, batches))
    }

    /// Where its queries run: the threads and limits.
    pub(crate) fn executor(&self) -> &Executor {
        &self.executor
    }

    /// A clear error for a query that ran out of memory; others as they are.
    /// On a cluster, execution errors are sorted by their cause ([`cluster::classify`]): the
    /// cluster's own failures name the scheduler.
    pub(crate) fn classify(&self, e: Error) -> Error {
        match (e, &self.engine) {
            (Error::Query(q @ datafusion::error::DataFusionError::Execution(_)), Engine::Ballista(addr)) => {
                cluster::classify(addr, q)
            }
            (Error::Query(q), _) => guard::query_error(q, self.executor.limits().memory_bytes),
            (other, _) => other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn queries_see_files_written_and_overwritten_after_earlier_queries() {
        use crate::event::Event;
        let storage = Storage::open("memory://").expect("memory store");
        let analytics = Analytics::new(storage.clone(), 7).expect("analytics");
        let day = 1_767_225_600_000_000i64; // 2026-01-01
        let count = || async {
            let (_, batches) = analytics.query("SELECT COUNT(*) AS n FROM events").await.expect("query");
            format::rows(&batches).expect("rows")[0][0].clone()
        };
        let ev = |id: &str| Event::new(id.into(), "message.sent", day + 1, 0, "api");
        storage.write_events(vec![ev("a")], "one").await.expect("write");
        assert_eq!(count().await, serde_json::json!(1));
        // A new file (a flush) and an overwritten one (a segment flushed again after a crash)
        // must both show in the next query, though the runtime caches listings' metadata.
        storage.write_events(vec![ev("b")], "two").await.expect("write");
        assert_eq!(count().await, serde_json::json!(2));
        storage.write_events(vec![ev("c"), ev("d"), ev("e")], "one").await.expect("overwrite");
        assert_eq!(count().await, serde_json::json!(4));
    }

    #[tokio::test]
    async fn a_materialized_query_gives_the_inline_rows_and_only_reads() {
        use crate::event::Event;
        let storage = Storage::open("memory://").expect("memory store");
        let analytics = Analytics::new(storage.clone(), 7).expect("analytics");
        let day = 1_767_225_600_000_000i64; // 2026-01-01
        let events = ["a", "b", "c"].iter().map(|id| Event::new((*id).into(), "message.sent", day + 1, 0, "api"));
        storage.write_events(events.collect(), "one").await.expect("write");
        // The CTE is read twice: once where it is computed first, twice inline; the same rows.
        let sql = "WITH sent AS MATERIALIZED (SELECT event_id FROM events WHERE event_type = 'message.sent') \
                   SELECT (SELECT COUNT(*) FROM sent) AS n, COUNT(*) AS pairs FROM sent s1 JOIN sent s2 ON s1.event_id <> s2.event_id";
        let inline = format::rows(&analytics.query(sql).await.expect("inline").1).expect("rows");
        let materialized =
            format::rows(&analytics.query_materialized(sql).await.expect("materialized").1).expect("rows");
        assert_eq!(inline, vec![vec![serde_json::json!(3), serde_json::json!(6)]]);
        assert_eq!(materialized, inline);
        for write in
            ["CREATE TABLE t AS SELECT 1", "CREATE VIEW v AS SELECT 1", "SET datafusion.execution.batch_size = 1"]
        {
            assert!(analytics.query_materialized(write).await.is_err(), "{write} must be refused");
        }
    }

    #[test]
    fn strings_are_read_as_views() {
        let read = read_schema();
        assert_eq!(read.fields().len(), event::schema().fields().len());
        assert_eq!(read.field_with_name("message_id").map(|f| f.data_type().clone()).ok(), Some(DataType::Utf8View));
        assert_eq!(read.field_with_name("error_code").map(|f| f.data_type().clone()).ok(), Some(DataType::Int32));
    }
}
