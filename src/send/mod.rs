//! The send path: template messages for experiment variants.
//!
//! A send goes through, in order: the experiment (it must exist and be running), the
//! idempotency record (a key seen before returns its first result and sends nothing), consent
//! (opted-out contacts, and contacts without an opt-in for categories that require one, are
//! refused and a `send.rejected` is recorded), deterministic assignment, the local rate limits
//! (per sending number and per recipient; over them is a 429 here rather than a provider
//! penalty), the circuit breaker, and the provider call with retries (exponential backoff,
//! full jitter, `Retry-After`, an overall deadline; permanent errors are not retried).
//! What was sent is returned as a `send.accepted` event for the caller to record through
//! the write-ahead log, and `biz_opaque_callback_data` carries experiment and variant so
//! receipts can be attributed even without that record.

pub mod batch;
pub mod provider;

use std::collections::HashMap;
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::Rng;
use serde::{Deserialize, Serialize};

use self::provider::{Outbound, Provider, ProviderError};
use crate::event::{Event, now_micros};
use crate::experiments::{self, Experiments, Status};
use crate::metrics::Metrics;
use crate::pii::PiiKey;

/// Limits and retry policy.
#[derive(Debug, Clone)]
pub struct SendConfig {
    /// Messages per second per sending number (Meta's default throughput is 80).
    pub per_number_per_sec: f64,
    /// Messages a recipient may get in a burst, and the seconds per message they refill at
    /// (Meta's pair limit is about one message per 6 s).
    pub per_recipient_burst: f64,
    pub per_recipient_refill_secs: f64,
    pub max_attempts: u32,
    pub base_backoff: Duration,
    pub max_backoff: Duration,
    /// No send takes longer than this, retries included.
    pub deadline: Duration,
    /// Consecutive failures that open the circuit.
    pub breaker_failures: u32,
    /// How long the circuit stays open before one probe is let through.
    pub breaker_open_for: Duration,
    /// Categories that need a recorded `consent.opt_in`.
    pub require_opt_in: Vec<String>,
    /// The business account and phone number the provider sends from, recorded on every
    /// send event: they make the sends the tenant's that owns the number.
    pub account_id: Option<String>,
    pub phone_number_id: Option<String>,
}

impl Default for SendConfig {
    fn default() -> Self {
        SendConfig {
            per_number_per_sec: 80.0,
            per_recipient_burst: 3.0,
            per_recipient_refill_secs: 6.0,
            max_attempts: 5,
            base_backoff: Duration::from_millis(200),
            max_backoff: Duration::from_secs(5),
            deadline: Duration::from_secs(20),
            breaker_failures: 5,
            breaker_open_for: Duration::from_secs(10),
            require_opt_in: vec!["marketing".into()],
            account_id: None,
            phone_number_id: None,
        }
    }
}

/// A send request (`POST /v1/send`).
#[derive(Debug, Clone, Deserialize)]
pub struct SendRequest {
    pub experiment: String,
    /// Recipient phone number; pseudonymised at once, never stored.
    pub to: String,
    #[serde(default)]
    pub params: HashMap<String, String>,
    #[serde(default)]
    pub idempotency_key: Option<String>,
}

/// A send's answer.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SendResult {
    pub message_id: String,
    pub experiment: String,
    pub variant: String,
    pub status: String,
    /// The variant the contact was assigned to when a guardrail stopped it: the contact got
    /// `variant` (the control) instead, outside the experiment's analysis.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reassigned_from: Option<String>,
}

