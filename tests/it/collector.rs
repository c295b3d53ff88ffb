//! The collector over real HTTP: verified webhooks in, normalised Parquet rows out.

use std::time::Duration;

use serde_json::{Value, json};

use crate::common::*;

const ROW_SQL: &str = "SELECT event_id, event_type, occurred_at, source, message_id, reply_to, country, campaign, \
    experiment, variant, category, billable, error_code, error_title, interaction_id, content_type, \
    contact_key IS NOT NULL AS has_contact FROM events ORDER BY event_id";

#[tokio::test]
async fn signed_meta_batch_is_stored_as_normalised_rows_once() {
    let dir = test_dir();
    let s = TestServer::start(config(dir.path())).await;
    let body = std::fs::read(fixture("collector/meta_batch.json")).unwrap();

    let r = s.post_meta(&body).await;
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["accepted"], 7, "{v}");
    s.flush().await;

    let expected: Vec<Vec<Value>> =
        serde_json::from_str(&std::fs::read_to_string(fixture("collector/meta_batch.expected.json")).unwrap()).unwrap();
    assert_eq!(s.query(ROW_SQL).await, expected);

    // Meta retries: the same body again is acknowledged, counted as duplicates, not stored.
    let r = s.post_meta(&body).await;
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!((v["accepted"].as_u64(), v["duplicates"].as_u64()), (Some(0), Some(7)));
    s.flush().await;
    assert_eq!(s.query("SELECT count(*) FROM events").await, vec![vec![json!(7)]]);
    let metrics = s.client.get(s.url("/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains("convoscope_ingest_duplicates_total{source=\"meta\"} 7"), "{metrics}");
    assert!(metrics.contains("convoscope_ingest_events_total{event_type=\"message.sent\",source=\"meta\"} 1"));
    assert!(metrics.contains("convoscope_message_failures_total{error_code=\"131026\"} 1"));
    assert!(metrics.contains("convoscope_delivery_latency_seconds_sum 5"));

    // Nothing personal reached disk: not the numbers, not the profile name.
    let s_dir = dir.path().to_path_buf();
    s.stop().await;
    for f in all_files(&s_dir) {
        if f.ends_with("pii.key") {
            continue;
        }
        let bytes = std::fs::read(&f).unwrap();
        for needle in ["447700900501", "5511987650002", "919812300003", "Ama Mensah"] {
            assert!(!bytes.windows(needle.len()).any(|w| w == needle.as_bytes()), "{needle} found in {}", f.display());
        }
    }
}

