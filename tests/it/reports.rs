//! Reports over a hand-built event set posted through the real API, asserted exactly:
//! repeated statuses, a read without a delivered, a reply to an unknown message, a conversion
//! outside the attribution window, a reopened conversation, and date ranges (one empty).

use convoscope::analytics::Analytics;
use convoscope::analytics::reports::{Computed as Report, Metric, Params};
use convoscope::store::Storage;
use serde_json::{Value, json};

use crate::common::*;

pub(crate) async fn loaded() -> (tempfile::TempDir, Analytics) {
    load(&std::fs::read_to_string(fixture("reports/events.ndjson")).unwrap()).await
}

/// A store holding `ndjson`'s events, posted through the real API twice (duplicates must not
/// change any number).
async fn load(ndjson: &str) -> (tempfile::TempDir, Analytics) {
    let dir = test_dir();
    let cfg = config(dir.path());
    let storage_url = cfg.storage.clone();
    let s = TestServer::start(cfg).await;
    for _ in 0..2 {
        let r = s.client.post(s.url("/v1/events")).bearer_auth(INGEST).body(ndjson.to_string()).send().await.unwrap();
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["rejected"], json!([]), "{v}");
    }
    s.stop().await;
    (dir, Analytics::new(Storage::open(&storage_url).unwrap(), 7).unwrap())
}

fn rows(r: &Report, cols: &[&str]) -> Vec<Vec<Value>> {
    let idx: Vec<usize> =
        cols.iter().map(|c| r.columns.iter().position(|x| x == c).unwrap_or_else(|| panic!("{c}"))).collect();
    r.rows.iter().map(|row| idx.iter().map(|&i| row[i].clone()).collect()).collect()
}

fn close(got: &Value, exp: f64) {
    let g = got.as_f64().unwrap_or_else(|| panic!("{got} is not a number"));
    assert!((g - exp).abs() < 1e-9, "got {g}, expected {exp}");
}

#[tokio::test]
async fn every_report_gives_the_known_answers() {
    let (_dir, a) = loaded().await;
    let all = Params::default();

    let f = a.report("funnel", &all).await.unwrap();
    assert_eq!(
        rows(
            &f,
            &[
                "campaign",
                "template",
                "sent",
                "delivered",
                "read",
                "replied",
                "converted",
                "delivery_rate",
                "read_rate",
                "reply_rate",
                "conversion_rate"
            ]
        ),
        vec![
            vec![
                json!("spring"),
                json!("promo_a"),
                json!(2),
                json!(2),
                json!(1),
                json!(1),
                json!(2),
                json!(1.0),
                json!(0.5),
                json!(0.5),
                json!(1.0)
            ],
            vec![
                json!("spring"),
                json!("promo_b"),
                json!(2),
                json!(1),
                json!(1),
                json!(0),
                json!(0),
                json!(0.5),
                json!(0.5),
                json!(0.0),
                json!(0.0)
            ],
        ]
    );

    let d = a.report("delivery", &all).await.unwrap();
    assert_eq!(
        rows(
            &d,
            &[
                "day",
                "template",
                "locale",
                "sent",
                "delivered",
                "read",
                "failed",
                "p50_delivery_s",
                "p95_delivery_s",
                "p50_read_s"
            ]
        ),
        vec![
            vec![
                json!("2026-02-01"),
                json!("promo_a"),
                json!("en_GB"),
                json!(1),
                json!(1),
                json!(1),
                json!(0),
                json!(5.0),
                json!(5.0),
                json!(60.0)
            ],
            vec![
                json!("2026-02-01"),
                json!("promo_b"),
                json!("pt_BR"),
                json!(1),
                json!(1),
                json!(1),
                json!(0),
                Value::Null,
                Value::Null,
                Value::Null
            ],
            vec![
                json!("2026-02-02"),
                json!("promo_a"),
                json!("en_GB"),
                json!(1),
                json!(1),
                json!(0),
                json!(0),
                json!(9.0),
                json!(9.0),
                Value::Null
            ],
            vec![
                json!("2026-02-02"),
                json!("promo_b"),
                json!("en_IN"),
                json!(1),
                json!(0),
                json!(0),
                json!(1),
                Value::Null,
                Value::Null,
                Value::Null
            ],
        ]
    );

    let fl = a.report("failures", &all).await.unwrap();
    assert_eq!(
        rows(&fl, &["error_code", "error_title", "template", "failed", "share_of_sent"]),
        vec![vec![json!(131026), json!("Message undeliverable"), json!("promo_b"), json!(1), json!(0.5)]]
    );

    let c = a.report("containment", &all).await.unwrap();
    assert_eq!(
        rows(&c, &["day", "queue", "conversations", "resolved", "contained", "handed_off", "containment_rate"]),
        vec![
            vec![json!("2026-02-01"), json!("billing"), json!(2), json!(2), json!(1), json!(1), json!(0.5)],
            vec![json!("2026-02-01"), json!("sales"), json!(1), json!(0), json!(0), json!(0), Value::Null],
            vec![json!("2026-02-02"), json!("sales"), json!(1), json!(1), json!(0), json!(1), json!(0.0)],
        ]
    );

    let s = a.report("sla", &all).await.unwrap();
    assert_eq!(
        rows(
            &s,
            &[
                "day",
                "queue",
                "p50_first_response_s",
                "p90_first_response_s",
                "p50_resolution_s",
                "p90_resolution_s",
                "first_contact_resolution_rate"
            ]
        ),
        vec![
            vec![
                json!("2026-02-01"),
                json!("billing"),
                json!(25.0),
                json!(29.0),
                json!(1200.0),
                json!(1680.0),
                json!(0.5)
            ],
            vec![json!("2026-02-01"), json!("sales"), Value::Null, Value::Null, Value::Null, Value::Null, Value::Null],
            vec![
                json!("2026-02-02"),
                json!("sales"),
                json!(30.0),
                json!(30.0),
                json!(3660.0),
                json!(3660.0),
                json!(1.0)
            ],
        ]
    );

    // Messaging: m1 to GB (0.0529) and m2 to BR (0.0625) are billable marketing; m4 answered
    // an ad (a free entry point), so it is not billable.
    // Support: c4 (opened after m4 to the same contact) resolved an hour after its handoff,
    // with a bot reply: 20.00 + 0.10. Revenue: the two conversions inside the window.
    let k = a.report("cost", &all).await.unwrap();
    let r = rows(&k, &["campaign", "category", "messages", "resolutions", "conversions"]);
    assert_eq!(r, vec![vec![json!("spring"), json!("marketing"), json!(4), json!(1), json!(2)]]);
    let r =
        rows(&k, &["messaging_cost", "support_cost", "cost", "revenue", "cost_per_resolution", "cost_per_conversion"]);
    for (got, exp) in r[0].iter().zip([0.1154, 20.10, 20.2154, 30.0, 20.2154, 10.1077]) {
        close(got, exp);
    }

    let e = a.report("engagement", &all).await.unwrap();
    assert_eq!(
        rows(&e, &["locale", "sent", "read_rate", "reply_rate", "csat"]),
        vec![
            vec![json!("en_GB"), json!(2), json!(0.5), json!(0.5), json!(4.0)],
            vec![json!("en_IN"), json!(1), json!(0.0), json!(0.0), Value::Null],
            vec![json!("pt_BR"), json!(1), json!(1.0), json!(0.0), Value::Null],
        ]
    );

    let x = a.report("experiment", &all).await.unwrap();
    let r = rows(
        &x,
        &[
            "experiment",
            "variant",
            "exposures",
            "conversions",
            "conversion_rate",
            "abs_diff",
            "abs_diff_ci_low",
            "lift",
            "lift_ci_low",
            "p_value",
            "srm_p_value",
            "srm_flag",
            "revenue_per_exposure",
            "revenue_diff",
        ],
    );
    // Rows come in variant order; the control is the variant named control.
    assert_eq!(r[0][..5], [json!("cta"), json!("bold"), json!(2), json!(0), json!(0.0)]);
    assert_eq!(r[1][..5], [json!("cta"), json!("control"), json!(2), json!(2), json!(1.0)]);
    // bold vs control: 0/2 vs 2/2. No variance in either arm: no interval, no p-value.
    assert_eq!(r[0][5], json!(-1.0));
    assert_eq!(r[0][6], Value::Null);
    assert_eq!(r[0][7], json!(-1.0));
    assert_eq!((&r[0][8], &r[0][9]), (&Value::Null, &Value::Null));
    assert_eq!((&r[0][10], &r[0][11]), (&json!(1.0), &json!(false)));
    assert_eq!((&r[0][12], &r[0][13]), (&json!(0.0), &json!(-15.0)));
    assert_eq!(r[1][5], Value::Null);
    assert_eq!(r[1][12], json!(15.0));
    let i = x.columns.iter().position(|c| c == "chance_to_beat_control").unwrap();
    // P(Beta(1,3) > Beta(3,1)) = 3 B(3,4) = 0.05 exactly.
    close(&x.rows[0][i], 0.05);
    let i = x.columns.iter().position(|c| c == "revenue_p_value").unwrap();
    // Welch with one degree of freedom: t = 3, p = 1 - 2 atan(3) / pi.
    close(&x.rows[0][i], 1.0 - 2.0 * 3f64.atan() / std::f64::consts::PI);
}

