//! Meta WhatsApp Cloud API webhooks.
//!
//! One POST carries `entry[] → changes[] → value` with `statuses[]` (receipts of what we
//! sent) and `messages[]` (what customers sent), up to 1000 of them, or a change of another
//! field (templates, the account, preferences, echoes, ad events). Every level is iterated;
//! unknown JSON fields are ignored; an unknown status or message type is kept with its raw
//! type in `attributes`; a field convoscope does not store is counted as refused.
//!
//! 360dialog and Gupshup (v3) send this same JSON; [`parse_as`] reads it for them under their
//! own `source`. Event ids stay `meta:…`: the fact is Meta's whichever way it came.
//!
//! The JSON is read into the structs of `wire.rs`; `messages.rs` turns statuses, customer
//! messages and echoes into events, `account.rs` every other field.

mod account;
mod messages;
mod wire;

use serde::Deserialize;
use serde_json::{Map, Value};

use super::{Batch, Normalizer, ParseError, RejectReason, Rejected, received_now};
use crate::event::Event;
use crate::experiments::parse_callback_data;
use wire::{AutomaticEvents, Change, Echoes, Entry, Envelope, MessagesValue, TemplateUpdate, Typed, UserPreferences};

/// Normalises one verified Meta webhook body.
pub fn parse(n: &Normalizer, body: &[u8]) -> Result<Batch, ParseError> {
    parse_as(n, body, "meta")
}

/// Normalises a body of Meta's JSON that came through `source` (`360dialog`, `gupshup`).
pub fn parse_as(n: &Normalizer, body: &[u8], source: &'static str) -> Result<Batch, ParseError> {
    let received = received_now();
    match parse_typed(n, body, received, source) {
        Some(batch) => Ok(batch),
        None => parse_tree(n, body, received, source),
    }
}

/// Both ways of reading `body`, for the fuzz target that checks they agree: the typed reading
/// (`None` where it defers to the other) and the JSON-tree reading.
#[doc(hidden)]
pub fn parse_both(n: &Normalizer, body: &[u8]) -> (Option<Batch>, Result<Batch, ParseError>) {
    let received = received_now();
    (parse_typed(n, body, received, "meta"), parse_tree(n, body, received, "meta"))
}

/// The fast reading: statuses and messages straight into typed structs, with no JSON tree in
/// between (building the tree took a third of the parsing time). It covers bodies whose every
/// change is a `messages` change with a value and gives up (`None`) on anything else, so
/// the tree reading decides every other case, errors included, exactly as it always has.
///
/// Where both readings accept a body they give the same events (fuzzed). The fast one also
/// accepts what the tree refuses only inside fields convoscope never reads, because serde_json
/// skips those without building them: invalid UTF-8, a number out of `f64` range, nesting
/// deeper than 128. The events it returns then are all from well-formed fields.
fn parse_typed(n: &Normalizer, body: &[u8], received: i64, source: &'static str) -> Option<Batch> {
    let mut env: Envelope<Option<MessagesValue>> = serde_json::from_slice(body).ok()?;
    if !env.entry.iter().all(|e| e.changes.iter().all(|c| c.field == "messages" && c.value.is_some())) {
        return None;
    }
    normalise(n, &mut env, received, source, |_, v| Ok(Typed::Messages(v.take().unwrap_or_default()))).ok()
}

/// The general reading: every change's value as a JSON tree, then into the shape its field
/// names; unknown fields are skipped whatever their value.
fn parse_tree(n: &Normalizer, body: &[u8], received: i64, source: &'static str) -> Result<Batch, ParseError> {
    let mut env: Envelope<Value> =
        serde_json::from_slice(body).map_err(|e| ParseError(format!("not a Meta webhook body: {e}")))?;
    // Read from `&Value`, so statuses borrow the tree's strings.
    normalise(n, &mut env, received, source, |field, value| {
        let value = &*value;
        let malformed = |e: serde_json::Error| ParseError(format!("malformed {field} change: {e}"));
        Ok(match field {
            "messages" => Typed::Messages(MessagesValue::deserialize(value).map_err(malformed)?),
            "message_template_status_update"
            | "message_template_quality_update"
            | "template_category_update"
            | "message_template_components_update" => {
                Typed::Template(Box::new(TemplateUpdate::deserialize(value).map_err(malformed)?))
            }
            "user_preferences" => Typed::Preferences(UserPreferences::deserialize(value).map_err(malformed)?),
            "smb_message_echoes" => Typed::Echoes(Echoes::deserialize(value).map_err(malformed)?),
            "automatic_events" => Typed::Automatic(AutomaticEvents::deserialize(value).map_err(malformed)?),
            _ => match account::event_type(field) {
                Some(event_type) if value.is_object() => Typed::Account(event_type, value),
                Some(_) => return Err(ParseError(format!("malformed {field} change: value is not an object"))),
                None => Typed::Ignored,
            },
        })
    })
}

