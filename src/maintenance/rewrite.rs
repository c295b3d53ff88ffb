//! Rewriting one events file with some of its rows: what erasure and retention do to a file that
//! holds rows to remove beside rows to keep, with compaction's discipline (write, check, then
//! delete).

use arrow::array::RecordBatch;
use object_store::ObjectStoreExt;
use object_store::path::Path as ObjPath;

use crate::error::{Error, Result};
use crate::rollup::Kind;
use crate::store::Storage;

/// Replaces the events file at `old` (of `date`) by `kept`, some of its rows, as `name`: the
/// new file and its rollups written and its row count checked from its footer, then the old
/// file and its rollups deleted; with no row kept, the old file and its rollups deleted only.
/// `name` must derive from the old file and the operation, so a rerun after a crash writes the
/// same file again rather than a second copy of its rows.
pub(super) async fn replace(
    storage: &Storage,
    old: &ObjPath,
    date: chrono::NaiveDate,
    kept: Vec<RecordBatch>,
    name: &str,
) -> Result<()> {
    let rows: usize = kept.iter().map(RecordBatch::num_rows).sum();
    if rows > 0 {
        let written = storage.write_batches(kept, name).await?;
        let path = storage.event_file(date, name);
        if written.iter().map(|(_, n)| n).sum::<usize>() != rows || written.iter().any(|(p, _)| *p != path) {
            return Err(Error::Invalid(format!("rewriting {old} gave files other than {path}; nothing deleted")));
        }
        let bytes = storage.store.get(&path).await?.bytes().await?;
        let footer = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(bytes)?;
        let stored = usize::try_from(footer.metadata().file_metadata().num_rows()).unwrap_or(0);
        if stored != rows {
            return Err(Error::Invalid(format!("{path} holds {stored} rows, not {rows}; {old} kept")));
        }
        if path == *old {
            return Ok(());
        }
    }
    storage.store.delete(old).await?;
    for kind in Kind::ALL {
        if let Some(rollup) = kind.path_of(old.as_ref()) {
            storage.delete_if_present(&ObjPath::from(rollup)).await?;
        }
    }
    Ok(())
}