#[tokio::test]
async fn bad_input_gets_clear_answers_and_stores_nothing() {
    let dir = test_dir();
    let s = TestServer::start(config(dir.path())).await;
    let body = std::fs::read(fixture("collector/meta_batch.json")).unwrap();
    let c = &s.client;

    // Signature of another body, no signature, a garbled one.
    let other = convoscope::signature::sign_meta(META_SECRET, b"{}");
    for sig in [Some(other.as_str()), None, Some("sha256=nothex")] {
        let mut req = c.post(s.url("/webhooks/meta")).body(body.clone());
        if let Some(sig) = sig {
            req = req.header("x-hub-signature-256", sig);
        }
        let r = req.send().await.unwrap();
        assert_eq!(r.status(), 401);
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["error"], "unauthorized");
        assert!(v["message"].as_str().unwrap().contains("X-Hub-Signature-256"));
    }
    // Signed but malformed.
    let r = s.post_meta(b"{\"object\":\"whatsapp_business_account\",\"entry\":[{").await;
    assert_eq!(r.status(), 400);
    assert_eq!(r.json::<Value>().await.unwrap()["error"], "malformed");
    // Too large (the test limit is 1 MiB).
    let big = vec![b' '; (1 << 20) + 10];
    let r = s.post_meta(&big).await;
    assert_eq!(r.status(), 413);
    assert_eq!(r.json::<Value>().await.unwrap()["error"], "too_large");

    // The verify handshake.
    let ok = c
        .get(s.url(&format!(
            "/webhooks/meta?hub.mode=subscribe&hub.challenge=1158201444&hub.verify_token={VERIFY_TOKEN}"
        )))
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    assert_eq!(ok.text().await.unwrap(), "1158201444");
    let bad =
        c.get(s.url("/webhooks/meta?hub.mode=subscribe&hub.challenge=1&hub.verify_token=wrong")).send().await.unwrap();
    assert_eq!(bad.status(), 403);

    // UltraMsg token.
    let ack = std::fs::read(fixture("ultramsg/ack.json")).unwrap();
    let r = c.post(s.url("/webhooks/ultramsg?token=nope")).body(ack.clone()).send().await.unwrap();
    assert_eq!(r.status(), 401);
    let r = c.post(s.url(&format!("/webhooks/ultramsg?token={ULTRAMSG_TOKEN}"))).body(ack).send().await.unwrap();
    assert_eq!(r.status(), 200);

    s.flush().await;
    // Only the UltraMsg ack got in.
    assert_eq!(
        s.query("SELECT source, event_type FROM events").await,
        vec![vec![json!("ultramsg"), json!("message.read")]]
    );
    let metrics = c.get(s.url("/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(
        metrics.contains("convoscope_ingest_rejected_requests_total{reason=\"bad_signature\",source=\"meta\"} 3"),
        "{metrics}"
    );
    assert!(metrics.contains("convoscope_ingest_rejected_requests_total{reason=\"malformed\",source=\"meta\"} 1"));
    assert!(metrics.contains("convoscope_ingest_rejected_requests_total{reason=\"too_large\",source=\"meta\"} 1"));
    assert!(metrics.contains("convoscope_ingest_rejected_requests_total{reason=\"bad_token\",source=\"ultramsg\"} 1"));
    s.stop().await;
}

#[tokio::test]
async fn first_party_ndjson_keeps_good_lines() {
    let dir = test_dir();
    let s = TestServer::start(config(dir.path())).await;
    let c = &s.client;
    let body = [
        r#"{"event_id":"conv-1-open","event_type":"conversation.opened","occurred_at":"2026-01-03T09:00:00Z","conversation_id":"conv-1","queue":"billing","contact":"+234 803 123 4567"}"#,
        r#"{"event_id":"conv-1-bot","event_type":"conversation.bot_reply","occurred_at":"2026-01-03T09:00:04Z","conversation_id":"conv-1","actor":"bot"}"#,
        r#"{"event_id":"broken","event_type":"conversion","occurred_at":"#,
        r#"{"event_id":"conv-1-csat","event_type":"csat.submitted","occurred_at":"2026-01-03T09:30:00Z","conversation_id":"conv-1","csat_score":5,"channel":"whatsapp"}"#,
        r#"{"event_id":"bad-type","event_type":"message.teleported","occurred_at":"2026-01-03T09:30:00Z"}"#,
    ]
    .join("\n");
    // No token, then a token of the wrong role.
    let r = c.post(s.url("/v1/events")).body(body.clone()).send().await.unwrap();
    assert_eq!(r.status(), 401);
    let r = c.post(s.url("/v1/events")).bearer_auth(READ).body(body.clone()).send().await.unwrap();
    assert_eq!(r.status(), 403);

    let r = c.post(s.url("/v1/events")).bearer_auth(INGEST).body(body.clone()).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["accepted"], 3);
    let idx: Vec<u64> = v["rejected"].as_array().unwrap().iter().map(|r| r["index"].as_u64().unwrap()).collect();
    assert_eq!(idx, [2, 4]);
    assert!(v["rejected"][1]["error"].as_str().unwrap().contains("message.teleported"));

    // A retry of the whole batch stores nothing new.
    let v = post_events_at(c, &s.base, body).await;
    assert_eq!((v["accepted"].as_u64(), v["duplicates"].as_u64()), (Some(0), Some(3)));

    s.flush().await;
    let rows = s
        .query("SELECT event_id, source, queue, country, csat_score, attributes FROM events ORDER BY occurred_at")
        .await;
    assert_eq!(
        rows,
        vec![
            vec![json!("conv-1-open"), json!("api"), json!("billing"), json!("NG"), Value::Null, Value::Null],
            vec![json!("conv-1-bot"), json!("api"), Value::Null, Value::Null, Value::Null, Value::Null],
            vec![
                json!("conv-1-csat"),
                json!("api"),
                Value::Null,
                Value::Null,
                json!(5),
                json!("{\"channel\":\"whatsapp\"}")
            ],
        ]
    );
    s.stop().await;
}