/// `failures` counts a message once per distinct failure, and every message once in what its
/// template sent, however many failures it has: three sends of one template, one failing with
/// two codes, one with the same code twice, one delivered.
#[tokio::test]
async fn a_message_failing_twice_counts_once_in_what_was_sent() {
    let send = |m: &str, i: u32| {
        format!(
            r#"{{"event_id":"{m}-acc","event_type":"send.accepted","occurred_at":"2026-03-01T10:00:0{i}Z","message_id":"{m}","contact":"+44770090000{i}","template":"t"}}"#
        )
    };
    let fail = |id: &str, m: &str, code: u32, title: &str| {
        format!(
            r#"{{"event_id":"{id}","event_type":"message.failed","occurred_at":"2026-03-01T10:05:00Z","message_id":"{m}","error_code":{code},"error_title":"{title}"}}"#
        )
    };
    let body = [
        send("m1", 1),
        send("m2", 2),
        send("m3", 3),
        fail("f1", "m1", 131026, "Message undeliverable"),
        fail("f2", "m1", 131049, "Healthy ecosystem"),
        fail("f3", "m2", 131026, "Message undeliverable"),
        fail("f4", "m2", 131026, "Message undeliverable"),
        r#"{"event_id":"d3","event_type":"message.delivered","occurred_at":"2026-03-01T10:00:09Z","message_id":"m3"}"#
            .to_string(),
    ]
    .join("\n");
    let (_dir, a) = load(&body).await;
    let fl = a.report("failures", &Params::default()).await.unwrap();
    assert_eq!(
        rows(&fl, &["error_code", "error_title", "template", "failed"]),
        vec![
            vec![json!(131026), json!("Message undeliverable"), json!("t"), json!(2)],
            vec![json!(131049), json!("Healthy ecosystem"), json!("t"), json!(1)],
        ]
    );
    let share = fl.columns.iter().position(|c| c == "share_of_sent").unwrap();
    close(&fl.rows[0][share], 2.0 / 3.0);
    close(&fl.rows[1][share], 1.0 / 3.0);
}

/// A contact whose exposure names no message (a send recorded without its id) has no message
/// in the store: it still counts as exposed, and its conversion as its variant's.
#[tokio::test]
async fn an_exposure_without_a_message_in_the_store_still_counts() {
    let send = |id: &str, message: Option<&str>, contact: &str, variant: &str| {
        let mut e = json!({"event_id": id, "event_type": "send.accepted", "occurred_at": "2026-03-01T10:00:00Z",
            "contact": contact, "campaign": "c", "template": "t", "experiment": "x", "variant": variant});
        if let Some(m) = message {
            e["message_id"] = json!(m);
        }
        e.to_string()
    };
    let body = [
        send("s1", Some("m1"), "+447700900001", "control"),
        send("s2", None, "+447700900002", "control"),
        send("s3", Some("m3"), "+447700900003", "bold"),
        r#"{"event_id":"r1","event_type":"message.read","occurred_at":"2026-03-01T10:05:00Z","message_id":"m1"}"#.to_string(),
        r#"{"event_id":"c2","event_type":"conversion","occurred_at":"2026-03-01T11:00:00Z","contact":"+447700900002","revenue_micros":1000000}"#
            .to_string(),
    ]
    .join("\n");
    let (_dir, a) = load(&body).await;
    let x = a.report("experiment", &Params::default()).await.unwrap();
    let r = rows(&x, &["metric", "variant", "exposures", "conversions"]);
    let goal: Vec<&Vec<Value>> = r.iter().filter(|row| row[0] == "converted").collect();
    assert_eq!(
        goal.iter().map(|row| row[1..].to_vec()).collect::<Vec<_>>(),
        vec![vec![json!("bold"), json!(1), json!(0)], vec![json!("control"), json!(2), json!(1)]],
        "{r:?}"
    );
}

