//! The send path against the sandbox provider on loopback.

use std::time::Duration;

use convoscope::analytics::reports::Params;
use convoscope::config::Config;
use convoscope::sandbox::{self, Handle};
use serde_json::{Value, json};

use crate::common::*;

const SEND: &str = "send-token-4242";

struct Loop {
    s: TestServer,
    sb: Handle,
}

async fn start_loop(dir: &std::path::Path, tweak: impl FnOnce(&mut Config)) -> Loop {
    start_loop_as(dir, sandbox::Speaks::Meta, tweak).await
}

async fn start_loop_as(dir: &std::path::Path, speaks: sandbox::Speaks, tweak: impl FnOnce(&mut Config)) -> Loop {
    let mut cfg = config(dir);
    cfg.tokens.push(format!("send:{SEND}"));
    cfg.experiments = fixture("send/experiments.toml");
    cfg.send_rate_per_sec = 1000.0;
    tweak(&mut cfg);
    let (s, sb) = with_sandbox_as(cfg, speaks, "600700800900111", 11).await;
    Loop { s, sb }
}

impl Loop {
    async fn opt_in(&self, numbers: &[&str]) {
        let body: String = numbers
            .iter()
            .map(|n| json!({"event_id": format!("optin-{n}"), "event_type": "consent.opt_in", "occurred_at": "2026-01-01T00:00:00Z", "contact": n}).to_string() + "\n")
            .collect();
        let r = self.s.client.post(self.s.url("/v1/events")).bearer_auth(INGEST).body(body).send().await.unwrap();
        assert_eq!(r.status(), 200);
    }

    async fn send(&self, to: &str, key: Option<&str>) -> (u16, Value) {
        let mut body = json!({"experiment": "spring_cta", "to": to, "params": {"name": "Ana"}});
        if let Some(k) = key {
            body["idempotency_key"] = json!(k);
        }
        let r = self.s.client.post(self.s.url("/v1/send")).bearer_auth(SEND).json(&body).send().await.unwrap();
        (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
    }
}

#[tokio::test]
async fn consent_idempotency_retries_and_assignment() {
    let dir = test_dir();
    let l = start_loop(dir.path(), |_| {}).await;
    l.opt_in(&["15550001001", "15550000429", "15550002001", "15550001002"]).await;

    // No token of role send → 401/403; unknown experiment → 404.
    let r =
        l.s.client
            .post(l.s.url("/v1/send"))
            .bearer_auth(READ)
            .json(&json!({"experiment": "spring_cta", "to": "1"}))
            .send()
            .await
            .unwrap();
    assert_eq!(r.status(), 403);
    let r =
        l.s.client
            .post(l.s.url("/v1/send"))
            .bearer_auth(SEND)
            .json(&json!({"experiment": "nope", "to": "15550001001"}))
            .send()
            .await
            .unwrap();
    assert_eq!(r.status(), 404);

    // Without an opt-in a marketing send is refused and recorded.
    let (st, v) = l.send("15550009999", Some("no-optin")).await;
    assert_eq!(st, 409, "{v}");
    // An opt-out (here a STOP reply) wins over the earlier opt-in.
    let stop = json!({"object":"whatsapp_business_account","entry":[{"id":"1","changes":[{"field":"messages","value":{"messages":[
        {"from":"15550001002","id":"wamid.STOP1","timestamp":"1767255000","type":"text","text":{"body":"STOP"}}]}}]}]});
    assert_eq!(l.s.post_meta(stop.to_string().as_bytes()).await.status(), 200);
    let (st, _) = l.send("15550001002", Some("after-stop")).await;
    assert_eq!(st, 409);
    assert_eq!(l.sb.attempts("15550001002"), 0, "an opted-out contact must not reach the provider");

    // Idempotency: the same key returns the first result and sends once.
    let (st, first) = l.send("15550001001", Some("k-1")).await;
    assert_eq!(st, 200, "{first}");
    let (_, again) = l.send("15550001001", Some("k-1")).await;
    assert_eq!(first, again);
    assert_eq!(l.sb.attempts("15550001001"), 1);
    // Assignment: another send to the same contact lands in the same variant.
    let (_, other) = l.send("15550001001", Some("k-2")).await;
    assert_eq!(other["variant"], first["variant"]);

    // 429 (130429) once, then success: retried.
    let (st, v) = l.send("15550000429", Some("k-429")).await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(l.sb.attempts("15550000429"), 2);
    // A permanent error (132001) is not retried.
    let (st, v) = l.send("15550002001", Some("k-2001")).await;
    assert_eq!(st, 502, "{v}");
    assert!(v["message"].as_str().unwrap().contains("132001"));
    assert_eq!(l.sb.attempts("15550002001"), 1);

    l.s.flush().await;
    let rows = l.s.query("SELECT event_type, count(*) FROM events WHERE source = 'sender' GROUP BY 1 ORDER BY 1").await;
    assert_eq!(rows, vec![vec![json!("send.accepted"), json!(3)], vec![json!("send.rejected"), json!(3)]]);

    // After a restart the idempotency record still holds: no second send.
    let sb = l.sb.clone();
    let before = sb.attempts("15550001001");
    l.s.stop().await;
    let l2 = start_loop(dir.path(), |_| {}).await;
    let (_, after) = l2.send("15550001001", Some("k-1")).await;
    assert_eq!(after, first);
    assert_eq!(sb.attempts("15550001001"), before);
    assert_eq!(l2.sb.attempts("15550001001"), 0, "the restarted server sent again");
    l2.s.stop().await;
}

/// A recipient's fourth message in a burst is over their limit: a 429 that names the limit and
/// says when it has room, so a batch sender holds that one send and not the whole batch.
#[tokio::test]
async fn a_recipients_limit_is_named_with_when_it_has_room() {
    let dir = test_dir();
    let l = start_loop(dir.path(), |_| {}).await;
    l.opt_in(&["15550001003"]).await;
    for i in 0..3 {
        let (st, v) = l.send("15550001003", Some(&format!("burst-{i}"))).await;
        assert_eq!(st, 200, "{v}");
    }
    let body = json!({"experiment": "spring_cta", "to": "15550001003", "params": {"name": "Ana"},
                      "idempotency_key": "burst-3"});
    let r = l.s.client.post(l.s.url("/v1/send")).bearer_auth(SEND).json(&body).send().await.unwrap();
    assert_eq!(r.status(), 429);
    // The recipient refills a message every 6 s: its room comes back within that.
    let wait: u64 = r.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=6).contains(&wait), "{wait}");
    let v: Value = r.json().await.unwrap();
    assert_eq!((&v["error"], &v["limit"]), (&json!("rate_limited"), &json!("per-recipient")), "{v}");
}

