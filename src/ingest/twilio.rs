//! Twilio's WhatsApp webhooks: status callbacks and inbound messages, both form-encoded
//! (`application/x-www-form-urlencoded`), one message per POST.
//!
//! A status callback has `MessageStatus`; an inbound message has `SmsStatus=received` and no
//! `MessageStatus`. Twilio has no callback data of its own: the send path puts it in the
//! status callback URL's query (`?cb=…`), which the signature covers, so it arrives as one of
//! the request's query parameters. Twilio's statuses carry no event time, so `occurred_at` is
//! the receive time.
//!
//! The server checks `X-Twilio-Signature` before this runs.

use std::collections::HashMap;

use super::{Attributes, Batch, Normalizer, ParseError, received_now};
use crate::event::Event;
use crate::experiments::{CALLBACK_QUERY_PARAM, parse_callback_data};

/// Normalises one verified Twilio webhook: its URL's query and its form body.
pub fn parse(n: &Normalizer, query: &str, body: &[u8]) -> Result<Batch, ParseError> {
    let form = Form::parse(body);
    let received = received_now();
    let mut batch = Batch::default();
    let Some(sid) = form.get("MessageSid").or_else(|| form.get("SmsSid")).filter(|s| !s.is_empty()) else {
        return Err(ParseError("a Twilio webhook without MessageSid".into()));
    };
    let status = form.get("MessageStatus").or_else(|| form.get("SmsStatus")).unwrap_or("").to_ascii_lowercase();
    let callback = url::form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == CALLBACK_QUERY_PARAM)
        .map(|(_, v)| v.into_owned())
        .filter(|v| !v.is_empty());
    match status.as_str() {
        "received" | "receiving" | "" if form.get("MessageStatus").is_none() => {
            inbound(n, &form, sid, received, &mut batch.events)
        }
        _ => batch.events.push(status_event(n, &form, sid, &status, callback.as_deref(), received)),
    }
    n.check_times(&mut batch, received);
    Ok(batch)
}

/// The form's parameters by name (Twilio sends each once).
struct Form(HashMap<String, String>);

impl Form {
    fn parse(body: &[u8]) -> Form {
        Form(url::form_urlencoded::parse(body).into_owned().collect())
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str)
    }
}

/// `whatsapp:+15550100` → `+15550100`.
fn address(v: Option<&str>) -> Option<&str> {
    v.map(|a| a.strip_prefix("whatsapp:").unwrap_or(a))
}

/// The owner of a Twilio event: the account (a brand's subaccount, usually) and the Messaging
/// Service. The sender's number is a phone number, which convoscope does not store.
fn base(form: &Form, id: String, event_type: &str, received: i64) -> Event {
    let mut e = Event::new(id, event_type, received, received, "twilio");
    e.account_id = form.get("AccountSid").map(str::to_string);
    e.phone_number_id = form.get("MessagingServiceSid").map(str::to_string);
    e
}

fn status_event(n: &Normalizer, form: &Form, sid: &str, raw: &str, cb: Option<&str>, received: i64) -> Event {
    let event_type = match raw {
        "sent" => "message.sent",
        "delivered" => "message.delivered",
        "read" => "message.read",
        "failed" | "undelivered" => "message.failed",
        // queued, sending, accepted, scheduled, canceled, partially_delivered.
        _ => "message.other",
    };
    let mut e = base(form, format!("twilio:{sid}:{raw}"), event_type, received);
    e.message_id = Some(sid.to_string());
    n.set_contact(&mut e, address(form.get("To")));
    if event_type == "message.failed" {
        e.error_code = form.get("ErrorCode").and_then(|c| c.trim().parse().ok());
        e.error_title = e.error_code.and_then(error_title).map(str::to_string);
    }
    // Keys in ascending order, as `Attributes` needs.
    let mut attrs = Attributes::default();
    if let Some(cb) = cb {
        let (exp, var, camp) = parse_callback_data(cb);
        e.experiment = exp;
        e.variant = var;
        e.campaign = camp;
        attrs.add("callback_data", cb);
    }
    if let Some(detail) = form.get("ChannelStatusMessage").filter(|d| !d.is_empty()) {
        attrs.add("error_details", detail);
    }
    if event_type == "message.other" {
        attrs.add("raw_status", raw);
    }
    e.attributes = attrs.finish();
    e
}

