//! DataFusion over the stored events: the `events` table, read-only ad hoc queries, and
//! (in [`reports`]) the report jobs whose SQL lives in `queries/`.
//!
//! `events` is a listing table over `events/date=*/` with `date` as a hive partition column,
//! so a filter on `date` skips whole directories.

pub mod format;
pub mod reports;
pub mod stats;

use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::{DataType, SchemaRef};
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::{ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl};
use datafusion::execution::context::{SQLOptions, SessionConfig, SessionContext};

use crate::error::{Error, Result};
use crate::event;
use crate::store::Storage;

/// URL under which the store is registered with DataFusion: one scheme for every backend,
/// so the same SQL runs over a local directory, memory or a bucket.
const STORE_URL: &str = "convoscope://store";

/// Query access to stored events.
#[derive(Clone, Debug)]
pub struct Analytics {
    storage: Storage,
    /// Days after a send in which a conversion is attributed to it.
    pub attribution_days: i64,
}

impl Analytics {
    /// Analytics over this storage.
    pub fn new(storage: Storage, attribution_days: i64) -> Self {
        Analytics { storage, attribution_days }
    }

    /// A session with `events` registered.
    pub async fn context(&self) -> Result<SessionContext> {
        let config = SessionConfig::new()
            .with_information_schema(false)
            .set_bool("datafusion.execution.parquet.pushdown_filters", true)
            .set_bool("datafusion.execution.parquet.reorder_filters", true);
        let ctx = SessionContext::new_with_config(config);
        let url = url::Url::parse(STORE_URL).map_err(|e| Error::Invalid(e.to_string()))?;
        ctx.register_object_store(&url, self.storage.store.clone());
        let prefix = self.storage.prefix.as_ref();
        let table_url =
            if prefix.is_empty() { format!("{STORE_URL}/events/") } else { format!("{STORE_URL}/{prefix}/events/") };
        let options = ListingOptions::new(Arc::new(ParquetFormat::default()))
            .with_file_extension(".parquet")
            .with_table_partition_cols(vec![("date".to_string(), DataType::Utf8)]);
        let cfg = ListingTableConfig::new(ListingTableUrl::parse(&table_url)?)
            .with_listing_options(options)
            .with_schema(event::schema());
        ctx.register_table("events", Arc::new(ListingTable::try_new(cfg)?))?;
        Ok(ctx)
    }

    /// Runs one read-only SQL statement: DDL, DML, `COPY`, `SET` and the like are refused,
    /// and no table but `events` is reachable (no URL tables, no file functions).
    /// Returns the result's schema too, so an empty result still has its columns.
    pub async fn query(&self, sql: &str) -> Result<(SchemaRef, Vec<RecordBatch>)> {
        let ctx = self.context().await?;
        let opts = SQLOptions::new().with_allow_ddl(false).with_allow_dml(false).with_allow_statements(false);
        let df = ctx.sql_with_options(sql, opts).await?;
        let schema: SchemaRef = Arc::new(df.schema().as_arrow().clone());
        Ok((schema, df.collect().await?))
    }
}
