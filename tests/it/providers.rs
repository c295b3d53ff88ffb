//! Every provider's signed known-answer fixtures (`fixtures/providers/`, built from the
//! providers' documented payloads by `scripts/make_provider_fixtures.py`) posted to a real
//! server, and the stored rows read back; and each provider refused until its secret is set, and
//! on a wrong signature.

use std::path::{Path, PathBuf};

use convoscope::config::Config;
use serde_json::{Value, json};

use crate::common::*;

/// The secrets the fixtures are signed with (`scripts/make_provider_fixtures.py`).
const FIXTURE_META_SECRET: &str = "fixture-meta-app-secret";
const FIXTURE_360DIALOG_SECRET: &str = "fixture-360dialog-secret";
const FIXTURE_TWILIO_TOKEN: &str = "fixture-twilio-auth-token";
const FIXTURE_GUPSHUP_TOKEN: &str = "fixture-gupshup-token";
const FIXTURE_PUBLIC_URL: &str = "https://hooks.example.com";

/// The columns a fixture's rows may name, as the query below selects them.
const COLUMNS: &[&str] = &[
    "event_id",
    "event_type",
    "source",
    "account_id",
    "phone_number_id",
    "message_id",
    "reply_to",
    "country",
    "campaign",
    "template",
    "locale",
    "category",
    "experiment",
    "variant",
    "content_type",
    "interaction_id",
    "interaction_title",
    "error_code",
    "error_title",
    "billable",
    "revenue_micros",
    "currency",
    "actor",
    "agent_key",
    "attributes",
    "occurred_at_us",
    "received_us",
];

fn fixture_config(dir: &Path) -> Config {
    Config {
        meta_app_secret: Some(FIXTURE_META_SECRET.into()),
        dialog360_secret: Some(FIXTURE_360DIALOG_SECRET.into()),
        twilio_auth_token: Some(FIXTURE_TWILIO_TOKEN.into()),
        gupshup_token: Some(FIXTURE_GUPSHUP_TOKEN.into()),
        public_url: Some(FIXTURE_PUBLIC_URL.into()),
        ..config(dir)
    }
}

fn fixtures() -> Vec<(PathBuf, Value)> {
    let mut files: Vec<PathBuf> = all_files(&fixture("providers"));
    files.retain(|f| f.extension().is_some_and(|e| e == "json"));
    files.sort();
    files.into_iter().map(|f| (f.clone(), serde_json::from_slice(&std::fs::read(&f).unwrap()).unwrap())).collect()
}

