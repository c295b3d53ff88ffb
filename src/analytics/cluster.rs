//! Reports and queries on an Apache DataFusion Ballista cluster (`engine =
//! "ballista://HOST:PORT"`): the session that sends each plan to the cluster's scheduler
//! instead of running it here. The scheduler and executor themselves are [`crate::cluster`].
//!
//! A plan travels as DataFusion's protobuf, so it may only hold what every node can rebuild:
//! - tables as the store's URL, schema and partition column: each node lists and reads the
//!   files itself, through the same object store registered under `convoscope://store`;
//! - functions by name: each node registers convoscope's ([`super::functions`]);
//! - views as their plans: the facts views, and the rate card, a `VALUES` view rather than a
//!   table in memory, which has no encoding.
//!
//! The reports' `AS MATERIALIZED` CTEs are read inline on a cluster (the same rows: the hint
//! only saves computing a CTE read twice). Materializing means collecting the CTE's rows into
//! this process's memory and shipping them back inside the plan, which has no encoding either;
//! inline, a CTE read twice is computed twice, on the cluster, and nothing passes through the
//! process that asked.

use std::time::Duration;

use crate::error::{Error, Result};

/// How long the scheduler may take to accept a connection before a query fails: a scheduler
/// that is down refuses at once, one that is unreachable (a firewall dropping packets) is
/// given this long and no longer.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Fails fast, naming the address, when the scheduler at `addr` does not accept a connection
/// within [`CONNECT_TIMEOUT`]: Ballista's client would otherwise retry for its own, longer,
/// time and report a transport error naming no address.
pub async fn reachable(addr: &str) -> Result<()> {
    match tokio::time::timeout(CONNECT_TIMEOUT, tokio::net::TcpStream::connect(addr)).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(Error::Cluster(format!("the Ballista scheduler at {addr} is not reachable: {e}"))),
        Err(_) => Err(Error::Cluster(format!(
            "the Ballista scheduler at {addr} did not accept a connection within {}s",
            CONNECT_TIMEOUT.as_secs()
        ))),
    }
}

/// What an execution error from the cluster means. Ballista hands every failure back as an
/// execution error with the cause in its text: the cluster's own (a node it cannot reach, a
/// job it lost) become [`Error::Cluster`], naming the scheduler; a query out of memory on an
/// executor, [`Error::QueryMemory`]; anything else (the statement's own runtime error) stays
/// the query's error, as it would be here.
pub fn classify(addr: &str, e: datafusion::error::DataFusionError) -> Error {
    let text = e.to_string();
    const CLUSTER: &[&str] = &[
        "transport error",
        "tcp connect error",
        "Connection refused",
        "GrpcConnectionError",
        "Grpc error",
        "The service is currently unavailable",
        "executor lost",
        "Executor lost",
    ];
    if text.contains("Resources exhausted") || text.contains("ResourcesExhausted") {
        Error::QueryMemory(format!(
            "the query needed more memory than an executor of the cluster at {addr} gives it, even \
             spilling (query_memory_bytes on the executors): narrow it, or add executors; {text}"
        ))
    } else if CLUSTER.iter().any(|c| text.contains(c)) {
        Error::Cluster(format!("the query failed on the Ballista cluster at {addr}: {text}"))
    } else {
        Error::Query(e)
    }
}

#[cfg(feature = "cluster")]
mod ballista {
    use std::sync::Arc;

    use ballista_core::execution_plans::DistributedQueryExec;
    use ballista_core::extension::SessionStateExt;
    use ballista_core::serde::protobuf::CancelJobParams;
    use ballista_core::serde::protobuf::scheduler_grpc_client::SchedulerGrpcClient;
    use datafusion::execution::SessionStateBuilder;
    use datafusion::execution::context::{SessionConfig, SessionState};
    use datafusion::execution::runtime_env::RuntimeEnv;
    use datafusion::physical_plan::ExecutionPlan;
    use datafusion_proto::protobuf::LogicalPlanNode;

    use super::CONNECT_TIMEOUT;
    use crate::error::Result;

    /// A session whose plans run on the cluster whose scheduler is at `addr`.
    pub fn session(config: SessionConfig, runtime: Arc<RuntimeEnv>, addr: &str) -> Result<SessionState> {
        let mut state = SessionStateBuilder::new()
            .with_config(config)
            .with_runtime_env(runtime)
            .with_default_features()
            .build()
            .upgrade_for_ballista(format!("http://{addr}"))?;
        let timeout = CONNECT_TIMEOUT.as_secs().to_string();
        state.config_mut().options_mut().set("ballista.client.grpc_connect_timeout_seconds", &timeout)?;
        Ok(state)
    }

    /// Cancels the cluster's job of `plan` when dropped before [`JobGuard::finished`]: a
    /// query cancelled here (its time limit, or its caller gone) must not run on in the
    /// cluster, which Ballista's client does not see to when its stream is dropped.
    pub struct JobGuard {
        addr: String,
        plan: Arc<dyn ExecutionPlan>,
        running: bool,
    }

