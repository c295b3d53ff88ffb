//! The audit trail, erasure of a contact and its consent history, on real servers, the real
//! binary and real files.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use arrow::array::{Array, AsArray, BooleanArray, RecordBatch, StringArray};
use convoscope::analytics::Analytics;
use convoscope::analytics::reports::{Params, names};
use convoscope::config::Tenant;
use convoscope::store::Storage;
use serde_json::{Value, json};

use crate::common::*;

/// The PII key the generator uses for the seed below: the server's, so a generated contact's
/// phone number gives the generated `contact_key`.
const SEED: u64 = 5;
const GENERATOR_KEY: &str = "convoscope-generator-5";

/// The generated contact with the most events: its phone number and key.
fn busiest_contact(batches: &[RecordBatch]) -> (String, String) {
    let mut counts: std::collections::HashMap<String, usize> = Default::default();
    for b in batches {
        let c = b.column_by_name("contact_key").unwrap().as_string::<i32>();
        for v in c.iter().flatten() {
            *counts.entry(v.to_string()).or_default() += 1;
        }
    }
    let key = convoscope::pii::PiiKey::from_secret(GENERATOR_KEY);
    // The generator's numbers: a country code and 100,000,000 plus the contact's number.
    let (phone, ck, _) = ["1", "55", "91", "52", "62", "44", "49"]
        .iter()
        .flat_map(|cc| (0..2_000u32).map(move |n| format!("+{cc}{:09}", 100_000_000 + n)))
        .filter_map(|phone| {
            let (ck, _) = key.contact(&phone)?;
            counts.get(&ck).map(|n| (phone, ck, *n))
        })
        .max_by_key(|(_, _, n)| *n)
        .expect("a generated contact");
    (phone, ck)
}

/// `batches` without the rows of contact `ck`: its own, and those of its messages and
/// conversations (what an erasure removes), computed here independently of the erasure.
fn without_contact(batches: &[RecordBatch], ck: &str) -> Vec<RecordBatch> {
    let (mut messages, mut conversations) = (HashSet::new(), HashSet::new());
    let text = |a: &StringArray, i: usize| a.is_valid(i).then(|| a.value(i).to_string());
    for b in batches {
        let col = |n: &str| b.column_by_name(n).unwrap().as_string::<i32>().clone();
        let (c, m, conv) = (col("contact_key"), col("message_id"), col("conversation_id"));
        for i in 0..b.num_rows() {
            if text(&c, i).as_deref() == Some(ck) {
                messages.extend(text(&m, i));
                conversations.extend(text(&conv, i));
            }
        }
    }
    batches
        .iter()
        .map(|b| {
            let col = |n: &str| b.column_by_name(n).unwrap().as_string::<i32>().clone();
            let (c, m, r, conv) = (col("contact_key"), col("message_id"), col("reply_to"), col("conversation_id"));
            let keep: BooleanArray = (0..b.num_rows())
                .map(|i| {
                    let gone = text(&c, i).as_deref() == Some(ck)
                        || text(&m, i).is_some_and(|v| messages.contains(&v))
                        || text(&r, i).is_some_and(|v| messages.contains(&v))
                        || text(&conv, i).is_some_and(|v| conversations.contains(&v));
                    Some(!gone)
                })
                .collect();
            arrow::compute::filter_record_batch(b, &keep).unwrap()
        })
        .collect()
}

/// Every row of every Parquet file under `dir` (events, rollups, audit), decoded: the values of
/// `column` wherever a file has it.
fn values_everywhere(dir: &std::path::Path, column: &str) -> Vec<String> {
    let mut out = Vec::new();
    for path in all_files(dir).into_iter().filter(|p| p.extension().is_some_and(|e| e == "parquet")) {
        let file = std::fs::File::open(&path).unwrap();
        let reader =
            parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file).unwrap().build().unwrap();
        for b in reader {
            let b = b.unwrap();
            if let Some(c) = b.column_by_name(column) {
                let c = arrow::compute::cast(c, &arrow::datatypes::DataType::Utf8).unwrap();
                out.extend(c.as_string::<i32>().iter().flatten().map(str::to_string));
            }
        }
    }
    out
}

