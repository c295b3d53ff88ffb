//! `GET /v1/consent/{phone}` (role `read`): a contact's consent history and the state the send
//! path applies to it now. A tenant's token sees its own rows of the contact only.

use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::routing::get;
use axum::{Extension, Json, Router};
use serde_json::{Value, json};

use super::audit::Note;
use super::auth::Role;
use super::{ApiError, AppState};
use crate::analytics::consent::{Change, history};

pub fn router() -> Router<AppState> {
    Router::new().route("/v1/consent/{phone}", get(consent))
}

/// The categories Meta prices and the send path checks.
const CATEGORIES: [&str; 3] = ["marketing", "utility", "authentication"];

/// `{"contact_key", "history": [{at, change, source, category}], "now": {state, since, sends}}`.
async fn consent(
    State(app): State<AppState>,
    Extension(note): Extension<Note>,
    headers: HeaderMap,
    Path(phone): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let caller = app.tokens.authorize(&headers, Role::Read)?;
    note.caller(&caller);
    let (contact_key, _) = app
        .normalizer
        .pii()
        .contact(&phone)
        .ok_or_else(|| ApiError::bad_request("invalid", "the path must end in a phone number"))?;
    note.target(&contact_key);
    let mut changes = history(&app.analytics_for(&caller), &contact_key).await.map_err(ApiError::Internal)?;
    // An erasure is part of the history where the caller may see it: every erasure for the
    // operator, its own for a tenant.
    // The erasures the caller may see: every one for the operator, its own for a tenant; the
    // latest one is the one in force.
    let stone = app
        .tombstones
        .of(&contact_key)
        .into_iter()
        .filter(|t| match &caller.tenant {
            None => true,
            Some(own) => t.tenant.as_deref() == Some(own.name.as_str()),
        })
        .max_by_key(|t| t.erased_at);
    if let Some(t) = &stone {
        let at = |micros| crate::event::micros_to_datetime(micros).to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        changes.push(Change { at: at(t.erased_at), change: "erased".into(), source: "erasure".into(), category: None });
        if let Some(r) = t.reopened_at {
            changes.push(Change { at: at(r), change: "opt_in".into(), source: "first_party".into(), category: None });
            changes.dedup();
        }
        changes.sort_by(|a, b| a.at.cmp(&b.at));
    }
    note.count(changes.len());
    // The state now, as the send path decides it: per category, the latest change of that
    // category or of every category; an erasure not followed by an opt-in refuses all.
    let erased = stone.as_ref().is_some_and(|t| t.reopened_at.is_none());
    let latest = changes.iter().rev().find(|c| c.change != "erased");
    let state = match (erased, latest.map(|c| c.change.as_str())) {
        (true, _) => "erased",
        (false, Some("opt_in")) => "opted_in",
        (false, Some(_)) => "opted_out",
        (false, None) => "no_record",
    };
    let sends: serde_json::Map<String, Value> = CATEGORIES
        .iter()
        .map(|c| {
            let applies =
                changes.iter().rev().find(|x| x.change != "erased" && x.category.as_deref().is_none_or(|xc| xc == *c));
            let allowed = match (erased, applies.map(|x| x.change.as_str())) {
                (true, _) => false,
                (false, Some("opt_in")) => true,
                (false, Some(_)) => false,
                (false, None) => !app.config.require_opt_in.iter().any(|r| r == c),
            };
            ((*c).to_string(), json!(allowed))
        })
        .collect();
    Ok(Json(json!({
        "contact_key": contact_key,
        "history": changes,
        "now": {
            "state": state,
            "since": latest.map(|c| c.at.clone()).or_else(|| stone.as_ref().map(|t| crate::event::micros_to_datetime(t.erased_at).to_rfc3339_opts(chrono::SecondsFormat::Secs, true))),
            "sends": sends,
            "requires_opt_in": app.config.require_opt_in,
        },
    })))
}
