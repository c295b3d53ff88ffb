//! `POST /v1/events`: first-party events as a JSON array or NDJSON, role `ingest`.

use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::HeaderMap;
use axum::routing::post;
use axum::{Extension, Json, Router};
use bytes::Bytes;
use serde_json::{Value, json};

use super::audit::Note;
use super::auth::Role;
use super::{ApiError, AppState};
use crate::config::Tenant;
use crate::event::Event;
use crate::ingest;

/// Makes a tenant's event its own: ids it leaves out are filled in where the tenant has only
/// one of that kind, and an id that is not the tenant's refuses the whole request (403: a
/// tenant's token writes only its own rows). An event still owned by nobody (a tenant with
/// several numbers, and neither id named) is a 400 saying which to name. Its `event_id` is
/// kept under the tenant's name (`acme:order-1`): ids are deduplicated across the store, and
/// one brand's `order-1` is not another's retry.
fn stamp(tenant: &Tenant, e: &mut Event) -> Result<(), ApiError> {
    let foreign = |what: &str, id: &str| {
        ApiError::Forbidden(format!("{what} {id:?} of event {:?} is not tenant {:?}'s", e.event_id, tenant.name))
    };
    if let Some(a) = e.account_id.as_deref().filter(|a| !tenant.account_ids.iter().any(|x| x == a)) {
        return Err(foreign("account_id", a));
    }
    if let Some(p) = e.phone_number_id.as_deref().filter(|p| !tenant.phone_number_ids.iter().any(|x| x == p)) {
        return Err(foreign("phone_number_id", p));
    }
    if let (None, [only]) = (&e.account_id, tenant.account_ids.as_slice()) {
        e.account_id = Some(only.clone());
    }
    if let (None, [only]) = (&e.phone_number_id, tenant.phone_number_ids.as_slice()) {
        e.phone_number_id = Some(only.clone());
    }
    if !tenant.owns(e.account_id.as_deref(), e.phone_number_id.as_deref()) {
        return Err(ApiError::bad_request(
            "invalid",
            format!(
                "event {:?} names neither an account_id nor a phone_number_id, and tenant {:?} has several: name one",
                e.event_id, tenant.name
            ),
        ));
    }
    e.event_id = format!("{}:{}", tenant.name, e.event_id);
    Ok(())
}

pub fn router() -> Router<AppState> {
    Router::new().route("/v1/events", post(post_events))
}

/// Keeps every valid item, reports the others by index:
/// `{"accepted": n, "duplicates": d, "rejected": [{"index": i, "error": "..."}]}`.
async fn post_events(
    State(app): State<AppState>,
    Extension(note): Extension<Note>,
    headers: HeaderMap,
    raw: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    let caller = match app.tokens.authorize(&headers, Role::Ingest) {
        Ok(c) => {
            note.caller(&c);
            c
        }
        Err(e) => {
            app.metrics.refused("api", "unauthorized");
            return Err(e);
        }
    };
    let raw = super::webhooks::body(&app, "api", raw)?;
    let mut batch = ingest::first_party::parse(&app.normalizer, &raw, "api").map_err(|e| {
        app.metrics.refused("api", "malformed");
        ApiError::bad_request("malformed", e.0)
    })?;
    if let Some(tenant) = &caller.tenant {
        for e in &mut batch.events {
            if let Err(err) = stamp(tenant, e) {
                app.metrics.refused("api", "forbidden");
                return Err(err);
            }
        }
    }
    let rejected: Vec<Value> = batch
        .rejected
        .iter()
        .map(|r| json!({"index": r.index, "error": r.message, "reason": r.reason.as_str()}))
        .collect();
    let done = app.ingest("api", batch).await?;
    note.count(done.accepted());
    Ok(Json(json!({
        "accepted": done.accepted(),
        "duplicates": done.duplicate.len() - done.accepted(),
        "rejected": rejected,
    })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tenants_events_are_stamped_or_refused() {
        let t = Tenant {
            name: "acme".into(),
            account_ids: vec!["waba-1".into()],
            phone_number_ids: vec!["p1".into(), "p2".into()],
            ..Default::default()
        };
        let mut e = Event::new("e1".into(), "conversion", 0, 0, "api");
        stamp(&t, &mut e).expect("stamped");
        assert_eq!((e.account_id.as_deref(), e.phone_number_id.as_deref()), (Some("waba-1"), None));
        assert_eq!(e.event_id, "acme:e1", "a tenant's ids are its own");
        let mut other = Event::new("e2".into(), "conversion", 0, 0, "api");
        other.phone_number_id = Some("p9".into());
        assert!(matches!(stamp(&t, &mut other), Err(ApiError::Forbidden(m)) if m.contains("p9")));
        let phones_only = Tenant { account_ids: vec![], ..t };
        let mut unowned = Event::new("e3".into(), "conversion", 0, 0, "api");
        assert!(matches!(stamp(&phones_only, &mut unowned), Err(ApiError::BadRequest { .. })));
    }
}
