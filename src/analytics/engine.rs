//! The DataFusion session every query of one [`super::Analytics`] runs in: its settings
//! (DataFusion's own `DATAFUSION_*` variables, convoscope's defaults where none is set) and
//! its runtime (metadata caches, the shared memory pool, the spill directory).

use std::sync::Arc;

use datafusion::execution::cache::cache_manager::CacheManagerConfig;
use datafusion::execution::context::SessionConfig;
use datafusion::execution::runtime_env::{RuntimeEnv, RuntimeEnvBuilder};

use crate::config::QueryLimits;
use crate::error::{Error, Result};

/// DataFusion options convoscope sets unless the environment sets them.
const ENGINE_DEFAULTS: &[(&str, &str)] = &[
    // The reports group by message, conversation or contact: groups that repeat only a few
    // times per file, so a partial aggregation before the repartition hardly shrinks its input
    // and doubles the hashing. DataFusion's default (0.8 groups per row) keeps it for the
    // cohort's two rows per message; 0.1 skips it there and keeps it for per-campaign
    // groups (3 million events: funnel, delivery, failures, cost and engagement 13-31% faster,
    // the other three unchanged).
    ("datafusion.execution.skip_partial_aggregation_probe_ratio_threshold", "0.1"),
];

/// DataFusion's settings: its own `DATAFUSION_*` environment variables
/// (`DATAFUSION_EXECUTION_TARGET_PARTITIONS=4`), with convoscope's [`ENGINE_DEFAULTS`] where
/// none is set.
///
/// Parquet filter pushdown (`datafusion.execution.parquet.pushdown_filters`) stays off, as in
/// DataFusion: on these reports, evaluating the event_type filters while decoding cost more
/// than it saved once the reports' joins were ordered (10 million events: 7 of 8 reports
/// 9-17% faster without it, failures 8% slower).
///
/// Each query is split into as many partitions as there are query threads
/// ([`QueryLimits::threads`]), unless `DATAFUSION_EXECUTION_TARGET_PARTITIONS` says otherwise.
pub(super) fn engine_config(limits: &QueryLimits) -> Result<SessionConfig> {
    let mut config = SessionConfig::from_env()?.with_information_schema(false);
    if std::env::var_os("DATAFUSION_EXECUTION_TARGET_PARTITIONS").is_none() {
        config = config.with_target_partitions(limits.threads.max(1));
    }
    for (key, value) in ENGINE_DEFAULTS {
        let env = key.to_ascii_uppercase().replace('.', "_");
        if std::env::var_os(env).is_none() {
            config = config.set_str(key, value);
        }
    }
    Ok(config)
}

/// The runtime every query of one [`super::Analytics`] shares.
///
/// Its caches of Parquet footers and page indexes (checked against each file's size and
/// modification time, so an overwritten file is read again) spare every report re-reading the
/// metadata of every file (a query matching no rows over 126 files: 43 ms before, 28 after).
/// Its cache of directory listings is off: a listing must show the files flushed a moment ago.
/// The two caches are bounded by DataFusion's defaults (50 MB of metadata, 20 MB of statistics).
///
/// Its memory pool holds every query's working memory together, `memory_bytes` at most,
/// shared fairly among the operators that can spill (sorts, aggregations, repartitions), which
/// write to `spill_dir` past their share; an operator that cannot spill (a hash join's build
/// side) fails its query alone when the pool has no more to give, never the process.
pub(super) fn engine_runtime(limits: &QueryLimits) -> Result<Arc<RuntimeEnv>> {
    use datafusion::execution::disk_manager::{DiskManagerBuilder, DiskManagerMode};
    use datafusion::execution::memory_pool::{FairSpillPool, TrackConsumersPool};
    let caches = CacheManagerConfig::default().with_list_files_cache_limit(0);
    std::fs::create_dir_all(&limits.spill_dir)
        .map_err(|e| Error::io(format!("creating the spill directory {}", limits.spill_dir.display()), e))?;
    let pool = FairSpillPool::new(usize::try_from(limits.memory_bytes).unwrap_or(usize::MAX));
    // An error names the operators that held the most, which says what to narrow.
    let pool = TrackConsumersPool::new(pool, std::num::NonZeroUsize::MIN.saturating_add(2));
    let disk = DiskManagerBuilder::default()
        .with_mode(DiskManagerMode::Directories(vec![limits.spill_dir.clone()]))
        .with_max_temp_directory_size(limits.spill_bytes);
    Ok(RuntimeEnvBuilder::new()
        .with_cache_manager(caches)
        .with_memory_pool(Arc::new(pool))
        .with_disk_manager_builder(disk)
        .build_arc()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn engine_defaults_are_known_options_and_apply() {
        // An unknown key would panic inside DataFusion's `set_str`; a renamed option must fail here.
        let config =
            engine_config(&QueryLimits::default()).expect("config from an environment without DATAFUSION_* overrides");
        if std::env::var_os("DATAFUSION_EXECUTION_SKIP_PARTIAL_AGGREGATION_PROBE_RATIO_THRESHOLD").is_none() {
            assert_eq!(config.options().execution.skip_partial_aggregation_probe_ratio_threshold, 0.1);
        }
    }
}