#[tokio::test]
async fn date_ranges_select_cohorts() {
    let (_dir, a) = loaded().await;
    let day2 = Params::parse(Some("2026-02-02"), Some("2026-02-02"), None, None).unwrap();
    let f = a.report("funnel", &day2).await.unwrap();
    assert_eq!(
        rows(&f, &["template", "sent", "delivered", "converted"]),
        vec![
            vec![json!("promo_a"), json!(1), json!(1), json!(1)],
            vec![json!("promo_b"), json!(1), json!(0), json!(0)]
        ]
    );
    // A contact counts by the date of its first exposure: two of the four were first exposed
    // on 2026-02-02, one per variant.
    let x = a.report("experiment", &day2).await.unwrap();
    assert_eq!(
        rows(&x, &["variant", "exposures"]),
        vec![vec![json!("bold"), json!(1)], vec![json!("control"), json!(1)]]
    );
    let empty = Params::parse(Some("2026-03-01"), Some("2026-03-31"), None, None).unwrap();
    for name in convoscope::analytics::reports::names() {
        let r = a.report(name, &empty).await.unwrap();
        if name == "templates" {
            // A template's standing as of `to` is there without a message in the range.
            assert!(!r.rows.is_empty() && rows(&r, &["sent"]).iter().all(|s| s[0] == json!(0)), "{:?}", r.rows);
            continue;
        }
        assert!(r.rows.is_empty(), "{name}: {:?}", r.rows);
    }
    let j = a.report("funnel", &day2).await.unwrap().to_json();
    assert_eq!(j["report"], "funnel");
    assert_eq!(j["params"]["from"], "2026-02-02");
    assert_eq!(j["rows"][0]["template"], "promo_a");
    assert!(a.report("nope", &day2).await.unwrap_err().to_string().contains("funnel"));
    let camp = Params::parse(None, None, Some("autumn"), None).unwrap();
    assert!(a.report("funnel", &camp).await.unwrap().rows.is_empty());
}

#[tokio::test]
async fn generated_data_runs_every_report_and_the_better_variant_wins() {
    let storage = Storage::open("memory://").unwrap();
    let spec = convoscope::generate::Spec {
        events: 150_000,
        days: 14,
        seed: 42,
        start: chrono::NaiveDate::from_ymd_opt(2026, 1, 1).unwrap(),
    };
    convoscope::generate::generate(&storage, &spec).await.unwrap();
    let a = Analytics::new(storage, 7).unwrap();
    for name in convoscope::analytics::reports::names() {
        let r = a.report(name, &Params::default()).await.unwrap();
        assert!(!r.rows.is_empty(), "{name} is empty on generated data");
    }
    let x = a.report("experiment", &Params::default()).await.unwrap();
    let r = rows(&x, &["variant", "conversion_rate", "chance_to_beat_control"]);
    let rate = |v: &str| r.iter().find(|row| row[0] == v).unwrap()[1].as_f64().unwrap();
    assert!(rate("emoji") > rate("control"), "{r:?}");
    let emoji_ctb = r.iter().find(|row| row[0] == "emoji").unwrap()[2].as_f64().unwrap();
    assert!(emoji_ctb > 0.95, "{r:?}");
    // Some conversions fall outside the window and some reads lack a delivered receipt.
    let f = a.report("funnel", &Params::default()).await.unwrap();
    assert!(f.rows.iter().any(|row| row[f.columns.iter().position(|c| c == "read").unwrap()].as_i64().unwrap() > 0));
}

#[tokio::test]
async fn definitions_set_control_and_weights_and_the_metric_is_selectable() {
    let (_dir, a) = loaded().await;
    let cta = r#"
[[experiment]]
name = "cta"
salt = "s"
[[experiment.variant]]
name = "bold"
weight = 1
control = true
template = "promo_b"
[[experiment.variant]]
name = "control"
weight = 3
template = "promo_a"
"#;
    let defs = convoscope::experiments::Experiments::parse(cta, "test.toml").unwrap();
    let a = a.with_experiments(defs);
    let x = a.report("experiment", &Params::default()).await.unwrap();
    let r = rows(&x, &["variant", "abs_diff", "srm_p_value"]);
    // bold is now the control, so control is compared with it: 2/2 - 0/2.
    assert_eq!(r[0][1], Value::Null);
    assert_eq!(r[1][1], json!(1.0));
    // 2 and 2 exposures against weights 1:3: chi2 = (2-1)^2/1 + (2-3)^2/3 = 4/3, df 1.
    close(&r[0][2], 0.248_213_078_989_924_3);

    let read = Params { metric: Some(convoscope::analytics::reports::Metric::Read), ..Params::default() };
    let x = a.report("experiment", &read).await.unwrap();
    // Read: m1 (control) read, m4 not; m2 (bold) read, m3 failed.
    assert_eq!(
        rows(&x, &["variant", "conversions"]),
        vec![vec![json!("bold"), json!(1)], vec![json!("control"), json!(1)]]
    );
    let replied = Params { metric: Some(convoscope::analytics::reports::Metric::Replied), ..Params::default() };
    let x = a.report("experiment", &replied).await.unwrap();
    assert_eq!(
        rows(&x, &["variant", "conversions"]),
        vec![vec![json!("bold"), json!(0)], vec![json!("control"), json!(1)]]
    );

    // Guardrails read from every message are measured when an experiment names them (the SQL
    // computes only the metrics a run can show): m3 (bold) failed, and every arm's messages
    // cost something.
    let with_guardrails = cta.replacen(
        "salt = \"s\"\n",
        "salt = \"s\"\n[experiment.analysis]\n\
         guardrails = [{ metric = \"failed\", margin = 0.0 }, { metric = \"cost\", margin = 0.0 }]\n",
        1,
    );
    let guarded = convoscope::experiments::Experiments::parse(&with_guardrails, "test.toml").unwrap();
    let a = a.with_experiments(guarded);
    let x = a.report("experiment", &Params::default()).await.unwrap();
    let r = rows(&x, &["metric", "variant", "conversions", "conversion_rate"]);
    let of = |m: &str| r.iter().filter(|row| row[0] == m).map(|row| row[1..].to_vec()).collect::<Vec<_>>();
    assert_eq!(
        of("failed"),
        vec![vec![json!("bold"), json!(1), json!(0.5)], vec![json!("control"), json!(0), json!(0.0)]]
    );
    let cost = of("cost");
    assert_eq!(cost.len(), 2, "{r:?}");
    assert!(cost.iter().all(|row| row[2].as_f64().is_some_and(|c| c > 0.0)), "{cost:?}");
}