fn inbound(n: &Normalizer, form: &Form, sid: &str, received: i64, out: &mut Vec<Event>) {
    let kind = form.get("MessageType").unwrap_or("text").to_ascii_lowercase();
    let payload = form.get("ButtonPayload").or_else(|| form.get("ListId")).filter(|p| !p.is_empty());
    let (event_type, suffix) = match (kind.as_str(), payload) {
        ("reaction", _) => ("interaction.reaction", "reaction"),
        (_, Some(_)) => ("interaction.reply", "reply"),
        _ => ("message.inbound", "inbound"),
    };
    let mut e = base(form, format!("twilio:{sid}:{suffix}"), event_type, received);
    e.message_id = Some(sid.to_string());
    e.actor = Some("customer".into());
    e.content_type = Some(kind.clone());
    e.reply_to = form.get("OriginalRepliedMessageSid").filter(|s| !s.is_empty()).map(str::to_string);
    // `WaId` is the number without `+`; `From` is `whatsapp:+…`.
    let from = form.get("WaId").filter(|w| !w.is_empty()).or_else(|| address(form.get("From")));
    n.set_contact(&mut e, from);
    if let Some(p) = payload {
        e.interaction_id = Some(p.to_string());
        e.interaction_title = form.get("ButtonText").or_else(|| form.get("ListTitle")).map(str::to_string);
        if let (Some(exp), Some(var), _) = parse_callback_data(p) {
            e.experiment = Some(exp);
            e.variant = Some(var);
        }
    }
    let body = form.get("Body").unwrap_or("");
    // Keys in ascending order, as `Attributes` needs. `ProfileName` and the body are personal
    // data and dropped, as Meta's are.
    let mut attrs = Attributes::default();
    if event_type == "interaction.reaction" && !body.is_empty() {
        attrs.add("emoji", body);
    }
    let media: u32 = form.get("NumMedia").and_then(|m| m.parse().ok()).unwrap_or(0);
    if media > 0 {
        attrs.add("media", &media);
    }
    let referral: serde_json::Map<String, serde_json::Value> = [
        ("ctwa_clid", "ReferralCtwaClid"),
        ("source_id", "ReferralSourceId"),
        ("source_type", "ReferralSourceType"),
        ("source_url", "ReferralSourceUrl"),
    ]
    .into_iter()
    .filter_map(|(k, param)| form.get(param).filter(|v| !v.is_empty()).map(|v| (k.to_string(), v.into())))
    .collect();
    if !referral.is_empty() {
        attrs.add("referral", &referral);
    }
    if n.store_text() && !body.is_empty() && event_type != "interaction.reaction" {
        attrs.add("text", body);
    }
    e.attributes = attrs.finish();
    if event_type != "interaction.reaction" && n.is_opt_out(body) {
        out.push(n.opt_out_event(&e));
    }
    out.push(e);
}

/// Titles of Twilio's WhatsApp error codes (Twilio's error catalogue), so a failure reads as
/// Meta's do. Codes not listed keep their number only.
pub const ERROR_TITLES: &[(i32, &str)] = &[
    (30003, "Unreachable destination handset"),
    (30004, "Message blocked"),
    (30005, "Unknown destination handset"),
    (30006, "Landline or unreachable carrier"),
    (30007, "Message filtered"),
    (30008, "Unknown error"),
    (63001, "Channel could not authenticate the request"),
    (63002, "Channel could not find the From address"),
    (63003, "Channel could not find To address"),
    (63005, "Channel did not accept given content"),
    (63007, "Twilio could not find a Channel with the specified From address"),
    (63009, "Channel provider returned an internal service error"),
    (63010, "Twilio's platform encountered an internal error processing this message"),
    (63012, "Channel provider returned an internal service error"),
    (63013, "Channel policy violation"),
    (63014, "Channel message blocked by user action"),
    (63015, "Channel Sandbox can only send messages to phone numbers that have joined the Sandbox"),
    (63016, "Outside messaging window. For WhatsApp, use a Message Template instead"),
    (63017, "Rate limit exceeded"),
    (63018, "Rate limit exceeded for Channel"),
    (63019, "Media failed to download"),
    (63020, "Twilio encountered a Business Manager account error"),
    (63021, "Channel invalid content error"),
    (63022, "Invalid vname certificate"),
    (63023, "Channel generic error"),
    (63024, "Invalid message recipient"),
    (63025, "Media already exists"),
    (63026, "Channel sender content flagged as spam"),
    (63027, "Template does not exist for a language and locale"),
    (63028, "Number of parameters provided does not match the expected number of parameters"),
    (63029, "The receiver failed to download the template"),
    (63030, "Unsupported parameter for type of channels message"),
    (63031, "Channels message cannot have same From and To"),
    (63032, "We cannot send this message to this user because of a WhatsApp limitation"),
    (63033, "Recipient opted out to receive message"),
    (63034, "Media exceeds size limit"),
    (63038, "Account exceeded the daily messages limit"),
    (63040, "Template Rejected"),
    (63041, "Template paused"),
    (63042, "Template disabled"),
    (63049, "Meta chose not to deliver this WhatsApp marketing message"),
    (63051, "WhatsApp Business Account is Locked"),
    (63052, "Legacy WhatsApp Template Used"),
];

