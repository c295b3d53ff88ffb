//! Prometheus metrics.
//!
//! Every label is a bounded set: sources and event types are fixed lists, error codes and
//! categories are capped with an `other` bucket, so a hostile or buggy sender cannot blow up
//! the number of series.

use std::collections::{HashSet, VecDeque};
use std::sync::Mutex;

use nohash_hasher::IntMap;
use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
    TextEncoder,
};

use crate::event::{Event, known_event_type};

/// Buckets for latencies from a second to a day: receipts come in seconds, reads in hours.
const LATENCY_BUCKETS: &[f64] =
    &[0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0, 7200.0, 21600.0, 43200.0, 86400.0];
/// Buckets for internal operations (flush, provider calls): milliseconds to a minute.
const OP_BUCKETS: &[f64] = &[0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0];
/// Messages whose status times are remembered to measure latency at ingest. At 32 bytes an
/// entry, in a table sized for twice as many (see [`LatencyTracker::new`]), this bounds the
/// tracker near 19 MB.
pub const DEFAULT_LATENCY_TRACKED: usize = 200_000;
/// The kinds of query the analytics run: ad hoc (`/v1/query`, `convoscope query`) and reports.
pub const QUERY_KINDS: [&str; 2] = ["query", "report"];
/// How a query or report ends.
pub const QUERY_OUTCOMES: [&str; 7] = ["ok", "busy", "refused", "timeout", "memory", "error", "cancelled"];
const CATEGORIES: &[&str] = &["marketing", "utility", "authentication", "service"];

/// All metrics of one process.
pub struct Metrics {
    registry: Registry,
    pub ingest_events_total: IntCounterVec,
    pub ingest_rejected_total: IntCounterVec,
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
            "Events or requests refused, by reason.",
            &["source", "reason"],
        );
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
        let collectors: [&dyn Collector; 17] = [
            &self.ingest_events_total,
            &self.ingest_rejected_total,
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
        collectors.iter().flat_map(|c| c.desc()).map(|d| d.fq_name.clone()).collect()
    }

    /// The text exposition of every metric.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buf);
        String::from_utf8(buf).unwrap_or_default()
    }

    /// Counts a refusal.
    pub fn rejected(&self, source: &str, reason: &str, n: u64) {
        self.ingest_rejected_total.with_label_values(&[source, reason]).inc_by(n);
    }

    /// Records what an append stored: `duplicate[i]` tells whether `events[i]` was a retry.
    pub fn record_stored(&self, events: &[Event], duplicate: &[bool]) {
        // Counted per request, then added once per label set: a request's events share a few
        // label sets, and each `with_label_values` hashes its labels and takes a lock.
        let mut dups: Tally<[&str; 1]> = Tally::default();
        let mut stored: Tally<[&str; 2]> = Tally::default();
        let mut messages: Tally<[&str; 2]> = Tally::default();
        let mut failures: Tally<String> = Tally::default();
        let mut latency = self.latency.lock().ok();
        for (e, dup) in events.iter().zip(duplicate) {
            let source = bounded_source(&e.source);
            if *dup {
                dups.add([source]);
                continue;
            }
            let t = known_event_type(&e.event_type).unwrap_or("other");
            stored.add([source, t]);
            let status = match t {
                "message.sent" => "sent",
                "message.delivered" => "delivered",
                "message.read" => "read",
                "message.failed" => "failed",
                _ => continue,
            };
            let category =
                e.category.as_deref().and_then(|c| CATEGORIES.iter().find(|k| **k == c).copied()).unwrap_or("other");
            messages.add([status, category]);
            if status == "failed" {
                failures.add(self.error_code_label(e.error_code));
            }
            if let (Some(id), Some(lt)) = (e.message_id.as_deref(), latency.as_mut()) {
                let obs = lt.observe(id, status, e.occurred_at);
                if let Some(s) = obs.delivery {
                    self.delivery_latency_seconds.observe(s);
                }
                if let Some(s) = obs.read {
                    self.read_latency_seconds.observe(s);
                }
                if obs.unmatched {
                    self.latency_unmatched_total.with_label_values(&[status]).inc();
                }
            }
        }
        drop(latency);
        for (labels, n) in dups.0 {
            self.ingest_duplicates_total.with_label_values(&labels).inc_by(n);
        }
        for (labels, n) in stored.0 {
            self.ingest_events_total.with_label_values(&labels).inc_by(n);
        }
        for (labels, n) in messages.0 {
            self.messages_total.with_label_values(&labels).inc_by(n);
        }
        for (code, n) in failures.0 {
            self.message_failures_total.with_label_values(&[&code]).inc_by(n);
        }
    }

    fn error_code_label(&self, code: Option<i32>) -> String {
        let Some(code) = code else { return "none".into() };
        let Ok(mut seen) = self.error_codes.lock() else { return "other".into() };
        if seen.contains(&code) || seen.len() < self.max_error_codes {
            seen.insert(code);
            code.to_string()
        } else {
            "other".into()
        }
    }
}

/// Counts per label set, for the few label sets one request touches.
struct Tally<L>(Vec<(L, u64)>);

impl<L> Default for Tally<L> {
    fn default() -> Self {
        Tally(Vec::new())
    }
}

impl<L: PartialEq> Tally<L> {
    fn add(&mut self, labels: L) {
        match self.0.iter_mut().find(|(l, _)| *l == labels) {
            Some((_, n)) => *n += 1,
            None => self.0.push((labels, 1)),
        }
    }
}

fn bounded_source(s: &str) -> &'static str {
    crate::event::SOURCES.iter().copied().find(|k| *k == s).unwrap_or("other")
}