#[tokio::test]
async fn after_an_erasure_every_report_equals_the_reports_without_the_contact() {
    let dir = test_dir();
    let batches = generated_batches(30_000, 10, SEED).await;
    let (phone, ck) = busiest_contact(&batches);
    let erased = Storage::open(&format!("file://{}", dir.path().join("store").display())).unwrap();
    let expected = Storage::open("memory://").unwrap();
    for (i, b) in batches.iter().enumerate() {
        erased.write_batches(vec![b.clone()], &format!("gen-{i}")).await.unwrap();
    }
    let kept = without_contact(&batches, &ck);
    let removed: usize = batches.iter().map(RecordBatch::num_rows).sum::<usize>()
        - kept.iter().map(RecordBatch::num_rows).sum::<usize>();
    assert!(removed >= 5, "the contact has events: {removed}");
    for (i, b) in kept.into_iter().enumerate() {
        expected.write_batches(vec![b], &format!("gen-{i}")).await.unwrap();
    }
    // The real binary, as an operator runs it.
    let env: Vec<(String, String)> = vec![
        ("CONVOSCOPE_STORAGE".into(), erased.url.clone()),
        ("CONVOSCOPE_PII_KEY".into(), GENERATOR_KEY.into()),
        ("CONVOSCOPE_STATE_DIR".into(), dir.path().join("state").display().to_string()),
    ];
    let (ok, out, err) = convoscope(&["erase", "--contact", &phone], &env).await;
    assert!(ok, "{err}");
    assert!(out.contains(&format!("{removed} rows")), "{out}");
    let (ok, out, _) = convoscope(&["erase", "--contact", &phone], &env).await;
    assert!(ok && out.contains(": 0 rows from 0 files"), "a rerun finds nothing left: {out}");

    let (a, b) = (Analytics::new(erased.clone(), 7).unwrap(), Analytics::new(expected, 7).unwrap());
    for name in names() {
        let (got, want) =
            (a.report(name, &Params::default()).await.unwrap(), b.report(name, &Params::default()).await.unwrap());
        let (g, w) = (sorted_rows(&got.to_json()), sorted_rows(&want.to_json()));
        assert!(!w.is_empty(), "{name}");
        assert!(rows_equal(&json!(g), &json!(w)), "{name} after the erasure differs from {name} without the contact");
    }
    // Nothing of the contact in any file: not its key in the events, not its id in a rollup.
    let key = convoscope::ids::key(&ck).to_string();
    assert!(!values_everywhere(&dir.path().join("store/events"), "contact_key").contains(&ck));
    // Every rollup, by its kind (a new kind must name its contact column here to compile).
    for kind in convoscope::rollup::Kind::ALL {
        use convoscope::rollup::Kind;
        let column = match kind {
            Kind::Messages | Kind::Exposures | Kind::ContactEvents => "contact",
            Kind::Conversations => "contact_key",
        };
        let values = values_everywhere(&dir.path().join("store").join(kind.dir()), column);
        assert!(!values.is_empty() && !values.iter().any(|v| *v == key || *v == ck), "{}", kind.dir());
    }
    // The two runs are in the audit trail, without the number.
    let (_, audit) = a.query("SELECT action, detail, count FROM audit ORDER BY at").await.unwrap();
    let rows = convoscope::analytics::format::rows(&audit).unwrap();
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert_eq!(rows[0][0], json!("convoscope erase"));
    assert_eq!(rows[0][2], json!(removed));
    assert!(!format!("{rows:?}").contains(&phone[1..]), "{rows:?}");
    // The consent export lists the erasure.
    let (ok, csv, err) = convoscope(&["consent", "export"], &env).await;
    assert!(ok, "{err}");
    assert!(csv.lines().any(|l| l.starts_with(&format!("{ck},all,erased,"))), "{csv}");
}