/// The title of a Twilio error code.
pub fn error_title(code: i32) -> Option<&'static str> {
    ERROR_TITLES.binary_search_by_key(&code, |(c, _)| *c).ok().map(|i| ERROR_TITLES[i].1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingest::test_normalizer;

    const STATUS: &str = "MessageSid=SMeb94&SmsSid=SMeb94&MessageStatus=undelivered&SmsStatus=undelivered&AccountSid=AC4c78\
        &From=whatsapp%3A%2B14155238886&To=whatsapp%3A%2B16505550123&ChannelPrefix=whatsapp&ErrorCode=63016&EventType=UNDELIVERED";
    const TAP: &str = "MessageSid=SM8824&AccountSid=ACef&From=whatsapp%3A%2B6285176810035&To=whatsapp%3A%2B14155238886\
        &Body=Konfirmasi&NumMedia=0&ProfileName=teknisee&WaId=6285176810035&MessageType=interactive&ButtonText=Konfirmasi\
        &ButtonPayload=exp%3D42%3Bvariant%3DB&OriginalRepliedMessageSid=MM5cc4&SmsStatus=received";

    #[test]
    fn error_titles_are_sorted_for_the_search() {
        assert!(ERROR_TITLES.windows(2).all(|w| w[0].0 < w[1].0));
        assert_eq!(error_title(63049), Some("Meta chose not to deliver this WhatsApp marketing message"));
        assert_eq!(error_title(1), None);
    }

    #[test]
    fn undelivered_is_a_failure_with_its_code_and_callback_data() {
        let b = parse(&test_normalizer(), "cb=exp%3D7%3Bvariant%3Dbold", STATUS.as_bytes()).unwrap();
        let e = &b.events[0];
        assert_eq!((e.event_id.as_str(), e.event_type.as_str()), ("twilio:SMeb94:undelivered", "message.failed"));
        assert_eq!(e.error_code, Some(63016));
        assert!(e.error_title.as_deref().unwrap_or("").starts_with("Outside messaging window"));
        assert_eq!((e.experiment.as_deref(), e.variant.as_deref()), (Some("7"), Some("bold")));
        assert_eq!(e.account_id.as_deref(), Some("AC4c78"));
        assert_eq!(e.country.as_deref(), Some("US"));
        assert!(!format!("{e:?}").contains("6505550123"), "the number is not kept");
    }

    #[test]
    fn queued_is_kept_as_other_with_its_status() {
        let body = STATUS.replace("undelivered", "queued");
        let e = &parse(&test_normalizer(), "", body.as_bytes()).unwrap().events[0];
        assert_eq!(e.event_type, "message.other");
        assert_eq!(e.attributes.as_deref(), Some(r#"{"raw_status":"queued"}"#));
        assert_eq!(e.error_code, None);
    }

    #[test]
    fn a_quick_reply_tap_joins_back_and_drops_the_profile() {
        let b = parse(&test_normalizer(), "", TAP.as_bytes()).unwrap();
        let e = &b.events[0];
        assert_eq!(e.event_type, "interaction.reply");
        assert_eq!(e.reply_to.as_deref(), Some("MM5cc4"));
        assert_eq!((e.experiment.as_deref(), e.variant.as_deref()), (Some("42"), Some("B")));
        assert_eq!(e.interaction_title.as_deref(), Some("Konfirmasi"));
        assert_eq!(e.country.as_deref(), Some("ID"));
        let all = format!("{b:?}");
        assert!(!all.contains("teknisee") && !all.contains("6285176810035"));
    }

    #[test]
    fn a_stop_message_is_an_opt_out_and_a_body_without_sid_is_refused() {
        let stop = "MessageSid=SM1&AccountSid=AC1&From=whatsapp%3A%2B15550100&Body=STOP&SmsStatus=received";
        let b = parse(&test_normalizer(), "", stop.as_bytes()).unwrap();
        let types: Vec<&str> = b.events.iter().map(|e| e.event_type.as_str()).collect();
        assert_eq!(types, ["consent.opt_out", "message.inbound"]);
        assert!(parse(&test_normalizer(), "", b"Body=hi").is_err());
    }
}