/// Blocked (a failure 131048) is the one metric read from messages that the experiment's own
/// messages and the blocked ones answer: measured without any metric that reads every message,
/// the report merges only those (queries/experiment.sql). Its figures, after exposure and in
/// the pre-exposure period, must be what they are when every message is merged (a run that
/// also measures failures), and count 131048 only.
#[tokio::test]
async fn blocked_reads_the_same_with_or_without_every_message() {
    // (contact, message, variant or "" for a message outside the experiment, day, failure code or 0)
    let messages = [
        ("+15550000001", "p1", "", 1, 131048),
        ("+15550000001", "e1", "control", 3, 0),
        ("+15550000002", "p2", "", 1, 0),
        ("+15550000002", "e2", "control", 3, 131048),
        ("+15550000003", "p3", "", 2, 131048),
        ("+15550000003", "e3", "control", 3, 0),
        ("+15550000004", "p4", "", 1, 131048),
        ("+15550000004", "e4", "treat", 3, 131048),
        ("+15550000005", "e5", "treat", 3, 131049),
        ("+15550000006", "p6", "", 2, 131049),
        ("+15550000006", "e6", "treat", 3, 0),
    ];
    let mut ndjson = String::new();
    for (contact, id, variant, day, code) in messages {
        let at = |s: u32| format!("2026-03-0{day}T10:00:{s:02}Z");
        let mut send = json!({"event_id": format!("{id}-acc"), "event_type": "send.accepted", "occurred_at": at(0),
            "message_id": id, "contact": contact, "campaign": "c", "template": "t", "category": "marketing"});
        if !variant.is_empty() {
            send["experiment"] = json!("blk");
            send["variant"] = json!(variant);
        }
        let outcome = if code == 0 {
            json!({"event_id": format!("{id}-dlv"), "event_type": "message.delivered", "occurred_at": at(5),
                "message_id": id, "contact": contact})
        } else {
            json!({"event_id": format!("{id}-fail"), "event_type": "message.failed", "occurred_at": at(5),
                "message_id": id, "contact": contact, "error_code": code, "error_title": "failed"})
        };
        ndjson += &format!("{send}\n{outcome}\n");
    }
    let (_dir, a) = load(&ndjson).await;
    let defs = |guardrails: &str| {
        let toml = format!(
            "[[experiment]]\nname = \"blk\"\nsalt = \"b\"\n[experiment.analysis]\nguardrails = [{guardrails}]\n\
             [[experiment.variant]]\nname = \"control\"\nweight = 1\ncontrol = true\ntemplate = \"t\"\n\
             [[experiment.variant]]\nname = \"treat\"\nweight = 1\ntemplate = \"t2\"\n"
        );
        convoscope::experiments::Experiments::parse(&toml, "test.toml").unwrap()
    };
    let blocked_rows = async |guardrails: &str| {
        let mut x =
            a.clone().with_experiments(defs(guardrails)).report("experiment", &Params::default()).await.unwrap();
        let metric = x.columns.iter().position(|c| c == "metric").unwrap();
        x.rows.retain(|r| r[metric] == "blocked");
        x
    };
    let x = blocked_rows(r#"{ metric = "blocked", margin = 0.0 }"#).await;
    let with_failed =
        blocked_rows(r#"{ metric = "blocked", margin = 0.0 }, { metric = "failed", margin = 0.0 }"#).await;
    assert_eq!(x.rows, with_failed.rows, "{:?}", x.columns);
    // After exposure: e2 (control) and e4 (treat) were blocked; e5's 131049 is not a block.
    assert_eq!(
        rows(&x, &["variant", "exposures", "conversions"]),
        vec![vec![json!("control"), json!(3), json!(1)], vec![json!("treat"), json!(3), json!(1)]]
    );
    // Before: p1 and p3 (control) and p4 (treat) were blocked: two of three against one of
    // three, so the pre-period balance check has something to compare.
    let pre = rows(&x, &["variant", "pre_period_p_value"]);
    assert!(pre.iter().any(|r| r[1].as_f64().is_some()), "{pre:?}");
}

/// Revenue is capped at the experiment's 99.9th percentile of the contacts with revenue,
/// without the contacts met by more than one variant: their amounts neither move the cap nor
/// are capped (they are left out of the statistics).
#[tokio::test]
async fn revenue_is_capped_without_the_contacts_of_two_variants() {
    // (contact, variant(s), revenue in units)
    let contacts: Vec<(String, Vec<&str>, i64)> = (0..10)
        .map(|i| {
            (format!("+1555001{i:04}"), vec![if i < 5 { "control" } else { "treat" }], if i == 9 { 1000 } else { 10 })
        })
        .chain([("+15550029999".to_string(), vec!["control", "treat"], 100_000)])
        .collect();
    let mut ndjson = String::new();
    for (contact, variants, revenue) in &contacts {
        for (k, variant) in variants.iter().enumerate() {
            let id = format!("{contact}-{k}");
            ndjson += &format!(
                "{}\n",
                json!({"event_id": format!("{id}-acc"), "event_type": "send.accepted",
                    "occurred_at": format!("2026-03-03T10:00:0{k}Z"), "message_id": id, "contact": contact,
                    "campaign": "c", "template": "t", "experiment": "cap", "variant": variant})
            );
        }
        ndjson += &format!(
            "{}\n",
            json!({"event_id": format!("{contact}-conv"), "event_type": "conversion",
                "occurred_at": "2026-03-03T12:00:00Z", "contact": contact, "revenue_micros": revenue * 1_000_000})
        );
    }
    let (_dir, a) = load(&ndjson).await;
    let toml = "[[experiment]]\nname = \"cap\"\nsalt = \"c\"\n[experiment.analysis]\ngoals = [\"revenue\"]\n\
                [[experiment.variant]]\nname = \"control\"\nweight = 1\ncontrol = true\ntemplate = \"t\"\n\
                [[experiment.variant]]\nname = \"treat\"\nweight = 1\ntemplate = \"t\"\n";
    let a = a.with_experiments(convoscope::experiments::Experiments::parse(toml, "test.toml").unwrap());
    let x = a.report("experiment", &Params::default()).await.unwrap();
    let r = rows(&x, &["metric", "variant", "exposures", "conversion_rate", "multiple_exposures"]);
    // The cap of [10 x 9, 1000]: 10 + 0.991 * 990 = 991.09 (numpy's linear percentile); with the
    // contact of both variants (100,000) it would be 99,010, and the 1,000 would stand.
    assert_eq!(r.iter().map(|row| (row[2].clone(), row[4].clone())).collect::<Vec<_>>(), vec![(json!(5), json!(1)); 2]);
    close(&r[0][3], 10.0);
    close(&r[1][3], (4.0 * 10.0 + 991.09) / 5.0);
}

/// Old and new files coexist for a while during compaction (and after a crash between upload
/// and log cleanup): every report must count a stored event once, however many copies of it
/// the files hold.
#[tokio::test]
async fn a_second_copy_of_every_file_changes_no_report() {
    let (dir, a) = loaded().await;
    let all = Params::default();
    let stored = async || {
        let (_, batches) = a.query("SELECT count(*) FROM events").await.unwrap();
        use arrow::array::AsArray;
        batches[0].column(0).as_primitive::<arrow::datatypes::Int64Type>().value(0)
    };
    let events = stored().await;
    let mut before = Vec::new();
    for name in convoscope::analytics::reports::names() {
        before.push(a.report(name, &all).await.unwrap());
    }
    for f in all_files(&dir.path().join("store")) {
        if f.extension().is_some_and(|e| e == "parquet") {
            std::fs::copy(&f, f.with_file_name(format!("copy-{}", f.file_name().unwrap().to_string_lossy()))).unwrap();
        }
    }
    assert_eq!(stored().await, 2 * events, "every row is stored twice now");
    for (name, b) in convoscope::analytics::reports::names().into_iter().zip(before) {
        same(name, &a.report(name, &all).await.unwrap(), &b);
    }
}

/// `a` and `b` have the same columns and rows; numbers to 1e-9 relative (sums may differ in
/// the last bits with rows added in another order).
pub(crate) fn same(what: &str, a: &Report, b: &Report) {
    assert_eq!(a.columns, b.columns, "{what}");
    assert_eq!(a.rows.len(), b.rows.len(), "{what}: {:?}\nvs {:?}", a.rows, b.rows);
    for (x, y) in a.rows.iter().flatten().zip(b.rows.iter().flatten()) {
        match (x.as_f64(), y.as_f64()) {
            (Some(x), Some(y)) => assert!((x - y).abs() <= 1e-9 * x.abs().max(1.0), "{what}: {x} vs {y}"),
            _ => assert_eq!(x, y, "{what}"),
        }
    }
}

/// `from`'s events files (a store directory) shuffled into files of `rows` rows in `to`: each
/// message's and conversation's events end up in several files, whose rollup rows the reports
/// must merge.
async fn split_into_small_files(from: &std::path::Path, to: &Storage, rows: usize) {
    let mut batches = Vec::new();
    for f in all_files(from) {
        if f.to_string_lossy().contains("/events/date=") && f.extension().is_some_and(|e| e == "parquet") {
            let file = std::fs::File::open(&f).unwrap();
            let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file).unwrap();
            batches.extend(reader.build().unwrap().map(|b| b.unwrap()));
        }
    }
    let all = arrow::compute::concat_batches(&convoscope::event::schema(), &batches).unwrap();
    let n = all.num_rows() as u64;
    // Row i to position i * stride mod n: a fixed permutation when stride and n are coprime.
    let gcd = |mut a: u64, mut b: u64| {
        while b != 0 {
            (a, b) = (b, a % b);
        }
        a
    };
    let stride = (7919..).find(|s| gcd(*s, n) == 1).unwrap();
    let order = arrow::array::UInt32Array::from_iter_values((0..n).map(|i| (i * stride % n) as u32));
    let shuffled = arrow::compute::take_record_batch(&all, &order).unwrap();
    for (k, start) in (0..shuffled.num_rows()).step_by(rows).enumerate() {
        let len = rows.min(shuffled.num_rows() - start);
        to.write_batches(vec![shuffled.slice(start, len)], &format!("split-{k:04}")).await.unwrap();
    }
}

/// Every report gives over the facts from the rollups what it gives over the facts from the
/// views over the events, on the hand-built set (its edge cases), on generated data, and on
/// that data split into many small files (each message's and conversation's rows in several
/// files and dates), over every range and campaign filter.
#[tokio::test]
async fn reports_from_the_rollups_give_what_the_events_give() {
    let (_dir, fixtures) = loaded().await;
    let dir = test_dir();
    let generated = Storage::open(&format!("file://{}", dir.path().display())).unwrap();
    let spec = convoscope::generate::Spec {
        events: 60_000,
        days: 6,
        seed: 7,
        start: chrono::NaiveDate::from_ymd_opt(2026, 1, 1).unwrap(),
    };
    convoscope::generate::generate(&generated, &spec).await.unwrap();
    let split = Storage::open("memory://").unwrap();
    split_into_small_files(dir.path(), &split, 5_000).await;
    let (generated, split) = (Analytics::new(generated, 2).unwrap(), Analytics::new(split, 2).unwrap());
    let ranges = [
        Params::default(),
        Params::parse(Some("2026-02-02"), Some("2026-02-02"), None, None).unwrap(),
        Params::parse(Some("2026-01-02"), Some("2026-01-04"), None, None).unwrap(),
        Params::parse(None, Some("2026-01-03"), None, None).unwrap(),
        Params::parse(None, None, Some("spring"), None).unwrap(),
        Params::parse(None, None, None, Some("spring_cta")).unwrap(),
        Params::parse(Some("2026-01-03"), None, None, Some("no_such_experiment")).unwrap(),
    ];
    for a in [fixtures, generated, split] {
        assert!(a.rollups_cover().await.unwrap(), "every file written has its rollups");
        let events = a.clone().without_rollups();
        let campaigns = a.query("SELECT DISTINCT campaign FROM events WHERE campaign IS NOT NULL").await.unwrap().1;
        let mut params = ranges.to_vec();
        for b in &campaigns {
            use arrow::array::AsArray;
            for c in b.column(0).as_string_view().iter().flatten() {
                params.push(Params::parse(None, Some("2026-01-04"), Some(c), None).unwrap());
            }
        }
        for name in convoscope::analytics::reports::names() {
            // experiment's output shows reads and replies only when they are its metric.
            let metrics: &[Metric] = if name == "experiment" {
                &[Metric::Converted, Metric::Read, Metric::Replied]
            } else {
                &[Metric::Converted]
            };
            for p in &params {
                for metric in metrics {
                    let p = &Params { metric: Some(*metric), ..p.clone() };
                    let (x, y) = (a.report(name, p).await.unwrap(), events.report(name, p).await.unwrap());
                    same(&format!("{name} {p:?}"), &x, &y);
                }
            }
        }
    }
}

/// An events file without one of its rollups (a store of an earlier version) sends every report
/// to the events, with the same answers; `compact` writes the missing rollups and deletes those
/// of a retired layout.
#[tokio::test]
async fn a_file_without_its_rollup_is_read_from_the_events_until_compact_writes_one() {
    let (dir, a) = loaded().await;
    // One report of each rollup.
    async fn both(a: &Analytics) -> Vec<Report> {
        let mut out = Vec::new();
        for r in ["funnel", "sla", "experiment"] {
            out.push(a.report(r, &Params::default()).await.unwrap());
        }
        out
    }
    let check = |label: &str, now: Vec<Report>, before: &[Report]| {
        for (x, y) in now.iter().zip(before) {
            same(&format!("{} {label}", x.report.name()), x, y);
        }
    };
    let before = both(&a).await;
    let files = all_files(&dir.path().join("store"));
    let mut retired = None;
    for kind in convoscope::rollup::Kind::ALL {
        let dir = kind.dir();
        let rollup = files
            .iter()
            .find(|f| {
                f.to_string_lossy().contains(&format!("{dir}/date=")) && f.extension().is_some_and(|e| e == "parquet")
            })
            .unwrap_or_else(|| panic!("a {dir} file"));
        if kind == convoscope::rollup::Kind::Conversations {
            // As a store of the version before the conversation rollup's layout changed has it:
            // the file in the old directory, which no report reads.
            let old = rollup.to_string_lossy().replace(dir, convoscope::rollup::RETIRED_DIRS[0]);
            std::fs::create_dir_all(std::path::Path::new(&old).parent().unwrap()).unwrap();
            std::fs::rename(rollup, &old).unwrap();
            retired = Some(old);
        } else {
            std::fs::remove_file(rollup).unwrap();
        }
        assert!(!a.rollups_cover().await.unwrap(), "without a {dir} file");
    }
    check("from the events", both(&a).await, &before);
    let storage = Storage::open(&format!("file://{}", dir.path().join("store").display())).unwrap();
    let healed = convoscope::maintenance::heal_rollups(
        &storage,
        &mut convoscope::maintenance::Lease::new(storage.clone(), "test"),
    )
    .await
    .unwrap();
    assert_eq!(healed, convoscope::maintenance::Healed { written: convoscope::rollup::Kind::ALL.len(), deleted: 1 });
    assert!(a.rollups_cover().await.unwrap());
    check("from the rewritten rollups", both(&a).await, &before);
    let retired = retired.expect("a conversation rollup file");
    assert!(!std::path::Path::new(&retired).exists(), "the old layout's file is gone");
}

/// `trends` on the fixture: per day of the send, and the second day beside the first with
/// `compare=previous` over the API, whose filters are checked (a report that cannot compare,
/// a comparison without a range, an interval that is not one).
#[tokio::test]
async fn trends_per_day_and_beside_the_period_before() {
    let (_dir, a) = loaded().await;
    let t = a.report("trends", &Params::default()).await.unwrap();
    // 1 Feb: m1 (delivered, read, replied, converted in 2 days) and m2 (read, so delivered;
    // its conversion 19 days later is outside the window). 2 Feb: m3 failed, m4 delivered
    // and converted within the hour. Every window closed long ago.
    assert_eq!(
        rows(
            &t,
            &["period", "sent", "delivered", "read", "replied", "failed", "converted", "window_closed", "window_open"]
        ),
        vec![
            vec![json!("2026-02-01"), json!(2), json!(2), json!(2), json!(1), json!(0), json!(1), json!(2), json!(0)],
            vec![json!("2026-02-02"), json!(2), json!(1), json!(0), json!(0), json!(1), json!(1), json!(2), json!(0)],
        ]
    );
    let r = rows(&t, &["delivery_rate", "read_rate", "reply_rate", "failure_rate", "conversion_rate"]);
    for (got, exp) in r.concat().iter().zip([1.0, 1.0, 0.5, 0.0, 0.5, 0.5, 0.0, 0.0, 0.5, 0.5]) {
        close(got, exp);
    }
    // The messaging cost of the cost report, split by day of the send.
    let cost: f64 = rows(&t, &["cost"]).iter().map(|r| r[0].as_f64().unwrap()).sum();
    assert!((cost - 0.1154).abs() < 1e-9, "{cost}");
    let week = Params { interval: convoscope::analytics::reports::Interval::Week, ..Params::default() };
    let w = a.report("trends", &week).await.unwrap();
    // 1 February 2026 is a Sunday: its week began on 26 January; the 2nd begins the next.
    assert_eq!(
        rows(&w, &["period", "sent"]),
        vec![vec![json!("2026-01-26"), json!(2)], vec![json!("2026-02-02"), json!(2)]]
    );

    let s = TestServer::start(config(_dir.path())).await;
    let (code, v) =
        s.get_as(READ, "/v1/reports/trends?from=2026-02-02&to=2026-02-02&compare=previous&format=json").await;
    assert_eq!(code, 200, "{v}");
    let row = &v["rows"][0];
    assert_eq!((&row["period"], &row["previous_period"]), (&json!("2026-02-02"), &json!("2026-02-01")));
    assert_eq!((&row["sent"], &row["previous_sent"], &row["sent_change"]), (&json!(2), &json!(2), &json!(0.0)));
    close(&row["delivery_rate_change"], -0.5);
    assert_eq!(row["failure_rate_change"], Value::Null, "no failures the day before: no relative change");
    assert_eq!(v["rows"].as_array().map(Vec::len), Some(1));
    for (query, says) in [
        ("funnel?from=2026-02-01&to=2026-02-02&compare=previous", "cannot compare"),
        ("trends?compare=previous", "needs both from and to"),
        ("trends?compare=next&from=2026-02-01&to=2026-02-02", "compare must be previous"),
        ("trends?interval=month", "interval must be day or week"),
    ] {
        let (code, v) = s.get_as(READ, &format!("/v1/reports/{query}")).await;
        assert_eq!(code, 400, "{query}: {v}");
        assert!(v["message"].as_str().is_some_and(|m| m.contains(says)), "{query}: {v}");
    }
    s.stop().await;
}

/// `time_to_convert`, `retention` and `buttons` on the fixture, worked out by hand.
#[tokio::test]
async fn time_to_convert_retention_and_buttons_give_the_known_answers() {
    let (_dir, a) = loaded().await;
    let all = Params::default();

    // Reads: m1 65 s after its send, m2 300 s. Reply: m1 after 120 s. Conversions in the
    // window: m4's contact after an hour, m1's after 47 hours (m2's, 19 days on, is outside).
    let t = a.report("time_to_convert", &all).await.unwrap();
    assert_eq!(
        rows(&t, &["campaign", "step", "messages", "under_1m", "1m_to_10m", "1h_to_6h", "1d_to_7d", "over_7d"]),
        vec![
            vec![json!("spring"), json!("read"), json!(2), json!(0), json!(2), json!(0), json!(0), json!(0)],
            vec![json!("spring"), json!("reply"), json!(1), json!(0), json!(1), json!(0), json!(0), json!(0)],
            vec![json!("spring"), json!("conversion"), json!(2), json!(0), json!(0), json!(1), json!(1), json!(0)],
        ]
    );
    let p = rows(&t, &["p50_s", "p90_s", "p99_s"]);
    // Linear interpolation between the two values, as percentile_cont does.
    for (got, exp) in p.concat().iter().zip([182.5, 276.5, 297.65, 120.0, 120.0, 120.0, 86_400.0, 152_640.0, 167_544.0])
    {
        assert!((got.as_f64().unwrap() - exp).abs() < 1e-3, "{got} vs {exp}");
    }

    // Cohorts: contacts 1 and 2 first sent on Sunday 1 Feb (week of 26 Jan), 3 and 4 on Monday
    // 2 Feb. Contact 1 replied that day (its inbound at 08:00 came before the send and does
    // not count) and converted on the 3rd (week 1); contact 2 converted on the 20th (week 3);
    // contact 4 converted within the hour. Week 2 has no activity but is a row; the 2 Feb
    // cohort's week 3 begins after the last activity and is not.
    let r = a.report("retention", &all).await.unwrap();
    assert_eq!(
        rows(&r, &["cohort_week", "week", "contacts", "active", "share", "complete"]),
        [
            ("2026-01-26", 0, 1),
            ("2026-01-26", 1, 1),
            ("2026-01-26", 2, 0),
            ("2026-01-26", 3, 1),
            ("2026-02-02", 0, 1),
            ("2026-02-02", 1, 0),
            ("2026-02-02", 2, 0),
        ]
        .iter()
        .map(|&(c, w, n)| vec![json!(c), json!(w), json!(2), json!(n), json!(n as f64 / 2.0), json!(true)])
        .collect::<Vec<_>>()
    );

    // promo_a / control: m1 (delivered, read) and m4 (delivered). m1's contact tapped "Yes
    // please" and followed its link; m4's contact followed m4's link twice.
    let b = a.report("buttons", &all).await.unwrap();
    assert_eq!(
        rows(&b, &["template", "variant", "button", "taps", "tappers", "messages_tapped", "delivered", "read"]),
        vec![
            vec![json!("promo_a"), json!("control"), json!("(link)"), json!(3), json!(2), json!(2), json!(2), json!(1)],
            vec![
                json!("promo_a"),
                json!("control"),
                json!("Yes please"),
                json!(1),
                json!(1),
                json!(1),
                json!(2),
                json!(1)
            ],
        ]
    );
    let rates = rows(&b, &["tap_rate_delivered", "tap_rate_read"]);
    assert_eq!(rates, vec![vec![json!(1.0), json!(1.0)], vec![json!(0.5), json!(1.0)]]);
}

/// `--by` on funnel and delivery: one key or two, over the API too; a report without
/// breakdowns, or a key a report does not take, is refused.
#[tokio::test]
async fn funnel_and_delivery_break_down_by_one_key_or_two() {
    let (dir, a) = loaded().await;
    let by = |keys: &str| {
        let filters = convoscope::analytics::reports::Filters { by: Some(keys.into()), ..Default::default() };
        filters.parse().unwrap()
    };
    // The contacts' countries: m1 and m4 to GB numbers, m2 to BR, m3 to IN.
    let f = a.report("funnel", &by("country")).await.unwrap();
    let cols = ["template", "breakdown", "sent", "delivered", "read", "replied", "converted"];
    assert_eq!(
        rows(&f, &cols),
        vec![
            vec![json!("promo_a"), json!("GB"), json!(2), json!(2), json!(1), json!(1), json!(2)],
            vec![json!("promo_b"), json!("BR"), json!(1), json!(1), json!(1), json!(0), json!(0)],
            vec![json!("promo_b"), json!("IN"), json!(1), json!(0), json!(0), json!(0), json!(0)],
        ]
    );
    let f = a.report("funnel", &by("variant,country")).await.unwrap();
    assert_eq!(
        rows(&f, &["template", "breakdown", "sent"]),
        vec![
            vec![json!("promo_a"), json!("control / GB"), json!(2)],
            vec![json!("promo_b"), json!("bold / BR"), json!(1)],
            vec![json!("promo_b"), json!("bold / IN"), json!(1)],
        ]
    );
    // Without a breakdown there is no such column; with one, delivery's rows split and add up.
    let plain = a.report("delivery", &Params::default()).await.unwrap();
    assert!(!plain.columns.contains(&"breakdown".to_string()));
    let split = a.report("delivery", &by("variant")).await.unwrap();
    let total = |r: &Report| {
        rows(r, &["sent", "failed"]).iter().map(|r| r[0].as_i64().unwrap() * 10 + r[1].as_i64().unwrap()).sum::<i64>()
    };
    assert_eq!(total(&plain), total(&split));
    assert!(rows(&split, &["breakdown"]).iter().all(|b| b[0] == json!("control") || b[0] == json!("bold")));

    let s = TestServer::start(config(dir.path())).await;
    let (code, v) = s.get_as(READ, "/v1/reports/funnel?by=country,template&format=json").await;
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["rows"][0]["breakdown"], json!("GB / promo_a"));
    assert_eq!(v["params"]["by"], json!("country,template"));
    for (query, says) in [
        ("sla?by=country", "sla has no breakdown"),
        ("experiment?by=variant", "experiment breaks down by country, locale, template, not variant"),
        ("experiment?by=country,locale", "one key at a time"),
        ("funnel?by=country,locale,template", "one key or two"),
        ("funnel?by=planet", "by must be one of"),
    ] {
        let (code, v) = s.get_as(READ, &format!("/v1/reports/{query}")).await;
        assert_eq!(code, 400, "{query}: {v}");
        assert!(v["message"].as_str().is_some_and(|m| m.contains(says)), "{query}: {v}");
    }
    s.stop().await;
}