/// A signed Meta webhook of one `delivered` status for message `id` to `to` on 2026-01-03.
fn status(id: &str, to: &str) -> Vec<u8> {
    json!({"object": "whatsapp_business_account", "entry": [{"id": "100200300400500", "changes": [{
        "field": "messages",
        "value": {"messaging_product": "whatsapp",
                  "metadata": {"display_phone_number": "15550101234", "phone_number_id": "600700800900111"},
                  "statuses": [{"id": id, "status": "delivered", "timestamp": "1767441600",
                                "recipient_id": to.trim_start_matches('+')}]}}]}]})
    .to_string()
    .into_bytes()
}

#[tokio::test]
async fn a_contact_erased_under_load_is_gone_and_everything_else_is_stored_once() {
    let dir = test_dir();
    let batches = generated_batches(20_000, 5, SEED).await;
    let (phone, ck) = busiest_contact(&batches);
    let mut cfg = config(dir.path());
    cfg.pii_key = Some(GENERATOR_KEY.into());
    cfg.compact_every_secs = 1;
    cfg.flush_interval_secs = 0.3;
    // A round keeps replaced files for the longest query time limit before deleting them, and
    // an erasure waits for the round: short limits keep the rounds short.
    (cfg.query_timeout_secs, cfg.report_timeout_secs, cfg.request_timeout_secs) = (1.0, 1.0, 5.0);
    cfg.tenants =
        vec![Tenant { name: "acme".into(), account_ids: vec!["100200300400500".into()], ..Default::default() }];
    cfg.tokens.push("read:acme-reader-1@acme".into());
    let store = Storage::open(&cfg.storage).unwrap();
    for (i, b) in batches.iter().enumerate() {
        store.write_batches(vec![b.clone()], &format!("gen-{i}")).await.unwrap();
    }
    let s = Arc::new(TestServer::start(cfg).await);
    // Webhooks for the contact and for others, from before the erasure to after it.
    let others = ["+15550100001", "+15550100002", "+15550100003"];
    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicUsize::new(0));
    let load = {
        let (s, stop, sent, phone) = (s.clone(), stop.clone(), sent.clone(), phone.clone());
        tokio::spawn(async move {
            let mut acked_others = Vec::new();
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) {
                let (id, to) = if n % 4 == 0 {
                    (format!("wamid.load-erased-{n}"), phone.as_str())
                } else {
                    (format!("wamid.load-{n}"), others[n % 3])
                };
                let r = s.post_meta(&status(&id, to)).await;
                assert_eq!(r.status(), 200);
                if n % 4 != 0 {
                    acked_others.push(id);
                }
                n += 1;
                sent.store(n, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            acked_others
        })
    };
    assert!(eventually(async || sent.load(Ordering::Relaxed) > 150, Duration::from_secs(30)).await);
    let r = s
        .client
        .post(s.url("/v1/admin/erase"))
        .bearer_auth(ADMIN)
        .json(&json!({"contact": phone}))
        .send()
        .await
        .unwrap();
    let status_code = r.status();
    let answer: Value = r.json().await.unwrap();
    assert_eq!(status_code, 200, "{answer}");
    assert_eq!(answer["contact_key"], json!(ck));
    assert!(answer["rows"].as_u64().unwrap() > 0, "{answer}");
    let at_erasure = sent.load(Ordering::Relaxed);
    assert!(eventually(async || sent.load(Ordering::Relaxed) > at_erasure + 150, Duration::from_secs(30)).await);
    stop.store(true, Ordering::Relaxed);
    let acked_others = load.await.unwrap();
    s.flush().await;
    // A compaction round has merged what the load flushed.
    tokio::time::sleep(Duration::from_millis(2500)).await;

    let store_dir = dir.path().join("store");
    assert!(!values_everywhere(&store_dir.join("events"), "contact_key").contains(&ck), "no event of the contact");
    let key = convoscope::ids::key(&ck).to_string();
    assert!(!values_everywhere(&store_dir.join("rollups"), "contact").contains(&key), "no rollup row of it");
    let ids = values_everywhere(&store_dir.join("events"), "message_id");
    assert!(!ids.iter().any(|m| m.starts_with("wamid.load-erased-")), "none of its receipts, before or after");
    // Every other acknowledged event is stored once (compaction may have left a replaced file
    // for its grace period; the reports count an event once, as this query does).
    let stored = s.query("SELECT message_id, COUNT(DISTINCT event_id) FROM events WHERE message_id LIKE 'wamid.load-%' GROUP BY message_id").await;
    let stored: std::collections::HashMap<String, i64> =
        stored.into_iter().map(|r| (r[0].as_str().unwrap().to_string(), r[1].as_i64().unwrap())).collect();
    assert_eq!(stored.len(), acked_others.len());
    assert!(acked_others.iter().all(|id| stored.get(id) == Some(&1)));
    // The receipts that came after the erasure were refused and counted.
    let metrics = s.client.get(s.url("/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(
        metrics.lines().any(|l| l.starts_with("convoscope_ingest_rejected_total") && l.contains("reason=\"erased\"")),
        "{metrics}"
    );
    // The erasure's audit record, with what it removed; the trail is the operator's alone.
    let audit =
        s.query("SELECT action, target, count, outcome, tenant FROM audit WHERE action = 'POST /v1/admin/erase'").await;
    assert_eq!(audit.len(), 1, "{audit:?}");
    assert_eq!((&audit[0][1], &audit[0][2], &audit[0][3]), (&json!(ck), &answer["rows"], &json!("ok")));
    assert_eq!(s.sql_as("acme-reader-1", "SELECT * FROM audit").await.0, 403);
    // The consent history says it was erased.
    let (_, consent) = s.get_as(READ, &format!("/v1/consent/{phone}")).await;
    assert_eq!(consent["now"]["state"], json!("erased"), "{consent}");
    assert_eq!(consent["now"]["sends"]["utility"], json!(false));
    match Arc::try_unwrap(s) {
        Ok(s) => s.stop().await,
        Err(_) => panic!("the load task still holds the server"),
    }
}

#[tokio::test]
async fn every_api_call_and_sign_in_leaves_an_audit_record_without_secrets() {
    let dir = test_dir();
    let mut cfg = config(dir.path());
    cfg.tenants = vec![Tenant { name: "acme".into(), phone_number_ids: vec!["p-1".into()], ..Default::default() }];
    cfg.tokens.push("read:acme-reader-1@acme".into());
    cfg.pii_key = Some("audit-test-key".into());
    let s = TestServer::start(cfg).await;
    let sql = "SELECT COUNT(*) FROM events WHERE contact_key = '+1 555 010 9876'";
    assert_eq!(s.sql_as(READ, sql).await.0, 200);
    assert_eq!(s.get_as("acme-reader-1", "/v1/reports/funnel").await.0, 200);
    assert_eq!(s.sql_as("acme-reader-1", "SELECT * FROM audit").await.0, 403);
    assert_eq!(s.get_as("not-a-token-at-all", "/v1/reports/funnel").await.0, 401);
    assert_eq!(s.get_as("acme-reader-1", "/v1/consent/+15550109876").await.0, 200);
    let c = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let r = c.post(s.url("/login")).form(&[("token", "acme-reader-1")]).send().await.unwrap();
    assert_eq!(r.status(), 303);
    s.flush().await;
    let rows =
        s.query("SELECT action, token_id, role, tenant, target, detail, outcome, status FROM audit ORDER BY at").await;
    let key = convoscope::pii::PiiKey::from_secret("audit-test-key");
    let acme_id = convoscope::server::auth::token_id(&key, "acme-reader-1");
    let find = |action: &str, status: i64| {
        rows.iter()
            .find(|r| r[0] == json!(action) && r[7] == json!(status))
            .unwrap_or_else(|| panic!("{action} {status} in {rows:?}"))
            .clone()
    };
    let q = find("POST /v1/query", 200);
    assert_eq!((&q[2], &q[3], &q[6]), (&json!("read"), &json!("*"), &json!("ok")));
    assert_eq!(q[5], json!("SELECT COUNT(*) FROM events WHERE contact_key = '<number>'"), "the number is redacted");
    let report = find("GET /v1/reports/{name}", 200);
    assert_eq!((&report[1], &report[3], &report[4]), (&json!(acme_id), &json!("acme"), &json!("funnel")));
    let refused = find("POST /v1/query", 403);
    assert_eq!((&refused[3], &refused[6]), (&json!("acme"), &json!("refused")));
    let unknown = find("GET /v1/reports/{name}", 401);
    assert_eq!((&unknown[2], &unknown[6]), (&json!("-"), &json!("refused")));
    let consent = find("GET /v1/consent/{phone}", 200);
    assert!(consent[4].as_str().is_some_and(|t| !t.contains("5550109876")), "the contact's key, not its number");
    let login = find("POST /login", 303);
    assert_eq!((&login[1], &login[3]), (&json!(acme_id), &json!("acme")));
    let text = format!("{rows:?}");
    for secret in [READ, ADMIN, "acme-reader-1", "not-a-token-at-all", "5550109876"] {
        assert!(!text.contains(secret), "{secret} in the audit trail");
    }
    s.stop().await;
}

#[tokio::test]
async fn serves_round_keeps_each_tenant_and_consent_for_their_own_periods() {
    const IDS: &str = "SELECT event_id FROM events ORDER BY event_id";
    let dir = test_dir();
    let mut cfg = config(dir.path());
    cfg.compact_every_secs = 1;
    (cfg.query_timeout_secs, cfg.report_timeout_secs, cfg.request_timeout_secs) = (1.0, 1.0, 5.0);
    cfg.tenants = vec![Tenant {
        name: "acme".into(),
        phone_number_ids: vec!["acme-1".into()],
        retention_days: Some(30),
        ..Default::default()
    }];
    let store = Storage::open(&cfg.storage).unwrap();
    let today = chrono::Utc::now().date_naive();
    let at =
        |ago: i64| (today - chrono::Duration::days(ago)).and_hms_opt(12, 0, 0).unwrap().and_utc().timestamp_micros();
    let ev = |id: &str, kind: &str, ago: i64, phone: Option<&str>| {
        let mut e = convoscope::event::Event::new(id.into(), kind, at(ago), 0, "api");
        e.phone_number_id = phone.map(str::to_string);
        e
    };
    store
        .write_events(
            vec![
                ev("acme-send", "message.sent", 40, Some("acme-1")),
                ev("acme-consent", "consent.opt_in", 40, Some("acme-1")),
                ev("other-send", "message.sent", 40, Some("other-1")),
                ev("old-send", "message.sent", 500, None),
                ev("old-consent", "consent.opt_out", 500, None),
                ev("recent-acme", "message.sent", 2, Some("acme-1")),
            ],
            "seeded",
        )
        .await
        .unwrap();
    let s = TestServer::start(cfg).await;
    let ids = || async { s.query(IDS).await.into_iter().map(|r| r[0].clone()).collect::<Vec<_>>() };
    // A query planned just before the round rewrites a day can name a file already gone and
    // fail; the poll tries again (the read after it must succeed).
    let polled = || async {
        let r = s.client.post(s.url("/v1/query")).bearer_auth(READ).json(&json!({ "sql": IDS })).send().await.ok()?;
        let v: serde_json::Value = r.status().is_success().then_some(r.json().await.ok()?)?;
        Some(v["rows"].as_array()?.iter().map(|r| r[0].clone()).collect::<Vec<_>>())
    };
    let kept = json!(["acme-consent", "old-consent", "other-send", "recent-acme"]);
    assert!(
        eventually(async || polled().await.is_some_and(|got| json!(got) == kept), Duration::from_secs(30)).await,
        "{:?}",
        ids().await
    );
    s.stop().await;
}