#[tokio::test]
async fn graceful_stop_flushes_and_restart_still_deduplicates() {
    let dir = test_dir();
    let body = std::fs::read(fixture("collector/meta_batch.json")).unwrap();
    let s = TestServer::start(config(dir.path())).await;
    assert_eq!(s.client.get(s.url("/healthz")).send().await.unwrap().status(), 200);
    assert_eq!(s.client.get(s.url("/readyz")).send().await.unwrap().status(), 200);
    assert_eq!(s.post_meta(&body).await.status(), 200);
    s.stop().await;
    // The stop flushed: no segment is left, and Parquet holds the rows.
    let wal_left: Vec<_> = all_files(&dir.path().join("state/wal"))
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "wal"))
        .collect();
    assert!(wal_left.is_empty(), "{wal_left:?}");

    let s = TestServer::start(config(dir.path())).await;
    let v: Value = s.post_meta(&body).await.json().await.unwrap();
    assert_eq!(v["duplicates"], 7);
    s.flush().await;
    assert_eq!(s.query("SELECT count(*), count(DISTINCT event_id) FROM events").await, vec![vec![json!(7), json!(7)]]);
    s.stop().await;
}

/// An upgrade from a build that wrote the log as JSON frames: its leftover segment is replayed,
/// flushed and remembered for deduplication like one of this build's.
#[tokio::test]
async fn a_log_segment_of_an_earlier_build_is_flushed_after_an_upgrade() {
    use convoscope::event::{Event, now_micros};
    use convoscope::wal::{MAGIC_JSON, encode_frame};
    let dir = test_dir();
    let wal = dir.path().join("state/wal");
    std::fs::create_dir_all(&wal).unwrap();
    let at = 1_767_520_800_000_000; // 2026-01-04T10:00:00Z
    let mut a = Event::new("old-a".into(), "conversion", at, now_micros(), "api");
    a.revenue_micros = Some(2_500_000);
    let b = Event::new("old-b".into(), "message.sent", at + 1, now_micros(), "api");
    let mut segment = MAGIC_JSON.to_vec();
    encode_frame(&mut segment, &serde_json::to_vec(&[a]).unwrap()).unwrap();
    encode_frame(&mut segment, &serde_json::to_vec(&[b]).unwrap()).unwrap();
    std::fs::write(wal.join("00000000000000000007.wal"), segment).unwrap();

    let s = TestServer::start(config(dir.path())).await;
    s.flush().await;
    assert_eq!(
        s.query("SELECT event_id, event_type, revenue_micros FROM events ORDER BY event_id").await,
        vec![
            vec![json!("old-a"), json!("conversion"), json!(2_500_000)],
            vec![json!("old-b"), json!("message.sent"), Value::Null]
        ]
    );
    let left: Vec<_> = all_files(&wal).into_iter().filter(|p| p.extension().is_some_and(|e| e == "wal")).collect();
    assert!(left.iter().all(|p| !p.ends_with("00000000000000000007.wal")), "{left:?}");
    let body = json!([{"event_id": "old-a", "event_type": "conversion", "occurred_at": "2026-01-04T10:00:00Z"}]);
    let v = post_events_at(&s.client, &s.base, body.to_string()).await;
    assert_eq!(v["duplicates"], 1);
    s.stop().await;
}

