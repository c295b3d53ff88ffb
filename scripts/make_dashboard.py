#!/usr/bin/env python3
"""Writes dashboards/grafana.json, the SRE dashboard, from the panel list below.

    scripts/make_dashboard.py

Every query selects `job="$job", instance=~"$instance"` (the dashboard's variables) and uses
`$__rate_interval`; every panel has a unit and a description. Rows: the SLOs (burn rates and
budget left), the edge (webhook requests and acknowledgement time), the log and the store,
failures, WhatsApp (templates, messaging limits, account events), the send path, queries, and
the process. tests/python/test_service.py runs every query against a real Prometheus.
"""

import json
from pathlib import Path

OUT = Path(__file__).resolve().parents[1] / "dashboards" / "grafana.json"
SEL = 'job="$job", instance=~"$instance"'
RI = "$__rate_interval"
# Codes about the person or Meta's choice for them, left out of the delivery SLO (slo.yml).
NOT_SYSTEMIC = "131026|131049|131050|131047|130472|131051|470|63016|63024|63049|none"


def q(expr, legend=""):
    return {"expr": expr.replace("SEL", SEL).replace("RI", RI), "legendFormat": legend}


ROWS = [
    ("SLOs: what users feel", [
        ("Webhooks made durable: error ratio", "percentunit",
         "Webhook requests answered with a server error or timeout, over 5 minutes and 1 hour. Objective: under 0.1% "
         "over 30 days (slo.yml); pages at 14.4x the budget over an hour.",
         [q('sum(rate(convoscope_webhook_requests_total{SEL, code=~"5..|408"}[5m])) / sum(rate(convoscope_webhook_requests_total{SEL}[5m]))', "5m"),
          q('sum(rate(convoscope_webhook_requests_total{SEL, code=~"5..|408"}[1h])) / sum(rate(convoscope_webhook_requests_total{SEL}[1h]))', "1h")]),
        ("Webhooks made durable: budget left (30 days)", "percentunit",
         "Share of the 30-day error budget (0.1% of webhook requests) not yet spent.",
         [q('1 - (sum(increase(convoscope_webhook_requests_total{SEL, code=~"5..|408"}[30d])) / sum(increase(convoscope_webhook_requests_total{SEL}[30d]))) / 0.001', "budget left")]),
        ("Acknowledged within 1 s", "percentunit",
         "Webhook requests answered within a second (Meta's limit). Objective: 99%.",
         [q('sum(rate(convoscope_webhook_ack_duration_seconds_bucket{SEL, le=~"1|1.0"}[RI])) / sum(rate(convoscope_webhook_ack_duration_seconds_count{SEL}[RI]))', "within 1 s")]),
        ("Systemic delivery failures", "percentunit",
         "Sends failing with a code the business or platform can act on (not undeliverable numbers or Meta's "
         "per-user limits). Objective: under 1%.",
         [q(f'sum(rate(convoscope_message_failures_total{{SEL, error_code!~"{NOT_SYSTEMIC}"}}[1h])) / sum(rate(convoscope_messages_total{{SEL, status="sent"}}[1h]))', "1h")]),
        ("Store freshness", "s",
         "Age of the oldest event not yet in object storage. Objective: under 10 minutes 99% of the time.",
         [q("max(convoscope_wal_oldest_segment_age_seconds{SEL})", "oldest unflushed"),
          q("time() - max(convoscope_last_flush_success_timestamp_seconds{SEL})", "since last good flush")]),
    ]),
    ("Edge: webhooks and the API", [
        ("Webhook requests by source and code", "reqps",
         "Webhook requests answered per second, by provider and HTTP status: 401 is a signature or token failure, "
         "503 a full or failing log.",
         [q("sum by (source, code) (rate(convoscope_webhook_requests_total{SEL}[RI]))", "{{source}} {{code}}")]),
        ("Webhook acknowledgement time", "s",
         "Median and 99th percentile time from a webhook's arrival to its answer (a 200 only after the fsync). Meta "
         "asks for a median under 250 ms.",
         [q("histogram_quantile(0.5, sum by (le) (rate(convoscope_webhook_ack_duration_seconds_bucket{SEL}[RI])))", "p50"),
          q("histogram_quantile(0.99, sum by (le) (rate(convoscope_webhook_ack_duration_seconds_bucket{SEL}[RI])))", "p99")]),
        ("Webhook lag (p90)", "s",
         "Receive time minus the provider's status time: seconds when healthy, hours when a provider redelivers "
         "after an outage.",
         [q("histogram_quantile(0.9, sum by (le, source) (rate(convoscope_webhook_lag_seconds_bucket{SEL}[RI])))", "{{source}}")]),
        ("API requests by route and code", "reqps",
         "/v1 requests per second by route as declared and status code.",
         [q("sum by (route, code) (rate(convoscope_api_requests_total{SEL}[RI]))", "{{route}} {{code}}")]),
        ("Events stored and refused", "ops",
         "Events stored per second by source, and events refused by reason (whole requests refused are on the next "
         "panel; the two are never summed).",
         [q("sum by (source) (rate(convoscope_ingest_events_total{SEL}[RI]))", "stored {{source}}"),
          q("sum by (reason) (rate(convoscope_ingest_rejected_total{SEL}[RI]))", "refused {{reason}}")]),
        ("Requests refused whole", "reqps",
         "Requests refused before their events were read, by source and reason.",
         [q("sum by (source, reason) (rate(convoscope_ingest_rejected_requests_total{SEL}[RI]))", "{{source}} {{reason}}")]),
    ]),
    ("The log and the store", [
        ("Log use of its budget", "percentunit",
         "Bytes in the write-ahead log as a share of wal_budget_bytes: at 100% webhooks get 503.",
         [q("max(convoscope_wal_bytes{SEL}) / max(convoscope_wal_budget_bytes{SEL})", "used")]),
        ("Events flushed to the store", "ops",
         "Events written from the log to object storage per second.",
         [q("sum(rate(convoscope_flushed_events_total{SEL}[RI]))", "flushed")]),
        ("Flush time (p95)", "s",
         "Seconds to move one log segment into Parquet.",
         [q("histogram_quantile(0.95, sum by (le) (rate(convoscope_flush_duration_seconds_bucket{SEL}[RI])))", "p95")]),
        ("Errors by stage", "short",
         "Failures per stage in the window: flush, corrupt segments, the dedup index, compaction, retention, rollup "
         "healing, erasure, audit records, consent refresh.",
         [q("sum by (stage) (increase(convoscope_errors_total{SEL}[RI]))", "{{stage}}")]),
    ]),
    ("Failures", [
        ("Failure ratio by code", "percentunit",
         "Failed messages by provider error code, as a share of messages sent.",
         [q('sum by (error_code) (rate(convoscope_message_failures_total{SEL}[RI])) / scalar(sum(rate(convoscope_messages_total{SEL, status="sent"}[RI])))', "{{error_code}}")]),
        ("Failure ratio by category", "percentunit",
         "Failed statuses over sent ones, by pricing category.",
         [q('sum by (category) (rate(convoscope_messages_total{SEL, status="failed"}[RI])) / sum by (category) (rate(convoscope_messages_total{SEL, status="sent"}[RI]))', "{{category}}")]),
        ("Statuses by kind", "ops",
         "Message statuses received per second.",
         [q("sum by (status) (rate(convoscope_messages_total{SEL}[RI]))", "{{status}}")]),
        ("Delivery and read latency (p50)", "s",
         "Seconds from sent to delivered and from delivered to read, measured at ingest.",
         [q("histogram_quantile(0.5, sum by (le) (rate(convoscope_delivery_latency_seconds_bucket{SEL}[RI])))", "delivery"),
          q("histogram_quantile(0.5, sum by (le) (rate(convoscope_read_latency_seconds_bucket{SEL}[RI])))", "read")]),
    ]),
    ("WhatsApp", [
        ("Templates paused or disabled", "short",
         "Templates whose current status is PAUSED or DISABLED, as this process last saw them.",
         [q('sum by (template, language, status) (convoscope_template_status{SEL, status=~"PAUSED|DISABLED"})', "{{template}} {{language}} {{status}}")]),
        ("Template quality", "short",
         "Templates by current quality rating.",
         [q("count by (quality) (convoscope_template_quality{SEL})", "{{quality}}")]),
        ("Messaging limit by account", "short",
         "Business-initiated conversations each account may open per day (unlimited: 1e9).",
         [q("max by (account_id) (convoscope_messaging_limit{SEL})", "{{account_id}}")]),
        ("Account events", "short",
         "Account and number changes Meta reported in the window (restrictions, violations, downgrades).",
         [q("sum by (type, event) (increase(convoscope_account_events_total{SEL}[RI]))", "{{type}} {{event}}")]),
    ]),
    ("Send path", [
        ("Sends by outcome", "ops",
         "Template sends per second by experiment, variant and outcome.",
         [q("sum by (experiment, variant, outcome) (rate(convoscope_sends_total{SEL}[RI]))", "{{experiment}} {{variant}} {{outcome}}")]),
        ("Provider errors by code", "ops",
         "Provider API errors per second on the send path: 130429 throughput, 131056 pair limit, 131048 spam.",
         [q("sum by (provider, code) (rate(convoscope_provider_errors_total{SEL}[RI]))", "{{provider}} {{code}}"),
          q("sum by (provider) (rate(convoscope_send_retries_total{SEL}[RI]))", "retries {{provider}}")]),
        ("Provider call time (p95)", "s",
         "Seconds per provider API call, by provider.",
         [q("histogram_quantile(0.95, sum by (le, provider) (rate(convoscope_provider_request_duration_seconds_bucket{SEL}[RI])))", "{{provider}}")]),
        ("Circuit breaker", "short",
         "1 while the circuit to a provider is open and sends are refused.",
         [q("max by (provider) (convoscope_circuit_open{SEL})", "{{provider}}")]),
    ]),
    ("Queries and the process", [
        ("Queries by outcome", "ops",
         "Queries and reports ended per second, by kind and outcome.",
         [q("sum by (kind, outcome) (rate(convoscope_queries_total{SEL}[RI]))", "{{kind}} {{outcome}}")]),
        ("Process CPU", "percentunit",
         "CPU seconds the process used per second (1 = one core).",
         [q("rate(process_cpu_seconds_total{SEL}[RI])", "{{instance}}")]),
        ("Process memory", "bytes",
         "Resident memory of the process.",
         [q("process_resident_memory_bytes{SEL}", "{{instance}}")]),
        ("Open file descriptors", "short",
         "File descriptors open, against the limit.",
         [q("process_open_fds{SEL}", "open {{instance}}"), q("process_max_fds{SEL}", "max {{instance}}")]),
    ]),
]