/// The events of `env`, each change's value read by `read`. The envelope is borrowed (its
/// values mutably, so the typed reading can take them) because what `read` returns may borrow
/// from it.
fn normalise<'v, V>(
    n: &Normalizer,
    env: &'v mut Envelope<V>,
    received: i64,
    source: &'static str,
    read: impl Fn(&str, &'v mut V) -> Result<Typed<'v>, ParseError>,
) -> Result<Batch, ParseError> {
    let Envelope { object, entry: entries, gs_app_id } = env;
    if let Some(o) = object.as_deref()
        && o != "whatsapp_business_account"
    {
        return Err(ParseError(format!("unexpected object {o:?}; expected \"whatsapp_business_account\"")));
    }
    let mut batch = Batch::default();
    let mut index = 0;
    for Entry { id, time, changes } in entries {
        for Change { field, value } in changes {
            let account = id.as_deref().or(gs_app_id.as_deref());
            let ctx = Ctx { n, received, source, account, entry_time: time.micros() };
            let at = index;
            index += 1;
            // One malformed change is skipped and counted, and the rest of the body stored: a
            // 400 would make Meta retry the whole batch for days, holding every good status in
            // it. The parser's message may quote a value, so only the field is logged.
            let typed = match read(field, value) {
                Ok(typed) => typed,
                Err(e) => {
                    tracing::warn!(field = %field, change = at, "skipped a malformed change of a Meta webhook; the rest is stored");
                    batch.rejected.push(Rejected { index: at, reason: RejectReason::Malformed, message: e.0 });
                    continue;
                }
            };
            match typed {
                Typed::Messages(v) => {
                    batch.events.reserve(v.statuses.len() + v.messages.len() + v.errors.len());
                    let pnid = v.metadata.phone_number_id;
                    for s in v.statuses {
                        // Gupshup's ping when a callback URL is set is a status with no message.
                        if s.id.is_empty() {
                            batch.rejected.push(Rejected {
                                index: at,
                                reason: RejectReason::InvalidEvent,
                                message: "a status without a message id".into(),
                            });
                            continue;
                        }
                        let status = ctx.status(pnid, s);
                        if status.error_code == Some(STOPPED_MARKETING) {
                            batch.events.push(ctx.n.stopped_marketing(&status));
                        }
                        batch.events.push(status);
                    }
                    for m in v.messages {
                        ctx.message(pnid, m, &mut batch.events);
                    }
                    for (i, err) in v.errors.into_iter().enumerate() {
                        batch.events.push(ctx.value_error(pnid, i, err));
                    }
                }
                Typed::Template(v) => batch.events.push(ctx.template(field, *v)),
                Typed::Preferences(v) => {
                    for p in v.user_preferences {
                        match ctx.preference(v.metadata.phone_number_id, p) {
                            Ok(e) => batch.events.push(e),
                            Err(message) => {
                                batch.rejected.push(Rejected { index: at, reason: RejectReason::InvalidEvent, message })
                            }
                        }
                    }
                }
                Typed::Echoes(v) => {
                    for echo in v.message_echoes {
                        batch.events.push(ctx.echo(v.metadata.phone_number_id.as_deref(), echo));
                    }
                }
                Typed::Automatic(v) => {
                    for a in v.automatic_events {
                        batch.events.push(ctx.automatic(v.metadata.phone_number_id.as_deref(), a));
                    }
                }
                Typed::Account(event_type, value) => match ctx.account(field, event_type, value) {
                    Ok(e) => batch.events.push(e),
                    Err(message) => {
                        batch.rejected.push(Rejected { index: at, reason: RejectReason::Malformed, message })
                    }
                },
                Typed::Ignored => {
                    // Counted, so a field subscribed in Meta's app settings and never stored
                    // shows on /metrics rather than vanishing.
                    tracing::debug!(field = %field, "a Meta webhook field convoscope does not store");
                    batch.rejected.push(Rejected {
                        index: at,
                        reason: RejectReason::UnsupportedField,
                        message: format!("field {field} is not stored"),
                    });
                }
            }
        }
    }
    n.check_times(&mut batch, received);
    Ok(batch)
}

/// Meta's error for a marketing message to a person who stopped marketing messages from the
/// business: as good as their opt-out of marketing, which the send path then honours.
const STOPPED_MARKETING: i32 = 131050;

/// What every event of one change shares.
struct Ctx<'a> {
    n: &'a Normalizer,
    received: i64,
    source: &'static str,
    account: Option<&'a str>,
    entry_time: Option<i64>,
}

impl Ctx<'_> {
    fn base(&self, id: String, event_type: &str, occurred: Option<i64>, pnid: Option<&str>) -> Event {
        let mut e = Event::new(
            id,
            event_type,
            occurred.or(self.entry_time).unwrap_or(self.received),
            self.received,
            self.source,
        );
        e.account_id = self.account.map(str::to_string);
        e.phone_number_id = pnid.map(str::to_string);
        e
    }
}

/// A quick-reply payload that carries its variant, as the send path writes it:
/// `exp=<experiment>;variant=<variant>;...` or `<experiment>:<variant>:<choice>`.
fn parse_payload_variant(payload: &str) -> Option<(String, String)> {
    if let (Some(e), Some(v), _) = parse_callback_data(payload) {
        return Some((e, v));
    }
    None
}

/// `meta:<id>:<kind>`, the id of an event from a Meta status or message. A `concat`, one
/// allocation: `format!` was 1.3% of `serve`'s CPU under the status load.
fn event_id(id: &str, kind: &str) -> String {
    ["meta:", id, ":", kind].concat()
}

/// Serialises collected attributes, or `None` when there are none: for keys not known in
/// advance (template updates, first-party events); fixed keys go through `Attributes`.
pub(crate) fn attrs_json(attrs: Map<String, Value>) -> Option<String> {
    // `to_string`, not `Value`'s `Display`: the same compact JSON without going through a
    // formatter per token (this was ~6% of `serve`'s CPU under a status webhook load).
    if attrs.is_empty() { None } else { serde_json::to_string(&attrs).ok() }
}

#[cfg(test)]
mod tests;