#[tokio::test]
async fn full_log_answers_503_with_retry_after_and_readyz_says_why() {
    let dir = test_dir();
    let mut cfg = config(dir.path());
    cfg.max_body_bytes = 64 << 10;
    cfg.wal_budget_bytes = 128 << 10;
    let s = TestServer::start(cfg).await;
    let mut saw_503 = false;
    let mut acked = 0u64;
    for i in 0..400 {
        let line = format!(
            r#"{{"event_id":"fill-{i}","event_type":"conversion","occurred_at":"2026-01-03T09:00:00Z","revenue_micros":{i},"note":"{}"}}"#,
            "x".repeat(400)
        );
        let r = s.client.post(s.url("/v1/events")).bearer_auth(INGEST).body(line).send().await.unwrap();
        if r.status() == 503 {
            assert!(r.headers().get("retry-after").is_some());
            saw_503 = true;
            break;
        }
        assert_eq!(r.status(), 200);
        acked += 1;
    }
    assert!(saw_503);
    let r = s.client.get(s.url("/readyz")).send().await.unwrap();
    assert_eq!(r.status(), 503);
    assert!(r.text().await.unwrap().contains("full"));
    // Flushing frees the log; everything acknowledged is stored.
    s.flush().await;
    assert!(
        eventually(
            async || s.client.get(s.url("/readyz")).send().await.is_ok_and(|r| r.status() == 200),
            Duration::from_secs(5)
        )
        .await
    );
    assert_eq!(s.query("SELECT count(*) FROM events").await, vec![vec![json!(acked)]]);
    s.stop().await;
}

#[tokio::test]
async fn query_endpoint_is_read_only_and_token_protected() {
    let dir = test_dir();
    let s = TestServer::start(config(dir.path())).await;
    let c = &s.client;
    let post = |token: Option<&'static str>, sql: &'static str| {
        let mut r = c.post(s.url("/v1/query")).json(&json!({ "sql": sql }));
        if let Some(t) = token {
            r = r.bearer_auth(t);
        }
        r.send()
    };
    assert_eq!(post(None, "SELECT 1").await.unwrap().status(), 401);
    assert_eq!(post(Some(INGEST), "SELECT 1").await.unwrap().status(), 403);
    // An empty table still answers with its columns.
    let v: Value = post(Some(READ), "SELECT event_id, event_type FROM events").await.unwrap().json().await.unwrap();
    assert_eq!(v, json!({"columns": ["event_id", "event_type"], "rows": []}));
    for sql in [
        "DROP TABLE events",
        "INSERT INTO events (event_id) VALUES ('x')",
        "COPY (SELECT 1) TO '/tmp/convoscope-copy-test.csv'",
        "CREATE EXTERNAL TABLE leak STORED AS CSV LOCATION '/etc/passwd'",
        "SELECT * FROM '/etc/passwd'",
        "SET datafusion.execution.batch_size = 1",
    ] {
        let r = post(Some(READ), sql).await.unwrap();
        assert_eq!(r.status(), 400, "{sql}");
        assert_eq!(r.json::<Value>().await.unwrap()["error"], "bad_query", "{sql}");
    }
    assert!(!std::path::Path::new("/tmp/convoscope-copy-test.csv").exists());
    s.stop().await;
}

