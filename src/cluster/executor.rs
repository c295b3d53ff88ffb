//! `convoscope executor`: Ballista's executor, which runs the tasks its scheduler hands it,
//! reading the store and keeping its stages' shuffle output in its work directory until the
//! next stage (or the client) has fetched it over Arrow Flight.
//!
//! What it holds: in memory, its tasks' working memory (a pool of `memory_bytes`, split among
//! its slots, spilling past it); on disk, shuffle files of running jobs (deleted as jobs end).
//! Killed, it loses only the tasks it was running and the shuffle files it held: the scheduler
//! notices within [`super::EXECUTOR_TIMEOUT_SECS`] and runs them again on the others.

use std::path::PathBuf;
use std::sync::Arc;

use ballista_core::JobId;
use ballista_core::registry::BallistaFunctionRegistry;
use ballista_core::serde::protobuf::ShuffleWritePartition;
use ballista_executor::execution_engine::{DefaultExecutionEngine, ExecutionEngine, QueryStageExecutor};
use ballista_executor::executor_process::{ExecutorProcessConfig, start_executor_process};
use datafusion::execution::TaskContext;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::metrics::MetricsSet;
use datafusion::prelude::SessionConfig;

use super::{HEARTBEAT_SECS, SCHEDULER_WAIT_SECS, host_port, node_runtime, wait_for};
use crate::analytics::functions;
use crate::error::{Error, Result};
use crate::store::Storage;

/// How an executor is started.
#[derive(Debug, Clone)]
pub struct ExecutorOptions {
    /// The scheduler, `HOST:PORT`.
    pub scheduler: String,
    /// Where it serves its results and shuffle output (Arrow Flight), `HOST:PORT`.
    pub bind: String,
    /// Its gRPC port, which the scheduler pushes tasks to (default: the Flight port + 1).
    pub grpc_port: Option<u16>,
    /// The host the scheduler, the other executors and clients reach it by (default: the
    /// bind host).
    pub advertise: Option<String>,
    /// Tasks it runs at once (default: its cores).
    pub slots: usize,
    /// Its shuffle files and spills.
    pub work_dir: PathBuf,
    /// Memory its tasks together may hold before they spill (default: Ballista's share of the
    /// machine).
    pub memory_bytes: Option<u64>,
}

/// Runs an executor until it is signalled to stop (Ctrl-C or SIGTERM, which it reports to the
/// scheduler so its tasks move at once). Waits up to [`SCHEDULER_WAIT_SECS`] for the scheduler
/// first, so the two can be started in either order.
pub async fn run_executor(options: ExecutorOptions, storage: Storage) -> Result<()> {
    let (bind_host, port) = host_port(&options.bind, "--bind")?;
    let unspecified = bind_host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_unspecified());
    if unspecified && options.advertise.is_none() {
        return Err(Error::Config(format!(
            "--bind {} listens on every address: say which one the scheduler, the other executors \
             and clients reach this executor by with --advertise HOST",
            options.bind
        )));
    }
    let (scheduler_host, scheduler_port) = host_port(&options.scheduler, "--scheduler")?;
    let grpc_port = match options.grpc_port {
        Some(p) => p,
        None => {
            port.checked_add(1).ok_or_else(|| Error::Config("--bind port leaves no room for --grpc-port".into()))?
        }
    };
    std::fs::create_dir_all(&options.work_dir)
        .map_err(|e| Error::io(format!("creating {}", options.work_dir.display()), e))?;
    let work_dir = options.work_dir.to_string_lossy().into_owned();
    wait_for(&options.scheduler, std::time::Duration::from_secs(SCHEDULER_WAIT_SECS)).await?;

    let mut registry = BallistaFunctionRegistry::default();
    let (scalars, aggregates) = functions();
    for f in scalars {
        registry.scalar_functions.insert(f.name().to_string(), Arc::new(f));
    }
    for f in aggregates {
        registry.aggregate_functions.insert(f.name().to_string(), Arc::new(f));
    }
    let spill = work_dir.clone();
    let config = ExecutorProcessConfig {
        bind_host: bind_host.clone(),
        external_host: Some(options.advertise.clone().unwrap_or(bind_host)),
        port,
        grpc_port,
        scheduler_host,
        scheduler_port,
        vcores: options.slots,
        work_dir: Some(work_dir),
        executor_heartbeat_interval_seconds: HEARTBEAT_SECS,
        memory_pool_size: options.memory_bytes,
        print_thread_info: false,
        override_function_registry: Some(Arc::new(registry)),
        override_execution_engine: Some(Arc::new(OneMetricsSetPerOperator)),
        override_runtime_producer: Some(Arc::new(move |_| node_runtime(&storage, &spill))),
        ..ExecutorProcessConfig::default()
    };
    tracing::info!(bind = %options.bind, grpc_port, scheduler = %options.scheduler, slots = options.slots, "Ballista executor starting");
    start_executor_process(Arc::new(config))
        .await
        .map_err(|e| Error::Cluster(format!("executor on {}: {e}", options.bind)))
}

