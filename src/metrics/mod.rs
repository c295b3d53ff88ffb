//! Prometheus metrics.
//!
//! Every label is a bounded set: sources and event types are fixed lists, error codes and
//! categories are capped with an `other` bucket, so a hostile or buggy sender cannot blow up
//! the number of series. Every labelled series whose labels are known in advance exists at zero
//! from the start, so the first failure of a kind shows as an increase rather than as a series
//! appearing (which `increase()` reads as nothing).
//!
//! The families are declared here; `latency.rs` is the delivery and read latency tracker,
//! `whatsapp.rs` the state of templates, numbers and accounts that provider events report.

mod latency;
mod stored;
mod whatsapp;

use std::collections::HashSet;
use std::sync::Mutex;

use prometheus::{
    Encoder, Gauge, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};

use crate::event::{EVENT_TYPES, SOURCES};
use latency::LatencyTracker;
pub use whatsapp::WhatsAppState;

/// Buckets for latencies from a second to a day: receipts come in seconds, reads in hours.
const LATENCY_BUCKETS: &[f64] =
    &[0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0, 7200.0, 21600.0, 43200.0, 86400.0];
/// Buckets for internal operations (flush, provider calls): milliseconds to a minute.
const OP_BUCKETS: &[f64] = &[0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0];
/// Buckets for answering a request: Meta asks for a median under 250 ms and fewer than 1% over
/// 1 s, so both are bucket bounds.
const ACK_BUCKETS: &[f64] = &[0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];
/// Buckets for webhook lag (receive time minus the provider's event time): a second when
/// healthy, hours to days when a provider retries after an outage (Meta for up to 7 days).
const LAG_BUCKETS: &[f64] = &[1.0, 5.0, 15.0, 60.0, 300.0, 900.0, 3600.0, 21600.0, 86400.0, 604800.0];
/// Messages whose status times are remembered to measure latency at ingest. At 32 bytes an
/// entry, in a table sized for twice as many (see `LatencyTracker::new`), this bounds the
/// tracker near 19 MB.
pub const DEFAULT_LATENCY_TRACKED: usize = 200_000;
/// The kinds of query the analytics run: ad hoc (`/v1/query`, `convoscope query`) and reports.
pub const QUERY_KINDS: [&str; 2] = ["query", "report"];
/// How a query or report ends.
pub const QUERY_OUTCOMES: [&str; 7] = ["ok", "busy", "refused", "timeout", "memory", "error", "cancelled"];
/// Pricing categories with their own series; any other counts as `other`.
const CATEGORIES: &[&str] =
    &["marketing", "marketing_lite", "utility", "authentication", "authentication_international", "service"];
/// The statuses `convoscope_messages_total` counts.
const STATUSES: [&str; 4] = ["sent", "delivered", "read", "failed"];
/// Why a whole request was refused (`convoscope_ingest_rejected_requests_total`).
pub const REQUEST_REASONS: &[&str] = &[
    "malformed",
    "too_large",
    "unauthorized",
    "forbidden",
    "bad_signature",
    "bad_token",
    "bad_verify_token",
    "not_configured",
    "wal_full",
    "wal_error",
];
/// Why one event of an accepted request was refused (`convoscope_ingest_rejected_total`).
pub const EVENT_REASONS: &[&str] =
    &["malformed", "invalid_event", "future_timestamp", "unsupported_field", "erased", "wal_full", "wal_error"];