/// `templates` and `account` on the fixture: promo_a approved, its quality falling to YELLOW,
/// paused on 2 Feb and reinstated that day; promo_c rejected and never sent; the number's
/// limit raised, an alert and a throughput error.
#[tokio::test]
async fn templates_and_account_give_the_known_answers() {
    let (_dir, a) = loaded().await;
    let all = Params::default();

    let t = a.report("templates", &all).await.unwrap();
    assert_eq!(
        rows(&t, &["template", "locale", "status", "paused_on", "quality", "sent", "delivered", "read", "clicked"]),
        vec![
            vec![
                json!("promo_a"),
                json!("en_GB"),
                json!("REINSTATED"),
                json!("2026-02-02"),
                json!("YELLOW"),
                json!(2),
                json!(2),
                json!(1),
                json!(2)
            ],
            vec![
                json!("promo_b"),
                json!("en_IN"),
                Value::Null,
                Value::Null,
                Value::Null,
                json!(1),
                json!(0),
                json!(0),
                json!(0)
            ],
            vec![
                json!("promo_b"),
                json!("pt_BR"),
                Value::Null,
                Value::Null,
                Value::Null,
                json!(1),
                json!(1),
                json!(1),
                json!(0)
            ],
            vec![
                json!("promo_c"),
                json!("en_US"),
                json!("REJECTED"),
                Value::Null,
                Value::Null,
                json!(0),
                json!(0),
                json!(0),
                json!(0)
            ],
        ]
    );
    let r = rows(&t, &["status_history", "quality_history", "replied", "converted", "click_rate", "failures"]);
    assert_eq!(
        r[0],
        vec![
            json!("APPROVED on 2026-02-01; PAUSED:FIRST_PAUSE on 2026-02-02; REINSTATED on 2026-02-02"),
            json!("YELLOW on 2026-02-01"),
            json!(1),
            json!(2),
            json!(1.0),
            Value::Null
        ]
    );
    assert_eq!(r[1][5], json!("131026 (1)"));
    assert_eq!(r[3][4], Value::Null, "no message sent: no rate");
    let reason = rows(&t, &["rejection_reason", "rejection_recommendation", "status_since"]);
    assert_eq!(
        reason[3],
        vec![json!("INVALID_FORMAT"), json!("Remove the leading variable."), json!("2026-02-01T07:30:00Z")]
    );

    let k = a.report("account", &all).await.unwrap();
    assert_eq!(
        rows(
            &k,
            &[
                "day",
                "phone_number_id",
                "kind",
                "change",
                "previous_limit",
                "current_limit",
                "messaging_limit",
                "detail"
            ]
        ),
        vec![
            vec![
                json!("2026-02-01"),
                json!("pn-1"),
                json!("account.phone_quality"),
                json!("UPGRADE"),
                json!("TIER_1K"),
                json!("TIER_10K"),
                json!(10000),
                Value::Null
            ],
            vec![
                json!("2026-02-02"),
                Value::Null,
                json!("account.alert"),
                json!("INCREASED_BLOCK_RATE"),
                Value::Null,
                Value::Null,
                Value::Null,
                json!("More blocks than usual.")
            ],
            vec![
                json!("2026-02-02"),
                json!("pn-1"),
                json!("account.error"),
                json!("130429"),
                Value::Null,
                Value::Null,
                Value::Null,
                json!("Rate limit hit")
            ],
        ]
    );
}