/// Posts a fixture's request as its provider would, with `tamper` applied to the body.
async fn post(s: &TestServer, fx: &Value, tamper: bool) -> (u16, Value) {
    let mut body = fx["body"].as_str().unwrap().to_string();
    if tamper {
        body.push(' ');
    }
    let mut req = s
        .client
        .post(s.url(fx["path"].as_str().unwrap()))
        .header("content-type", fx["content_type"].as_str().unwrap())
        .body(body);
    for (k, v) in fx["headers"].as_object().unwrap() {
        req = req.header(k, v.as_str().unwrap());
    }
    let r = req.send().await.unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

fn now_us() -> i64 {
    convoscope::event::now_micros()
}

#[tokio::test]
async fn provider_fixtures_store_their_known_rows() {
    let dir = test_dir();
    let s = TestServer::start(fixture_config(dir.path())).await;
    let fixtures = fixtures();
    assert!(fixtures.len() >= 20, "fixtures/providers holds {} fixtures", fixtures.len());
    // Each request's events share its receive time: the window between two posts is its own.
    let mut windows = Vec::new();
    for (path, fx) in &fixtures {
        let before = now_us();
        let (status, answer) = post(&s, fx, false).await;
        assert_eq!(status, 200, "{}: {answer}", path.display());
        let rows = fx["rows"].as_array().unwrap();
        assert_eq!(answer["accepted"], json!(rows.len()), "{}: {answer}", path.display());
        assert_eq!(answer["rejected"], json!(0), "{}: {answer}", path.display());
        windows.push((path, before, now_us(), rows));
    }
    s.flush().await;
    let select = COLUMNS
        .iter()
        .map(|c| match *c {
            "occurred_at_us" => "CAST(occurred_at AS BIGINT) AS occurred_at_us".to_string(),
            "received_us" => "CAST(received_at AS BIGINT) AS received_us".to_string(),
            c => c.to_string(),
        })
        .collect::<Vec<_>>()
        .join(", ");
    let stored = s.query(&format!("SELECT {select} FROM events WHERE source <> 'api'")).await;
    let stored: Vec<serde_json::Map<String, Value>> =
        stored.into_iter().map(|r| COLUMNS.iter().map(|c| c.to_string()).zip(r).collect()).collect();
    let mut seen = 0;
    for (path, from, to, want) in windows {
        let got: Vec<&serde_json::Map<String, Value>> =
            stored.iter().filter(|r| r["received_us"].as_i64().is_some_and(|t| t >= from && t <= to)).collect();
        assert_eq!(got.len(), want.len(), "{}: stored {got:#?}", path.display());
        seen += got.len();
        for w in want {
            let key = if w.get("event_id").is_some() { "event_id" } else { "event_type" };
            let row = got
                .iter()
                .find(|r| r[key] == w[key])
                .unwrap_or_else(|| panic!("{}: no row with {key} {}: {got:#?}", path.display(), w[key]));
            for (col, expected) in w.as_object().unwrap() {
                let actual = &row[col.as_str()];
                if col == "attributes" {
                    let parsed: Value =
                        actual.as_str().map(|a| serde_json::from_str(a).unwrap()).unwrap_or(Value::Null);
                    assert_eq!(&parsed, expected, "{}: {} attributes", path.display(), w[key]);
                } else {
                    assert_eq!(actual, expected, "{}: {} {col}", path.display(), w[key]);
                }
            }
        }
    }
    assert_eq!(seen, stored.len(), "every stored row belongs to a fixture");
    s.stop().await;
}

#[tokio::test]
async fn providers_are_refused_without_their_secret_and_with_a_wrong_signature() {
    let dir = test_dir();
    // The common configuration sets Meta's and UltraMsg's secrets only.
    let bare = TestServer::start(config(&dir.path().join("bare"))).await;
    let configured = TestServer::start(fixture_config(&dir.path().join("configured"))).await;
    for (path, fx) in fixtures() {
        let provider = path.parent().and_then(Path::file_name).and_then(|p| p.to_str()).unwrap().to_string();
        let (status, answer) = post(&bare, &fx, false).await;
        assert_eq!(status, 401, "{}", path.display());
        let message = answer["error"]["message"].as_str().or(answer["message"].as_str()).unwrap_or("").to_string();
        let text = format!("{answer}");
        if provider == "meta" {
            // Configured, but with another secret than the fixtures'.
            assert!(text.contains("X-Hub-Signature-256"), "{}: {answer}", path.display());
        } else {
            assert!(text.contains("is configured"), "{}: {answer} {message}", path.display());
        }
        if provider != "gupshup" {
            let (status, answer) = post(&configured, &fx, true).await;
            assert_eq!(status, 401, "{} tampered: {answer}", path.display());
        }
    }
    let metrics = bare.client.get(bare.url("/metrics")).send().await.unwrap().text().await.unwrap();
    for source in ["360dialog", "gupshup", "twilio"] {
        let line = format!("source=\"{source}\"");
        assert!(
            metrics.lines().any(|l| l.contains("rejected") && l.contains(&line) && l.contains("not_configured")),
            "{source} not counted as not_configured"
        );
    }
    // A wrong Gupshup token is refused too.
    let (_, fx) = fixtures().into_iter().find(|(p, _)| p.to_string_lossy().contains("gupshup")).unwrap();
    let mut wrong = fx.clone();
    wrong["path"] = json!("/webhooks/gupshup?token=guess");
    assert_eq!(post(&configured, &wrong, false).await.0, 401);
    bare.stop().await;
    configured.stop().await;
}

/// Without `public_url`, Twilio's signature is checked over the URL the request came to.
#[tokio::test]
async fn twilio_signature_over_the_requests_own_url() {
    let dir = test_dir();
    let s = TestServer::start(Config { public_url: None, ..fixture_config(dir.path()) }).await;
    let body = "MessageSid=SM1&MessageStatus=delivered&AccountSid=AC1&To=whatsapp%3A%2B447700900123";
    let path = "/webhooks/twilio?cb=exp%3D1%3Bvariant%3Da";
    let sign = |url: &str| convoscope::signature::sign_twilio(FIXTURE_TWILIO_TOKEN, url, body.as_bytes());
    let send = |sig: String| {
        s.client
            .post(s.url(path))
            .header("content-type", "application/x-www-form-urlencoded")
            .header("x-twilio-signature", sig)
            .body(body)
            .send()
    };
    assert_eq!(send(sign(&format!("{FIXTURE_PUBLIC_URL}{path}"))).await.unwrap().status(), 401);
    assert_eq!(send(sign(&s.url(path))).await.unwrap().status(), 200);
    s.stop().await;
}

/// A billable message the rate card has no price for is counted, not priced at nothing, and
/// `marketing_lite` costs what marketing does.
#[tokio::test]
async fn cost_counts_unpriced_messages() {
    let dir = test_dir();
    let s = TestServer::start(config(dir.path())).await;
    let status = |id: &str, category: &str| {
        json!({"id": id, "status": "delivered", "timestamp": "1767254400", "recipient_id": "15550100001",
               "biz_opaque_callback_data": "campaign=c1",
               "pricing": {"billable": true, "pricing_model": "PMP", "type": "regular", "category": category}})
    };
    let sent = |id: &str| {
        json!({"id": id, "status": "sent", "timestamp": "1767254300", "recipient_id": "15550100001",
                                 "biz_opaque_callback_data": "campaign=c1"})
    };
    let body = json!({"object":"whatsapp_business_account","entry":[{"id":"1","changes":[{"field":"messages","value":{
        "metadata":{"phone_number_id":"9"},
        "statuses":[sent("wamid.L"), status("wamid.L", "marketing_lite"), sent("wamid.M"), status("wamid.M", "marketing"),
                    sent("wamid.G"), status("wamid.G", "general_purpose_ai")]}}]}]});
    assert_eq!(s.post_meta(body.to_string().as_bytes()).await.status(), 200);
    s.flush().await;
    let (status, report) = s.get_as(READ, "/v1/reports/cost?from=2026-01-01&to=2026-01-01").await;
    assert_eq!(status, 200, "{report}");
    // Rows are objects by column name.
    let by_category =
        |c: &str| report["rows"].as_array().unwrap().iter().find(|r| r["category"] == json!(c)).cloned().unwrap();
    let (lite, marketing, other) =
        (by_category("marketing_lite"), by_category("marketing"), by_category("general_purpose_ai"));
    assert_eq!(lite["messaging_cost"], json!(0.025), "the US marketing rate");
    assert_eq!(lite["messaging_cost"], marketing["messaging_cost"]);
    assert_eq!((&lite["unpriced"], &marketing["unpriced"]), (&json!(0), &json!(0)));
    assert_eq!((&other["unpriced"], &other["messaging_cost"]), (&json!(1), &json!(0.0)));
    s.stop().await;
}