    impl JobGuard {
        pub fn new(addr: &str, plan: Arc<dyn ExecutionPlan>) -> Self {
            JobGuard { addr: addr.to_string(), plan, running: true }
        }

        pub fn finished(mut self) {
            self.running = false;
        }
    }

    impl Drop for JobGuard {
        fn drop(&mut self) {
            if !self.running {
                return;
            }
            let Some(query) = self.plan.downcast_ref::<DistributedQueryExec<LogicalPlanNode>>() else {
                return;
            };
            let (Some(job), Ok(runtime)) = (query.job_id(), tokio::runtime::Handle::try_current()) else { return };
            let (addr, job_id) = (self.addr.clone(), job.to_string());
            let cancelling = runtime.spawn(async move {
                let cancelled = async {
                    let mut client = SchedulerGrpcClient::connect(format!("http://{addr}")).await?;
                    client.cancel_job(CancelJobParams { job_id: job_id.clone() }).await?;
                    Ok::<_, Box<dyn std::error::Error + Send + Sync>>(())
                };
                match tokio::time::timeout(CONNECT_TIMEOUT * 2, cancelled).await {
                    Ok(Ok(())) => {
                        tracing::info!(job = %job_id, "cancelled the cluster's job of a query cancelled here")
                    }
                    Ok(Err(e)) => tracing::warn!(job = %job_id, error = %e, "could not cancel the cluster's job"),
                    Err(_) => tracing::warn!(job = %job_id, "the scheduler did not answer the cancellation"),
                }
            });
            if let Ok(mut pending) = super::CANCELLING.lock() {
                pending.retain(|t| !t.is_finished());
                pending.push(cancelling);
            }
        }
    }
}

#[cfg(feature = "cluster")]
pub use ballista::{JobGuard, session};

/// Plans of `ctx`, a cluster session, run with Ballista's static planner instead of its
/// adaptive one (see [`crate::analytics::reports::Spec::adaptive`]).
pub fn without_adaptive_planner(ctx: &datafusion::execution::context::SessionContext) -> Result<()> {
    ctx.state_ref().write().config_mut().options_mut().set("ballista.planner.adaptive.enabled", "false")?;
    Ok(())
}

/// Cancellations of cluster jobs under way ([`JobGuard`]), which a command that is about to
/// exit waits for ([`settle`]): a report timed out here must not run on there.
static CANCELLING: std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>> = std::sync::Mutex::new(Vec::new());

/// Waits for the cluster jobs being cancelled to be cancelled (each gives up on its own after
/// twice [`CONNECT_TIMEOUT`]).
pub async fn settle() {
    let pending = match CANCELLING.lock() {
        Ok(mut p) => std::mem::take(&mut *p),
        Err(_) => return,
    };
    for task in pending {
        let _ = task.await;
    }
}

/// Without the `cluster` feature there is no Ballista client: a cluster engine is refused.
#[cfg(not(feature = "cluster"))]
pub fn session(
    _config: datafusion::execution::context::SessionConfig,
    _runtime: std::sync::Arc<datafusion::execution::runtime_env::RuntimeEnv>,
    addr: &str,
) -> Result<datafusion::execution::context::SessionState> {
    Err(Error::Config(format!("engine ballista://{addr}: this build has no cluster support (cargo feature `cluster`)")))
}

/// Without the `cluster` feature there is no job to cancel.
#[cfg(not(feature = "cluster"))]
pub struct JobGuard;

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::error::DataFusionError;

    #[test]
    fn cluster_failures_name_the_scheduler_and_others_stay_the_querys() {
        let lost = DataFusionError::Execution("Job 7 failed: Grpc error: tcp connect error".into());
        assert!(matches!(classify("sched:50050", lost), Error::Cluster(m) if m.contains("sched:50050")));
        let oom = DataFusionError::Execution("Job 7 failed: Resources exhausted: Failed to allocate".into());
        assert!(matches!(classify("sched:50050", oom), Error::QueryMemory(_)));
        let own = DataFusionError::Execution("Job 7 failed: Arrow error: Divide by zero error".into());
        assert!(matches!(classify("sched:50050", own), Error::Query(_)));
    }

    #[tokio::test]
    async fn a_scheduler_that_is_down_is_named() {
        let port = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).unwrap();
        let e = reachable(&format!("127.0.0.1:{port}")).await.unwrap_err().to_string();
        assert!(e.contains(&format!("127.0.0.1:{port}")) && e.contains("not reachable"), "{e}");
    }
}

#[cfg(not(feature = "cluster"))]
impl JobGuard {
    pub fn new(_addr: &str, _plan: std::sync::Arc<dyn datafusion::physical_plan::ExecutionPlan>) -> Self {
        JobGuard
    }

    pub fn finished(self) {}
}
