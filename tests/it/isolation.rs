//! A reader can never hurt the collector: the real binary over ~500,000 generated events,
//! hostile `/v1/query` statements from four clients at once while signed Meta webhooks arrive
//! at a steady rate. Every webhook is answered 200 well inside Meta's one second, `/healthz`
//! stays fast, each hostile statement ends with its documented error within its limit, the
//! process stays within its query memory budget plus its own, and every acknowledged event
//! is stored.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::common::*;

/// The query memory budget of the server under test: small, so the memory statement meets it.
const QUERY_MEMORY: u64 = 64 << 20;
/// Its `/v1/query` time limit.
const QUERY_TIMEOUT: Duration = Duration::from_secs(4);

/// A signed Meta webhook of one `sent` status for message `n`.
fn status(n: usize) -> Vec<u8> {
    json!({"object": "whatsapp_business_account", "entry": [{"id": "100200300400500", "changes": [{
        "field": "messages",
        "value": {"messaging_product": "whatsapp",
                  "metadata": {"display_phone_number": "15550101234", "phone_number_id": "600700800900111"},
                  "statuses": [{"id": format!("wamid.iso-{n}"), "status": "sent", "timestamp": "1767254400",
                                "recipient_id": "15550109876"}]}}]}]})
    .to_string()
    .into_bytes()
}

/// The process's peak and current resident memory, in bytes.
fn memory(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let kb = |key: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .unwrap_or(0)
            * 1024
    };
    (kb("VmHWM:"), kb("VmRSS:"))
}

/// The server, killed however the test ends (a failed assertion included).
struct Server(std::process::Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// One hostile statement and the errors it may end with: its own, and the two any statement
/// that runs may meet while others hold the shared memory pool and the query threads
/// (`query_memory`, `query_timeout`), besides `busy` when both slots are taken.
struct Hostile {
    sql: &'static str,
    ends: &'static [&'static str],
}

