//! The nodes of a cluster that runs reports past one machine: Apache DataFusion Ballista's
//! scheduler and executor, embedded in the `convoscope` binary so that both know what
//! convoscope's plans hold.
//!
//! ```text
//!   convoscope report / query / serve      (engine = "ballista://HOST:PORT")
//!        │  the plan, as DataFusion protobuf         ▲ the result, as Arrow Flight
//!        ▼                                           │
//!   convoscope scheduler  ── stages and tasks ──► convoscope executor × N
//!        │ lists the files                             │ read the files, shuffle among
//!        ▼                                             ▼ themselves on local disk
//!                       the object store (--storage: S3, GCS, Azure, a directory)
//! ```
//!
//! Each node:
//! - registers convoscope's functions ([`crate::analytics::functions`]), which a plan names;
//! - registers the store (`--storage` / `CONVOSCOPE_STORAGE`) under the URL the tables name,
//!   so every node reads the same files by the same paths: a cluster needs a store every node
//!   reaches (an S3 bucket; a directory only on one machine or a shared mount).
//!
//! The client side, the session that sends a plan to the scheduler, is
//! [`crate::analytics::cluster`]. One file per role: `scheduler.rs`, `executor.rs`.

mod executor;
mod scheduler;

pub use executor::{ExecutorOptions, run_executor};
pub use scheduler::run_scheduler;

use std::sync::Arc;

use datafusion::execution::context::{SessionConfig, SessionState};
use datafusion::execution::runtime_env::{RuntimeEnv, RuntimeEnvBuilder};
use datafusion::execution::{FunctionRegistry, SessionStateBuilder};

use crate::analytics::{functions, register_store};
use crate::config::host_port;
use crate::error::{Error, Result};
use crate::store::Storage;

/// How often an executor tells the scheduler it is alive, and how long the scheduler waits
/// for word from one before it takes it for dead and runs its tasks elsewhere. Ballista's
/// defaults (60 s and 180 s) hold a report hostage for three minutes after an executor dies;
/// a heartbeat is one small gRPC call, so every 5 s costs nothing.
pub const HEARTBEAT_SECS: u64 = 5;
/// See [`HEARTBEAT_SECS`]: four missed heartbeats and more, so a busy executor is not lost.
pub const EXECUTOR_TIMEOUT_SECS: u64 = 30;

/// How long a starting executor waits for its scheduler to accept connections, so the two can
/// start in any order (a deployment's supervisor restarts it past that).
pub const SCHEDULER_WAIT_SECS: u64 = 60;

/// A node's session: DataFusion's defaults, Ballista's, and convoscope's functions, over a
/// runtime that reads the store.
fn node_state(config: SessionConfig, runtime: Arc<RuntimeEnv>) -> datafusion::error::Result<SessionState> {
    use ballista_core::extension::SessionConfigExt;
    let mut state = SessionStateBuilder::new()
        .with_default_features()
        .with_config(config.upgrade_for_ballista())
        .with_runtime_env(runtime)
        .with_optimizer_rules(ballista_core::optimizer::ballista_default_optimizer_rules())
        .with_scalar_functions(ballista_core::extension::ballista_scalar_functions())
        .with_aggregate_functions(ballista_core::extension::ballista_aggregate_functions())
        .with_window_functions(ballista_core::extension::ballista_window_functions())
        .build();
    let (scalars, aggregates) = functions();
    for f in scalars {
        state.register_udf(Arc::new(f))?;
    }
    for f in aggregates {
        state.register_udaf(Arc::new(f))?;
    }
    Ok(state)
}

/// A runtime that reads `storage` under the tables' URL, spilling to `spill_dir`.
fn node_runtime(storage: &Storage, spill_dir: &str) -> datafusion::error::Result<Arc<RuntimeEnv>> {
    let runtime = RuntimeEnvBuilder::new().with_temp_file_path(spill_dir).build_arc()?;
    register_store(&runtime, storage).map_err(|e| datafusion::error::DataFusionError::External(Box::new(e)))?;
    Ok(runtime)
}

/// Waits until `addr` accepts connections, up to `wait`.
async fn wait_for(addr: &str, wait: std::time::Duration) -> Result<()> {
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        match crate::analytics::cluster::reachable(addr).await {
            Ok(()) => return Ok(()),
            Err(e) if tokio::time::Instant::now() >= deadline => {
                return Err(Error::Cluster(format!("{e} (waited {}s)", wait.as_secs())));
            }
            Err(_) => tokio::time::sleep(std::time::Duration::from_millis(250)).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_node_knows_convoscopes_functions() {
        let runtime = node_runtime(&Storage::open("memory://").unwrap(), "/tmp").unwrap();
        let state = node_state(SessionConfig::new(), runtime).unwrap();
        for name in ["id_key", "max_text", "min_text", "earliest_text"] {
            let known = state.scalar_functions().contains_key(name) || state.aggregate_functions().contains_key(name);
            assert!(known, "{name} is not registered on a node");
        }
    }
}