/// Status times of recent messages, so a receipt arriving later can be measured against the
/// one before it. Bounded: the oldest message is forgotten first.
///
/// Messages are known by a 64-bit hash of their id rather than the id (a wamid is ~60 bytes,
/// and was held twice): a collision could only pair two messages' times in a histogram.
struct LatencyTracker {
    cap: usize,
    order: VecDeque<u64>,
    times: IntMap<u64, Times>,
}

/// No time known yet.
const UNKNOWN: i64 = i64::MIN;
/// Already measured against its successor: `sent` once delivery latency is taken, `read` once
/// read latency is, so a repeated receipt is not measured twice.
const MEASURED: i64 = i64::MIN + 1;

/// A message's status times in microseconds, or [`UNKNOWN`] / [`MEASURED`]: 24 bytes instead
/// of 56 with `Option`s and flags (heaptrack: the tracker's table was the ingest path's
/// largest allocation, 36 MB).
struct Times {
    sent: i64,
    delivered: i64,
    read: i64,
}

impl Default for Times {
    fn default() -> Self {
        Times { sent: UNKNOWN, delivered: UNKNOWN, read: UNKNOWN }
    }
}

fn known(t: i64) -> bool {
    t != UNKNOWN && t != MEASURED
}

#[derive(Default, Debug, PartialEq)]
struct Observed {
    delivery: Option<f64>,
    read: Option<f64>,
    unmatched: bool,
}

impl LatencyTracker {
    /// Sized for twice `cap` up front: every eviction leaves a tombstone, and a full table
    /// holding more than half its capacity grows where one holding less cleans its tombstones
    /// in place (sized for `cap`, it grew to 524,288 buckets of 64-byte entries: 36 MB at the
    /// peak; now it stays at that bucket count with 32-byte entries).
    fn new(cap: usize) -> Self {
        let cap = cap.max(1);
        LatencyTracker {
            cap,
            order: VecDeque::with_capacity(cap),
            times: IntMap::with_capacity_and_hasher(cap.saturating_mul(2), Default::default()),
        }
    }

    fn observe(&mut self, id: &str, status: &str, at: i64) -> Observed {
        let id = crate::ids::hash64(id);
        // One lookup for the id, then the eviction of the oldest if the id was new: the table
        // is sized for twice `cap`, so holding one more for a moment never grows it. (A lookup
        // before inserting, as before, was a third cache miss per status.)
        let before = self.times.len();
        let t = self.times.entry(id).or_default();
        let mut out = Observed::default();
        match status {
            "sent" if t.sent != MEASURED => t.sent = at,
            "delivered" => {
                out.unmatched = t.sent == UNKNOWN;
                t.delivered = at;
            }
            "read" => {
                out.unmatched = t.delivered == UNKNOWN;
                if t.read != MEASURED {
                    t.read = at;
                }
            }
            _ => {}
        }
        // Either order of arrival is measured once both ends are known.
        if known(t.sent) && known(t.delivered) {
            out.delivery = Some(((t.delivered - t.sent).max(0)) as f64 / 1e6);
            t.sent = MEASURED;
        }
        if known(t.delivered) && known(t.read) {
            out.read = Some(((t.read - t.delivered).max(0)) as f64 / 1e6);
            t.read = MEASURED;
        }
        if self.times.len() > before {
            self.order.push_back(id);
            if self.order.len() > self.cap
                && let Some(old) = self.order.pop_front()
            {
                self.times.remove(&old);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latency_in_any_order_and_bounded() {
        let mut t = LatencyTracker::new(2);
        assert_eq!(t.observe("m1", "sent", 0), Observed::default());
        assert_eq!(t.observe("m1", "delivered", 3_000_000).delivery, Some(3.0));
        assert_eq!(t.observe("m1", "read", 63_000_000).read, Some(60.0));
        // Delivered before sent: measured when sent arrives, flagged unmatched meanwhile.
        let o = t.observe("m2", "delivered", 5_000_000);
        assert!(o.unmatched);
        assert_eq!(t.observe("m2", "sent", 1_000_000).delivery, Some(4.0));
        // m1 is evicted by m3; its late read is unmatched rather than guessed.
        t.observe("m3", "sent", 0);
        assert!(t.observe("m1", "delivered", 9).unmatched);
        assert!(t.times.len() <= 2);
    }

    #[test]
    fn repeated_receipts_are_measured_once() {
        let mut t = LatencyTracker::new(10);
        t.observe("m", "sent", 0);
        assert_eq!(t.observe("m", "delivered", 2_000_000).delivery, Some(2.0));
        // A retried webhook repeats a receipt: no second sample, and not unmatched.
        assert_eq!(t.observe("m", "sent", 1_000_000), Observed::default());
        assert_eq!(t.observe("m", "delivered", 2_000_000), Observed::default());
        // Read is still measured from the delivered time held.
        assert_eq!(t.observe("m", "read", 5_000_000).read, Some(3.0));
        assert_eq!(t.observe("m", "read", 9_000_000), Observed::default());
        // Read first, then delivered: measured once delivered arrives (which is unmatched: no
        // sent was seen for it).
        assert!(t.observe("n", "read", 7_000_000).unmatched);
        let o = t.observe("n", "delivered", 4_000_000);
        assert_eq!((o.read, o.unmatched), (Some(3.0), true));
    }

    #[test]
    fn churn_does_not_grow_the_table() {
        let mut t = LatencyTracker::new(1000);
        let capacity = t.times.capacity();
        for i in 0..50_000 {
            t.observe(&format!("m{i}"), "sent", i);
        }
        assert_eq!(t.times.len(), 1000);
        // Tombstones take a little of the room; the table itself was never reallocated.
        assert!(t.times.capacity() <= capacity, "grew from {capacity} to {}", t.times.capacity());
    }

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
