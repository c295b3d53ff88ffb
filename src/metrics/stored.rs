//! What an append stored, counted: events by source and type, duplicates, statuses by
//! category, failures by code, webhook lag, delivery and read latency, and the WhatsApp state
//! the template and account events report.

use prometheus::Histogram;

use super::{CATEGORIES, KNOWN_ERROR_CODES, Metrics, WEBHOOK_SOURCES};
use crate::event::{Event, known_event_type};

impl Metrics {
    /// Records what an append stored: `duplicate[i]` tells whether `events[i]` was a retry.
    pub fn record_stored(&self, events: &[Event], duplicate: &[bool]) {
        // Counted per request, then added once per label set: a request's events share a few
        // label sets, and each `with_label_values` hashes its labels and takes a lock.
        let mut dups: Tally<[&str; 1]> = Tally::default();
        let mut stored: Tally<[&str; 2]> = Tally::default();
        let mut messages: Tally<[&str; 2]> = Tally::default();
        let mut failures: Tally<String> = Tally::default();
        let mut lag: Option<(&str, Histogram)> = None;
        let mut latency = self.latency.lock().ok();
        for (e, dup) in events.iter().zip(duplicate) {
            let source = bounded_source(&e.source);
            if *dup {
                dups.add([source]);
                continue;
            }
            let t = known_event_type(&e.event_type).unwrap_or("other");
            stored.add([source, t]);
            if t.starts_with("template.") || t.starts_with("account.") {
                self.whatsapp.observe(e);
            }
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
            // Provider statuses only: a first-party or generated event's time is its sender's.
            // The histogram is looked up once per source, not per status.
            if WEBHOOK_SOURCES.contains(&source) {
                let lag_of = match &lag {
                    Some((s, h)) if *s == source => h,
                    _ => &lag.insert((source, self.webhook_lag_seconds.with_label_values(&[source]))).1,
                };
                lag_of.observe(((e.received_at - e.occurred_at).max(0)) as f64 / 1e6);
            }
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
        if KNOWN_ERROR_CODES.contains(&code) {
            return code.to_string();
        }
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
