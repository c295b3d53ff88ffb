"""The alerting and the dashboard on a real Prometheus (Debian's, as scripts/test.sh installs it).

Two `serve`s are scraped as job `convoscope` with dashboards/alerts.yml and dashboards/slo.yml
loaded: one fed with events and webhooks, one whose write-ahead log budget is so small that its
webhooks soon get 503. The test checks that `/metrics` passes `promtool check metrics` and has
every family with HELP and, where its labels are known in advance, a sample at zero from the
start; that every rule evaluates with health ok; that the webhook SLO's recording moves after the
forced 503s; and that every query of dashboards/grafana.json runs, returning data where the
fixture feeds it.
"""

import hashlib
import hmac
import json
import re
import signal
import subprocess
import time
import unittest
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from support import ROOT, WorkDir, free_port, need, post_fixture, serve

INGEST, READ, ADMIN = "ingest-token-prom", "read-token-prom", "admin-token-prom"
SECRET = "prometheus-test-secret"
TOKENS = f"ingest:{INGEST},read:{READ},admin:{ADMIN}"
# Families whose labels are not known when the process starts: a template, an account, an
# experiment's variant, the send path's provider (none is configured here).
NO_SAMPLE_AT_START = {
    "convoscope_template_status", "convoscope_template_quality", "convoscope_messaging_limit",
    "convoscope_sends_total", "convoscope_provider_request_duration_seconds", "convoscope_circuit_open",
    "convoscope_provider_errors_total", "convoscope_send_retries_total",
}
# Dashboard queries the fixture must feed (by panel title).
MUST_HAVE_DATA = {
    "Webhooks made durable: error ratio", "Acknowledged within 1 s", "Store freshness",
    "Webhook requests by source and code", "Webhook acknowledgement time", "Webhook lag (p90)",
    "API requests by route and code", "Events stored and refused", "Requests refused whole",
    "Log use of its budget", "Errors by stage", "Failure ratio by code", "Statuses by kind",
    "Account events", "Queries by outcome", "Process memory", "Open file descriptors",
}


def sign(body: bytes) -> str:
    return "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()


def post_webhook(base: str, body: bytes) -> int:
    req = urllib.request.Request(base + "/webhooks/meta", data=body,
                                 headers={"X-Hub-Signature-256": sign(body), "Content-Type": "application/json"})
    try:
        return urllib.request.urlopen(req, timeout=10).status
    except urllib.error.HTTPError as e:
        return e.code


def statuses(n: int, tag: str) -> bytes:
    """A Meta webhook of `n` statuses: sent, and some failed with a systemic code."""
    items = []
    for i in range(n):
        failed = i % 5 == 0
        item = {"id": f"wamid.{tag}.{i}", "status": "failed" if failed else "sent", "timestamp": str(int(time.time()) - 2),
                "recipient_id": "15550100777", "pricing": {"category": "marketing", "type": "regular"}}
        if failed:
            item["errors"] = [{"code": 131000, "title": "Something went wrong"}]
        items.append(item)
    body = {"object": "whatsapp_business_account", "entry": [{"id": "1", "changes": [
        {"field": "messages", "value": {"metadata": {"phone_number_id": "9"}, "statuses": items}},
        {"field": "account_update", "value": {"event": "ACCOUNT_VIOLATION", "violation_info": {"violation_type": "SPAM"}}}]}]}
    return json.dumps(body).encode()


