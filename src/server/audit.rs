//! The audit trail at the door: one record ([`crate::audit::Record`]) per `/v1` call and page
//! sign-in, appended to the log before the answer leaves.
//!
//! The middleware knows who called (the bearer token or page session), the route as declared
//! (`/v1/consent/{phone}`, never the number in the path) and the status; a handler adds what
//! only it knows (the report, the statement, how many) through the [`Note`] it finds in the
//! request's extensions.

use std::sync::{Arc, Mutex};

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;

use super::AppState;
use super::auth::{Caller, Sessions, bearer};
use crate::audit::Record;

/// What a handler adds to its call's audit record.
#[derive(Clone, Default)]
pub struct Note(Arc<Mutex<Noted>>);

#[derive(Default)]
struct Noted {
    caller: Option<Caller>,
    target: Option<String>,
    detail: Option<String>,
    count: Option<i64>,
    flush_after: bool,
}

impl Note {
    fn with(&self, f: impl FnOnce(&mut Noted)) {
        if let Ok(mut n) = self.0.lock() {
            f(&mut n);
        }
    }

    /// The caller the handler authorized: what the record names, whatever else the request
    /// carried (a sign-in form's token, a session cookie beside a bearer token).
    pub fn caller(&self, caller: &Caller) {
        self.with(|n| n.caller = Some(caller.clone()));
    }

    /// What the call was about: a report, an experiment, a contact's key (numbers redacted
    /// here: a name in a request is the caller's text).
    pub fn target(&self, target: impl Into<String>) {
        self.with(|n| n.target = Some(crate::pii::redact_numbers(&target.into())));
    }

    /// Its detail: a statement (numbers redacted here), what was removed.
    pub fn detail(&self, detail: impl Into<String>) {
        self.with(|n| n.detail = Some(crate::pii::redact_numbers(&detail.into())));
    }

    /// Flush the log once the record is in it: a call that empties the log leaves it empty,
    /// its own record flushed too.
    pub fn flush_after(&self) {
        self.with(|n| n.flush_after = true);
    }

    /// How many: events accepted, rows removed, messages sent.
    pub fn count(&self, count: usize) {
        self.with(|n| n.count = Some(i64::try_from(count).unwrap_or(i64::MAX)));
    }
}

/// Whether a path's calls are audited: the API and the page's sign-in.
fn audited(path: &str) -> bool {
    path.starts_with("/v1/") || path == "/login"
}

/// Records the call after its handler answered, then gives the answer back.
pub async fn record(State(app): State<AppState>, mut req: Request, next: Next) -> Response {
    if !audited(req.uri().path()) {
        return next.run(req).await;
    }
    let at = crate::event::now_micros();
    let route = req.extensions().get::<MatchedPath>().map_or("(no route)", |m| m.as_str()).to_string();
    let action = format!("{} {route}", req.method());
    let headers = req.headers();
    let presented = match bearer(headers) {
        Some(token) => Some(app.tokens.caller_of(token).ok_or_else(|| app.tokens.id_of(token))),
        None => Sessions::cookie(headers).and_then(|c| app.sessions.caller(c, &app.tokens)).map(Ok),
    };
    let note = Note::default();
    req.extensions_mut().insert(note.clone());
    let response = next.run(req).await;
    let status = response.status().as_u16();
    let noted = note.0.lock().map(|mut n| std::mem::take(&mut *n)).unwrap_or_default();
    let (token_id, role, tenant) = match noted.caller.map(Ok).or(presented) {
        Some(Ok(c)) => (c.token_id.clone(), c.role.as_str().to_string(), c.tenant_name().to_string()),
        // A token nobody configured: its id, so repeated guesses show as one caller.
        Some(Err(id)) => (id, "-".into(), "-".into()),
        None => ("-".into(), "-".into(), "-".into()),
    };
    app.audit(Record {
        at,
        token_id,
        role,
        tenant,
        action,
        target: noted.target,
        detail: noted.detail,
        outcome: Record::outcome_of(status).into(),
        status: i32::from(status),
        count: noted.count,
    })
    .await;
    if noted.flush_after
        && let Err(e) = app.flush_now().await
    {
        tracing::warn!(error = %e, "could not flush the record of a flush; it stays in the log until the next one");
    }
    response
}
