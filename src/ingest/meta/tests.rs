//! Known answers of the Meta webhook reading.

use super::*;
use crate::ingest::test_normalizer;
use serde_json::json;

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
        "pricing":{"pricing_model":"CBP","type":"regular","category":"Authentication-International"},
        "errors":[{"code":1,"title":"first"},{"code":2,"title":"second"},{"title":"third"}]});
    let body = json!({"object":"whatsapp_business_account","entry":[{"id":"1","changes":[{"field":"messages","value":{"statuses":[status]}}]}]});
    let b = parse(&test_normalizer(), body.to_string().as_bytes()).unwrap();
    // Written by a `serde_json::Map` before `Attributes` (keys sorted, compact, escaped).
    let want = r#"{"callback_data":"exp=7;variant=\"q\"\né\u0001","meta_conversation_id":"conv-1","more_errors":[{"code":2,"title":"second"},{"code":null,"title":"third"}],"pricing_category":"authentication-international","pricing_model":"CBP","pricing_type":"regular","raw_status":"Deleted"}"#;
    assert_eq!(b.events[0].attributes.as_deref(), Some(want));
    // The rate card's name for it, not folded into the domestic rate.
    assert_eq!(b.events[0].category.as_deref(), Some("authentication_international"));
}

#[test]
fn message_attributes_are_compact_json_in_key_order() {
    let ev = one_message(json!({"from":"15550100001","id":"wamid.N","timestamp":"1767255000","type":"hologram",
        "referral":{"source_url":"https://x","headline":"Spring","body":"Ad text","ctwa_clid":"ARA1"}}));
    assert_eq!(
        ev[0].attributes.as_deref(),
        Some(r#"{"raw_type":"hologram","referral":{"ctwa_clid":"ARA1","source_url":"https://x"}}"#)
    );
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

/// A body of one change of `field`, under entry time 1746169200.
fn change(field: &str, value: Value) -> Batch {
    let body = json!({"object":"whatsapp_business_account","entry":[{"id":"524126980791429","time":1746169200,
        "changes":[{"field":field,"value":value}]}]});
    parse(&test_normalizer(), body.to_string().as_bytes()).unwrap()
}

fn attrs(e: &Event) -> Value {
    serde_json::from_str(e.attributes.as_deref().unwrap_or("null")).unwrap()
}

/// Meta's documented examples of the account fields (webhooks reference, 2025-26).
#[test]
fn account_fields_are_account_events_with_their_value() {
    let cases = [
        (
            "account_update",
            json!({"event":"ACCOUNT_VIOLATION","violation_info":{"violation_type":"ADULT"}}),
            "account.update",
        ),
        (
            "account_update",
            json!({"volume_tier_info":{"tier_update_time":1743451903,"pricing_category":"UTILITY",
            "tier":"25000001:50000000","effective_month":"2025-11","region":"INDIA"},"event":"VOLUME_BASED_PRICING_TIER_UPDATE"}),
            "account.update",
        ),
        (
            "account_alerts",
            json!({"entity_type":"BUSINESS","entity_id":"506914307656634","alert_info":{"alert_severity":"WARNING",
            "alert_status":"ACTIVE","alert_type":"INCREASED_CAPABILITIES_ELIGIBILITY_DEFERRED"}}),
            "account.alert",
        ),
        (
            "phone_number_quality_update",
            json!({"display_phone_number":"15550783881","event":"THROUGHPUT_UPGRADE",
            "current_limit":"TIER_UNLIMITED"}),
            "account.phone_quality",
        ),
        (
            "business_capability_update",
            json!({"max_daily_conversations_per_business":2000,"max_phone_numbers_per_waba":25}),
            "account.capability",
        ),
    ];
    for (field, value, want) in cases {
        let b = change(field, value.clone());
        assert!(b.rejected.is_empty(), "{field}");
        let e = &b.events[0];
        assert_eq!(e.event_type, want, "{field}");
        assert_eq!(e.account_id.as_deref(), Some("524126980791429"));
        assert_eq!(e.occurred_at, 1_746_169_200_000_000);
        let mut stored = attrs(e);
        assert_eq!(stored["field"], field);
        assert!(stored.get("display_phone_number").is_none(), "the business's number is not stored");
        let obj = stored.as_object_mut().unwrap();
        obj.remove("field");
        for (k, v) in value.as_object().unwrap() {
            if k != "display_phone_number" {
                assert_eq!(obj.get(k), Some(v), "{field}.{k}");
            }
        }
        // A retry of the same change is the same event.
        assert_eq!(change(field, value).events[0].event_id, e.event_id);
    }
}

#[test]
fn fields_not_stored_are_counted_and_a_bad_one_spares_the_rest() {
    let body = json!({"object":"whatsapp_business_account","entry":[{"id":"1","changes":[
        {"field":"security","value":{"event":"PIN_CHANGED"}},
        {"field":"account_alerts","value":"not an object"},
        {"field":"messages","value":{"metadata":{"phone_number_id":"9"},"statuses":[
            {"id":"wamid.A","status":"sent","timestamp":"1767254400","recipient_id":"15550100001"}]}}]}]});
    let b = parse(&test_normalizer(), body.to_string().as_bytes()).unwrap();
    let reasons: Vec<_> = b.rejected.iter().map(|r| (r.index, r.reason.as_str())).collect();
    assert_eq!(reasons, [(0, "unsupported_field"), (1, "malformed")]);
    assert_eq!(b.events.len(), 1);
}

#[test]
fn template_history_keeps_rejections_pauses_and_impending_categories() {
    let rejected = change(
        "message_template_status_update",
        json!({"event":"REJECTED","message_template_id":1689556908129835_i64,
        "message_template_name":"abandoned_cart","message_template_language":"en","reason":"INVALID_FORMAT",
        "message_template_category":"MARKETING","rejection_info":{"reason":"Parameters next to each other.",
        "recommendation":"Separate parameters with text."}}),
    );
    let a = attrs(&rejected.events[0]);
    assert_eq!(a["rejection_reason"], "Parameters next to each other.");
    assert_eq!(a["rejection_recommendation"], "Separate parameters with text.");
    let pause = |title: &str| {
        change(
            "message_template_status_update",
            json!({"event":"PAUSED","message_template_id":7,"message_template_name":"spring",
            "message_template_language":"en","reason":"NONE","other_info":{"title":title,"description":"Paused for low quality."}}),
        )
    };
    let (first, second) = (pause("FIRST_PAUSE"), pause("SECOND_PAUSE"));
    assert_eq!(attrs(&first.events[0])["pause"], "FIRST_PAUSE");
    assert_ne!(first.events[0].event_id, second.events[0].event_id, "the second pause is not a retry of the first");
    let disabled = change(
        "message_template_status_update",
        json!({"event":"DISABLED","message_template_id":7,
        "other_info":{"title":"DISABLED"},"disable_info":{"disable_date":"1751234563"}}),
    );
    assert_eq!(attrs(&disabled.events[0])["disable_at"], 1751234563);
    let impending = change(
        "template_category_update",
        json!({"message_template_id":278077987957091_i64,
        "message_template_name":"welcome_template","message_template_language":"en-US","new_category":"UTILITY",
        "correct_category":"MARKETING","category_update_timestamp":1746169200}),
    );
    let a = attrs(&impending.events[0]);
    assert_eq!(
        (a["correct_category"].as_str(), a["category_update_at"].as_i64()),
        (Some("MARKETING"), Some(1746169200))
    );
    let components = change(
        "message_template_components_update",
        json!({"message_template_id":1315502779341834_i64,
        "message_template_name":"order_confirmation","message_template_language":"en_US",
        "message_template_title":"Your order is confirmed!","message_template_element":"Thank you for your order, {{1}}!",
        "message_template_footer":"Lucky Shrub"}),
    );
    let e = &components.events[0];
    assert_eq!((e.event_type.as_str(), e.template.as_deref()), ("template.status", Some("order_confirmation")));
    assert_eq!(attrs(e)["element"], "Thank you for your order, {{1}}!");
}

#[test]
fn value_errors_and_error_details_are_kept() {
    let b = change(
        "messages",
        json!({"metadata":{"phone_number_id":"106540352242922"},
        "errors":[{"code":130429,"title":"Rate limit hit","message":"Rate limit hit","error_data":{"details":"Cloud API throughput reached"}}],
        "statuses":[{"id":"wamid.F","status":"failed","timestamp":"1746169100","recipient_id":"15550100001",
            "errors":[{"code":131047,"title":"Re-engagement message","error_data":{"details":"More than 24 hours have passed"}}]}]}),
    );
    let (failed, system) = (&b.events[0], &b.events[1]);
    assert_eq!(attrs(failed)["error_details"], "More than 24 hours have passed");
    assert_eq!((system.event_type.as_str(), system.error_code), ("account.error", Some(130429)));
    assert_eq!(system.phone_number_id.as_deref(), Some("106540352242922"));
    assert_eq!(attrs(system)["error_details"], "Cloud API throughput reached");
}

#[test]
fn conversation_origin_and_expiry_are_kept() {
    let b = change(
        "messages",
        json!({"statuses":[{"id":"wamid.S","status":"sent","timestamp":"1710930461","recipient_id":"15550100001",
        "conversation":{"id":"3dab","expiration_timestamp":"1710936120","origin":{"type":"Marketing"}}}]}),
    );
    assert_eq!(
        b.events[0].attributes.as_deref(),
        Some(
            r#"{"conversation_expiration":1710936120,"conversation_origin":"marketing","meta_conversation_id":"3dab"}"#
        )
    );
}

#[test]
fn ads_orders_flows_and_lead_events() {
    let purchase = change(
        "automatic_events",
        json!({"messaging_product":"whatsapp","metadata":{"phone_number_id":"106540352242922"},
        "automatic_events":[{"id":"wamid.HBgLMTIwNjY3","event_name":"Purchase","timestamp":1749069131,"ctwa_clid":"Afc3",
            "custom_data":{"currency":"USD","value":25000}}]}),
    );
    let c = &purchase.events[0];
    assert_eq!((c.event_type.as_str(), c.message_id.as_deref()), ("conversion", Some("wamid.HBgLMTIwNjY3")));
    assert_eq!((c.revenue_micros, c.currency.as_deref()), (Some(25_000_000_000), Some("USD")));
    assert_eq!(attrs(c)["ctwa_clid"], "Afc3");
    assert_eq!(c.occurred_at, 1_749_069_131_000_000);
    let order = one_message(json!({"from":"15550100001","id":"wamid.O","timestamp":"1767255000","type":"order",
        "order":{"catalog_id":"c1","text":"please hurry","product_items":[{"product_retailer_id":"sku1","quantity":2,"item_price":9.5,"currency":"USD"},
            {"product_retailer_id":"sku2","quantity":1,"item_price":1,"currency":"USD"}]}}));
    assert_eq!((order[0].revenue_micros, order[0].currency.as_deref()), (Some(20_000_000), Some("USD")));
    assert_eq!(attrs(&order[0])["order_items"], 3.0);
    let flow = one_message(json!({"from":"15550100001","id":"wamid.FL","timestamp":"1767255000","type":"interactive",
        "interactive":{"type":"nfm_reply","nfm_reply":{"name":"flow","body":"Sent",
            "response_json":"{\"flow_token\":\"tok-9\",\"email\":\"dana@example.com\",\"age\":\"41\"}"}}}));
    let a = attrs(&flow[0]);
    assert_eq!((a["flow_token"].as_str(), a["flow_fields"].clone()), (Some("tok-9"), json!(["age", "email"])));
    assert!(!format!("{flow:?}").contains("dana@example.com"), "a Flow's answers are not kept");
}

#[test]
fn edits_deletions_notices_and_unreadable_replies_are_not_replies() {
    let types =
        |m: Value| one_message(m).iter().map(|e| (e.event_type.clone(), e.attributes.clone())).collect::<Vec<_>>();
    let edit = types(json!({"from":"15550100001","id":"wamid.E2","timestamp":"1767255000","type":"edit",
        "edit":{"original_message_id":"wamid.E1","message":{"type":"text","text":{"body":"fixed typo"}}}}));
    assert_eq!(edit, [("message.edited".into(), Some(r#"{"original_message_id":"wamid.E1"}"#.into()))]);
    let revoke = types(json!({"from":"15550100001","id":"wamid.R2","timestamp":"1767255000","type":"revoke",
        "revoke":{"original_message_id":"wamid.R1"}}));
    assert_eq!(revoke[0].0, "message.revoked");
    let system = types(json!({"from":"15550100001","id":"wamid.SY","timestamp":"1767255000","type":"system",
        "system":{"body":"User A changed from 1 to 2","type":"user_changed_number","wa_id":"15550100002"}}));
    assert_eq!(system, [("message.system".into(), Some(r#"{"system_type":"user_changed_number"}"#.into()))]);
    let broken = one_message(json!({"from":"15550100001","id":"wamid.X","timestamp":"1767255000","type":"interactive",
        "context":{"id":"wamid.T"},"interactive":{"type":"button_reply"},"errors":[{"code":131051,"title":"Message type unknown"}]}));
    assert_eq!((broken[0].event_type.as_str(), broken[0].error_code), ("message.inbound", Some(131051)));
    assert_eq!(broken[0].interaction_id, None);
}

#[test]
fn business_app_echoes_are_agent_replies() {
    let b = change(
        "smb_message_echoes",
        json!({"messaging_product":"whatsapp","metadata":{"phone_number_id":"106540352242922"},
        "message_echoes":[{"from":"15550783881","to":"16505551234","id":"wamid.HBgLMTY0","timestamp":"1739321024","type":"text",
            "text":{"body":"Here's the info you requested!"}}]}),
    );
    let e = &b.events[0];
    assert_eq!((e.event_type.as_str(), e.actor.as_deref()), ("conversation.agent_reply", Some("agent")));
    assert_eq!(e.country.as_deref(), Some("US"));
    assert!(e.contact_key.is_some());
    let all = format!("{b:?}");
    assert!(!all.contains("16505551234") && !all.contains("15550783881") && !all.contains("requested"));
}

/// Gupshup's v3 statuses (its events page): `enqueued` in milliseconds without an entry id,
/// its own failure code on the status, and the callback ping with no message.
#[test]
fn gupshup_v3_statuses() {
    let body = json!({"entry":[{"changes":[{"field":"messages","value":{"messaging_product":"whatsapp","statuses":[
            {"gs_id":"2baff204","id":"wamid.G1","recipient_id":"919163805873","status":"enqueued","timestamp":1710941393420_i64},
            {"gs_id":"91f58e90","id":"wamid.G2","recipient_id":"919163805873","status":"failed","timestamp":"1710941507","code":"1002","reason":"Number Not Exist On WhatsApp"},
            {"type":"set-callback"}]}}]}],
        "gs_app_id":"82ed52f4","object":"whatsapp_business_account"});
    let b = crate::ingest::gupshup::parse(&test_normalizer(), body.to_string().as_bytes()).unwrap();
    let (q, f) = (&b.events[0], &b.events[1]);
    assert_eq!((q.event_type.as_str(), q.source.as_str()), ("message.other", "gupshup"));
    assert_eq!(q.occurred_at, 1_710_941_393_420_000);
    assert_eq!(q.account_id.as_deref(), Some("82ed52f4"));
    assert_eq!(q.attributes.as_deref(), Some(r#"{"gs_id":"2baff204","raw_status":"enqueued"}"#));
    assert_eq!((f.error_code, f.error_title.as_deref()), (Some(1002), Some("Number Not Exist On WhatsApp")));
    assert_eq!(b.rejected.len(), 1, "the callback ping");
}
