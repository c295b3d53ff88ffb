//! The experiment report's rows per exposed contact, kept: compaction writes them, and the
//! report sums them instead of computing them.
//!
//! Computing `per_contact` (`queries/experiment_contacts.sql`) is most of the report's work:
//! each exposed contact's first exposure, its messages before and after it, its conversions.
//! Those rows change only when the events do, so compaction (`convoscope compact`, `serve`'s
//! round), which runs when the events have settled, computes them once, for every experiment,
//! with every metric and every slice column, and the report filters and sums that table
//! (`queries/experiment_kept.sql`): the same answer from a table of one row per contact.
//!
//! On disk, under [`EXPERIMENT_CONTACTS_DIR`]:
//! - `<id>/contacts.parquet`: the rows, one directory per build;
//! - `manifest.json`: the build's directory, a fingerprint of what the rows were computed with
//!   (the SQL and the settings it reads: lookback, attribution window, rate card), and every
//!   events file they cover (path, size, last modified).
//!
//! A report reads the table only where it gives what computing would:
//! - the manifest's fingerprint is this run's, and every events file it lists is still there,
//!   unchanged;
//! - events files newer than the table (collectors add them between rounds) are few
//!   ([`newer::MAX_NEWER_SHARE`](super::newer::MAX_NEWER_SHARE)), every file has its rollups,
//!   and the run is not on a cluster (whose executors cannot read rows computed here): the
//!   report computes the rows of the contacts they touch and reads the table's for the rest
//!   ([`newer`](super::newer));
//! - the run has no campaign filter (one changes which send is a contact's first exposure);
//! - the run is not a tenant's (the table holds every tenant's contacts) and reads the
//!   rollups (a run without them is the reference the others are checked against).
//!
//! Otherwise (a merge or an erasure replaced files since, other settings) it computes
//! `per_contact`, as a store without the table does, until the next round builds the table.
//!
//! A build writes its directory, then the manifest, and deletes the directories of builds
//! before the one it replaces: a report that read the previous manifest may still be reading
//! that one. Erasure and retention delete the table with the events it was computed from
//! ([`crate::store::Storage::delete_experiment_contacts`]).

use std::sync::Arc;

use arrow::array::RecordBatch;
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::{ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl};
use datafusion::execution::context::SessionContext;
use datafusion::scalar::ScalarValue;
use futures::TryStreamExt;
use object_store::{ObjectMeta, ObjectStoreExt, PutPayload};
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::super::params::Bindings;
use super::super::{Param, Params};
use crate::analytics::Analytics;
use crate::error::{Error, Result};
use crate::experiments::Metric;
use crate::store::{EXPERIMENT_CONTACTS_DIR, Storage};

/// The common table expressions that compute `per_contact`.
pub(crate) const CONTACTS_SQL: &str = include_str!("../../../../queries/experiment_contacts.sql");

/// `per_contact` read from the kept table instead.
pub(crate) const KEPT_SQL: &str = include_str!("../../../../queries/experiment_kept.sql");

/// The table's name in the report's session.
pub(super) const TABLE: &str = "experiment_contacts";

/// The manifest's name in [`EXPERIMENT_CONTACTS_DIR`].
const MANIFEST: &str = "manifest.json";

/// The statement a build runs.
pub(super) fn build_sql() -> String {
    format!("{CONTACTS_SQL}\nSELECT * FROM per_contact")
}

/// What a build read and wrote.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Manifest {
    /// The build's directory under [`EXPERIMENT_CONTACTS_DIR`].
    build: String,
    /// [`fingerprint`] of what the rows were computed with.
    fingerprint: String,
    /// Rows (exposed contacts per experiment).
    contacts: u64,
    /// Every events file the rows were computed from, by path.
    events: Vec<Covered>,
}

/// One events file as a listing shows it: a file rewritten in place has another size or time.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
struct Covered {
    path: String,
    size: u64,
    modified: String,
}

fn covered(files: &[(chrono::NaiveDate, ObjectMeta)]) -> Vec<Covered> {
    files
        .iter()
        .map(|(_, m)| Covered {
            path: m.location.to_string(),
            size: m.size,
            modified: m.last_modified.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true),
        })
        .collect()
}

/// What [`Analytics::keep_experiment_contacts`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kept {
    /// The table already covered every events file.
    Current { contacts: u64 },
    /// It was built from these many events files.
    Built { contacts: u64, events_files: usize },
    /// Events files were merged or erased while it was built, so it was not kept: the next
    /// round builds it.
    Moved,
    /// Not kept for this analytics (a tenant's, or reading the events alone).
    NotKept,
}

