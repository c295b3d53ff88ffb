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

/// A failure of a query on the cluster, naming the scheduler.
pub fn failed(addr: &str, e: &datafusion::error::DataFusionError) -> Error {
    Error::Cluster(format!("the query failed on the Ballista cluster at {addr}: {e}"))
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
        let state = SessionStateBuilder::new()
            .with_config(config)
            .with_runtime_env(runtime)
            .with_default_features()
            .build()
            .upgrade_for_ballista(format!("http://{addr}"))?;
        let mut state = state;
        let timeout = CONNECT_TIMEOUT.as_secs().to_string();
        state.config_mut().options_mut().set("ballista.client.grpc_connect_timeout_seconds", &timeout)?;
        if let Ok(v) = std::env::var("CONVOSCOPE_BALLISTA_ADAPTIVE") {
            state.config_mut().options_mut().set("ballista.planner.adaptive.enabled", &v)?;
        }
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
            runtime.spawn(async move {
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
        }
    }
}

#[cfg(feature = "cluster")]
pub use ballista::{JobGuard, session};

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

#[cfg(not(feature = "cluster"))]
impl JobGuard {
    pub fn new(_addr: &str, _plan: std::sync::Arc<dyn datafusion::physical_plan::ExecutionPlan>) -> Self {
        JobGuard
    }

    pub fn finished(self) {}
}
