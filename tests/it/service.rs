//! The service for people: report pages and their access rules, report formats, the
//! dashboards naming only metrics that exist, and traces of a webhook's acknowledgement.

use serde_json::{Value, json};

use crate::common::*;

async fn loaded() -> (tempfile::TempDir, TestServer) {
    let dir = test_dir();
    let s = TestServer::start(config(dir.path())).await;
    let body = std::fs::read_to_string(fixture("reports/events.ndjson")).unwrap();
    let r = s.client.post(s.url("/v1/events")).bearer_auth(INGEST).body(body).send().await.unwrap();
    assert_eq!(r.status(), 200);
    s.flush().await;
    (dir, s)
}

#[tokio::test]
async fn report_endpoint_formats_and_roles() {
    let (_dir, s) = loaded().await;
    let c = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let get = |path: &str, token: Option<&str>| {
        let mut r = c.get(s.url(path));
        if let Some(t) = token {
            r = r.bearer_auth(t);
        }
        r.send()
    };
    assert_eq!(get("/v1/reports/funnel", None).await.unwrap().status(), 401);
    assert_eq!(get("/v1/reports/funnel", Some(INGEST)).await.unwrap().status(), 403);
    assert_eq!(get("/v1/reports/nope", Some(READ)).await.unwrap().status(), 404);
    assert_eq!(get("/v1/reports/funnel?from=2026-99-01", Some(READ)).await.unwrap().status(), 400);
    // Injection attempts in parameters are just values that match nothing.
    let v: Value = get("/v1/reports/funnel?campaign=x'%20OR%20'1'='1", Some(READ)).await.unwrap().json().await.unwrap();
    assert_eq!(v["rows"], json!([]));

    let v: Value = get("/v1/reports/funnel", Some(READ)).await.unwrap().json().await.unwrap();
    assert_eq!(v["report"], "funnel");
    assert_eq!(v["rows"][0]["template"], "promo_a");
    assert_eq!(v["rows"][0]["sent"], 2);
    let r = get("/v1/reports/funnel?format=csv", Some(READ)).await.unwrap();
    assert_eq!(r.headers()["content-disposition"], "attachment; filename=\"funnel.csv\"");
    let csv = r.text().await.unwrap();
    assert!(csv.starts_with("campaign,template,sent,delivered,read,replied,converted"), "{csv}");
    assert!(csv.contains("spring,promo_a,2,2,1,1,2,0,1,0.5,0.5,1"), "{csv}");
    let r = get("/v1/reports/experiment?format=svg", Some(READ)).await.unwrap();
    assert_eq!(r.headers()["content-type"], "image/svg+xml");
    assert!(r.text().await.unwrap().starts_with("<svg"));
    let html = get("/v1/reports/failures?format=html", Some(READ)).await.unwrap().text().await.unwrap();
    assert!(html.contains("131026") && html.contains("<svg"));
    let r = get("/v1/reports/funnel?format=png", Some(READ)).await.unwrap();
    assert_eq!(r.headers()["content-type"], "image/png");
    assert_eq!(&r.bytes().await.unwrap()[..4], b"\x89PNG");
    assert_eq!(get("/v1/reports/funnel?format=gif", Some(READ)).await.unwrap().status(), 400);

    // The experiments listing needs a read token.
    assert_eq!(get("/v1/experiments", None).await.unwrap().status(), 401);
    assert_eq!(get("/v1/experiments", Some(READ)).await.unwrap().status(), 200);
    s.stop().await;
}