/// The parameters a build binds: every experiment and first exposure, every metric, both slice
/// columns (`$by` `'*'`).
pub(super) fn build_values(b: &Bindings) -> Vec<(&'static str, ScalarValue)> {
    let all = Params::default();
    let text = |s: String| ScalarValue::Utf8(Some(s));
    super::SPEC
        .params
        .iter()
        .map(|p| {
            let v = match p {
                Param::By => text("*".into()),
                Param::Metrics => text(Metric::ALL.iter().fold(",".to_string(), |s, m| s + m.as_str() + ",")),
                other => all.value(*other, b),
            };
            (p.name(), v)
        })
        .collect()
}

/// What the rows depend on besides the events: the statement and every value bound to it
/// (the lookback and attribution window among them), and the rate card it prices with.
fn fingerprint(a: &Analytics, b: &Bindings) -> String {
    let mut h = Sha256::new();
    h.update(build_sql().as_bytes());
    for (name, value) in build_values(b) {
        h.update(format!("\n{name}={value:?}").as_bytes());
    }
    h.update(format!("\n{:?}", a.costs.rate_card).as_bytes());
    h.finalize().iter().take(16).map(|b| format!("{b:02x}")).collect()
}

fn manifest_path(storage: &Storage) -> object_store::path::Path {
    storage.path(&format!("{EXPERIMENT_CONTACTS_DIR}/{MANIFEST}"))
}

/// The manifest, if there is one; one that cannot be read counts as none (the report computes,
/// and the next build writes a good one).
async fn manifest(storage: &Storage) -> Result<Option<Manifest>> {
    let bytes = match storage.store.get(&manifest_path(storage)).await {
        Ok(got) => got.bytes().await?,
        Err(object_store::Error::NotFound { .. }) => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    match serde_json::from_slice(&bytes) {
        Ok(m) => Ok(Some(m)),
        Err(e) => {
            tracing::warn!(error = %e, "the experiment table's manifest is unreadable; reports compute its rows");
            Ok(None)
        }
    }
}

/// Whether this analytics can keep or read the table at all.
fn eligible(a: &Analytics) -> bool {
    a.rollups && a.tenant().is_none()
}

/// How the kept table stands to the store's events files ([`Analytics::experiment_table`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Coverage {
    /// It covers every events file: the report reads it alone.
    Whole,
    /// It covers some; these many newer ones it does not, and the report reads them as the
    /// rows of the contacts they touch ([`newer`](super::newer)).
    Behind { files: usize },
    /// No table, or one the report cannot read: another layout of the files than the table's
    /// (a merge, an erasure), other settings, or too much newer data.
    No,
}

/// The manifest of the kept table and the events files newer than it, where the report can read
/// it: computed with this run's settings, every file it covers still there unchanged, and the
/// newer files (if any) few enough and with their rollups.
async fn standing(a: &Analytics, b: &Bindings) -> Result<Option<(Manifest, Vec<ObjectMeta>)>> {
    if !eligible(a) {
        return Ok(None);
    }
    let Some(m) = manifest(&a.storage).await? else { return Ok(None) };
    if m.fingerprint != fingerprint(a, b) {
        return Ok(None);
    }
    let files = a.storage.list_event_files().await?;
    let now: std::collections::HashSet<Covered> = covered(&files).into_iter().collect();
    if !m.events.iter().all(|c| now.contains(c)) {
        return Ok(None);
    }
    let old: std::collections::HashSet<&str> = m.events.iter().map(|c| c.path.as_str()).collect();
    let newer: Vec<ObjectMeta> =
        files.into_iter().map(|(_, f)| f).filter(|f| !old.contains(f.location.as_ref())).collect();
    if newer.is_empty() {
        return Ok(Some((m, newer)));
    }
    // The touched contacts' rows are held in this process, which a cluster's executors cannot
    // read (`crate::analytics::materialize`).
    if a.distributed() {
        return Ok(None);
    }
    let (new_bytes, old_bytes) =
        (newer.iter().map(|f| f.size).sum::<u64>(), m.events.iter().map(|c| c.size).sum::<u64>());
    if new_bytes as f64 > super::newer::MAX_NEWER_SHARE * old_bytes as f64 {
        return Ok(None);
    }
    // The newer files are read through the rollups, the touched contacts' rows from them too.
    Ok(a.rollups_cover().await?.then_some((m, newer)))
}

impl Analytics {
    /// How the experiment report's kept table stands to the store, for a run without a
    /// campaign filter (see the module's docs).
    pub async fn experiment_table(&self) -> Result<Coverage> {
        let b = super::super::bindings(self, &Params::default());
        Ok(match standing(self, &b).await? {
            None => Coverage::No,
            Some((_, newer)) if newer.is_empty() => Coverage::Whole,
            Some((_, newer)) => Coverage::Behind { files: newer.len() },
        })
    }

