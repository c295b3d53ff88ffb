//! Known answers of the Meta webhook reading.

use super::*;
use crate::ingest::test_normalizer;

const STATUS_BATCH: &str = include_str!("../../../fixtures/meta/status_batch.json");
const INBOUND: &str = include_str!("../../../fixtures/meta/inbound_interactive.json");

#[test]
fn status_batch_normalises_every_status() {
    let b = parse(&test_normalizer(), STATUS_BATCH.as_bytes()).unwrap();
    assert!(b.rejected.is_empty());
    let types: Vec<&str> = b.events.iter().map(|e| e.event_type.as_str()).collect();
    assert_eq!(
        types,
        ["message.sent", "message.delivered", "message.read", "message.sent", "message.failed", "message.failed"]
    );
    let sent = &b.events[0];
    assert_eq!(sent.event_id, "meta:wamid.HBgLMTU1NTAxMDk4NzYVAgARGBJBQjAxRVhQNDJWQVJCMDAwMTcA:sent");
    assert_eq!(sent.occurred_at, 1_767_254_400_000_000);
    assert_eq!(sent.experiment.as_deref(), Some("42"));
    assert_eq!(sent.variant.as_deref(), Some("B"));
    assert_eq!(sent.billable, Some(true));
    assert_eq!(sent.category.as_deref(), Some("marketing"));
    assert_eq!(sent.country.as_deref(), Some("US"));
    assert_eq!(sent.account_id.as_deref(), Some("100200300400500"));
    assert_eq!(b.events[3].billable, Some(false));
    assert_eq!(b.events[4].error_code, Some(131049));
    assert_eq!(b.events[5].error_title.as_deref(), Some("Message undeliverable"));
}

#[test]
fn interactive_replies_join_back_by_context() {
    let b = parse(&test_normalizer(), INBOUND.as_bytes()).unwrap();
    assert_eq!(b.events.len(), 2);
    let r = &b.events[0];
    assert_eq!(r.event_type, "interaction.reply");
    assert_eq!(r.content_type.as_deref(), Some("interactive"));
    assert_eq!(r.interaction_id.as_deref(), Some("exp42-B-yes"));
    assert_eq!(r.interaction_title.as_deref(), Some("Yes, show me"));
    assert_eq!(r.reply_to.as_deref(), Some("wamid.HBgLMTU1NTAxMDk4NzYVAgARGBJJTlRFUkFDVElWRUJUTjAwMDEA"));
    assert_eq!(b.events[1].interaction_id.as_deref(), Some("exp42-A-plan-annual"));
    // The profile name is personal data and must not survive.
    assert!(!format!("{:?}", b.events).contains("Dana"));
}

#[test]
fn status_attributes_are_compact_json_in_key_order() {
    let status = json!({"id":"wamid.Y","status":"Deleted","timestamp":"1767254400","recipient_id":"15550109876",
        "biz_opaque_callback_data":"exp=7;variant=\"q\"\n\u{e9}\u{1}",
        "conversation":{"id":"conv-1"},
        "pricing":{"pricing_model":"CBP","type":"regular","category":"Authentication_International"},
        "errors":[{"code":1,"title":"first"},{"code":2,"title":"second"},{"title":"third"}]});
    let body = json!({"object":"whatsapp_business_account","entry":[{"id":"1","changes":[{"field":"messages","value":{"statuses":[status]}}]}]});
    let b = parse(&test_normalizer(), body.to_string().as_bytes()).unwrap();
    // Written by a `serde_json::Map` before `Attributes` (keys sorted, compact, escaped).
    let want = r#"{"callback_data":"exp=7;variant=\"q\"\né\u0001","meta_conversation_id":"conv-1","more_errors":[{"code":2,"title":"second"},{"code":null,"title":"third"}],"pricing_category":"authentication_international","pricing_model":"CBP","pricing_type":"regular","raw_status":"Deleted"}"#;
    assert_eq!(b.events[0].attributes.as_deref(), Some(want));
}

