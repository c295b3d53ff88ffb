//! A simulated WhatsApp provider on loopback, so the whole loop runs with no account: it
//! accepts template sends like Meta (`POST /{version}/{phone_number_id}/messages`, 429 with
//! code 130429 over its throughput) or like Twilio (`twilio.rs`), then calls the collector back
//! with signed webhooks (sent, delivered, read, some reads without a delivered, failures with
//! real codes, quick-reply taps that name the message) as the provider it [`Speaks`] sends
//! them, and posts conversions and support conversations to `/v1/events`.
//!
//! Outcomes are drawn from a generator seeded per message, with rates per variant, so a run
//! with the same seed behaves the same and a variant can truly win. Recipients ending in
//! `0429` are throttled on their first attempt, `0500` always get a server error, `2001` a
//! permanent "template does not exist": hooks for testing the send path's retry rules.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;
use serde_json::{Value, json};
use tokio::sync::mpsc;

mod twilio;

/// Whose webhooks the sandbox sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Speaks {
    /// Meta's JSON, batched, signed with the app secret, to `/webhooks/meta`.
    #[default]
    Meta,
    /// Twilio's forms, one per message, signed with the auth token, to the status callback
    /// URL of the send and to `/webhooks/twilio`.
    Twilio,
}

/// How the sandbox behaves.
#[derive(Debug, Clone)]
pub struct SandboxConfig {
    /// Base URL of the collector (`http://127.0.0.1:8080`).
    pub collector_url: String,
    /// Secret the webhooks are signed with (the collector's `meta_app_secret`, or its
    /// `twilio_auth_token` when the sandbox speaks Twilio).
    pub app_secret: String,
    pub speaks: Speaks,
    /// Token of role `ingest` for `/v1/events` (conversions, conversations); none: not sent.
    pub ingest_token: Option<String>,
    pub seed: u64,
    /// Sends per second before answering 429 / 130429.
    pub throughput_per_sec: f64,
    /// Multiplies every simulated delay (0.01 makes minutes into seconds).
    pub time_scale: f64,
}

impl Default for SandboxConfig {
    fn default() -> Self {
        SandboxConfig {
            collector_url: "http://127.0.0.1:8080".into(),
            app_secret: String::new(),
            speaks: Speaks::Meta,
            ingest_token: None,
            seed: 1,
            throughput_per_sec: 200.0,
            time_scale: 0.01,
        }
    }
}

/// True rates of one variant.
#[derive(Debug, Clone, Copy)]
pub struct Rates {
    pub fail: f64,
    pub read: f64,
    pub reply: f64,
    pub convert: f64,
}

/// Rates by variant name; unknown variants get `control`'s.
pub fn rates_for(variant: &str) -> Rates {
    let base = Rates { fail: 0.04, read: 0.6, reply: 0.08, convert: 0.05 };
    match variant {
        "bold" => Rates { convert: 0.06, reply: 0.1, ..base },
        "emoji" => Rates { convert: 0.10, read: 0.65, reply: 0.12, ..base },
        _ => base,
    }
}

/// What the sandbox did, per variant: the ground truth a report must match.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct VariantStats {
    pub accepted: u64,
    pub sent: u64,
    pub delivered: u64,
    pub read: u64,
    pub failed: u64,
    pub replied: u64,
    pub converted: u64,
}

#[derive(Default)]
struct Shared {
    stats: Mutex<HashMap<String, VariantStats>>,
    attempts: Mutex<HashMap<String, u32>>,
    requests: AtomicU64,
    throttled: AtomicU64,
    /// Callbacks scheduled but not yet acknowledged by the collector.
    pending: AtomicI64,
    bucket: Mutex<(f64, Option<Instant>)>,
    counter: AtomicU64,
    /// The status callback URL of each message sent through the Twilio API.
    status_urls: Mutex<HashMap<String, String>>,
}

enum Outgoing {
    Status(Value),
    Message(Value),
    Event(Value),
}

struct Sandbox {
    cfg: SandboxConfig,
    shared: Arc<Shared>,
    tx: mpsc::UnboundedSender<Outgoing>,
}