/// Ballista's execution engine, reporting one set of metrics per operator of a task's plan.
///
/// The scheduler gives each task of a stage the stage's plan cut down to the partitions it
/// runs: under a `UNION ALL`, the branches a task does not run become empty operators, some
/// with metrics (an empty scan) and some without (`EmptyExec`). Ballista's executor reports
/// the metrics of the operators that have them, so two tasks of one stage can report
/// different numbers of sets; the scheduler then refuses the second task's status, and the
/// job waits for it forever (Ballista 55: the `cost` report, whose totals are a union, never
/// finished). Reporting an empty set for an operator without metrics keeps every task of a
/// stage at one set per operator, which is what the scheduler lines them up against.
struct OneMetricsSetPerOperator;

impl ExecutionEngine for OneMetricsSetPerOperator {
    fn create_query_stage_exec(
        &self,
        job_id: JobId,
        stage_id: usize,
        task_id: usize,
        global_output_partition_ids: Vec<usize>,
        plan: Arc<dyn ExecutionPlan>,
        work_dir: &str,
        config: &SessionConfig,
    ) -> datafusion::error::Result<Arc<dyn QueryStageExecutor>> {
        // Which operators have metrics, in the order Ballista collects them (depth first).
        let mut has_metrics = Vec::new();
        walk(plan.as_ref(), &mut |p| has_metrics.push(p.metrics().is_some()));
        let inner = DefaultExecutionEngine::new().create_query_stage_exec(
            job_id,
            stage_id,
            task_id,
            global_output_partition_ids,
            plan,
            work_dir,
            config,
        )?;
        Ok(Arc::new(PerOperator { inner, has_metrics }))
    }
}

fn walk(plan: &dyn ExecutionPlan, visit: &mut impl FnMut(&dyn ExecutionPlan)) {
    visit(plan);
    for child in plan.children() {
        walk(child.as_ref(), visit);
    }
}

#[derive(Debug)]
struct PerOperator {
    inner: Arc<dyn QueryStageExecutor>,
    has_metrics: Vec<bool>,
}

impl std::fmt::Display for PerOperator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(&self.inner, f)
    }
}

#[async_trait::async_trait]
impl QueryStageExecutor for PerOperator {
    async fn execute_query_stage(
        &self,
        task_id: usize,
        context: Arc<TaskContext>,
    ) -> datafusion::error::Result<Vec<ShuffleWritePartition>> {
        self.inner.execute_query_stage(task_id, context).await
    }

    fn collect_plan_metrics(&self) -> Vec<MetricsSet> {
        let reported = self.inner.collect_plan_metrics();
        // The engine rebuilt the plan with operators of the same kinds, so as many report.
        if reported.len() != self.has_metrics.iter().filter(|m| **m).count() {
            tracing::warn!(
                reported = reported.len(),
                operators = self.has_metrics.len(),
                "a task's metrics do not line up with its plan; reported as they are (the scheduler may refuse them)"
            );
            return reported;
        }
        let mut reported = reported.into_iter();
        self.has_metrics
            .iter()
            .map(|has| if *has { reported.next().unwrap_or_default() } else { MetricsSet::new() })
            .collect()
    }

    fn collect_runtime_stats_reports(&self) -> Vec<ballista_core::serde::protobuf::RuntimeStatsReport> {
        self.inner.collect_runtime_stats_reports()
    }

    fn collect_window_state_reports(
        &self,
    ) -> datafusion::error::Result<Vec<ballista_core::serde::protobuf::WindowStateReport>> {
        self.inner.collect_window_state_reports()
    }

    fn collect_column_stats(&self) -> Vec<ballista_core::serde::protobuf::TaskColumnStats> {
        self.inner.collect_column_stats()
    }
}