#[tokio::test]
async fn compaction_beside_ingest_loses_and_duplicates_nothing() {
    let dir = test_dir();
    let cfg = config(dir.path());
    let storage = convoscope::store::Storage::open(&cfg.storage).unwrap();
    let s = TestServer::start(cfg).await;
    let batch = |from: usize, to: usize| -> String {
        (from..to)
            .map(|i| json!({"event_id": format!("cx-{i}"), "event_type": "conversion", "occurred_at": "2026-03-01T10:00:00Z"}).to_string() + "\n")
            .collect()
    };
    for (a, b) in [(0, 100), (100, 200), (150, 300)] {
        let r = s.client.post(s.url("/v1/events")).bearer_auth(INGEST).body(batch(a, b)).send().await.unwrap();
        assert_eq!(r.status(), 200);
        s.flush().await;
    }
    // A file with duplicates of stored ids, as a crash between upload and log cleanup leaves.
    let dup: Vec<convoscope::event::Event> = (0..50)
        .map(|i| {
            convoscope::event::Event::new(format!("cx-{i}"), "conversion", 1_772_359_200_000_000, i64::MAX / 2, "api")
        })
        .collect();
    storage.write_events(dup, "replayed").await.unwrap();
    // Compact while more events arrive and flush.
    let mut lease = convoscope::maintenance::Lease::new(storage.clone(), "test");
    let posting = async {
        for k in 0..5 {
            let body = batch(300 + k * 20, 320 + k * 20);
            let r = s.client.post(s.url("/v1/events")).bearer_auth(INGEST).body(body).send().await.unwrap();
            assert_eq!(r.status(), 200);
            s.flush().await;
        }
    };
    let (done, _) = tokio::join!(convoscope::maintenance::compact(&storage, None, None, &mut lease), posting);
    let done = done.unwrap();
    assert_eq!(done.len(), 1);
    assert!(done[0].rows_before > done[0].rows_after, "duplicates were dropped");
    assert_eq!(
        s.query("SELECT count(*), count(DISTINCT event_id) FROM events").await,
        vec![vec![json!(400), json!(400)]]
    );
    // Compact again: one file per partition, still 400 rows.
    convoscope::maintenance::compact(&storage, None, None, &mut lease).await.unwrap();
    assert_eq!(storage.list_event_files().await.unwrap().len(), 1);
    assert_eq!(s.query("SELECT count(*) FROM events").await, vec![vec![json!(400)]]);
    s.stop().await;
}

/// A server config merging small files every second, at most 1,000 events into one, keeping the
/// files a round replaced for `query_secs` (plus a second): the longest a request, a query or a
/// report of it may run; and its storage holding, per `(date, files, events per file)`, that
/// many files of conversions.
async fn compacting_store(
    dir: &std::path::Path,
    query_secs: f64,
    days: &[(chrono::NaiveDate, usize, i64)],
) -> (convoscope::config::Config, convoscope::store::Storage) {
    use convoscope::event::Event;
    let cfg = convoscope::config::Config {
        compact_every_secs: 1,
        compact_max_events: 1000,
        request_timeout_secs: query_secs,
        query_timeout_secs: query_secs,
        report_timeout_secs: query_secs,
        ..config(dir)
    };
    let storage = convoscope::store::Storage::open(&cfg.storage).unwrap();
    for &(date, files, per_file) in days {
        let at = date.and_hms_opt(12, 0, 0).unwrap().and_utc().timestamp_micros();
        for file in 0..files {
            let evs: Vec<Event> = (0..per_file)
                .map(|i| Event::new(format!("{date}-{file}-{i}"), "conversion", at + i, 0, "api"))
                .collect();
            storage.write_events(evs, &format!("f{file}")).await.unwrap();
        }
    }
    (cfg, storage)
}

