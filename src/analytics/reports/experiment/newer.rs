//! The kept experiment table behind the store: events files newer than it are read as the rows
//! of the contacts they touch, computed again, in place of the table's rows of those contacts.
//!
//! Between compactions collectors only add events files; a merge, an erasure or retention
//! replaces or removes them, and then the table is built again (or deleted). A contact's rows
//! change only through its own events, so the contacts the new files touch
//! (`queries/experiment_touched.sql`) are the only ones whose rows can differ. Theirs are
//! computed from all of their data: `queries/experiment_contacts.sql` over the facts tables cut
//! down to their exposures, the messages of theirs and the conversions and opt-outs of theirs.
//! The newer files are read through their rollups, and the report reads them this way only
//! where every events file has its rollups (the facts tables are then the rollups).
//!
//! The report then reads the table's rows of the other contacts and the touched contacts'
//! computed rows as the table (`queries/experiment_newer.sql`, held in memory for the run).

use std::sync::Arc;

use datafusion::dataframe::DataFrame;
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::{ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl};
use datafusion::execution::context::SessionContext;
use object_store::ObjectMeta;

use super::super::params::Bindings;
use crate::analytics::executor::Work;
use crate::analytics::facts::Fact;
use crate::analytics::materialize::held;
use crate::analytics::{Analytics, STORE_URL, views};
use crate::error::{Error, Result};
use crate::rollup::Kind;

/// The contacts the newer files touch.
const TOUCHED_SQL: &str = include_str!("../../../../queries/experiment_touched.sql");

/// The kept rows of the other contacts and the touched ones' computed again.
const NEWER_SQL: &str = include_str!("../../../../queries/experiment_newer.sql");

/// Newer files above this share of the bytes the table covers are not read this way: the
/// report computes every row instead. The touched contacts' rows cost more the more contacts
/// the files touch (10 million events, compacted: 0.3 s to compute them again for 10,000 newer
/// events, 0.4 s for 300,000, against 1.8 s for every row); a merge that has not yet deleted
/// the files it replaced shows as a whole day of newer files, most of the contacts.
pub(super) const MAX_NEWER_SHARE: f64 = 0.05;

/// The rollups of the newer files, as the touched contacts' SQL names them.
const NEW_ROLLUPS: [(Kind, &str); 3] =
    [(Kind::Exposures, "new_exposures"), (Kind::Messages, "new_messages"), (Kind::ContactEvents, "new_contact_events")];

/// The facts tables the touched contacts' rows are computed from, cut down to their rows: each
/// rollup's rows whose key column is one of theirs (a message's by its key, since only some of
/// its rows name the contact).
const SCOPES: [(Fact, &str, &str); 3] = [
    (Fact::Exposures, "contact", "touched_contacts"),
    (Fact::Messages, "message_key", "touched_messages"),
    (Fact::ContactEvents, "contact", "touched_contacts"),
];

/// The touched contacts' messages.
const MESSAGES_SQL: &str =
    "SELECT DISTINCT message_key FROM message_facts WHERE contact IN (SELECT contact FROM touched_contacts)";

/// Replaces `experiment_contacts` (the kept table) in `ctx` by the table with the rows of the
/// contacts the events files `newer` than it touch (each file with its rollups) computed again
/// with `b`'s build values, held in memory. Returns how many contacts were touched.
pub(super) async fn register(a: &Analytics, ctx: &SessionContext, newer: &[ObjectMeta], b: &Bindings) -> Result<usize> {
    for (kind, name) in NEW_ROLLUPS {
        let urls = newer
            .iter()
            .filter_map(|m| kind.path_of(m.location.as_ref()))
            .map(|p| ListingTableUrl::parse(format!("{STORE_URL}/{p}")))
            .collect::<std::result::Result<Vec<_>, _>>()?;
        let options = ListingOptions::new(Arc::new(ParquetFormat::default())).with_file_extension(".parquet");
        let cfg = ListingTableConfig::new_with_multi_paths(urls)
            .with_listing_options(options)
            .with_schema(views(kind.schema()));
        ctx.register_table(name, Arc::new(ListingTable::try_new(cfg)?))?;
    }
    let contacts = hold(a, ctx, "touched_contacts", a.plan(ctx, TOUCHED_SQL, Vec::new()).await?).await?;
    hold(a, ctx, "touched_messages", a.plan(ctx, MESSAGES_SQL, Vec::new()).await?).await?;
    for (fact, key, of) in SCOPES {
        let all = ctx
            .deregister_table(fact.table())?
            .ok_or_else(|| Error::Invalid(format!("no {} table to cut down", fact.table())))?;
        let whole = format!("all_{}", fact.table());
        ctx.register_table(whole.as_str(), all)?;
        let cut = ctx.sql(&format!("SELECT * FROM {whole} WHERE {key} IN (SELECT {key} FROM {of})")).await?;
        ctx.register_table(fact.table(), cut.into_view())?;
    }
    let build = a.plan(ctx, &super::kept::build_sql(), super::kept::build_values(b)).await?;
    hold(a, ctx, "fresh_contacts", build).await?;
    let kept = ctx
        .deregister_table(super::kept::TABLE)?
        .ok_or_else(|| Error::Invalid("no kept experiment table to read".into()))?;
    ctx.register_table("kept_contacts", kept)?;
    hold(a, ctx, super::kept::TABLE, a.plan(ctx, NEWER_SQL, Vec::new()).await?).await?;
    Ok(contacts)
}

/// Computes `plan` and registers its rows in `ctx` as the in-memory table `name`; returns how
/// many rows it holds.
async fn hold(a: &Analytics, ctx: &SessionContext, name: &str, plan: DataFrame) -> Result<usize> {
    let (schema, batches) = a.execute(plan, Work::Report, None).await?;
    let rows = batches.iter().map(|b| b.num_rows()).sum();
    ctx.register_table(name, Arc::new(held(schema, vec![batches])?))?;
    Ok(rows)
}