const HOSTILE: [Hostile; 4] = [
    // Every row against every other without an equality: refused by the join guard.
    Hostile {
        sql: "SELECT count(*) FROM events a JOIN events b ON a.contact_key < b.contact_key",
        ends: &["query_refused"],
    },
    // A join on a column of a dozen values: billions of pairs, cut at the time limit.
    Hostile {
        sql: "SELECT count(*) FROM events a JOIN events b ON a.event_type = b.event_type",
        ends: &["query_timeout", "query_memory"],
    },
    // Every event held in a hash table twenty times over: more than the memory budget.
    Hostile {
        sql: "SELECT max(length(a.fat) + length(b.fat)) \
              FROM (SELECT event_id, repeat(event_id, 20) AS fat FROM events) a \
              JOIN (SELECT event_id, repeat(event_id, 20) AS fat FROM events) b ON a.event_id = b.event_id",
        ends: &["query_memory", "query_timeout"],
    },
    // Every row of the store as JSON: refused past max_result_rows.
    Hostile { sql: "SELECT * FROM events", ends: &["query_refused", "query_memory", "query_timeout"] },
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_readers_neither_delay_webhooks_nor_lose_events() {
    let dir = test_dir();
    let store = format!("file://{}", dir.path().join("store").display());
    let generated = std::process::Command::new(env!("CARGO_BIN_EXE_convoscope"))
        .args(["generate", "--events", "500000", "--days", "10", "--seed", "3"])
        .env("CONVOSCOPE_STORAGE", &store)
        .env("CONVOSCOPE_STATE_DIR", dir.path().join("state"))
        .env("CONVOSCOPE_PII_KEY", "child-test-key")
        .output()
        .expect("generate");
    assert!(generated.status.success(), "{}", String::from_utf8_lossy(&generated.stderr));

    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let child = Server(spawn_serve(
        dir.path(),
        port,
        &[
            // Two query threads whatever the machine, so what the scans hold is the same.
            ("CONVOSCOPE_QUERY_THREADS", "2"),
            ("CONVOSCOPE_QUERY_MEMORY_BYTES", &QUERY_MEMORY.to_string()),
            // Three slots for four clients: every statement gets its turns, and some wait (429).
            ("CONVOSCOPE_MAX_CONCURRENT_QUERIES", "3"),
            ("CONVOSCOPE_QUERY_TIMEOUT_SECS", &QUERY_TIMEOUT.as_secs().to_string()),
        ],
    ));
    let c = reqwest::Client::builder().timeout(Duration::from_secs(60)).build().unwrap();
    wait_healthy(&c, &base).await;
    // What the collector holds on its own before any reader: the baseline the budget adds to.
    assert_eq!(query_at(&c, &base, "SELECT count(*) FROM events WHERE event_type = 'message.sent'").await.len(), 1);
    let (_, own) = memory(child.0.id());
    // EXPLAIN shows the plan of a statement the guard refuses, without running it.
    let plan = query_at(&c, &base, &format!("EXPLAIN {}", HOSTILE[0].sql)).await;
    assert!(format!("{plan:?}").contains("NestedLoopJoinExec"), "{plan:?}");

    let stop = Arc::new(AtomicBool::new(false));
    // Four hostile clients, each running its statement again a moment after it ends.
    let mut readers = Vec::new();
    for h in &HOSTILE {
        let (c, base, stop) = (c.clone(), base.clone(), stop.clone());
        readers.push(tokio::spawn(async move {
            let mut seen: Vec<(String, Duration)> = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let t = Instant::now();
                let r = c.post(format!("{base}/v1/query")).bearer_auth(READ).json(&json!({"sql": h.sql})).send().await;
                let r = r.expect("the server answers every query");
                let (status, retry) = (r.status().as_u16(), r.headers().contains_key("retry-after"));
                let v: Value = r.json().await.expect("a JSON answer");
                let code = v["error"].as_str().unwrap_or("ok").to_string();
                assert!(
                    h.ends.contains(&code.as_str()) || (code == "busy" && status == 429 && retry),
                    "{}: HTTP {status} {v}",
                    h.sql
                );
                seen.push((code, t.elapsed()));
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            seen
        }));
    }
    // Signed webhooks at a steady 20 a second for 15 seconds, each timed, and /healthz beside.
    let webhooks = tokio::spawn({
        let (c, base) = (c.clone(), base.clone());
        async move {
            let mut times = Vec::new();
            let mut tick = tokio::time::interval(Duration::from_millis(50));
            for n in 0..300 {
                tick.tick().await;
                let body = status(n);
                let t = Instant::now();
                let r = post_meta_at(&c, &base, &body).await;
                assert_eq!(r.status(), 200, "webhook {n}");
                times.push(t.elapsed());
            }
            times
        }
    });
    let health = tokio::spawn({
        let (c, base, stop) = (c.clone(), base.clone(), stop.clone());
        async move {
            let mut worst = Duration::ZERO;
            while !stop.load(Ordering::Relaxed) {
                let t = Instant::now();
                assert!(c.get(format!("{base}/healthz")).send().await.expect("healthz").status().is_success());
                worst = worst.max(t.elapsed());
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            worst
        }
    });

    let mut times = webhooks.await.unwrap();
    stop.store(true, Ordering::Relaxed);
    let worst_health = health.await.unwrap();
    let mut ends: Vec<Vec<(String, Duration)>> = Vec::new();
    for r in readers {
        ends.push(r.await.unwrap());
    }
    let (peak, _) = memory(child.0.id());

    times.sort();
    let (p50, p99, max) = (times[times.len() / 2], times[times.len() * 99 / 100], times[times.len() - 1]);
    println!(
        "webhooks under four hostile readers: p50 {p50:?}, p99 {p99:?}, max {max:?}; /healthz worst {worst_health:?}"
    );
    for (h, seen) in HOSTILE.iter().zip(&ends) {
        let mut counts = std::collections::BTreeMap::<&str, usize>::new();
        for (code, _) in seen {
            *counts.entry(code.as_str()).or_default() += 1;
        }
        println!("{:?}: {counts:?}", h.sql);
    }
    println!("peak RSS {} MiB, {} MiB before the readers, budget {} MiB", peak >> 20, own >> 20, QUERY_MEMORY >> 20);

    assert!(max < Duration::from_secs(1), "a webhook took {max:?} (p99 {p99:?})");
    assert!(worst_health < Duration::from_secs(1), "/healthz took {worst_health:?}");
    for (h, seen) in HOSTILE.iter().zip(&ends) {
        // Each ran at least once past the slots, and ended within its limit (plus the time a
        // cancelled plan takes to stop and answer).
        assert!(seen.iter().any(|(code, _)| code != "busy"), "{} never ran", h.sql);
        for (code, took) in seen {
            assert!(*took < QUERY_TIMEOUT + Duration::from_secs(3), "{}: {code} after {took:?}", h.sql);
        }
    }
    let ran: std::collections::BTreeSet<&str> = ends.iter().flatten().map(|(c, _)| c.as_str()).collect();
    for code in ["query_refused", "query_timeout", "query_memory"] {
        assert!(ran.contains(code), "no statement ended with {code}: {ran:?}");
    }
    // The pool holds what grows with the data (hash tables, sorts, aggregations). Beside it,
    // each running statement streams decoded Parquet pages through its scans and holds at most
    // `max_result_rows` rows, and the allocator keeps freed pages for a while: with three heavy
    // statements at once that was 200-290 MiB here, whatever the store's size; 320 MiB bounds it.
    assert!(peak < own + QUERY_MEMORY + (320 << 20), "peak RSS {} MiB", peak >> 20);

    // Cancelled queries stop: their slots come back within moments of their answers.
    let metric = async |line: &str| -> f64 {
        let text = c.get(format!("{base}/metrics")).send().await.unwrap().text().await.unwrap();
        text.lines().find_map(|l| l.strip_prefix(line)).and_then(|v| v.trim().parse().ok()).unwrap_or(f64::NAN)
    };
    let idle =
        eventually(async || metric("convoscope_queries_running{kind=\"query\"}").await == 0.0, Duration::from_secs(5))
            .await;
    assert!(idle, "queries still running after every reader had its answer");

    // The metrics counted what happened.
    let metrics = c.get(format!("{base}/metrics")).send().await.unwrap().text().await.unwrap();
    for outcome in ["refused", "timeout", "memory"] {
        let line = format!("convoscope_queries_total{{kind=\"query\",outcome=\"{outcome}\"}} ");
        let n: f64 = metrics.lines().find_map(|l| l.strip_prefix(&line)).and_then(|v| v.parse().ok()).unwrap_or(0.0);
        assert!(n >= 1.0, "{line} is {n}");
    }

    // Every acknowledged webhook's event is stored, once.
    let r = c.post(format!("{base}/v1/admin/flush")).bearer_auth(ADMIN).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let stored = query_at(
        &c,
        &base,
        "SELECT count(*), count(DISTINCT event_id) FROM events WHERE message_id LIKE 'wamid.iso-%'",
    )
    .await;
    assert_eq!(stored, vec![vec![json!(300), json!(300)]]);
}
