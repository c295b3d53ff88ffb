//! The hostile corpus in `fixtures/bad/`: each file gets its documented answer, the server
//! stays up, and the valid events sent between them are all stored.

use serde_json::{Value, json};

use crate::common::*;

#[tokio::test]
async fn every_bad_input_gets_its_answer_and_loses_nothing_else() {
    let dir = test_dir();
    let cfg = convoscope::config::Config {
        twilio_auth_token: Some(TWILIO_TOKEN.into()),
        dialog360_secret: Some("d360".into()),
        gupshup_token: Some("gs".into()),
        ..config(dir.path())
    };
    let s = TestServer::start(cfg).await;
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
        // One change of the wrong shape: skipped and counted, the rest of the body stored.
        ("meta_wrong_types.json", 200),
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
    // The other providers' bad bodies, each signed (or tokened) as its provider would.
    for (file, status, accepted) in [
        ("twilio_no_sid.form", 400, 0),
        ("twilio_invalid_utf8.form", 200, 1),
        ("gupshup_callback_ping.json", 200, 0),
        ("dialog360_truncated.json", 400, 0),
    ] {
        let body = bad(file);
        let req = if file.starts_with("twilio") {
            let url = s.url("/webhooks/twilio");
            let sig = convoscope::signature::sign_twilio(TWILIO_TOKEN, &url, &body);
            s.client.post(url).header("x-twilio-signature", sig)
        } else if file.starts_with("gupshup") {
            s.client.post(s.url("/webhooks/gupshup?token=gs"))
        } else {
            let sig = convoscope::signature::sign_360dialog("d360", &body);
            s.client.post(s.url("/webhooks/360dialog")).header("x-360dialog-signature", sig)
        };
        let r = req.body(body).send().await.unwrap();
        assert_eq!(r.status().as_u16(), status, "{file}");
        let v: Value = r.json().await.unwrap();
        if status == 200 {
            assert_eq!(v["accepted"], accepted, "{file}: {v}");
        } else {
            assert!(v["error"].is_string() && v["message"].is_string(), "{file}: {v}");
        }
        post_good(good).await;
        good += 1;
    }
    let v = post_events_at(&s.client, &s.base, bad("events_mixed.ndjson")).await;
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

/// Clients that dribble their headers or body are cut off, and others are served meanwhile.
#[tokio::test]
async fn slow_clients_are_cut_off_without_starving_others() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let dir = test_dir();
    let mut cfg = config(dir.path());
    cfg.header_read_timeout_secs = 1.0;
    cfg.request_timeout_secs = 2.0;
    let s = TestServer::start(cfg).await;
    let addr = s.base.trim_start_matches("http://").to_string();
    let mut slow = Vec::new();
    for _ in 0..50 {
        let mut c = tokio::net::TcpStream::connect(&addr).await.unwrap();
        c.write_all(b"POST /v1/events HTTP/1.1\r\nHost: x\r\n").await.unwrap();
        slow.push(c);
    }
    // Others are served while the slow connections hang.
    assert_eq!(s.client.get(s.url("/healthz")).send().await.unwrap().status(), 200);
    // Each slow connection is closed by the server after the header timeout.
    for mut c in slow {
        let mut buf = Vec::new();
        let read = tokio::time::timeout(std::time::Duration::from_secs(5), c.read_to_end(&mut buf)).await;
        assert!(read.is_ok(), "a slow-header connection was still open after 5 s");
    }
    // A body that never finishes gets 408.
    let mut c = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let head = format!(
        "POST /v1/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {INGEST}\r\nContent-Length: 1000\r\n\r\n[{{\"event_id\""
    );
    c.write_all(head.as_bytes()).await.unwrap();
    let mut buf = vec![0u8; 1024];
    let n = tokio::time::timeout(std::time::Duration::from_secs(6), c.read(&mut buf)).await.unwrap().unwrap();
    let answer = String::from_utf8_lossy(&buf[..n]);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert_eq!(s.client.get(s.url("/healthz")).send().await.unwrap().status(), 200);
    s.stop().await;
}
