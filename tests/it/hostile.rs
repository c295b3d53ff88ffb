//! The hostile corpus in `fixtures/bad/`: each file gets its documented answer, the server
//! stays up, and the valid events sent between them are all stored.

use serde_json::{Value, json};

use crate::common::*;

#[tokio::test]
async fn every_bad_input_gets_its_answer_and_loses_nothing_else() {
    let dir = tempfile::tempdir().unwrap();
    let s = TestServer::start(config(dir.path())).await;
    let bad = |name: &str| std::fs::read(fixture(&format!("bad/{name}"))).unwrap();
    let good_line = |i: usize| {
        json!({"event_id": format!("between-{i}"), "event_type": "conversion", "occurred_at": "2026-01-01T00:00:00Z"})
            .to_string()
    };
    let mut good = 0;
    let post_good = async |i: usize| {
        let r = s.client.post(s.url("/v1/events")).bearer_auth(INGEST).body(good_line(i)).send().await.unwrap();
        assert_eq!(r.status(), 200);
    };

    for (file, status) in [
        ("meta_truncated.json", 400),
        ("meta_wrong_types.json", 400),
        ("meta_entry_not_list.json", 400),
        ("meta_huge_numbers.json", 200),
        ("deep_nesting.json", 400),
        ("invalid_utf8.ndjson", 400),
    ] {
        let r = s.post_meta(&bad(file)).await;
        assert_eq!(r.status().as_u16(), status, "meta {file}");
        let v: Value = r.json().await.unwrap();
        if status != 200 {
            assert!(v["error"].is_string() && v["message"].is_string(), "{file}: {v}");
        }
        post_good(good).await;
        good += 1;
    }
    for (file, status, accepted) in [
        ("deep_nesting.json", 400, 0),
        ("invalid_utf8.ndjson", 400, 0),
        ("events_mixed.ndjson", 200, 1),
        ("events_sql_in_values.ndjson", 200, 1),
    ] {
        let r = s.client.post(s.url("/v1/events")).bearer_auth(INGEST).body(bad(file)).send().await.unwrap();
        assert_eq!(r.status().as_u16(), status, "events {file}");
        let v: Value = r.json().await.unwrap();
        if status == 200 {
            assert_eq!(v["accepted"], accepted, "{file}: {v}");
        }
        post_good(good).await;
        good += 1;
    }
    let v: Value = s
        .client
        .post(s.url("/v1/events"))
        .bearer_auth(INGEST)
        .body(bad("events_mixed.ndjson"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let idx: Vec<u64> = v["rejected"].as_array().unwrap().iter().map(|r| r["index"].as_u64().unwrap()).collect();
    assert_eq!(idx, [0, 1, 2, 3]);

    // A body far over the limit is refused without reading it all.
    let huge = vec![b'['; 100 << 20];
    let r = s.client.post(s.url("/v1/events")).bearer_auth(INGEST).body(huge).send().await;
    match r {
        Ok(r) => assert_eq!(r.status(), 413),
        // The server may close the connection once it has refused the body.
        Err(e) => assert!(e.is_request() || e.is_body(), "{e}"),
    }

    assert_eq!(s.client.get(s.url("/healthz")).send().await.unwrap().status(), 200);
    s.flush().await;
    let n = s.query("SELECT count(*) FROM events WHERE event_id LIKE 'between-%'").await;
    assert_eq!(n, vec![vec![json!(good)]]);
    let sql = s.query("SELECT campaign FROM events WHERE event_id = 'ok-2'").await;
    assert_eq!(sql, vec![vec![json!("x'; DROP TABLE events; --")]]);
    // The huge-number status is stored, keyed, and without the digits.
    let rows = s.query("SELECT contact_key, country FROM events WHERE message_id = 'wbig'").await;
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0][0].as_str().map(str::len), Some(32));
    let files = all_files(dir.path());
    let needle = "9".repeat(40);
    for f in files.iter().filter(|f| !f.ends_with("pii.key")) {
        let b = std::fs::read(f).unwrap();
        assert!(!b.windows(needle.len()).any(|w| w == needle.as_bytes()), "digits in {}", f.display());
    }
    s.stop().await;
}