/// The sources that post webhooks: the providers, as `/webhooks/<source>` names them.
pub const WEBHOOK_SOURCES: &[&str] = &["meta", "360dialog", "gupshup", "twilio", "ultramsg"];
/// Status codes with a series from the start for every webhook source and API route.
const CODES: &[&str] = &["200", "400", "401", "403", "404", "408", "409", "413", "429", "500", "503"];
/// Provider error codes with a series from the start: Meta's documented codes (what each
/// means: `whatsapp-formats.md` §3.6) and Twilio's commonest. Any other code gets one of the
/// `max_error_codes` first-come series, then `other`.
pub const KNOWN_ERROR_CODES: &[i32] = &[
    470, 130429, 130472, 131000, 131005, 131008, 131009, 131016, 131021, 131026, 131031, 131042, 131045, 131047,
    131048, 131049, 131050, 131051, 131052, 131053, 131056, 131057, 132000, 132001, 132005, 132007, 132012, 132015,
    132016, 132068, 132069, 133010, 63003, 63005, 63013, 63016, 63018, 63024, 63032, 63049,
];
/// The stages of the pipeline whose failures `convoscope_errors_total` counts (each is also
/// logged with its detail).
pub const ERROR_STAGES: &[&str] = &[
    "flush",
    "corrupt_segment",
    "dedup_index",
    "compaction",
    "retention",
    "rollup_healing",
    "experiment_table",
    "erasure",
    "audit",
    "consent_refresh",
    "auto_stop",
];

/// All metrics of one process.
pub struct Metrics {
    registry: Registry,
    pub ingest_events_total: IntCounterVec,
    pub ingest_rejected_total: IntCounterVec,
    /// Whole requests refused, by source and reason ([`REQUEST_REASONS`]); their events are
    /// not counted again in `ingest_rejected_total` unless the reason is the log's.
    pub ingest_rejected_requests_total: IntCounterVec,
    /// Webhook requests answered, by source and status code.
    pub webhook_requests_total: IntCounterVec,
    /// Seconds from a webhook's arrival to its answer (200: its events fsynced), by source.
    pub webhook_ack_duration_seconds: HistogramVec,
    /// `/v1` requests answered, by route as declared and status code.
    pub api_requests_total: IntCounterVec,
    pub api_request_duration_seconds: HistogramVec,
    /// Receive time minus the provider's event time of statuses, by source.
    pub webhook_lag_seconds: HistogramVec,
    pub flushed_events_total: IntCounter,
    pub wal_budget_bytes: IntGauge,
    pub wal_oldest_segment_age_seconds: Gauge,
    pub last_flush_success_timestamp_seconds: Gauge,
    /// Failures by pipeline stage ([`ERROR_STAGES`]).
    pub errors_total: IntCounterVec,
    /// Provider errors on the send path, by provider and code.
    pub provider_errors_total: IntCounterVec,
    /// Provider calls of the send path retried, by provider.
    pub send_retries_total: IntCounterVec,
    /// Templates, numbers and accounts as their provider events last described them.
    pub whatsapp: WhatsAppState,
    pub ingest_duplicates_total: IntCounterVec,
    pub messages_total: IntCounterVec,
    pub message_failures_total: IntCounterVec,
    pub delivery_latency_seconds: Histogram,
    pub read_latency_seconds: Histogram,
    pub latency_unmatched_total: IntCounterVec,
    pub wal_bytes: IntGauge,
    pub flush_duration_seconds: Histogram,
    pub flush_errors_total: IntCounter,
    pub sends_total: IntCounterVec,
    pub provider_request_duration_seconds: HistogramVec,
    pub circuit_open: IntGaugeVec,
    /// Queries and reports running now, by kind (`query`, `report`).
    pub queries_running: IntGaugeVec,
    /// Queries and reports ended, by kind and outcome ([`QUERY_OUTCOMES`]).
    pub queries_total: IntCounterVec,
    /// Bytes queries and reports spilled to disk, by kind.
    pub query_spilled_bytes_total: IntCounterVec,
    error_codes: Mutex<HashSet<i32>>,
    max_error_codes: usize,
    latency: Mutex<LatencyTracker>,
}

fn histogram_vec(r: &Registry, name: &str, help: &str, buckets: &[f64], labels: &[&str]) -> HistogramVec {
    let h = HistogramVec::new(HistogramOpts::new(name, help).buckets(buckets.to_vec()), labels)
        .expect("static metric definition");
    r.register(Box::new(h.clone())).expect("metric registered once");
    h
}

fn int_gauge(r: &Registry, name: &str, help: &str) -> IntGauge {
    let g = IntGauge::new(name, help).expect("static metric definition");
    r.register(Box::new(g.clone())).expect("metric registered once");
    g
}