def main():
    panels, pid, y = [], 1, 0
    for title, row in ROWS:
        panels.append({"id": pid, "type": "row", "title": title, "collapsed": False,
                       "gridPos": {"h": 1, "w": 24, "x": 0, "y": y}, "panels": []})
        pid, y = pid + 1, y + 1
        for i, (ptitle, unit, desc, targets) in enumerate(row):
            panels.append({
                "id": pid, "type": "timeseries", "title": ptitle, "description": desc,
                "gridPos": {"h": 8, "w": 12, "x": 12 * (i % 2), "y": y + 8 * (i // 2)},
                "datasource": {"type": "prometheus", "uid": "${datasource}"},
                "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
                "options": {"legend": {"displayMode": "list", "placement": "bottom"}},
                "targets": [dict(refId=chr(65 + j), **t) for j, t in enumerate(targets)],
            })
            pid += 1
        y += 8 * ((len(row) + 1) // 2)
    dashboard = {
        "title": "convoscope (SRE)", "uid": "convoscope-sre", "schemaVersion": 39, "version": 2,
        "tags": ["convoscope", "whatsapp"], "time": {"from": "now-6h", "to": "now"}, "refresh": "30s",
        "templating": {"list": [
            {"name": "datasource", "type": "datasource", "query": "prometheus", "label": "Prometheus"},
            {"name": "job", "type": "query", "label": "job", "datasource": {"type": "prometheus", "uid": "${datasource}"},
             "query": {"query": "label_values(convoscope_build_info, job)", "refId": "job"},
             "definition": "label_values(convoscope_build_info, job)", "refresh": 2, "current": {"text": "convoscope", "value": "convoscope"}},
            {"name": "instance", "type": "query", "label": "instance", "datasource": {"type": "prometheus", "uid": "${datasource}"},
             "query": {"query": 'label_values(convoscope_build_info{job="$job"}, instance)', "refId": "instance"},
             "definition": 'label_values(convoscope_build_info{job="$job"}, instance)', "refresh": 2,
             "includeAll": True, "multi": True, "allValue": ".*", "current": {"text": "All", "value": "$__all"}},
        ]},
        "panels": panels,
    }
    OUT.write_text(json.dumps(dashboard, indent=2) + "\n")


if __name__ == "__main__":
    main()
