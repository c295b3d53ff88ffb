//! Crash safety with the real binary: SIGKILL after acknowledging and before flushing, then
//! restart. Every acknowledged event must be stored exactly once.

use std::collections::BTreeSet;
use std::process::Child;
use std::time::Duration;

use serde_json::json;

use crate::common::*;

fn spawn(dir: &std::path::Path, port: u16) -> Child {
    // Nothing flushes on its own before the kill.
    spawn_serve(dir, port, &[("CONVOSCOPE_FLUSH_INTERVAL_SECS", "3600")])
}

#[tokio::test]
async fn sigkill_between_ack_and_flush_loses_and_duplicates_nothing() {
    let dir = test_dir();
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let c = reqwest::Client::builder().timeout(Duration::from_secs(5)).build().unwrap();
    let mut child = spawn(dir.path(), port);
    wait_healthy(&c, &base).await;

    // Concurrent writers; the kill lands while requests are in flight.
    let mut tasks = Vec::new();
    for w in 0..8 {
        let c = c.clone();
        let base = base.clone();
        tasks.push(tokio::spawn(async move {
            let mut acked = Vec::new();
            for i in 0..10_000 {
                let ids: Vec<String> = (0..5).map(|k| format!("w{w}-r{i}-e{k}")).collect();
                let body: String = ids
                    .iter()
                    .map(|id| json!({"event_id": id, "event_type": "conversion", "occurred_at": "2026-01-04T10:00:00Z", "revenue_micros": 100}).to_string() + "\n")
                    .collect();
                match c.post(format!("{base}/v1/events")).bearer_auth(INGEST).body(body).send().await {
                    Ok(r) if r.status() == 200 => acked.extend(ids),
                    _ => break,
                }
            }
            acked
        }));
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    child.kill().expect("SIGKILL");
    let _ = child.wait();
    let mut acked = BTreeSet::new();
    for t in tasks {
        acked.extend(t.await.unwrap());
    }
    assert!(acked.len() > 100, "too few events acknowledged before the kill: {}", acked.len());
    let segments = all_files(&dir.path().join("state/wal"))
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "wal"))
        .count();
    assert!(segments > 0, "the kill should leave log segments behind");

    let mut child = spawn(dir.path(), port);
    wait_healthy(&c, &base).await;
    let r = c.post(format!("{base}/v1/admin/flush")).bearer_auth(ADMIN).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let dupes = query_at(&c, &base, "SELECT event_id FROM events GROUP BY event_id HAVING count(*) > 1").await;
    assert!(dupes.is_empty(), "duplicated after restart: {dupes:?}");
    let stored: BTreeSet<String> = query_at(&c, &base, "SELECT event_id FROM events")
        .await
        .iter()
        .map(|r| r[0].as_str().unwrap().to_string())
        .collect();
    let lost: Vec<_> = acked.difference(&stored).take(5).collect();
    assert!(lost.is_empty(), "acknowledged but lost: {lost:?} (of {} acked)", acked.len());

    // A redelivery after the restart is still recognised.
    let first = acked.iter().next().unwrap();
    let body = json!([{"event_id": first, "event_type": "conversion", "occurred_at": "2026-01-04T10:00:00Z"}]);
    let v = post_events_at(&c, &base, body.to_string()).await;
    assert_eq!(v["duplicates"], 1);
    let _ = child.kill();
    let _ = child.wait();
}

/// SIGKILL `serve` at random moments while writers post, restart it each time, then check
/// that every acknowledged event is stored exactly once. `CONVOSCOPE_CRASH_LOOPS` sets the
/// number of kills (default 20).
#[tokio::test]
async fn crash_loop_under_load_loses_and_duplicates_nothing() {
    use rand::Rng;
    let loops: usize = std::env::var("CONVOSCOPE_CRASH_LOOPS").ok().and_then(|v| v.parse().ok()).unwrap_or(20);
    let dir = test_dir();
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let c = reqwest::Client::builder().timeout(Duration::from_secs(5)).build().unwrap();
    let mut acked = BTreeSet::new();
    let mut attempts = 0u64;
    for round in 0..loops {
        let mut child = spawn(dir.path(), port);
        wait_healthy(&c, &base).await;
        let mut tasks = Vec::new();
        for w in 0..4 {
            let (c, base) = (c.clone(), base.clone());
            tasks.push(tokio::spawn(async move {
                let mut ok = Vec::new();
                let mut sent = 0u64;
                for i in 0.. {
                    // Some ids repeat across rounds: retries of already-acked events.
                    let ids: Vec<String> =
                        (0..3).map(|k| format!("loop-r{}-w{w}-{i}-{k}", round.saturating_sub(i % 2))).collect();
                    let body: String = ids
                        .iter()
                        .map(|id| {
                            json!({"event_id": id, "event_type": "conversion", "occurred_at": "2026-01-05T10:00:00Z"})
                                .to_string()
                                + "\n"
                        })
                        .collect();
                    sent += 1;
                    match c.post(format!("{base}/v1/events")).bearer_auth(INGEST).body(body).send().await {
                        Ok(r) if r.status() == 200 => ok.extend(ids),
                        _ => break,
                    }
                }
                (ok, sent)
            }));
        }
        let wait = rand::rng().random_range(100..600);
        tokio::time::sleep(Duration::from_millis(wait)).await;
        child.kill().expect("SIGKILL");
        let _ = child.wait();
        for t in tasks {
            let (ok, sent) = t.await.unwrap();
            acked.extend(ok);
            attempts += sent;
        }
    }
    let mut child = spawn(dir.path(), port);
    wait_healthy(&c, &base).await;
    let r = c.post(format!("{base}/v1/admin/flush")).bearer_auth(ADMIN).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let rows = query_at(&c, &base, "SELECT event_id, count(*) FROM events GROUP BY event_id").await;
    let stored: BTreeSet<String> = rows.iter().map(|r| r[0].as_str().unwrap().to_string()).collect();
    let duplicated = rows.iter().filter(|r| r[1].as_i64().unwrap() > 1).count();
    let lost = acked.difference(&stored).count();
    eprintln!(
        "crash loop: {loops} kills, {attempts} requests, acked {} events, stored {}, lost {lost}, duplicated {duplicated}",
        acked.len(),
        stored.len()
    );
    assert_eq!(lost, 0, "acknowledged events lost");
    assert_eq!(duplicated, 0, "events stored twice");
    assert!(acked.len() > loops * 10, "too little was acknowledged to mean anything");
    let _ = child.kill();
    let _ = child.wait();
}