/// Why a send did not happen.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    #[error("no experiment {0:?}")]
    UnknownExperiment(String),
    #[error("experiment {0:?} is not running")]
    NotRunning(String),
    #[error("this contact was erased and has not opted in since")]
    Erased,
    #[error("{0}")]
    BadRequest(String),
    #[error("the contact opted out")]
    OptedOut,
    #[error("the contact has no recorded opt-in for {0} messages")]
    NoOptIn(String),
    #[error("over the {limit} send rate; a send is allowed again in {:.2} s", retry_after.as_secs_f64())]
    RateLimited { limit: &'static str, retry_after: Duration },
    #[error("the circuit to {0} is open after repeated failures; retry later")]
    CircuitOpen(&'static str),
    #[error("provider failed: {0}")]
    Provider(ProviderError),
}

/// What a send produced: its answer (or error) and the events to record.
#[derive(Debug)]
pub struct Outcome {
    pub result: Result<SendResult, SendError>,
    pub events: Vec<Event>,
}

/// Latest consent per contact and category, kept current from ingested events.
///
/// A change that names a category (Meta's marketing preference, its error 131050) decides that
/// category; one that names none (a STOP reply, most first-party events) decides every
/// category. For a send, the latest of the two that apply wins.
#[derive(Default)]
pub struct ConsentBook {
    state: Mutex<HashMap<ConsentOf, (bool, i64)>>,
}

/// Whose consent, to what: a contact key and a category (none: every category). Its value in
/// the book: opted in, and when.
type ConsentOf = (String, Option<String>);

impl ConsentBook {
    /// Applies consent events (the latest per contact and category wins).
    pub fn observe(&self, events: &[Event]) {
        let Ok(mut s) = self.state.lock() else { return };
        for e in events {
            let opted_in = match e.event_type.as_str() {
                "consent.opt_in" => true,
                "consent.opt_out" => false,
                _ => continue,
            };
            let Some(k) = &e.contact_key else { continue };
            let entry = s.entry((k.clone(), e.category.clone())).or_insert((opted_in, e.occurred_at));
            if e.occurred_at >= entry.1 {
                *entry = (opted_in, e.occurred_at);
            }
        }
    }

    /// For a send of `category`: `Some(true)` opted in, `Some(false)` opted out, `None` never
    /// said.
    pub fn get(&self, contact_key: &str, category: &str) -> Option<bool> {
        let s = self.state.lock().ok()?;
        let every = s.get(&(contact_key.to_string(), None));
        let this = s.get(&(contact_key.to_string(), Some(category.to_string())));
        [every, this].into_iter().flatten().max_by_key(|(_, at)| *at).map(|(v, _)| *v)
    }
}

struct Bucket {
    tokens: f64,
    at: Instant,
}

impl Bucket {
    /// How long until the bucket, refilling at `per_sec`, holds a whole token.
    fn until_one(&self, per_sec: f64) -> Duration {
        Duration::from_secs_f64(((1.0 - self.tokens).max(0.0) / per_sec.max(1e-9)).min(3600.0))
    }

    fn take(&mut self, capacity: f64, per_sec: f64) -> bool {
        let now = Instant::now();
        self.tokens = (self.tokens + now.duration_since(self.at).as_secs_f64() * per_sec).min(capacity);
        self.at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// Circuit breaker state of one provider.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Breaker {
    Closed { failures: u32 },
    Open { until: Instant },
    HalfOpen,
}

/// Sends experiment messages through one provider.
pub struct Sender {
    experiments: Arc<Experiments>,
    provider: Arc<dyn Provider>,
    cfg: SendConfig,
    pii: PiiKey,
    metrics: Arc<Metrics>,
    /// Consent as ingested.
    pub consent: ConsentBook,
    number_bucket: Mutex<Bucket>,
    recipient_buckets: Mutex<HashMap<String, Bucket>>,
    breaker: Mutex<Breaker>,
    done: Mutex<HashMap<String, SendResult>>,
    in_flight: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    idempotency_file: PathBuf,
    /// Erased contacts: refused until they opt in again.
    tombstones: crate::store::tombstones::Tombstones,
    /// Variants a guardrail stopped, by experiment: their contacts get the control.
    stopped: Mutex<HashMap<String, std::collections::BTreeSet<String>>>,
}

impl Sender {
    /// A sender; idempotency records persist in `state_dir/send-idempotency.jsonl`.
    pub fn new(
        experiments: Arc<Experiments>,
        provider: Arc<dyn Provider>,
        cfg: SendConfig,
        pii: PiiKey,
        metrics: Arc<Metrics>,
        tombstones: crate::store::tombstones::Tombstones,
        state_dir: &Path,
    ) -> std::io::Result<Self> {
        std::fs::create_dir_all(state_dir)?;
        let idempotency_file = state_dir.join("send-idempotency.jsonl");
        let mut done = HashMap::new();
        if let Ok(f) = std::fs::File::open(&idempotency_file) {
            for line in std::io::BufReader::new(f).lines().map_while(Result::ok) {
                // A torn last line (crash mid-write) is skipped: that send was not answered.
                if let Ok((k, r)) = serde_json::from_str::<(String, SendResult)>(&line) {
                    done.insert(k, r);
                }
            }
        }
        metrics.circuit_open.with_label_values(&[provider.name()]).set(0);
        metrics.init_provider(provider.name());
        Ok(Sender {
            experiments,
            provider,
            number_bucket: Mutex::new(Bucket { tokens: cfg.per_number_per_sec, at: Instant::now() }),
            cfg,
            pii,
            metrics,
            consent: ConsentBook::default(),
            recipient_buckets: Mutex::new(HashMap::new()),
            breaker: Mutex::new(Breaker::Closed { failures: 0 }),
            done: Mutex::new(done),
            in_flight: Mutex::new(HashMap::new()),
            idempotency_file,
            tombstones,
            stopped: Mutex::new(HashMap::new()),
        })
    }

    /// Stops assigning `variant` of `experiment`; true when it was not stopped already.
    pub fn stop_variant(&self, experiment: &str, variant: &str) -> bool {
        let mut s = self.stopped.lock().unwrap_or_else(|p| p.into_inner());
        s.entry(experiment.to_string()).or_default().insert(variant.to_string())
    }

    /// Assigns `variant` of `experiment` again (its stop could not be recorded, and is retried).
    pub fn unstop_variant(&self, experiment: &str, variant: &str) {
        let mut s = self.stopped.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(v) = s.get_mut(experiment) {
            v.remove(variant);
        }
    }

    /// Whether `variant` of `experiment` is stopped.
    pub fn is_stopped(&self, experiment: &str, variant: &str) -> bool {
        let s = self.stopped.lock().unwrap_or_else(|p| p.into_inner());
        s.get(experiment).is_some_and(|v| v.contains(variant))
    }

    /// Sends one message (see the module docs for the order of checks).
    pub async fn send(&self, req: &SendRequest) -> Outcome {
        let key_lock = req.idempotency_key.as_ref().map(|k| {
            let mut m = self.in_flight.lock().unwrap_or_else(|p| p.into_inner());
            m.entry(k.clone()).or_default().clone()
        });
        // Concurrent requests with one key wait for the first and then return its result.
        let _guard = match &key_lock {
            Some(l) => Some(l.lock().await),
            None => None,
        };
        if let Some(k) = &req.idempotency_key
            && let Some(r) = self.done.lock().ok().and_then(|d| d.get(k).cloned())
        {
            return Outcome { result: Ok(r), events: Vec::new() };
        }
        let out = self.send_once(req).await;
        if let (Some(k), Ok(r)) = (&req.idempotency_key, &out.result) {
            self.remember(k, r);
        }
        out
    }

    fn remember(&self, key: &str, r: &SendResult) {
        if let Ok(mut d) = self.done.lock() {
            d.insert(key.to_string(), r.clone());
        }
        let line = serde_json::to_string(&(key, r)).unwrap_or_default();
        let res = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.idempotency_file)
            .and_then(|mut f| f.write_all(format!("{line}\n").as_bytes()).and_then(|_| f.sync_data()));
        if let Err(e) = res {
            tracing::error!(error = %e, "could not persist an idempotency record; a resend after restart could duplicate");
        }
    }

    async fn send_once(&self, req: &SendRequest) -> Outcome {
        let fail = |e: SendError| Outcome { result: Err(e), events: Vec::new() };
        let Some(exp) = self.experiments.get(&req.experiment) else {
            return fail(SendError::UnknownExperiment(req.experiment.clone()));
        };
        if exp.status != Status::Running {
            return fail(SendError::NotRunning(exp.name.clone()));
        }
        let Some((contact_key, country)) = self.pii.contact(&req.to) else {
            return fail(SendError::BadRequest("`to` is not a phone number".into()));
        };
        let digits = crate::pii::e164_digits(&req.to);
        let assigned = exp.assign(&contact_key);
        // A stopped variant's contacts get the control, sent outside the experiment: counted
        // as the control's, they would tilt its split and its results.
        let reassigned_from = (self.is_stopped(&exp.name, &assigned.name) && assigned.name != exp.control().name)
            .then(|| assigned.name.clone());
        let variant = if reassigned_from.is_some() { exp.control() } else { assigned };
        let event = |event_type: &str| {
            let now = now_micros();
            let mut e = Event::new(String::new(), event_type, now, now, "sender");
            e.contact_key = Some(contact_key.clone());
            e.country = country.map(str::to_string);
            if let Some(from) = &reassigned_from {
                e.attributes = Some(
                    serde_json::json!({"experiment": exp.name, "reassigned_from": from, "reason": "variant_stopped"})
                        .to_string(),
                );
            } else {
                e.experiment = Some(exp.name.clone());
                e.variant = Some(variant.name.clone());
            }
            e.campaign = exp.campaign.clone();
            e.template = Some(variant.template.clone());
            e.locale = Some(variant.language.clone());
            e.category = Some(variant.category.clone());
            e.content_type = Some("template".into());
            e.account_id = self.cfg.account_id.clone();
            e.phone_number_id = self.cfg.phone_number_id.clone();
            e
        };
        let reject = |reason: &str, err: SendError, code: Option<i32>| {
            let mut e = event("send.rejected");
            e.event_id = format!(
                "sender:rejected:{}:{}:{}",
                exp.name,
                contact_key,
                req.idempotency_key.as_deref().unwrap_or(&e.occurred_at.to_string())
            );
            e.error_code = code;
            e.error_title = Some(err.to_string());
            e.attributes = Some(serde_json::json!({"reason": reason}).to_string());
            self.metrics.sends_total.with_label_values(&[&exp.name, &variant.name, reason]).inc();
            Outcome { result: Err(err), events: vec![e] }
        };
        if self.tombstones.blocks_send(
            &contact_key,
            self.cfg.account_id.as_deref(),
            self.cfg.phone_number_id.as_deref(),
        ) {
            return reject("erased", SendError::Erased, None);
        }
        match self.consent.get(&contact_key, &variant.category) {
            Some(false) => return reject("opted_out", SendError::OptedOut, None),
            None if self.cfg.require_opt_in.contains(&variant.category) => {
                return reject("no_opt_in", SendError::NoOptIn(variant.category.clone()), None);
            }
            _ => {}
        }
        if let Err((limit, retry_after)) = self.take_tokens(&contact_key) {
            self.metrics.sends_total.with_label_values(&[&exp.name, &variant.name, "rate_limited"]).inc();
            return fail(SendError::RateLimited { limit, retry_after });
        }
        let fill = |t: &str| {
            let mut s = t.to_string();
            for (k, v) in &req.params {
                s = s.replace(&format!("{{{{{k}}}}}"), v);
            }
            s
        };
        let callback = match (&reassigned_from, exp.campaign.as_deref()) {
            (Some(_), Some(c)) => format!("campaign={c}"),
            (Some(_), None) => String::new(),
            (None, campaign) => experiments::callback_data(&exp.name, &variant.name, campaign),
        };
        let msg = Outbound {
            to: digits,
            template: variant.template.clone(),
            language: variant.language.clone(),
            body: variant.body.iter().map(|b| fill(b)).collect(),
            buttons: variant
                .buttons
                .iter()
                .map(|b| match reassigned_from {
                    Some(_) => b.clone(),
                    None => experiments::button_payload(&exp.name, &variant.name, b),
                })
                .collect(),
            callback_data: callback,
            content_sid: variant.content_sid.clone(),
        };
        match self.call_with_retries(&msg).await {
            Ok(acc) => {
                let mut e = event("send.accepted");
                e.event_id = format!("sender:{}:accepted", acc.message_id);
                e.message_id = Some(acc.message_id.clone());
                self.metrics.sends_total.with_label_values(&[&exp.name, &variant.name, "accepted"]).inc();
                Outcome {
                    result: Ok(SendResult {
                        message_id: acc.message_id,
                        experiment: exp.name.clone(),
                        variant: variant.name.clone(),
                        status: acc.status,
                        reassigned_from: reassigned_from.clone(),
                    }),
                    events: vec![e],
                }
            }
            Err(err @ SendError::CircuitOpen(_)) => {
                self.metrics.sends_total.with_label_values(&[&exp.name, &variant.name, "circuit_open"]).inc();
                fail(err)
            }
            Err(SendError::Provider(p)) => {
                let code = p.code.and_then(|c| i32::try_from(c).ok());
                reject("provider_failed", SendError::Provider(p), code)
            }
            Err(other) => fail(other),
        }
    }

    /// Spends a token of the recipient's bucket and one of the number's, or neither: then which
    /// limit refused and how long until it has a token again.
    fn take_tokens(&self, contact_key: &str) -> std::result::Result<(), (&'static str, Duration)> {
        let mut rb = self.recipient_buckets.lock().unwrap_or_else(|p| p.into_inner());
        let (burst, per_sec) = (self.cfg.per_recipient_burst, 1.0 / self.cfg.per_recipient_refill_secs);
        if rb.len() > 100_000 {
            // Forget recipients whose bucket has refilled: they are indistinguishable from new.
            let full = Duration::from_secs_f64(self.cfg.per_recipient_refill_secs * burst);
            rb.retain(|_, b| b.at.elapsed() < full);
        }
        let bucket = rb.entry(contact_key.to_string()).or_insert(Bucket { tokens: burst, at: Instant::now() });
        // Check the recipient first without spending, so a refused send costs no number token.
        let mut probe = Bucket { tokens: bucket.tokens, at: bucket.at };
        if !probe.take(burst, per_sec) {
            let wait = probe.until_one(per_sec);
            *bucket = probe;
            return Err(("per-recipient", wait));
        }
        let mut nb = self.number_bucket.lock().unwrap_or_else(|p| p.into_inner());
        if !nb.take(self.cfg.per_number_per_sec, self.cfg.per_number_per_sec) {
            return Err(("per-number", nb.until_one(self.cfg.per_number_per_sec)));
        }
        *bucket = probe;
        Ok(())
    }

    fn breaker_allows(&self) -> bool {
        let mut b = self.breaker.lock().unwrap_or_else(|p| p.into_inner());
        match *b {
            Breaker::Closed { .. } => true,
            Breaker::HalfOpen => false,
            Breaker::Open { until } if Instant::now() >= until => {
                *b = Breaker::HalfOpen;
                true
            }
            Breaker::Open { .. } => false,
        }
    }

    fn breaker_record(&self, ok: bool) {
        let mut b = self.breaker.lock().unwrap_or_else(|p| p.into_inner());
        let next = match (*b, ok) {
            (_, true) => Breaker::Closed { failures: 0 },
            (Breaker::Closed { failures }, false) if failures + 1 < self.cfg.breaker_failures => {
                Breaker::Closed { failures: failures + 1 }
            }
            (_, false) => Breaker::Open { until: Instant::now() + self.cfg.breaker_open_for },
        };
        if matches!(next, Breaker::Open { .. }) && !matches!(*b, Breaker::Open { .. }) {
            tracing::warn!(provider = self.provider.name(), "circuit opened after repeated provider failures");
        }
        *b = next;
        let open = matches!(next, Breaker::Open { .. }) as i64;
        self.metrics.circuit_open.with_label_values(&[self.provider.name()]).set(open);
    }

    async fn call_with_retries(&self, msg: &Outbound) -> Result<provider::Accepted, SendError> {
        let started = Instant::now();
        let mut attempt = 0;
        loop {
            if !self.breaker_allows() {
                return Err(SendError::CircuitOpen(self.provider.name()));
            }
            attempt += 1;
            let t = Instant::now();
            let res = self.provider.send(msg).await;
            let outcome = match &res {
                Ok(_) => "ok",
                Err(e) if e.retryable => "retryable_error",
                Err(_) => "permanent_error",
            };
            self.metrics
                .provider_request_duration_seconds
                .with_label_values(&[self.provider.name(), outcome])
                .observe(t.elapsed().as_secs_f64());
            match res {
                Ok(a) => {
                    self.breaker_record(true);
                    return Ok(a);
                }
                Err(e) => {
                    self.metrics.provider_error(self.provider.name(), e.code);
                    // Only failures of the provider itself count against the circuit: a
                    // permanent error about this message says the provider is working.
                    self.breaker_record(!e.retryable);
                    if !e.retryable || attempt >= self.cfg.max_attempts {
                        return Err(SendError::Provider(e));
                    }
                    let cap =
                        self.cfg.base_backoff.saturating_mul(1 << (attempt - 1).min(16)).min(self.cfg.max_backoff);
                    let jitter = Duration::from_secs_f64(rand::rng().random_range(0.0..=cap.as_secs_f64()));
                    let wait = e.retry_after.map(|r| r.max(jitter)).unwrap_or(jitter);
                    if started.elapsed() + wait > self.cfg.deadline {
                        return Err(SendError::Provider(e));
                    }
                    tokio::time::sleep(wait).await;
                    self.metrics.send_retries_total.with_label_values(&[self.provider.name()]).inc();
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn consent_of_one_category_leaves_the_others() {
        let book = ConsentBook::default();
        let ev = |kind: &str, at: i64, category: Option<&str>| {
            let mut e = Event::new(format!("{kind}-{at}"), kind, at, at, "meta");
            e.contact_key = Some("ck".into());
            e.category = category.map(str::to_string);
            e
        };
        book.observe(&[ev("consent.opt_out", 10, Some("marketing"))]);
        assert_eq!((book.get("ck", "marketing"), book.get("ck", "utility")), (Some(false), None));
        book.observe(&[ev("consent.opt_in", 20, None), ev("consent.opt_out", 5, None)]);
        assert_eq!(
            (book.get("ck", "marketing"), book.get("ck", "utility")),
            (Some(true), Some(true)),
            "the latest wins"
        );
        book.observe(&[ev("consent.opt_out", 30, Some("marketing"))]);
        assert_eq!((book.get("ck", "marketing"), book.get("ck", "utility")), (Some(false), Some(true)));
    }
}
