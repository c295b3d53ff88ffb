//! Rollup healing: every events file gets every rollup ([`crate::rollup`]) the reports read,
//! and the rollups of a retired layout are deleted, so a store written by an older version (or
//! another tool) comes up to date without being rewritten.

use object_store::path::Path as ObjPath;
use object_store::{ObjectMeta, ObjectStoreExt};

use super::lease::{Lease, STEP};
use super::merge;
use crate::error::{Error, Result};
use crate::rollup::Kind;
use crate::store::{Storage, encode_rollup};

/// What [`heal_rollups`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Healed {
    /// Rollup files written for events files that lacked them.
    pub written: usize,
    /// Rollup files of a retired layout deleted.
    pub deleted: usize,
}

/// Brings the rollups up to date with the events files: [`write_missing_rollups`], then
/// [`delete_retired_rollups`] (after, so reports never lose a rollup they could read). Each
/// file is written or deleted under `lease`; should it pass to another process, healing stops
/// there (the holder heals the rest).
pub async fn heal_rollups(storage: &Storage, lease: &mut Lease) -> Result<Healed> {
    let written = write_missing_rollups(storage, lease).await?;
    let deleted = delete_retired_rollups(storage, lease).await?;
    Ok(Healed { written, deleted })
}

/// Writes each rollup ([`crate::rollup`]) that an events file lacks: files of versions before
/// that rollup, or written by another tool. Until every file has every rollup, reports read
/// the events instead. Returns how many rollup files were written. Safe beside `serve`: a
/// writer puts a file's rollups before the file, so a file it is writing is never missing one
/// (at worst, one listed between the two listings here gets the same rollups again).
pub async fn write_missing_rollups(storage: &Storage, lease: &mut Lease) -> Result<usize> {
    let have: std::collections::HashSet<String> =
        storage.list_rollup_files().await?.into_iter().map(|(_, m)| m.location.to_string()).collect();
    let mut written = 0;
    for (_, file) in storage.list_event_files().await? {
        let missing: Vec<(Kind, String)> = Kind::ALL
            .into_iter()
            .filter_map(|k| k.path_of(file.location.as_ref()).map(|p| (k, p)))
            .filter(|(_, p)| !have.contains(p))
            .collect();
        if missing.is_empty() {
            continue;
        }
        // Compaction (beside `serve`) may have replaced it since the listing: it needs none.
        let bytes = match storage.store.get(&file.location).await {
            Ok(got) => got.bytes().await?,
            Err(object_store::Error::NotFound { .. }) => continue,
            Err(e) => return Err(e.into()),
        };
        let path = file.location.clone();
        let encoded = tokio::task::spawn_blocking(move || -> Result<Vec<(String, Vec<u8>)>> {
            let events = merge::kept_rows(&path, &bytes, &crate::rollup::EVENT_COLUMNS, None)?;
            missing.into_iter().map(|(k, p)| Ok((p, encode_rollup(k, &events)?))).collect()
        })
        .await
        .map_err(|e| Error::Invalid(format!("rollup task failed: {e}")))??;
        for (p, bytes) in encoded {
            if !lease.hold_until(STEP).await? {
                return Ok(written);
            }
            storage.store.put(&ObjPath::from(p.as_str()), bytes.into()).await?;
            written += 1;
        }
    }
    Ok(written)
}

/// Deletes the files of rollups in a layout no report reads ([`crate::rollup::RETIRED_DIRS`]),
/// which retention, listing only the current rollups, would never delete. Returns how many.
pub async fn delete_retired_rollups(storage: &Storage, lease: &mut Lease) -> Result<usize> {
    use futures::TryStreamExt;
    let mut deleted = 0;
    for dir in crate::rollup::RETIRED_DIRS {
        let files: Vec<ObjectMeta> = storage.store.list(Some(&storage.path(dir))).try_collect().await?;
        for f in files {
            if !lease.hold_until(STEP).await? {
                return Ok(deleted);
            }
            match storage.store.delete(&f.location).await {
                Ok(()) => deleted += 1,
                Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(e.into()),
            }
        }
    }
    Ok(deleted)
}