/// `pricing` on the fixture: m1 (GB) and m2 (BR) regular and billable, m4 (GB) a free entry
/// point (it answered an ad), m3 failed with no pricing at all.
#[tokio::test]
async fn pricing_gives_the_known_answers() {
    let (_dir, a) = loaded().await;
    let p = a.report("pricing", &Params::default()).await.unwrap();
    let n = Value::Null;
    assert_eq!(
        rows(
            &p,
            &[
                "day",
                "category",
                "pricing_type",
                "country",
                "messages",
                "billable",
                "unpriced",
                "delivered",
                "read",
                "clicked",
                "converted",
                "window_open"
            ]
        ),
        vec![
            vec![
                json!("2026-02-01"),
                json!("marketing"),
                json!("regular"),
                json!("BR"),
                json!(1),
                json!(1),
                json!(0),
                json!(1),
                json!(1),
                json!(0),
                json!(0),
                json!(0)
            ],
            vec![
                json!("2026-02-01"),
                json!("marketing"),
                json!("regular"),
                json!("GB"),
                json!(1),
                json!(1),
                json!(0),
                json!(1),
                json!(1),
                json!(1),
                json!(1),
                json!(0)
            ],
            vec![
                json!("2026-02-02"),
                json!("marketing"),
                json!("free_entry_point"),
                json!("GB"),
                json!(1),
                json!(0),
                json!(0),
                json!(1),
                json!(0),
                json!(1),
                json!(1),
                json!(0)
            ],
            vec![
                json!("2026-02-02"),
                json!("marketing"),
                n.clone(),
                json!("IN"),
                json!(1),
                json!(0),
                json!(0),
                json!(0),
                json!(0),
                json!(0),
                json!(0),
                json!(0)
            ],
        ]
    );
    // The rate card's marketing prices: BR 0.0625, GB 0.0529; free and failed messages cost 0.
    let costs = rows(&p, &["cost", "cost_per_delivered", "cost_per_read", "cost_per_click", "cost_per_conversion"]);
    let expected = [
        [Some(0.0625), Some(0.0625), Some(0.0625), None, None],
        [Some(0.0529), Some(0.0529), Some(0.0529), Some(0.0529), Some(0.0529)],
        [Some(0.0), Some(0.0), None, Some(0.0), Some(0.0)],
        [Some(0.0), None, None, None, None],
    ];
    for (got, exp) in costs.iter().zip(expected) {
        for (g, e) in got.iter().zip(exp) {
            match e {
                Some(e) => close(g, e),
                None => assert_eq!(g, &n, "{got:?}"),
            }
        }
    }
    // With a ten-year attribution window every window is still open: no conversion is final.
    let long = Analytics::new(Storage::open(&config(_dir.path()).storage).unwrap(), 3650).unwrap();
    let p = long.report("pricing", &Params::default()).await.unwrap();
    let open: Vec<Value> = rows(&p, &["window_open"]).concat();
    let converted: Vec<Value> = rows(&p, &["converted"]).concat();
    assert_eq!(open, vec![json!(1); 4]);
    assert_eq!(converted, vec![json!(0); 4]);
    // No conversion is final, so none has a cost yet; the others do not wait.
    assert_eq!(rows(&p, &["cost_per_conversion"]).concat(), vec![Value::Null; 4]);
    close(&rows(&p, &["cost_per_delivered"])[1][0], 0.0529);
}