#[tokio::test]
async fn report_page_signs_in_once_with_a_session_cookie() {
    let (_dir, s) = loaded().await;
    let c = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let r = c.get(s.url("/")).send().await.unwrap();
    assert_eq!(r.status(), 401);
    assert!(r.text().await.unwrap().contains("name=\"token\""));
    let r = c.post(s.url("/login")).form(&[("token", INGEST)]).send().await.unwrap();
    assert_eq!(r.status(), 401);
    // No token, or no form at all: the form again, with what is missing, as a page.
    for r in [
        c.post(s.url("/login")).form(&[("other", "x")]).send().await.unwrap(),
        c.post(s.url("/login")).body("").send().await.unwrap(),
    ] {
        assert_eq!(r.status(), 400);
        assert_eq!(r.headers()["content-type"], "text/html; charset=utf-8");
        let page = r.text().await.unwrap();
        assert!(page.contains("name=\"token\"") && page.contains("Enter a read token"), "{page}");
    }
    let r = c.post(s.url("/login")).form(&[("token", READ)]).send().await.unwrap();
    assert_eq!(r.status(), 303);
    let cookie = r.headers()["set-cookie"].to_str().unwrap().to_string();
    assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"), "{cookie}");
    assert!(!cookie.contains(READ));
    let session = cookie.split(';').next().unwrap().to_string();

    let page = c.get(s.url("/")).header("cookie", &session).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    for name in convoscope::analytics::reports::names() {
        assert!(html.contains(&format!("data-report=\"{name}\"")), "{name} missing");
    }
    assert!(html.matches("<svg").count() >= 7, "charts missing");
    assert!(html.contains("promo_a") && html.contains("Message undeliverable"));
    // A tampered cookie is refused.
    let forged = session.replace("read.", "read.9");
    assert_eq!(c.get(s.url("/")).header("cookie", forged).send().await.unwrap().status(), 401);
    // The session also opens the JSON links of the page.
    let r = c.get(s.url("/v1/reports/funnel?format=json")).header("cookie", &session).send().await.unwrap();
    assert_eq!(r.status(), 200);
    s.stop().await;
}

/// Every metric a dashboard panel or alert rule names is one the service exports.
#[test]
fn dashboards_name_only_exported_metrics() {
    let m = convoscope::metrics::Metrics::new(10, 10);
    let exported = m.family_names();
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("dashboards");
    let mut named = 0;
    for file in ["grafana.json", "alerts.yml", "slo.yml"] {
        let text = std::fs::read_to_string(root.join(file)).unwrap();
        let mut rest = text.as_str();
        while let Some(i) = rest.find("convoscope_") {
            let tail = &rest[i..];
            let end = tail.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(tail.len());
            let name = &tail[..end];
            rest = &tail[end..];
            if name == "convoscope_" {
                continue;
            }
            let base = ["_bucket", "_sum", "_count"].iter().fold(name, |n, s| n.strip_suffix(s).unwrap_or(n));
            assert!(exported.iter().any(|e| e == base), "{file} names {name}, which convoscope does not export");
            named += 1;
        }
    }
    assert!(named >= 15, "only {named} metric references found");
}

/// With `CONVOSCOPE_OTLP_ENDPOINT` set, the real binary exports a webhook's spans (verify, parse,
/// the log's append, group commit and fsync) over OTLP/HTTP to a collector on loopback.
#[tokio::test]
async fn a_webhooks_acknowledgement_is_traced_to_an_otlp_collector() {
    use std::sync::{Arc, Mutex};
    let received: Arc<Mutex<Vec<(String, bytes::Bytes)>>> = Arc::default();
    let sink = received.clone();
    let otlp = axum::Router::new().route(
        "/v1/traces",
        axum::routing::post(move |headers: axum::http::HeaderMap, body: bytes::Bytes| {
            let sink = sink.clone();
            async move {
                let kind = headers.get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
                sink.lock().unwrap().push((kind, body));
                axum::http::StatusCode::OK
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, otlp).await });

    let dir = test_dir();
    let port = free_port();
    let serve = Proc(spawn_serve(dir.path(), port, &[("CONVOSCOPE_OTLP_ENDPOINT", &endpoint)]));
    let base = format!("http://127.0.0.1:{port}");
    let c = reqwest::Client::new();
    wait_healthy(&c, &base).await;
    let r = post_meta_at(&c, &base, &std::fs::read(fixture("meta/status_batch.json")).unwrap()).await;
    assert_eq!(r.status(), 200);
    // A stop sends the spans still buffered.
    tokio::task::spawn_blocking(move || serve.terminate()).await.unwrap();
    let got = received.lock().unwrap().clone();
    assert!(!got.is_empty(), "no export reached the collector");
    assert!(
        got.iter().all(|(kind, _)| kind == "application/x-protobuf"),
        "{:?}",
        got.iter().map(|g| &g.0).collect::<Vec<_>>()
    );
    let all: Vec<u8> = got.iter().flat_map(|(_, b)| b.to_vec()).collect();
    let has = |s: &str| all.windows(s.len()).any(|w| w == s.as_bytes());
    for span in ["webhook", "verify", "parse", "wal.append", "wal.group_commit", "wal.fsync", "convoscope"] {
        assert!(has(span), "no {span} in the exported traces");
    }
}
