//! `convoscope scheduler`: Ballista's scheduler, which plans each query sent to it into stages
//! and hands their tasks to the executors.
//!
//! It keeps its jobs in memory: a scheduler that restarts forgets the queries in flight (their
//! callers get an error and ask again) and nothing else, since results live with the
//! executors and the data in the store.

use std::sync::Arc;

use ballista_scheduler::cluster::BallistaCluster;
use ballista_scheduler::config::SchedulerConfig;
use ballista_scheduler::scheduler_process::{create_scheduler, start_grpc_service_with_listener};
use datafusion_proto::protobuf::{LogicalPlanNode, PhysicalPlanNode};

use super::{EXECUTOR_TIMEOUT_SECS, host_port, node_runtime, node_state};
use crate::error::{Error, Result};
use crate::store::Storage;

/// Runs a scheduler on `listener` until `shutdown` completes. The executors register with it
/// and clients (`engine = "ballista://..."`) send it their plans; it lists the store's files
/// to plan them, so it reads `storage` too (spilling, should planning ever need to, under
/// `spill_dir`).
pub async fn run_scheduler(
    listener: tokio::net::TcpListener,
    storage: Storage,
    spill_dir: std::path::PathBuf,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<()> {
    let addr = listener.local_addr().map_err(|e| Error::io("reading the scheduler's address", e))?;
    let (host, port) = host_port(&addr.to_string(), "--bind")?;
    let spill = spill_dir.to_string_lossy().into_owned();
    std::fs::create_dir_all(&spill_dir).map_err(|e| Error::io(format!("creating {spill}"), e))?;
    let config = SchedulerConfig {
        bind_host: host.clone(),
        bind_port: port,
        external_host: host,
        executor_timeout_seconds: EXECUTOR_TIMEOUT_SECS,
        executor_termination_grace_period: EXECUTOR_TIMEOUT_SECS,
        override_session_builder: Some(Arc::new(move |config| node_state(config, node_runtime(&storage, &spill)?))),
        ..SchedulerConfig::default()
    };
    let cluster =
        BallistaCluster::new_from_config(&config).await.map_err(|e| Error::Cluster(format!("scheduler: {e}")))?;
    let scheduler = create_scheduler::<LogicalPlanNode, PhysicalPlanNode>(cluster, Arc::new(config))
        .await
        .map_err(|e| Error::Cluster(format!("scheduler: {e}")))?;
    tracing::info!(%addr, "Ballista scheduler: executors register here, engine = \"ballista://{addr}\" sends reports here");
    tokio::select! {
        served = start_grpc_service_with_listener(listener, scheduler) => {
            served.map_err(|e| Error::Cluster(format!("scheduler on {addr}: {e}")))
        }
        () = shutdown => Ok(()),
    }
}