#[tokio::test]
async fn circuit_opens_after_failures_and_closes_after_a_good_probe() {
    let dir = test_dir();
    let l = start_loop(dir.path(), |c| c.breaker_open_secs = 1.0).await;
    l.opt_in(&["15550000500", "15550003003"]).await;
    // Always 500: retried to the attempt limit, which opens the circuit.
    let (st, _) = l.send("15550000500", Some("b-1")).await;
    assert_eq!(st, 502);
    let tried = l.sb.attempts("15550000500");
    assert!(tried >= 2, "server errors are retried");
    let metrics = l.s.client.get(l.s.url("/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains("convoscope_circuit_open{provider=\"meta\"} 1"), "{metrics}");
    // While open, nothing reaches the provider.
    let (st, v) = l.send("15550003003", Some("b-2")).await;
    assert_eq!(st, 503, "{v}");
    assert_eq!(l.sb.attempts("15550003003"), 0);
    // After the open period one probe goes through; it succeeds and closes the circuit.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (st, v) = l.send("15550003003", Some("b-3")).await;
    assert_eq!(st, 200, "{v}");
    let metrics = l.s.client.get(l.s.url("/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains("convoscope_circuit_open{provider=\"meta\"} 0"));
    l.s.stop().await;
}

#[tokio::test]
async fn full_loop_reports_match_what_the_sandbox_did() {
    loop_reports_match(sandbox::Speaks::Meta, 400).await;
}

/// The same loop through Twilio: its send API, its signed status callbacks (each to the URL the
/// send gave, with the callback data in it) and its signed inbound taps.
#[tokio::test]
async fn twilio_loop_reports_match_what_the_sandbox_did() {
    loop_reports_match(sandbox::Speaks::Twilio, 200).await;
}

async fn loop_reports_match(speaks: sandbox::Speaks, sends: usize) {
    let dir = test_dir();
    let l = start_loop_as(dir.path(), speaks, |_| {}).await;
    let numbers: Vec<String> = (0..sends).map(|i| format!("4477009{:05}", 10_000 + i * 7)).collect();
    let refs: Vec<&str> = numbers.iter().map(String::as_str).collect();
    l.opt_in(&refs).await;
    for (i, n) in numbers.iter().enumerate() {
        let (st, v) = l.send(n, Some(&format!("loop-{i}"))).await;
        assert_eq!(st, 200, "{v}");
    }
    assert!(l.sb.settle(Duration::from_secs(60)).await, "callbacks still pending");
    l.s.flush().await;
    let stats = l.sb.stats();
    let total = |f: fn(&sandbox::VariantStats) -> u64| stats.values().map(f).sum::<u64>();
    let analytics = convoscope::analytics::Analytics::new(
        convoscope::store::Storage::open(&format!("file://{}", dir.path().join("store").display())).unwrap(),
        7,
    )
    .unwrap();
    let f = analytics.report("funnel", &Params::default()).await.unwrap();
    let sum = |col: &str| -> u64 {
        let i = f.columns.iter().position(|c| c == col).unwrap();
        f.rows.iter().map(|r| r[i].as_u64().unwrap()).sum()
    };
    assert_eq!(sum("sent"), total(|s| s.accepted));
    assert_eq!(sum("delivered"), total(|s| s.delivered));
    assert_eq!(sum("read"), total(|s| s.read));
    assert_eq!(sum("replied"), total(|s| s.replied));
    // Every attribution window is still open: the funnel counts no conversion as final yet;
    // the cost report counts those seen so far.
    assert_eq!((sum("converted"), sum("window_open")), (0, total(|s| s.accepted)));
    let c = analytics.report("cost", &Params::default()).await.unwrap();
    let i = c.columns.iter().position(|n| n == "conversions").unwrap();
    assert_eq!(c.rows.iter().map(|r| r[i].as_u64().unwrap()).sum::<u64>(), total(|s| s.converted));
    let x = analytics.report("experiment", &Params::default()).await.unwrap();
    for row in &x.rows {
        let v = row[1].as_str().unwrap();
        let st = &stats[v];
        assert_eq!(row[2].as_u64().unwrap(), st.accepted, "{v} exposures");
        assert_eq!(row[3].as_u64().unwrap(), st.converted, "{v} conversions");
    }
    // Every receipt came through the provider's own webhook.
    let want = if speaks == sandbox::Speaks::Twilio { "twilio" } else { "meta" };
    let rows = l.s.query("SELECT DISTINCT source FROM events WHERE event_type LIKE 'message.%' ORDER BY 1").await;
    assert_eq!(rows, vec![vec![json!(want)]]);
    l.s.stop().await;
}

#[tokio::test]
async fn csv_batch_sends_and_summarises() {
    let dir = test_dir();
    let l = start_loop(dir.path(), |_| {}).await;
    l.opt_in(&["15550004001", "15550004002", "15550002001"]).await;
    let csv = dir.path().join("recipients.csv");
    std::fs::write(&csv, "to,name\n+15550004001,Ana\n+15550004002,Bo\nnope,Cy\n+15550004003,Di\n+15550002001,Ed\n")
        .unwrap();
    let s = convoscope::send::batch::run(&l.s.base, SEND, "spring_cta", &csv, 4).await.unwrap();
    assert_eq!(s.sent, 2);
    assert_eq!(s.rejected.values().sum::<u64>(), 1, "{s}");
    assert_eq!(s.failed.get("132001"), Some(&1), "{s}");
    assert_eq!(s.bad_rows.iter().map(|b| b.0).collect::<Vec<_>>(), [4]);
    // Running the same file again sends nothing new.
    convoscope::send::batch::run(&l.s.base, SEND, "spring_cta", &csv, 4).await.unwrap();
    assert_eq!(l.sb.attempts("15550004001"), 1);
    l.s.stop().await;
}

#[tokio::test]
async fn an_erased_contact_is_refused_until_it_opts_in_again() {
    let dir = test_dir();
    let l = start_loop(dir.path(), |_| {}).await;
    let to = "+15550100777";
    l.opt_in(&[to]).await;
    assert_eq!(l.send(to, None).await.0, 200);
    let r =
        l.s.client
            .post(l.s.url("/v1/admin/erase"))
            .bearer_auth(ADMIN)
            .json(&json!({"contact": to}))
            .send()
            .await
            .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap_or_default());
    let (status, v) = l.send(to, None).await;
    assert_eq!(status, 409, "{v}");
    assert!(v["message"].as_str().is_some_and(|m| m.contains("erased")), "{v}");
    // A new opt-in, given after the erasure, lets the send path reach them again.
    let now = chrono::Utc::now().to_rfc3339();
    let again = json!({"event_id": "optin-again", "event_type": "consent.opt_in", "occurred_at": now, "contact": to});
    let r = l.s.client.post(l.s.url("/v1/events")).bearer_auth(INGEST).json(&json!([again])).send().await.unwrap();
    assert_eq!(r.json::<Value>().await.unwrap()["accepted"], json!(1));
    assert_eq!(l.send(to, None).await.0, 200);
    l.s.stop().await;
}
