//! `POST /v1/admin/erase` (role `admin`): erases one contact from the store
//! ([`crate::maintenance::erase()`]); a tenant's token erases its tenant's rows only.

use std::sync::Arc;

use axum::extract::State;
use axum::extract::rejection::JsonRejection;
use axum::http::HeaderMap;
use axum::routing::post;
use axum::{Extension, Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

use super::audit::Note;
use super::auth::Role;
use super::{ApiError, App, AppState};
use crate::config::Tenant;
use crate::maintenance::{EraseRequest, Erased, Lease, STEP};
use crate::store::tombstones::Tombstone;

pub fn router() -> Router<AppState> {
    Router::new().route("/v1/admin/erase", post(erase))
}

/// How long an erasure waits for the maintenance lease: a compaction round holds it for its
/// merges and its queries' grace period.
const LEASE_WAIT: std::time::Duration = std::time::Duration::from_secs(600);

#[derive(Deserialize)]
struct EraseBody {
    /// The contact's phone number (pseudonymised at once, never stored or logged).
    contact: String,
    /// The tenant whose rows alone to erase (an operator's choice; a tenant's token is its own).
    #[serde(default)]
    tenant: Option<String>,
}

/// `{"contact": "+E164", "tenant"?: "name"}` → `{"contact_key", "files", "rows", "tenant"}`.
async fn erase(
    State(app): State<AppState>,
    Extension(note): Extension<Note>,
    headers: HeaderMap,
    body: Result<Json<EraseBody>, JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    let caller = app.tokens.authorize(&headers, Role::Admin)?;
    note.caller(&caller);
    let Json(body) = body.map_err(|e| ApiError::bad_request("malformed", e.body_text()))?;
    let tenant = match (&caller.tenant, body.tenant.as_deref()) {
        (Some(own), Some(named)) if named != own.name => {
            return Err(ApiError::Forbidden(format!("this token erases tenant {:?}'s rows only", own.name)));
        }
        (Some(own), _) => Some(own.clone()),
        (None, Some(named)) => Some(
            app.config
                .tenants
                .iter()
                .find(|t| t.name == named)
                .cloned()
                .map(Arc::new)
                .ok_or_else(|| ApiError::NotFound(format!("no tenant {named:?}")))?,
        ),
        (None, None) => None,
    };
    let (contact_key, _) = app
        .normalizer
        .pii()
        .contact(&body.contact)
        .ok_or_else(|| ApiError::bad_request("invalid", "`contact` is not a phone number"))?;
    note.target(&contact_key);
    let erased = app.erase(contact_key.clone(), tenant.as_deref()).await?;
    note.detail(json!({"files": erased.files, "rows": erased.rows}).to_string());
    note.count(erased.rows);
    Ok(Json(json!({
        "contact_key": contact_key,
        "tenant": tenant.as_ref().map(|t| t.name.clone()),
        "files": erased.files,
        "rows": erased.rows,
    })))
}

impl App {
    /// Erases a contact (of every row, or of `tenant`'s rows) under the maintenance lease:
    /// from now on its events are dropped here, and within a minute on every collector.
    pub async fn erase(&self, contact_key: String, tenant: Option<&Tenant>) -> Result<Erased, ApiError> {
        let tombstone = Tombstone::new(contact_key, tenant);
        if let Some(erasures) = &self.erasures {
            // The compaction task runs it between its rounds, under its own lease.
            let (done, answer) = tokio::sync::oneshot::channel();
            let gone = || ApiError::Unavailable("the service is stopping; erase again once it is back".into());
            erasures.send(EraseRequest { tombstone, done }).await.map_err(|_| gone())?;
            return Ok(answer.await.map_err(|_| gone())??);
        }
        let holder = self.wal.log_id().to_string();
        let mut lease = Lease::new(self.storage.clone(), holder.clone());
        lease.wait_for(STEP, LEASE_WAIT).await?;
        let done = crate::maintenance::erase(&self.storage, &self.tombstones, tombstone, &mut lease).await;
        lease.release().await;
        // No upkeep task sweeps again once every collector knows the tombstone: this does.
        let (storage, tombstones) = (self.storage.clone(), self.tombstones.clone());
        tokio::spawn(async move {
            tokio::time::sleep(crate::maintenance::SETTLE).await;
            let mut lease = Lease::new(storage.clone(), holder);
            let settled = match lease.wait_for(STEP, LEASE_WAIT).await {
                Ok(()) => crate::maintenance::settle(&storage, &tombstones, &mut lease).await.map(|_| ()),
                Err(e) => Err(e),
            };
            lease.release().await;
            if let Err(e) = settled {
                tracing::warn!(error = %e, "an erasure's settling sweep failed; `convoscope erase` again finishes it");
            }
        });
        Ok(done?)
    }
}