fn gauge(r: &Registry, name: &str, help: &str) -> Gauge {
    let g = Gauge::new(name, help).expect("static metric definition");
    r.register(Box::new(g.clone())).expect("metric registered once");
    g
}

fn counter_vec(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let c = IntCounterVec::new(Opts::new(name, help), labels).expect("static metric definition");
    r.register(Box::new(c.clone())).expect("metric registered once");
    c
}

fn histogram(r: &Registry, name: &str, help: &str, buckets: &[f64]) -> Histogram {
    let h = Histogram::with_opts(HistogramOpts::new(name, help).buckets(buckets.to_vec()))
        .expect("static metric definition");
    r.register(Box::new(h.clone())).expect("metric registered once");
    h
}

impl Metrics {
    /// A fresh registry with every convoscope metric and the process collector.
    pub fn new(max_error_codes: usize, latency_tracked: usize) -> Self {
        let r = Registry::new();
        let ingest_events_total = counter_vec(
            &r,
            "convoscope_ingest_events_total",
            "Events stored, by source and type.",
            &["source", "event_type"],
        );
        let ingest_rejected_total = counter_vec(
            &r,
            "convoscope_ingest_rejected_total",
            "Events refused, by source and reason (whole requests refused: convoscope_ingest_rejected_requests_total).",
            &["source", "reason"],
        );
        let ingest_rejected_requests_total = counter_vec(
            &r,
            "convoscope_ingest_rejected_requests_total",
            "Requests refused whole, by source and reason.",
            &["source", "reason"],
        );
        let webhook_requests_total = counter_vec(
            &r,
            "convoscope_webhook_requests_total",
            "Webhook requests answered, by source (provider) and HTTP status code.",
            &["source", "code"],
        );
        let webhook_ack_duration_seconds = histogram_vec(
            &r,
            "convoscope_webhook_ack_duration_seconds",
            "Seconds from a webhook's arrival to its answer (a 200 only once its events are fsynced), by source.",
            ACK_BUCKETS,
            &["source"],
        );
        let api_requests_total = counter_vec(
            &r,
            "convoscope_api_requests_total",
            "/v1 requests answered, by route as declared and HTTP status code.",
            &["route", "code"],
        );
        let api_request_duration_seconds = histogram_vec(
            &r,
            "convoscope_api_request_duration_seconds",
            "Seconds to answer a /v1 request, by route as declared.",
            ACK_BUCKETS,
            &["route"],
        );
        let webhook_lag_seconds = histogram_vec(
            &r,
            "convoscope_webhook_lag_seconds",
            "Seconds from a provider's status time to its receipt here, by source: a provider retrying shows here.",
            LAG_BUCKETS,
            &["source"],
        );
        let flushed_events_total = IntCounter::new(
            "convoscope_flushed_events_total",
            "Events written from the write-ahead log to object storage.",
        )
        .expect("static metric definition");
        r.register(Box::new(flushed_events_total.clone())).expect("metric registered once");
        let wal_budget_bytes = int_gauge(
            &r,
            "convoscope_wal_budget_bytes",
            "Bytes the write-ahead log may hold before webhooks are answered 503 (wal_budget_bytes).",
        );
        let wal_oldest_segment_age_seconds = gauge(
            &r,
            "convoscope_wal_oldest_segment_age_seconds",
            "Age of the oldest write-ahead log segment not yet flushed (0 when the log holds no events).",
        );
        let last_flush_success_timestamp_seconds = gauge(
            &r,
            "convoscope_last_flush_success_timestamp_seconds",
            "Unix time of the last flush that wrote events to object storage (the start, until one has).",
        );
        let errors_total = counter_vec(
            &r,
            "convoscope_errors_total",
            "Failures by pipeline stage: flush, corrupt_segment, dedup_index, compaction, retention, \
             rollup_healing, experiment_table, erasure, audit, consent_refresh, auto_stop.",
            &["stage"],
        );
        let provider_errors_total = counter_vec(
            &r,
            "convoscope_provider_errors_total",
            "Provider API errors on the send path, by provider and error code (130429 throughput, 131056 pair limit, ...).",
            &["provider", "code"],
        );
        let send_retries_total = counter_vec(
            &r,
            "convoscope_send_retries_total",
            "Provider calls of the send path tried again, by provider.",
            &["provider"],
        );
        let build_info = IntGaugeVec::new(
            Opts::new("convoscope_build_info", "1, labelled with the version and git revision of this build."),
            &["version", "revision"],
        )
        .expect("static metric definition");
        r.register(Box::new(build_info.clone())).expect("metric registered once");
        build_info.with_label_values(&[env!("CARGO_PKG_VERSION"), env!("CONVOSCOPE_REVISION")]).set(1);
        let whatsapp = WhatsAppState::new(&r);
        let ingest_duplicates_total = counter_vec(
            &r,
            "convoscope_ingest_duplicates_total",
            "Events already stored, received again.",
            &["source"],
        );
        let messages_total = counter_vec(
            &r,
            "convoscope_messages_total",
            "Message statuses received, by status and category.",
            &["status", "category"],
        );
        let message_failures_total = counter_vec(
            &r,
            "convoscope_message_failures_total",
            "Failed messages by provider error code.",
            &["error_code"],
        );
        let delivery_latency_seconds = histogram(
            &r,
            "convoscope_delivery_latency_seconds",
            "Seconds from a message's sent status to its delivered status.",
            LATENCY_BUCKETS,
        );
        let read_latency_seconds = histogram(
            &r,
            "convoscope_read_latency_seconds",
            "Seconds from a message's delivered status to its read status.",
            LATENCY_BUCKETS,
        );
        let latency_unmatched_total = counter_vec(
            &r,
            "convoscope_latency_unmatched_total",
            "Delivered or read statuses whose earlier status was not (or no longer) tracked, so no latency was measured.",
            &["status"],
        );
        let wal_bytes =
            IntGauge::new("convoscope_wal_bytes", "Bytes in the write-ahead log, not yet in object storage.")
                .expect("static metric definition");
        r.register(Box::new(wal_bytes.clone())).expect("metric registered once");
        let flush_duration_seconds = histogram(
            &r,
            "convoscope_flush_duration_seconds",
            "Seconds to move one log segment into Parquet.",
            OP_BUCKETS,
        );
        let flush_errors_total =
            IntCounter::new("convoscope_flush_errors_total", "Failed flushes of log segments to object storage.")
                .expect("static metric definition");
        r.register(Box::new(flush_errors_total.clone())).expect("metric registered once");
        let sends_total = counter_vec(
            &r,
            "convoscope_sends_total",
            "Template sends by experiment, variant and outcome.",
            &["experiment", "variant", "outcome"],
        );
        let provider_request_duration_seconds = HistogramVec::new(
            HistogramOpts::new("convoscope_provider_request_duration_seconds", "Seconds per provider API call.")
                .buckets(OP_BUCKETS.to_vec()),
            &["provider", "outcome"],
        )
        .expect("static metric definition");
        r.register(Box::new(provider_request_duration_seconds.clone())).expect("metric registered once");
        let circuit_open = IntGaugeVec::new(
            Opts::new("convoscope_circuit_open", "1 while the circuit breaker to a provider is open."),
            &["provider"],
        )
        .expect("static metric definition");
        r.register(Box::new(circuit_open.clone())).expect("metric registered once");
        let queries_running = IntGaugeVec::new(
            Opts::new("convoscope_queries_running", "Queries and reports running now, by kind (query, report)."),
            &["kind"],
        )
        .expect("static metric definition");
        r.register(Box::new(queries_running.clone())).expect("metric registered once");
        let queries_total = counter_vec(
            &r,
            "convoscope_queries_total",
            "Queries and reports ended, by kind and outcome: ok, busy (refused with 429), refused (by \
             the join guard or the result limit), timeout (cancelled), memory (over the budget even \
             spilling), error, cancelled (its caller went away).",
            &["kind", "outcome"],
        );
        let query_spilled_bytes_total = counter_vec(
            &r,
            "convoscope_query_spilled_bytes_total",
            "Bytes queries and reports spilled to disk, by kind.",
            &["kind"],
        );
        // Every series exists from the start, at zero: a first timeout shows as an increase.
        for source in SOURCES {
            ingest_duplicates_total.with_label_values(&[source]).reset();
            for reason in EVENT_REASONS {
                ingest_rejected_total.with_label_values(&[source, reason]).reset();
            }
            for reason in REQUEST_REASONS {
                ingest_rejected_requests_total.with_label_values(&[source, reason]).reset();
            }
            for t in EVENT_TYPES {
                ingest_events_total.with_label_values(&[source, t]).reset();
            }
        }
        for source in WEBHOOK_SOURCES {
            let _ = webhook_ack_duration_seconds.with_label_values(&[source]);
            let _ = webhook_lag_seconds.with_label_values(&[source]);
            for code in CODES {
                webhook_requests_total.with_label_values(&[source, code]).reset();
            }
        }
        for status in STATUSES {
            for category in CATEGORIES.iter().chain(&["other"]) {
                messages_total.with_label_values(&[status, category]).reset();
            }
        }
        for status in ["delivered", "read"] {
            latency_unmatched_total.with_label_values(&[status]).reset();
        }
        for code in KNOWN_ERROR_CODES.iter().map(i32::to_string).chain(["none".into(), "other".into()]) {
            message_failures_total.with_label_values(&[&code]).reset();
        }
        for stage in ERROR_STAGES {
            errors_total.with_label_values(&[stage]).reset();
        }
        last_flush_success_timestamp_seconds.set(crate::event::now_micros() as f64 / 1e6);
        for kind in QUERY_KINDS {
            queries_running.with_label_values(&[kind]).set(0);
            query_spilled_bytes_total.with_label_values(&[kind]).reset();
            for outcome in QUERY_OUTCOMES {
                queries_total.with_label_values(&[kind, outcome]).reset();
            }
        }
        #[cfg(target_os = "linux")]
        {
            let pc = prometheus::process_collector::ProcessCollector::for_self();
            let _ = r.register(Box::new(pc));
        }
        Metrics {
            registry: r,
            ingest_events_total,
            ingest_rejected_total,
            ingest_rejected_requests_total,
            webhook_requests_total,
            webhook_ack_duration_seconds,
            api_requests_total,
            api_request_duration_seconds,
            webhook_lag_seconds,
            flushed_events_total,
            wal_budget_bytes,
            wal_oldest_segment_age_seconds,
            last_flush_success_timestamp_seconds,
            errors_total,
            provider_errors_total,
            send_retries_total,
            whatsapp,
            ingest_duplicates_total,
            messages_total,
            message_failures_total,
            delivery_latency_seconds,
            read_latency_seconds,
            latency_unmatched_total,
            wal_bytes,
            flush_duration_seconds,
            flush_errors_total,
            sends_total,
            provider_request_duration_seconds,
            circuit_open,
            queries_running,
            queries_total,
            query_spilled_bytes_total,
            error_codes: Mutex::new(HashSet::new()),
            max_error_codes,
            latency: Mutex::new(LatencyTracker::new(latency_tracked)),
        }
    }