/// `serve` merges small files on its own, today's too, at most `compact_max_events` into one
/// file, and again when late events add a file; files of half that size or more are left alone.
/// It also writes the rollups a file lacks and deletes those of a retired layout.
#[tokio::test]
async fn serve_compacts_small_files_in_the_background() {
    let dir = test_dir();
    let day = |d: &str| chrono::NaiveDate::parse_from_str(d, "%Y-%m-%d").unwrap();
    let today = chrono::Utc::now().date_naive();
    // A day of two small files, one of two large files, one of three small files that make
    // more than the limit together, and today's two small files; replaced files kept 2 s.
    let days = [(day("2026-03-01"), 2, 100), (day("2026-03-02"), 2, 600), (day("2026-03-03"), 3, 400), (today, 2, 10)];
    let (cfg, storage) = compacting_store(dir.path(), 1.0, &days).await;
    let files_of = async |date: chrono::NaiveDate| {
        storage.list_event_files().await.unwrap().iter().filter(|(d, _)| *d == date).count()
    };
    // As a store of an older version: a file never merged without its message rollup, and a
    // rollup of a retired layout.
    use convoscope::rollup::{Kind, RETIRED_DIRS};
    use object_store::ObjectStoreExt;
    let lacking = storage.rollup_file(Kind::Messages, day("2026-03-02"), "f0");
    storage.store.delete(&lacking).await.unwrap();
    let retired = storage.path(&format!("{}/date=2026-03-02/f0.parquet", RETIRED_DIRS[0]));
    storage.store.put(&retired, bytes::Bytes::from_static(b"old layout").into()).await.unwrap();
    let s = TestServer::start(cfg).await;
    // The merged file is there before the files it merged go, so a query that listed them
    // still finds them.
    assert!(eventually(async || files_of(day("2026-03-01")).await == 3, Duration::from_secs(30)).await);
    assert!(eventually(async || files_of(day("2026-03-01")).await == 1, Duration::from_secs(30)).await);
    assert!(eventually(async || files_of(day("2026-03-03")).await == 2, Duration::from_secs(30)).await);
    assert_eq!(files_of(day("2026-03-02")).await, 2, "files of half compact_max_events are left alone");
    assert!(eventually(async || files_of(today).await == 1, Duration::from_secs(30)).await);
    let exists = async |p: &object_store::path::Path| storage.store.head(p).await.is_ok();
    assert!(eventually(async || exists(&lacking).await, Duration::from_secs(30)).await, "the rollup is written");
    assert!(eventually(async || !exists(&retired).await, Duration::from_secs(30)).await, "the old one deleted");

    // A late event for the compacted day is merged in the next round.
    let late = json!({"event_id": "late-1", "event_type": "conversion", "occurred_at": "2026-03-01T13:00:00Z"});
    let r = s.client.post(s.url("/v1/events")).bearer_auth(INGEST).body(late.to_string()).send().await.unwrap();
    assert_eq!(r.status(), 200);
    s.flush().await;
    assert!(eventually(async || files_of(day("2026-03-01")).await == 1, Duration::from_secs(30)).await);
    assert_eq!(
        s.query("SELECT count(*), count(DISTINCT event_id) FROM events").await,
        vec![vec![json!(2621), json!(2621)]]
    );
    assert_eq!(files_of(day("2026-03-03")).await, 2, "two of 400 events merged, the third not");
    s.stop().await;
}

/// The files a background merge replaced outlive it by the longest query time, once per round (not
/// once per merge); when `serve` stops meanwhile it does not wait, and leaves them (another
/// process sharing the store may be reading them) for the next round to merge again.
#[tokio::test]
async fn serve_stopping_ends_the_merge_grace_period() {
    let dir = test_dir();
    // Two days of two small files each; replaced files kept for ten minutes.
    let day = |d| chrono::NaiveDate::from_ymd_opt(2026, 3, d).unwrap();
    let (cfg, storage) = compacting_store(dir.path(), 600.0, &[(day(1), 2, 10), (day(2), 2, 10)]).await;
    let files = async || storage.list_event_files().await.unwrap().len();
    let s = TestServer::start(cfg).await;
    // Both days merged in the first round, their originals kept: the round waits once.
    assert!(eventually(async || files().await == 6, Duration::from_secs(30)).await, "merged, originals kept");
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(files().await, 6, "kept for the request timeout");
    let stopping = std::time::Instant::now();
    s.stop().await;
    assert!(stopping.elapsed() < Duration::from_secs(30), "shutdown does not wait out the grace period");
    assert_eq!(files().await, 6, "the originals stay when serve stops");
    // Each event still counts once, and the next merge leaves one file a day.
    let analytics = convoscope::analytics::Analytics::new(storage.clone(), 7).unwrap();
    let (_, batches) = analytics.query("SELECT count(DISTINCT event_id) - 40 AS extra FROM events").await.unwrap();
    assert_eq!(convoscope::analytics::format::rows(&batches).unwrap()[0][0], serde_json::json!(0));
    let mut lease = convoscope::maintenance::Lease::new(storage.clone(), "test");
    convoscope::maintenance::compact(&storage, None, None, &mut lease).await.unwrap();
    assert_eq!(files().await, 2);
}