#[test]
fn message_attributes_are_compact_json_in_key_order() {
    let ev = one_message(json!({"from":"15550100001","id":"wamid.N","timestamp":"1767255000","type":"hologram",
        "referral":{"source_url":"https://x"}}));
    assert_eq!(ev[0].attributes.as_deref(), Some(r#"{"raw_type":"hologram","referral":true}"#));
    let ev = one_message(json!({"from":"15550100001","id":"wamid.I","timestamp":"1767255000","type":"interactive",
        "interactive":{"type":"list_reply","list_reply":{"id":"a","title":"A"}}}));
    assert_eq!(ev[0].attributes.as_deref(), Some(r#"{"interactive_type":"list_reply"}"#));
}

fn one_message(msg: Value) -> Vec<Event> {
    let body = json!({"object":"whatsapp_business_account","entry":[{"id":"1","changes":[{"field":"messages","value":{"metadata":{"phone_number_id":"9"},"messages":[msg]}}]}]});
    parse(&test_normalizer(), body.to_string().as_bytes()).unwrap().events
}

#[test]
fn stop_reply_also_records_opt_out_and_drops_text() {
    let ev = one_message(
        json!({"from":"447700900123","id":"wamid.X","timestamp":"1767255000","type":"text","text":{"body":"Stop"}}),
    );
    assert_eq!(ev.len(), 2);
    assert_eq!(ev[0].event_type, "consent.opt_out");
    assert_eq!(ev[0].event_id, "meta:wamid.X:opt_out");
    assert_eq!(ev[1].event_type, "message.inbound");
    assert_eq!(ev[1].content_type.as_deref(), Some("text"));
    assert_eq!(ev[0].contact_key, ev[1].contact_key);
    assert!(ev[1].attributes.is_none());
}

#[test]
fn template_quick_reply_and_unknown_types() {
    let ev = one_message(
        json!({"from":"15550100001","id":"wamid.B","timestamp":"1767255000","type":"button","context":{"id":"wamid.T"},"button":{"payload":"exp=spring;variant=B","text":"Interested"}}),
    );
    assert_eq!(ev[0].event_type, "interaction.reply");
    assert_eq!(ev[0].reply_to.as_deref(), Some("wamid.T"));
    assert_eq!(ev[0].variant.as_deref(), Some("B"));
    let ev = one_message(json!({"from":"15550100001","id":"wamid.N","timestamp":"1767255000","type":"hologram"}));
    assert_eq!(ev[0].event_type, "message.inbound");
    assert_eq!(ev[0].content_type.as_deref(), Some("other"));
    assert!(ev[0].attributes.as_deref().unwrap().contains("hologram"));
}

#[test]
fn unknown_status_is_kept_and_played_is_read() {
    let body = json!({"object":"whatsapp_business_account","entry":[{"id":"1","changes":[{"field":"messages","value":{"statuses":[
        {"id":"w1","status":"deleted","timestamp":"1767255000","recipient_id":"15550100001"},
        {"id":"w1","status":"played","timestamp":"1767255001","recipient_id":"15550100001"}]}}]}]});
    let ev = parse(&test_normalizer(), body.to_string().as_bytes()).unwrap().events;
    assert_eq!(ev[0].event_type, "message.other");
    assert!(ev[0].attributes.as_deref().unwrap().contains("deleted"));
    assert_eq!(ev[1].event_type, "message.read");
}

#[test]
fn template_status_update() {
    let body = json!({"object":"whatsapp_business_account","entry":[{"id":"1","time":1767255000,"changes":[{"field":"message_template_status_update","value":{"event":"PAUSED","message_template_id":12345,"message_template_name":"spring_promo_b","message_template_language":"en_US","reason":"NONE","message_template_category":"MARKETING"}}]}]});
    let ev = parse(&test_normalizer(), body.to_string().as_bytes()).unwrap().events;
    assert_eq!(ev[0].event_type, "template.status");
    assert_eq!(ev[0].template.as_deref(), Some("spring_promo_b"));
    assert_eq!(ev[0].category.as_deref(), Some("marketing"));
    assert_eq!(ev[0].occurred_at, 1_767_255_000_000_000);
    assert!(ev[0].attributes.as_deref().unwrap().contains("PAUSED"));
}

#[test]
fn typed_and_tree_readings_agree_on_every_fixture() {
    let n = test_normalizer();
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut bodies: Vec<_> =
        std::fs::read_dir(root.join("fixtures/meta")).unwrap().map(|e| e.unwrap().path()).collect();
    bodies.push(root.join("fixtures/collector/meta_batch.json"));
    let mut typed = 0;
    for path in bodies {
        let (t, tree) = parse_both(&n, &std::fs::read(&path).unwrap());
        if let Some(t) = t {
            assert_eq!(Some(&t), tree.as_ref().ok(), "{}", path.display());
            typed += 1;
        }
    }
    assert!(typed >= 3, "the status, inbound and collector fixtures take the typed reading");
    // Anything but messages changes, and a missing value, go to the tree reading.
    let template =
        br#"{"entry":[{"changes":[{"field":"message_template_status_update","value":{"event":"PAUSED"}}]}]}"#;
    assert!(parse_both(&n, template).0.is_none());
    // An invalid byte in a field convoscope ignores: the tree refuses it, the typed reading
    // keeps the statuses, which are well formed.
    let stray = b"{\"entry\":[{\"changes\":[{\"field\":\"messages\",\"value\":{\"x\":\"\xff\",\"statuses\":[{\"id\":\"w1\",\"status\":\"sent\",\"timestamp\":\"1767255000\"}]}}]}]}";
    let (t, tree) = parse_both(&n, stray);
    assert!(tree.is_err());
    assert_eq!(t.map(|b| b.events.len()), Some(1));
    assert_eq!(parse(&n, stray).unwrap().events[0].message_id.as_deref(), Some("w1"));
    // A change without a value is skipped and counted, not the whole body refused.
    let no_value = br#"{"entry":[{"changes":[{"field":"messages"}]}]}"#;
    let (t, tree) = parse_both(&n, no_value);
    assert!(t.is_none());
    assert_eq!(tree.map(|b| (b.events.len(), b.rejected.len())).ok(), Some((0, 1)));
}

#[test]
fn malformed_bodies_are_errors() {
    let n = test_normalizer();
    assert!(parse(&n, b"{\"entry\": [").is_err());
    assert!(parse(&n, b"{\"object\":\"page\",\"entry\":[]}").is_err());
    assert!(parse(&n, b"[1,2]").is_err());
}

#[test]
fn future_statuses_are_rejected_alone() {
    let far = chrono::Utc::now().timestamp() + 3600;
    let body = json!({"object":"whatsapp_business_account","entry":[{"id":"1","changes":[{"field":"messages","value":{"statuses":[
        {"id":"w1","status":"sent","timestamp":far.to_string(),"recipient_id":"15550100001"},
        {"id":"w2","status":"sent","timestamp":"1767255000","recipient_id":"15550100001"}]}}]}]});
    let b = parse(&test_normalizer(), body.to_string().as_bytes()).unwrap();
    assert_eq!(b.events.len(), 1);
    assert_eq!(b.rejected.len(), 1);
    assert_eq!(b.events[0].message_id.as_deref(), Some("w2"));
}

#[test]
fn a_malformed_change_is_skipped_and_counted_and_the_rest_stored() {
    let status = json!({"id":"wamid.G","status":"delivered","timestamp":"1767255000","recipient_id":"15550100001"});
    let body = json!({"object":"whatsapp_business_account","entry":[{"id":"1","changes":[
        {"field":"message_template_status_update","value":{"event":["not", "a", "string"]}},
        {"field":"messages","value":{"metadata":{"phone_number_id":"9"},"statuses":[status]}},
        {"field":"messages","value":{"statuses":"not a list"}}]}]});
    let b = parse(&test_normalizer(), body.to_string().as_bytes()).expect("the good change is stored");
    assert_eq!(b.events.len(), 1);
    assert_eq!(b.events[0].event_type, "message.delivered");
    let skipped: Vec<(usize, RejectReason)> = b.rejected.iter().map(|r| (r.index, r.reason)).collect();
    assert_eq!(skipped, [(0, RejectReason::Malformed), (2, RejectReason::Malformed)]);
}

#[test]
fn a_signup_preference_is_an_opt_in() {
    let body = json!({"object":"whatsapp_business_account","entry":[{"id":"1","changes":[{"field":"user_preferences",
        "value":{"metadata":{"phone_number_id":"9"},"user_preferences":[
            {"wa_id":"15550100001","detail":"User requested to receive marketing messages","category":"marketing_messages",
             "value":"signup","timestamp":1767255000}]}}]}]});
    let b = parse(&test_normalizer(), body.to_string().as_bytes()).expect("parsed");
    assert_eq!(b.events.len(), 1, "{:?}", b.rejected);
    assert_eq!(
        (b.events[0].event_type.as_str(), b.events[0].category.as_deref()),
        ("consent.opt_in", Some("marketing"))
    );
}

#[test]
fn a_reaction_is_its_own_event_and_no_reply() {
    let ev = one_message(json!({"from":"15550100001","id":"wamid.R","timestamp":"1767255000","type":"reaction",
        "reaction":{"message_id":"wamid.SENT","emoji":"\u{1F44D}"}}));
    assert_eq!(ev.len(), 1);
    assert_eq!((ev[0].event_type.as_str(), ev[0].reply_to.as_deref()), ("interaction.reaction", Some("wamid.SENT")));
    assert_eq!(ev[0].attributes.as_deref(), Some("{\"emoji\":\"\u{1F44D}\"}"));
    let removed = one_message(json!({"from":"15550100001","id":"wamid.R2","timestamp":"1767255060","type":"reaction",
        "reaction":{"message_id":"wamid.SENT","emoji":""}}));
    assert_eq!(removed[0].attributes.as_deref(), Some(r#"{"removed":true}"#));
    let batch = crate::event::to_record_batch(&[ev[0].clone(), removed[0].clone()]).unwrap();
    let rollup = crate::rollup::Kind::Messages.of_events(std::slice::from_ref(&batch)).unwrap();
    assert_eq!(rollup.num_rows(), 0, "a reaction makes no message replied");
}

#[test]
fn error_131050_records_an_opt_out_of_marketing() {
    let status = json!({"id":"wamid.M","status":"failed","timestamp":"1767255000","recipient_id":"15550100001",
        "errors":[{"code":131050,"title":"User stopped marketing messages"}]});
    let body = json!({"object":"whatsapp_business_account","entry":[{"id":"1","changes":[{"field":"messages","value":{"metadata":{"phone_number_id":"9"},"statuses":[status]}}]}]});
    let b = parse(&test_normalizer(), body.to_string().as_bytes()).expect("parsed");
    let kinds: Vec<(&str, Option<&str>)> =
        b.events.iter().map(|e| (e.event_type.as_str(), e.category.as_deref())).collect();
    assert_eq!(kinds, [("consent.opt_out", Some("marketing")), ("message.failed", None)]);
    assert_eq!(b.events[0].contact_key, b.events[1].contact_key);
    assert_eq!(b.events[0].event_id, "meta:wamid.M:failed:131050:opt_out", "one per failure: a retry is a duplicate");
}

#[test]
fn a_person_without_a_phone_number_is_counted_by_their_user_id() {
    let n = test_normalizer();
    let status = json!({"id":"wamid.U","status":"delivered","timestamp":"1767255000","recipient_id":"",
        "recipient_user_id":"US.134912086"});
    let body = json!({"object":"whatsapp_business_account","entry":[{"id":"1","changes":[{"field":"messages","value":{"metadata":{"phone_number_id":"9"},"statuses":[status]}}]}]});
    let b = parse(&n, body.to_string().as_bytes()).expect("parsed");
    let key = n.pii().contact_of_user("US.134912086");
    assert!(key.is_some());
    assert_eq!(b.events[0].contact_key, key);
    let inbound = one_message(json!({"from":"","from_user_id":"US.134912086","id":"wamid.UI","timestamp":"1767255000",
        "type":"text","text":{"body":"hi"}}));
    assert_eq!(inbound[0].contact_key, key, "the same person by the same id");
}