    /// Names of every metric family convoscope exports (whether or not it has samples yet).
    pub fn family_names(&self) -> Vec<String> {
        use prometheus::core::Collector;
        let mut collectors: Vec<&dyn Collector> = vec![
            &self.ingest_events_total,
            &self.ingest_rejected_total,
            &self.ingest_rejected_requests_total,
            &self.webhook_requests_total,
            &self.webhook_ack_duration_seconds,
            &self.api_requests_total,
            &self.api_request_duration_seconds,
            &self.webhook_lag_seconds,
            &self.flushed_events_total,
            &self.wal_budget_bytes,
            &self.wal_oldest_segment_age_seconds,
            &self.last_flush_success_timestamp_seconds,
            &self.errors_total,
            &self.provider_errors_total,
            &self.send_retries_total,
            &self.ingest_duplicates_total,
            &self.messages_total,
            &self.message_failures_total,
            &self.delivery_latency_seconds,
            &self.read_latency_seconds,
            &self.latency_unmatched_total,
            &self.wal_bytes,
            &self.flush_duration_seconds,
            &self.flush_errors_total,
            &self.sends_total,
            &self.provider_request_duration_seconds,
            &self.circuit_open,
            &self.queries_running,
            &self.queries_total,
            &self.query_spilled_bytes_total,
        ];
        collectors.extend(self.whatsapp.collectors());
        let mut names: Vec<String> = collectors.iter().flat_map(|c| c.desc()).map(|d| d.fq_name.clone()).collect();
        names.push("convoscope_build_info".into());
        names
    }