/// A running sandbox.
#[derive(Clone)]
pub struct Handle {
    shared: Arc<Shared>,
}

impl Handle {
    /// What it did so far, by variant.
    pub fn stats(&self) -> HashMap<String, VariantStats> {
        self.shared.stats.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// Callbacks not yet acknowledged by the collector.
    pub fn pending(&self) -> i64 {
        self.shared.pending.load(Ordering::SeqCst)
    }

    /// Requests answered 429 for throughput.
    pub fn throttled(&self) -> u64 {
        self.shared.throttled.load(Ordering::SeqCst)
    }

    /// Send attempts seen for a recipient.
    pub fn attempts(&self, to: &str) -> u32 {
        self.shared.attempts.lock().ok().and_then(|a| a.get(to).copied()).unwrap_or(0)
    }

    /// Waits until every callback is acknowledged (or the time is up); true when idle.
    pub async fn settle(&self, limit: Duration) -> bool {
        let start = Instant::now();
        while start.elapsed() < limit {
            if self.pending() == 0 {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        false
    }
}

/// Starts the sandbox's routes and its webhook dispatcher; serve the router on a listener.
pub fn start(cfg: SandboxConfig) -> (Router, Handle) {
    let shared = Arc::new(Shared::default());
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(dispatch(cfg.clone(), shared.clone(), rx));
    let sb = Arc::new(Sandbox { cfg, shared: shared.clone(), tx });
    let router = Router::new()
        .route("/{version}/{phone_number_id}/messages", post(send))
        .route("/2010-04-01/Accounts/{account_sid}/Messages.json", post(twilio::send))
        .route("/sandbox/stats", get(stats))
        .with_state(sb);
    (router, Handle { shared })
}

async fn stats(State(sb): State<Arc<Sandbox>>) -> Json<Value> {
    let h = Handle { shared: sb.shared.clone() };
    Json(json!({"variants": h.stats(), "pending": h.pending(), "throttled": h.throttled(),
                "requests": sb.shared.requests.load(Ordering::SeqCst)}))
}

fn meta_error(status: StatusCode, code: i64, message: &str) -> Response {
    let body = json!({"error": {"message": format!("(#{code}) {message}"), "type": "OAuthException", "code": code,
        "error_data": {"messaging_product": "whatsapp", "details": message}, "fbtrace_id": "sandbox"}});
    let mut r = (status, Json(body)).into_response();
    if status == StatusCode::TOO_MANY_REQUESTS {
        r.headers_mut().insert(header::RETRY_AFTER, axum::http::HeaderValue::from_static("0"));
    }
    r
}

async fn send(
    State(sb): State<Arc<Sandbox>>,
    Path((_version, _phone_number_id)): Path<(String, String)>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    sb.shared.requests.fetch_add(1, Ordering::SeqCst);
    if headers.get(header::AUTHORIZATION).is_none() {
        return meta_error(StatusCode::UNAUTHORIZED, 190, "Access token is missing");
    }
    let to = body["to"].as_str().unwrap_or_default().trim_start_matches('+').to_string();
    let template = body["template"]["name"].as_str().unwrap_or_default().to_string();
    if to.is_empty() || template.is_empty() {
        return meta_error(StatusCode::BAD_REQUEST, 100, "Invalid parameter: to and template are required");
    }
    match admit(&sb, &to) {
        Err(Refusal::ServerError) => {
            return meta_error(StatusCode::INTERNAL_SERVER_ERROR, 131000, "Something went wrong");
        }
        Err(Refusal::NoTemplate) => {
            return meta_error(StatusCode::NOT_FOUND, 132001, "Template name does not exist in the translation");
        }
        Err(Refusal::Throttled) => return meta_error(StatusCode::TOO_MANY_REQUESTS, 130429, "Rate limit hit"),
        Ok(()) => {}
    }
    let n = sb.shared.counter.fetch_add(1, Ordering::SeqCst) + 1;
    let wamid = format!("wamid.SBX{:x}{:010}", sb.cfg.seed, n);
    let callback = body["biz_opaque_callback_data"].as_str().unwrap_or_default().to_string();
    let category = if template.contains("otp") { "authentication" } else { "marketing" };
    simulate(&sb, wamid.clone(), to, callback, category);
    Json(json!({"messaging_product": "whatsapp", "contacts": [{"input": body["to"], "wa_id": body["to"]}],
                "messages": [{"id": wamid, "message_status": "accepted"}]}))
    .into_response()
}

/// Why the sandbox refused a send, whichever provider's API it came through.
enum Refusal {
    /// Over the throughput, or a recipient ending in `0429` on its first attempt.
    Throttled,
    /// A recipient ending in `0500`: always a server error.
    ServerError,
    /// A recipient ending in `2001`: a permanent "template does not exist".
    NoTemplate,
}

/// Counts the attempt and applies the throughput and the test recipients' rules.
fn admit(sb: &Sandbox, to: &str) -> Result<(), Refusal> {
    let attempt = {
        let mut a = sb.shared.attempts.lock().unwrap_or_else(|p| p.into_inner());
        let n = a.entry(to.to_string()).or_default();
        *n += 1;
        *n
    };
    if to.ends_with("0500") {
        return Err(Refusal::ServerError);
    }
    if to.ends_with("2001") {
        return Err(Refusal::NoTemplate);
    }
    let over = {
        let mut b = sb.shared.bucket.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        let cap = sb.cfg.throughput_per_sec;
        let tokens = match b.1 {
            Some(at) => (b.0 + now.duration_since(at).as_secs_f64() * cap).min(cap),
            None => cap,
        };
        *b = (tokens, Some(now));
        if tokens >= 1.0 {
            b.0 -= 1.0;
            false
        } else {
            true
        }
    };
    if over || (to.ends_with("0429") && attempt == 1) {
        sb.shared.throttled.fetch_add(1, Ordering::SeqCst);
        return Err(Refusal::Throttled);
    }
    Ok(())
}

fn simulate(sb: &Arc<Sandbox>, wamid: String, to: String, callback: String, category: &str) {
    let variant = crate::experiments::parse_callback_data(&callback).1.unwrap_or_else(|| "control".into());
    // Seeded by the recipient, not the order sends arrive in (which concurrency shuffles): the
    // same seed and recipients give the same outcomes run after run.
    let mut rng = ChaCha8Rng::seed_from_u64(
        sb.cfg.seed.wrapping_mul(1_000_003).wrapping_add(xxhash_rust::xxh3::xxh3_64(to.as_bytes())),
    );
    let r = rates_for(&variant);
    let scale = sb.cfg.time_scale;
    let now = chrono::Utc::now().timestamp();
    let mut plan: Vec<(f64, Outgoing)> = Vec::new();
    let mut st = VariantStats { accepted: 1, ..Default::default() };
    let status = |s: &str, t: i64, extra: Value| {
        let mut v = json!({"id": wamid, "status": s, "timestamp": t.to_string(), "recipient_id": to,
                           "biz_opaque_callback_data": callback});
        if let (Value::Object(m), Value::Object(x)) = (&mut v, extra) {
            m.extend(x);
        }
        Outgoing::Status(v)
    };
    // Meta prices every sent, delivered and read status (not a failure), so a message whose
    // delivered status never comes still has its category.
    let pricing =
        json!({"pricing": {"billable": true, "pricing_model": "PMP", "type": "regular", "category": category}});
    let mut t = 1.0;
    if rng.random_bool(r.fail) {
        let (code, title) = if rng.random_bool(0.6) {
            (131026, "Message undeliverable")
        } else {
            (131049, "This message was not delivered to maintain healthy ecosystem engagement.")
        };
        plan.push((
            t,
            status("failed", stamp(now, 1.0), json!({"errors": [{"code": code, "title": title, "message": title}]})),
        ));
        st.failed = 1;
    } else {
        plan.push((t, status("sent", stamp(now, 1.0), pricing.clone())));
        st.sent = 1;
        t += rng.random_range(2.0..30.0);
        let read = rng.random_bool(r.read);
        // Meta may skip `delivered` when delivery and read come together.
        if !(read && rng.random_bool(0.08)) {
            plan.push((t, status("delivered", stamp(now, t), pricing.clone())));
        }
        st.delivered = 1;
        if read {
            t += rng.random_range(10.0..600.0);
            plan.push((t, status("read", stamp(now, t), pricing.clone())));
            st.read = 1;
            if rng.random_bool(r.reply) {
                t += rng.random_range(5.0..120.0);
                plan.push((
                    t,
                    Outgoing::Message(
                        json!({"from": to, "id": format!("{wamid}.R"), "timestamp": stamp(now, t).to_string(),
                    "type": "button", "context": {"from": "15550000000", "id": wamid},
                    "button": {"payload": format!("{callback};choice=interested"), "text": "Interested"}}),
                    ),
                ));
                st.replied = 1;
            }
            if rng.random_bool(r.convert / r.read) {
                t += rng.random_range(60.0..3600.0);
                let at = chrono::DateTime::from_timestamp(stamp(now, t), 0).unwrap_or_default().to_rfc3339();
                plan.push((t, Outgoing::Event(json!({"event_id": format!("sandbox:{wamid}:conversion"), "event_type": "conversion",
                    "occurred_at": at, "contact": to, "revenue_micros": rng.random_range(10..80) * 1_000_000, "currency": "USD",
                    "campaign": crate::experiments::parse_callback_data(&callback).2}))));
                st.converted = 1;
            }
            if rng.random_bool(0.15) {
                conversation(&mut rng, &mut plan, &wamid, &to, now, t);
            }
        }
    }
    if let Ok(mut s) = sb.shared.stats.lock() {
        let e = s.entry(variant).or_default();
        e.accepted += st.accepted;
        e.sent += st.sent;
        e.delivered += st.delivered;
        e.read += st.read;
        e.failed += st.failed;
        e.replied += st.replied;
        e.converted += st.converted;
    }
    for (delay, out) in plan {
        sb.shared.pending.fetch_add(1, Ordering::SeqCst);
        let tx = sb.tx.clone();
        let shared = sb.shared.clone();
        let wait = Duration::from_secs_f64(delay * scale);
        tokio::spawn(async move {
            tokio::time::sleep(wait).await;
            if tx.send(out).is_err() {
                shared.pending.fetch_sub(1, Ordering::SeqCst);
            }
        });
    }
}

/// Simulated seconds → seconds added to the real send time for timestamps. Monotone (order is
/// kept) and below the collector's 5-minute future limit, since the callbacks of a sped-up
/// simulation arrive long before their simulated time.
fn stamp(now: i64, t: f64) -> i64 {
    now + (280.0 * (1.0 - (-t / 280.0).exp())) as i64
}

fn conversation(rng: &mut ChaCha8Rng, plan: &mut Vec<(f64, Outgoing)>, wamid: &str, to: &str, now: i64, mut t: f64) {
    let id = format!("sbx-conv-{wamid}");
    let queue = ["billing", "orders", "tech"][rng.random_range(0..3)];
    let ev = |plan: &mut Vec<(f64, Outgoing)>, t: f64, kind: &str, extra: Value| {
        let at = chrono::DateTime::from_timestamp(stamp(now, t), 0).unwrap_or_default().to_rfc3339();
        let mut v = json!({"event_id": format!("{id}:{kind}"), "event_type": kind, "occurred_at": at,
                           "conversation_id": id, "contact": to, "queue": queue});
        if let (Value::Object(m), Value::Object(x)) = (&mut v, extra) {
            m.extend(x);
        }
        plan.push((t, Outgoing::Event(v)));
    };
    t += 30.0;
    ev(plan, t, "conversation.opened", json!({"actor": "customer"}));
    t += rng.random_range(2.0..20.0);
    ev(plan, t, "conversation.bot_reply", json!({"actor": "bot"}));
    if rng.random_bool(0.35) {
        t += rng.random_range(30.0..300.0);
        ev(plan, t, "conversation.handoff", json!({}));
        t += rng.random_range(30.0..900.0);
        ev(plan, t, "conversation.agent_reply", json!({"actor": "agent", "agent_key": "agent-1"}));
    }
    t += rng.random_range(60.0..1800.0);
    ev(plan, t, "conversation.resolved", json!({}));
    if rng.random_bool(0.5) {
        t += 60.0;
        ev(plan, t, "csat.submitted", json!({"csat_score": rng.random_range(3..6)}));
    }
}

/// Most items Meta puts in one webhook; we batch the same way.
const BATCH: usize = 100;

async fn dispatch(cfg: SandboxConfig, shared: Arc<Shared>, mut rx: mpsc::UnboundedReceiver<Outgoing>) {
    let http = reqwest::Client::builder().timeout(Duration::from_secs(10)).build().unwrap_or_default();
    loop {
        let Some(first) = rx.recv().await else { break };
        let mut items = vec![first];
        let until = tokio::time::Instant::now() + Duration::from_millis(50);
        while items.len() < BATCH {
            match tokio::time::timeout_at(until, rx.recv()).await {
                Ok(Some(i)) => items.push(i),
                _ => break,
            }
        }
        let (mut statuses, mut messages, mut events) = (Vec::new(), Vec::new(), Vec::new());
        for i in items {
            match i {
                Outgoing::Status(v) => statuses.push(v),
                Outgoing::Message(v) => messages.push(v),
                Outgoing::Event(v) => events.push(v),
            }
        }
        let n_hooks = (statuses.len() + messages.len()) as i64;
        if n_hooks > 0 && cfg.speaks == Speaks::Twilio {
            twilio::deliver_all(&http, &cfg, &shared, statuses, messages).await;
            shared.pending.fetch_sub(n_hooks, Ordering::SeqCst);
        } else if n_hooks > 0 {
            let body = json!({"object": "whatsapp_business_account", "entry": [{"id": "100200300400500", "changes": [
                {"field": "messages", "value": {"messaging_product": "whatsapp",
                 "metadata": {"display_phone_number": "15550000000", "phone_number_id": "600700800900111"},
                 "statuses": statuses, "messages": messages}}]}]})
            .to_string();
            let sig = crate::signature::sign_meta(&cfg.app_secret, body.as_bytes());
            deliver(&http, &format!("{}/webhooks/meta", cfg.collector_url), body, Some(sig), None).await;
            shared.pending.fetch_sub(n_hooks, Ordering::SeqCst);
        }
        if !events.is_empty() {
            let n = events.len() as i64;
            if let Some(token) = &cfg.ingest_token {
                let body: String = events.iter().map(|e| format!("{e}\n")).collect();
                deliver(&http, &format!("{}/v1/events", cfg.collector_url), body, None, Some(token)).await;
            }
            shared.pending.fetch_sub(n, Ordering::SeqCst);
        }
    }
}

/// Posts until the collector answers 200, backing off like Meta does (bounded here).
async fn deliver(http: &reqwest::Client, url: &str, body: String, sig: Option<String>, token: Option<&str>) {
    let sig = sig.map(|s| (crate::signature::META_HEADER, s));
    deliver_as(http, url, "application/json", body, sig, token).await
}

/// [`deliver`] of a body of `content_type`, with its signature header.
async fn deliver_as(
    http: &reqwest::Client,
    url: &str,
    content_type: &str,
    body: String,
    sig: Option<(&str, String)>,
    token: Option<&str>,
) {
    let mut wait = Duration::from_millis(100);
    for _ in 0..20 {
        let mut req = http.post(url).header("content-type", content_type).body(body.clone());
        if let Some((name, s)) = &sig {
            req = req.header(*name, s);
        }
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        match req.send().await {
            Ok(r) if r.status().is_success() => return,
            Ok(r) => tracing::debug!(status = %r.status(), url, "collector refused a sandbox callback; retrying"),
            Err(e) => tracing::debug!(error = %e, url, "sandbox callback failed; retrying"),
        }
        tokio::time::sleep(wait).await;
        wait = (wait * 2).min(Duration::from_secs(5));
    }
    tracing::warn!(url, "sandbox gave up on a callback after 20 attempts");
}