    /// Brings the experiment report's kept table up to date with the events files (see the
    /// module's docs): builds it when the files or the settings changed since the last build.
    pub async fn keep_experiment_contacts(&self) -> Result<Kept> {
        if !eligible(self) {
            return Ok(Kept::NotKept);
        }
        let b = super::super::bindings(self, &Params::default());
        let fingerprint = fingerprint(self, &b);
        let before = covered(&self.storage.list_event_files().await?);
        let old = manifest(&self.storage).await?;
        if let Some(m) = &old
            && m.fingerprint == fingerprint
            && m.events == before
        {
            return Ok(Kept::Current { contacts: m.contacts });
        }
        let (schema, batches) = self.read_with(&build_sql(), build_values(&b)).await?;
        // Files flushed meanwhile may or may not be in the rows: the manifest leaves them out,
        // so a report reads them as newer files (their contacts' rows computed again, the same
        // either way). A file merged or erased meanwhile leaves the rows unknown.
        let after: std::collections::HashSet<Covered> =
            covered(&self.storage.list_event_files().await?).into_iter().collect();
        if !before.iter().all(|c| after.contains(c)) {
            return Ok(Kept::Moved);
        }
        let contacts = batches.iter().map(|b| b.num_rows() as u64).sum();
        let build = format!("{}-{}", chrono::Utc::now().format("%Y%m%dT%H%M%S%.6fZ"), &fingerprint[..8]);
        let file = self.storage.path(&format!("{EXPERIMENT_CONTACTS_DIR}/{build}/contacts.parquet"));
        let schema = batches.first().map(|b| b.schema()).unwrap_or(schema);
        self.storage.store.put(&file, PutPayload::from(encode(schema, &batches)?)).await?;
        let events_files = before.len();
        let m = Manifest { build: build.clone(), fingerprint, contacts, events: before };
        let json = serde_json::to_vec(&m).map_err(|e| Error::Invalid(e.to_string()))?;
        self.storage.store.put(&manifest_path(&self.storage), PutPayload::from(json)).await?;
        // Every earlier build but the one just replaced, which a report may still be reading.
        let keep = [Some(build), old.map(|o| o.build)];
        let dir = self.storage.path(EXPERIMENT_CONTACTS_DIR);
        let all: Vec<ObjectMeta> = self.storage.store.list(Some(&dir)).try_collect().await?;
        for o in all {
            let rel = o.location.as_ref().strip_prefix(dir.as_ref()).unwrap_or_default().trim_start_matches('/');
            let of_build = rel.split_once('/').map(|(b, _)| b);
            if of_build.is_some_and(|b| !keep.iter().flatten().any(|k| k == b)) {
                self.storage.delete_if_present(&o.location).await?;
            }
        }
        Ok(Kept::Built { contacts, events_files })
    }
}

/// The rows as Parquet: zstd, in row groups large enough that a build is a few of them,
/// written batch by batch (not copied into one first).
fn encode(schema: arrow::datatypes::SchemaRef, batches: &[RecordBatch]) -> Result<Vec<u8>> {
    let props = WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::try_new(3).unwrap_or_default()))
        .set_max_row_group_row_count(Some(crate::store::COMPACT_ROW_GROUP_ROWS))
        .build();
    crate::store::batches_parquet_bytes(schema, batches, props)
}

/// The experiment report's statement for this run: over the kept table (registered in `ctx` as
/// `experiment_contacts`) where it covers the store and the run can read it, else computing
/// `per_contact`.
pub(super) async fn statement(a: &Analytics, ctx: &SessionContext, params: &Params, b: &Bindings) -> Result<String> {
    let computed = || super::super::Report::Experiment.sql();
    if params.campaign.is_some() {
        return Ok(computed());
    }
    let Some((m, newer)) = standing(a, b).await? else {
        tracing::debug!("no experiment table the run can read; the report computes its rows");
        return Ok(computed());
    };
    let url = a.table_url(&format!("{EXPERIMENT_CONTACTS_DIR}/{}", m.build));
    let options = ListingOptions::new(Arc::new(ParquetFormat::default())).with_file_extension(".parquet");
    let cfg = ListingTableConfig::new(ListingTableUrl::parse(&url)?)
        .with_listing_options(options)
        .infer_schema(&ctx.state())
        .await?;
    ctx.register_table(TABLE, Arc::new(ListingTable::try_new(cfg)?))?;
    if !newer.is_empty() {
        let touched = super::newer::register(a, ctx, &newer, b).await?;
        tracing::debug!(files = newer.len(), touched, "the experiment report reads files newer than its table");
    }
    Ok(super::super::Report::Experiment.spec().sql.replace("{{experiment_contacts}}", KEPT_SQL))
}