    /// The text exposition of every metric.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buf);
        String::from_utf8(buf).unwrap_or_default()
    }

    /// Counts `n` events refused.
    pub fn rejected(&self, source: &str, reason: &str, n: u64) {
        self.ingest_rejected_total.with_label_values(&[source, reason]).inc_by(n);
    }

    /// Counts a request refused whole.
    pub fn refused(&self, source: &str, reason: &str) {
        self.ingest_rejected_requests_total.with_label_values(&[source, reason]).inc();
    }

    /// Counts a failure of a pipeline stage ([`ERROR_STAGES`]).
    pub fn error(&self, stage: &'static str) {
        self.errors_total.with_label_values(&[stage]).inc();
    }

    /// Records a webhook's answer: its status code and how long it took.
    pub fn webhook_answered(&self, source: &str, code: u16, seconds: f64) {
        let source = WEBHOOK_SOURCES.iter().copied().find(|s| *s == source).unwrap_or("other");
        self.webhook_requests_total.with_label_values(&[source, &code.to_string()]).inc();
        self.webhook_ack_duration_seconds.with_label_values(&[source]).observe(seconds);
    }

    /// Records a `/v1` answer by its declared route.
    pub fn api_answered(&self, route: &str, code: u16, seconds: f64) {
        self.api_requests_total.with_label_values(&[route, &code.to_string()]).inc();
        self.api_request_duration_seconds.with_label_values(&[route]).observe(seconds);
    }

    /// Gives the `/v1` routes (as declared) their series at zero.
    pub fn init_api_routes(&self, routes: &[&str]) {
        for route in routes {
            let _ = self.api_request_duration_seconds.with_label_values(&[route]);
            for code in CODES {
                self.api_requests_total.with_label_values(&[route, code]).reset();
            }
        }
    }

    /// Gives a send path's provider its series at zero.
    pub fn init_provider(&self, provider: &str) {
        self.send_retries_total.with_label_values(&[provider]).reset();
        for code in KNOWN_ERROR_CODES.iter().map(i32::to_string).chain(["http".into(), "other".into()]) {
            self.provider_errors_total.with_label_values(&[provider, &code]).reset();
        }
    }

    /// Counts a provider error of the send path: its code where known, else `http` (an HTTP
    /// status without a provider code) or `other`.
    pub fn provider_error(&self, provider: &str, code: Option<i64>) {
        let label = match code {
            Some(c) if i32::try_from(c).is_ok_and(|c| KNOWN_ERROR_CODES.contains(&c)) => c.to_string(),
            Some(_) => "other".to_string(),
            None => "http".to_string(),
        };
        self.provider_errors_total.with_label_values(&[provider, &label]).inc();
    }

    /// Records a successful flush of `events` events.
    pub fn flushed(&self, events: usize) {
        self.flushed_events_total.inc_by(events as u64);
        self.last_flush_success_timestamp_seconds.set(crate::event::now_micros() as f64 / 1e6);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Event;

    #[test]
    fn error_codes_are_capped() {
        let m = Metrics::new(2, 10);
        let mk = |code| {
            let mut e = Event::new(format!("f{code}"), "message.failed", 0, 0, "meta");
            e.error_code = Some(code);
            e
        };
        let evs = vec![mk(1), mk(2), mk(3), mk(1)];
        m.record_stored(&evs, &[false, false, false, false]);
        let text = m.render();
        assert!(text.contains("convoscope_message_failures_total{error_code=\"1\"} 2"));
        assert!(text.contains("convoscope_message_failures_total{error_code=\"other\"} 1"));
        assert!(text.contains("convoscope_messages_total{category=\"other\",status=\"failed\"} 4"));
    }
}