/// A rate is final only once its window has closed: a conversation resolved a minute ago may
/// still be reopened within 7 days, and a conversion may still follow a message sent a minute
/// ago, so neither counts yet; each report says how many are still open.
#[tokio::test]
async fn rates_wait_for_their_window_to_close() {
    let at = |mins: i64| (chrono::Utc::now() - chrono::Duration::minutes(mins)).to_rfc3339();
    let events = [
        json!({"event_id": "o-open", "event_type": "conversation.opened", "occurred_at": at(10),
               "conversation_id": "o1", "queue": "billing", "contact": "+447700900001"}),
        json!({"event_id": "o-bot", "event_type": "conversation.bot_reply", "occurred_at": at(9),
               "conversation_id": "o1", "actor": "bot"}),
        json!({"event_id": "o-res", "event_type": "conversation.resolved", "occurred_at": at(1),
               "conversation_id": "o1"}),
        json!({"event_id": "n-acc", "event_type": "send.accepted", "occurred_at": at(5), "message_id": "n1",
               "contact": "+447700900001", "campaign": "now", "template": "promo_a", "locale": "en_GB",
               "category": "marketing"}),
        json!({"event_id": "n-dlv", "event_type": "message.delivered", "occurred_at": at(4), "message_id": "n1",
               "contact": "+447700900001", "billable": true}),
        json!({"event_id": "n-conv", "event_type": "conversion", "occurred_at": at(2),
               "contact": "+447700900001", "revenue_micros": 1000000}),
    ];
    let ndjson: String = events.iter().map(|e| format!("{e}\n")).collect();
    let (_dir, a) = load(&ndjson).await;
    let all = Params::default();

    let s = a.report("sla", &all).await.unwrap();
    assert_eq!(
        rows(&s, &["conversations", "first_contact_resolution_rate", "reopen_window_open"]),
        vec![vec![json!(1), Value::Null, json!(1)]]
    );
    let f = a.report("funnel", &all).await.unwrap();
    assert_eq!(
        rows(&f, &["sent", "converted", "window_open", "conversion_rate"]),
        vec![vec![json!(1), json!(0), json!(1), Value::Null]]
    );
    let t = a.report("templates", &all).await.unwrap();
    assert_eq!(
        rows(&t, &["sent", "converted", "window_open", "conversion_rate"]),
        vec![vec![json!(1), json!(0), json!(1), Value::Null]]
    );
    let t = a.report("trends", &all).await.unwrap();
    assert_eq!(rows(&t, &["sent", "converted", "window_open"]), vec![vec![json!(1), json!(0), json!(1)]]);
    // cost counts the conversion it has seen and says the window is open.
    let c = a.report("cost", &all).await.unwrap();
    assert_eq!(rows(&c, &["messages", "conversions", "window_open"]), vec![vec![json!(1), json!(1), json!(1)]]);
}