class Rules(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = WorkDir()
        d = Path(cls.tmp.name)
        (d / "fed").mkdir()
        (d / "full").mkdir()
        cls.fed, cls.fed_base, _ = serve(d / "fed", TOKENS, CONVOSCOPE_META_APP_SECRET=SECRET)
        # 32 KiB of log, never sealed by size or age: a few webhooks fill it for good.
        cls.full, cls.full_base, _ = serve(d / "full", TOKENS, CONVOSCOPE_META_APP_SECRET=SECRET,
                                           CONVOSCOPE_MAX_BODY_BYTES="16384", CONVOSCOPE_WAL_BUDGET_BYTES="32768",
                                           CONVOSCOPE_FLUSH_INTERVAL_SECS="3600")
        cls.start_metrics = urllib.request.urlopen(cls.full_base + "/metrics", timeout=10).read().decode()

    @classmethod
    def tearDownClass(cls):
        for p in (cls.fed, cls.full):
            p.send_signal(signal.SIGTERM)
            p.wait(timeout=30)
        cls.tmp.cleanup()

    def test_metrics_at_start_pass_promtool_with_help_and_zero_samples(self):
        promtool = need("promtool", "apt-get install prometheus #")
        check = subprocess.run([promtool, "check", "metrics"], input=self.start_metrics, capture_output=True, text=True)
        self.assertEqual(check.returncode, 0, check.stdout + check.stderr)
        families = {name for name in re.findall(r"^# TYPE (convoscope_\w+) \w+$", self.start_metrics, re.M)
                    if re.search(rf"^{name}(_bucket|_count|_sum)?[{{ ]", self.start_metrics, re.M)}
        for name in families:
            self.assertIn(f"# HELP {name} ", self.start_metrics)
        # Every documented family is in the exposition with a sample, but those whose labels
        # cannot be known at the start (the exposition leaves out a family with no series).
        reference = (ROOT / "docs" / "reference.md").read_text()
        documented = set(re.findall(r"^\| `(convoscope_\w+)` \|", reference, re.M))
        self.assertGreaterEqual(len(documented), 35)
        self.assertEqual(documented - families, NO_SAMPLE_AT_START, "documented families with no sample at start")
        for series in ['convoscope_ingest_rejected_requests_total{reason="wal_full",source="meta"} 0',
                       'convoscope_message_failures_total{error_code="131049"} 0',
                       'convoscope_messages_total{category="marketing",status="failed"} 0',
                       'convoscope_webhook_requests_total{code="503",source="twilio"} 0',
                       'convoscope_errors_total{stage="compaction"} 0']:
            self.assertIn(series, self.start_metrics)

    def test_rules_evaluate_the_slo_moves_and_every_dashboard_query_runs(self):
        prometheus = need("prometheus")
        d = Path(self.tmp.name)
        prom_port = free_port()
        targets = ", ".join(f"'{b.removeprefix('http://')}'" for b in (self.fed_base, self.full_base))
        (d / "prometheus.yml").write_text(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
            f"rule_files:\n  - {ROOT / 'dashboards' / 'alerts.yml'}\n  - {ROOT / 'dashboards' / 'slo.yml'}\n"
            f"scrape_configs:\n  - job_name: convoscope\n    static_configs:\n      - targets: [{targets}]\n"
        )
        proc = subprocess.Popen(
            [prometheus, f"--config.file={d / 'prometheus.yml'}", f"--storage.tsdb.path={d / 'tsdb'}",
             f"--web.listen-address=127.0.0.1:{prom_port}"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        api = f"http://127.0.0.1:{prom_port}/api/v1"

        def query(expr):
            url = f"{api}/query?query={urllib.parse.quote(expr)}"
            return json.load(urllib.request.urlopen(url, timeout=10))

        def eventually(check, seconds=60):
            deadline = time.time() + seconds
            while True:
                try:
                    if check():
                        return True
                except (OSError, KeyError, ValueError):
                    pass
                if time.time() > deadline:
                    return False
                time.sleep(0.5)

        try:
            self.assertTrue(eventually(lambda: len([r for r in query('up{job="convoscope"} == 1')["data"]["result"]]) == 2),
                            "both collectors scraped")
            # The fed collector: first-party events, webhooks with statuses and an account
            # change, a report (a query), and a flush.
            post_fixture(self.fed_base, INGEST)
            for i in range(6):
                self.assertEqual(post_webhook(self.fed_base, statuses(20, f"fed{i}")), 200)
                time.sleep(1)
            req = urllib.request.Request(self.fed_base + "/v1/reports/funnel", headers={"Authorization": f"Bearer {READ}"})
            urllib.request.urlopen(req, timeout=30)
            req = urllib.request.Request(self.fed_base + "/v1/admin/flush", data=b"", headers={"Authorization": f"Bearer {ADMIN}"})
            urllib.request.urlopen(req, timeout=30)
            # The full collector: webhooks until its log refuses them, then a few more.
            codes = [post_webhook(self.full_base, statuses(40, f"full{i}")) for i in range(12)]
            self.assertIn(503, codes, codes)
            self.assertEqual(codes[0], 200)

            # The SLO recording moves: 503s are errors of the webhook SLO.
            self.assertTrue(eventually(lambda: float(query("convoscope:webhook_errors:ratio_rate5m")["data"]["result"][0]["value"][1]) > 0),
                            "convoscope:webhook_errors:ratio_rate5m did not move after forced 503s")
            # Every rule evaluated, without an error.
            def all_ok():
                groups = json.load(urllib.request.urlopen(f"{api}/rules", timeout=10))["data"]["groups"]
                rules = [r for g in groups for r in g["rules"]]
                self.__class__.rules = rules
                return len(rules) >= 35 and all(r["health"] == "ok" for r in rules)
            self.assertTrue(eventually(all_ok), [(r["name"], r["health"], r.get("lastError")) for r in self.rules if r["health"] != "ok"])
            # The log-full alert fires for the full collector.
            self.assertTrue(eventually(lambda: any(a["labels"]["alertname"] == "ConvoscopeWalFull"
                                                   for a in json.load(urllib.request.urlopen(f"{api}/alerts", timeout=10))["data"]["alerts"])),
                            "ConvoscopeWalFull did not fire")

            # Every dashboard query runs; those the fixture feeds return data.
            dashboard = json.loads((ROOT / "dashboards" / "grafana.json").read_text())
            empty, ran = [], 0
            for panel in dashboard["panels"]:
                for target in panel.get("targets", []):
                    expr = (target["expr"].replace("$job", "convoscope").replace("$instance", ".*")
                            .replace("$__rate_interval", "1m"))
                    answer = query(expr)
                    self.assertEqual(answer["status"], "success", f"{panel['title']}: {expr}")
                    ran += 1
                    if panel["title"] in MUST_HAVE_DATA and not answer["data"]["result"]:
                        empty.append(panel["title"])
            self.assertGreaterEqual(ran, 35)
            # Rates need two scrapes inside their window: retry the empty ones for a while.
            def fed():
                still = []
                for panel in dashboard["panels"]:
                    if panel.get("title") in empty:
                        expr = panel["targets"][0]["expr"].replace("$job", "convoscope").replace("$instance", ".*").replace("$__rate_interval", "1m")
                        if not query(expr)["data"]["result"]:
                            still.append(panel["title"])
                empty[:] = still
                return not still
            self.assertTrue(eventually(fed, 30), f"dashboard panels without data: {empty}")
        finally:
            proc.terminate()
            proc.wait(timeout=30)


if __name__ == "__main__":
    unittest.main()
