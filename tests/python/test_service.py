"""The service seen from outside: a real Prometheus scrapes /metrics, and headless Chromium
renders the report page.

Both tools come from Debian (scripts/test.sh installs them). Run locally without them, a test
skips with a message saying what to install; under CI (CI=true) a missing tool is a failure.
"""

import json
import os
import re
import signal
import subprocess
import time
import unittest
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from support import BIN, ROOT, WorkDir, free_port, need, post_fixture, serve

ARTIFACTS = Path(os.environ.get("CONVOSCOPE_ARTIFACTS", ROOT / "target" / "test-artifacts"))
INGEST, READ, ADMIN = "ingest-token-svc", "read-token-svc", "admin-token-svc"
# Every report, as the page shows them.
REPORTS = ["trends", "funnel", "delivery", "failures", "containment", "sla", "experiment", "engagement", "cost",
           "time_to_convert", "retention", "buttons", "templates", "pricing", "account"]


def chromium_flags(workdir: Path):
    """Headless Chromium that reaches nothing but the page it is given."""
    return ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            f"--user-data-dir={workdir / 'chromium'}"]


class Service(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = WorkDir()
        d = Path(cls.tmp.name)
        cls.proc, cls.base, _ = serve(d, f"ingest:{INGEST},read:{READ},admin:{ADMIN}")
        cls.port = int(cls.base.rsplit(":", 1)[1])
        cls.accepted = post_fixture(cls.base, INGEST)["accepted"]
        req = urllib.request.Request(cls.base + "/v1/admin/flush", data=b"", headers={"Authorization": f"Bearer {ADMIN}"})
        urllib.request.urlopen(req, timeout=30)

    @classmethod
    def tearDownClass(cls):
        cls.proc.send_signal(signal.SIGTERM)
        cls.proc.wait(timeout=30)
        cls.tmp.cleanup()

    def test_prometheus_scrapes_the_ingest_counter(self):
        prometheus = need("prometheus")
        d = Path(self.tmp.name)
        prom_port = free_port()
        (d / "prometheus.yml").write_text(
            "global:\n  scrape_interval: 1s\nscrape_configs:\n"
            f"  - job_name: convoscope\n    static_configs:\n      - targets: ['127.0.0.1:{self.port}']\n"
        )
        proc = subprocess.Popen(
            [prometheus, f"--config.file={d / 'prometheus.yml'}", f"--storage.tsdb.path={d / 'tsdb'}",
             f"--web.listen-address=127.0.0.1:{prom_port}"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        try:
            query = urllib.parse.quote('sum(convoscope_ingest_events_total{source="api"})')
            url = f"http://127.0.0.1:{prom_port}/api/v1/query?query={query}"
            deadline, value = time.time() + 60, None
            while time.time() < deadline:
                try:
                    result = json.load(urllib.request.urlopen(url, timeout=2))["data"]["result"]
                    if result:
                        value = float(result[0]["value"][1])
                        break
                except OSError:
                    pass
                time.sleep(0.5)
            self.assertEqual(value, float(self.accepted))
        finally:
            proc.terminate()
            proc.wait(timeout=30)

    def test_report_page_renders_in_chromium(self):
        chromium = need("chromium")
        req = urllib.request.Request(self.base + "/", headers={"Authorization": f"Bearer {READ}"})
        html = urllib.request.urlopen(req, timeout=30).read().decode()
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        page = ARTIFACTS / "report-page.html"
        page.write_text(html)
        flags = chromium_flags(Path(self.tmp.name))
        dom = subprocess.run([chromium, *flags, "--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=120).stdout
        for name in REPORTS:
            self.assertIn(f'data-report="{name}"', dom)
            # Each section links to its own page and files with the page's filters.
            for fmt in ["html", "csv", "json", "svg", "png"]:
                self.assertIn(f'href="/v1/reports/{name}?format={fmt}"', dom)
        self.assertGreaterEqual(dom.count("<svg"), 12)
        # Numbers of the fixture as a person reads them: the funnel row of promo_a, the failure
        # code, the SLA median with its thousands separator, the funnel's read rate of promo_b
        # as a percentage, the messaging cost in dollars.
        self.assertIn("promo_a", dom)
        self.assertIn("131026", dom)
        self.assertIn(">1,200<", dom)
        self.assertIn(">50.0%<", dom)
        self.assertIn(">$0.1154<", dom)
        # The selectors: the fixture's campaign and experiment, every breakdown.
        self.assertIn('<option value="spring">spring</option>', dom)
        self.assertIn('<option value="cta">cta</option>', dom)
        self.assertIn('<option value="template">template</option>', dom)
        shot = ARTIFACTS / "report-page.png"
        subprocess.run([chromium, *flags, "--window-size=1100,2400", f"--screenshot={shot}", page.as_uri()],
                       capture_output=True, timeout=120)
        self.assertTrue(shot.exists() and shot.stat().st_size > 10_000, "no screenshot")

    def test_a_table_sorts_by_the_column_asked_for(self):
        chromium = need("chromium")
        req = urllib.request.Request(self.base + "/", headers={"Authorization": f"Bearer {READ}"})
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        page = ARTIFACTS / "report-page-sorted.html"
        page.write_bytes(urllib.request.urlopen(req, timeout=30).read())
        flags = chromium_flags(Path(self.tmp.name))

        def locales(fragment):
            dom = subprocess.run([chromium, *flags, "--dump-dom", page.as_uri() + fragment], capture_output=True,
                                 text=True, timeout=120).stdout
            engagement = dom[dom.index('id="engagement"'):]
            engagement = engagement[:engagement.index("</table>")]
            return re.findall(r"<td>(\w\w_\w\w)</td>", engagement)

        self.assertEqual(locales(""), ["en_GB", "en_IN", "pt_BR"])
        self.assertEqual(locales("#sort=engagement.locale.desc"), ["pt_BR", "en_IN", "en_GB"])
        self.assertEqual(locales("#sort=engagement.read_rate.asc")[0], "en_IN")

    def test_the_filters_apply_to_the_reports_that_take_them(self):
        # A breakdown, weekly trends and a comparison on one page: each report takes what it
        # can, the funnel gains its levels, and the form keeps the choices.
        q = "from=2026-02-01&to=2026-02-02&by=country&interval=week&compare=previous&campaign=spring"
        req = urllib.request.Request(self.base + "/?" + q, headers={"Authorization": f"Bearer {READ}"})
        html = urllib.request.urlopen(req, timeout=30).read().decode()
        funnel = html[html.index('id="funnel"'):]
        funnel = funnel[:funnel.index("</section>")]
        self.assertIn("<th title=\"sort\">breakdown</th>", funnel)
        self.assertIn(">GB<", funnel)
        self.assertIn('<option value="country" selected>', html)
        self.assertIn('<option value="week" selected>', html)
        self.assertIn('name="compare" value="previous" checked', html)
        self.assertIn("previous_sent", html)
        # A filter that cannot apply: the form again with the reason, not an error page.
        req = urllib.request.Request(self.base + "/?compare=previous", headers={"Authorization": f"Bearer {READ}"})
        with self.assertRaises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(req, timeout=30)
        self.assertEqual(e.exception.code, 400)
        body = e.exception.read().decode()
        self.assertIn('role="alert"', body)
        self.assertIn("compare previous needs both from and to", body)
        self.assertIn("<form", body)

    def test_every_report_alone_in_chromium_with_a_screenshot(self):
        # One page per report, as its "Open alone" link serves it, rendered and kept as a
        # screenshot for a person to look at (target/test-artifacts/report-NAME.png).
        chromium = need("chromium")
        flags = chromium_flags(Path(self.tmp.name))
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        for name in REPORTS:
            req = urllib.request.Request(f"{self.base}/v1/reports/{name}?format=html",
                                         headers={"Authorization": f"Bearer {READ}"})
            page = ARTIFACTS / f"report-{name}.html"
            page.write_bytes(urllib.request.urlopen(req, timeout=60).read())
            dom = subprocess.run([chromium, *flags, "--dump-dom", page.as_uri()], capture_output=True, text=True,
                                 timeout=120).stdout
            self.assertIn(f'data-report="{name}"', dom, name)
            self.assertIn("<table>", dom, name)
            shot = ARTIFACTS / f"report-{name}.png"
            subprocess.run([chromium, *flags, "--window-size=1000,900", f"--screenshot={shot}", page.as_uri()],
                           capture_output=True, timeout=120)
            self.assertTrue(shot.exists() and shot.stat().st_size > 5_000, f"no screenshot of {name}")


class ExperimentPage(unittest.TestCase):
    """The experiment page a marketer opens, over generated data with enough contacts for an
    always-valid interval: per variant and metric, its estimate and intervals in the chart, and
    the decision with its reason, rendered by headless Chromium."""

    def test_experiment_page_shows_decisions_in_chromium(self):
        chromium = need("chromium")
        tmp = WorkDir()
        self.addCleanup(tmp.cleanup)
        d = Path(tmp.name)
        env = dict(os.environ, CONVOSCOPE_STORAGE=f"file://{d / 'store'}",
                   CONVOSCOPE_EXPERIMENTS=str(ROOT / "experiments.toml"))
        subprocess.run([BIN, "generate", "--events", "60000", "--days", "10"], env=env, check=True,
                       capture_output=True, timeout=300)
        proc, base, _ = serve(d, f"read:{READ}", CONVOSCOPE_EXPERIMENTS=str(ROOT / "experiments.toml"))
        try:
            req = urllib.request.Request(base + "/v1/reports/experiment?format=html",
                                         headers={"Authorization": f"Bearer {READ}"})
            html = urllib.request.urlopen(req, timeout=120).read().decode()
            req = urllib.request.Request(base + "/v1/reports/experiment?format=json",
                                         headers={"Authorization": f"Bearer {READ}"})
            rows = json.load(urllib.request.urlopen(req, timeout=120))["rows"]
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=30)
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        page = ARTIFACTS / "experiment-page.html"
        page.write_text(html)
        flags = chromium_flags(d)
        dom = subprocess.run([chromium, *flags, "--dump-dom", page.as_uri()], capture_output=True, text=True,
                             timeout=120).stdout
        decided = [r for r in rows if r["decision"] is not None and r["slice"] is None]
        self.assertTrue(decided, "no variant has a decision")
        metrics = {r["metric"] for r in decided}
        self.assertEqual(metrics, {"converted", "opted_out", "blocked"}, "the goal and the two guardrails")
        control_rate = {r["metric"]: r["conversion_rate"] for r in rows if r["slice"] is None and r["decision"] is None}
        drawn = 0
        for r in decided:
            self.assertIn(r["decision"], ["ship", "keep running", "stop: harm", "invalid: SRM", "not enough data"])
            self.assertTrue(r["decision_reason"])
            self.assertRegex(dom, f'<td[^>]*>{re.escape(r["decision"])}</td>')
            self.assertIn(r["decision_reason"].replace("&", "&amp;")[:40], dom)
            # A line of the chart per variant and metric with an always-valid interval, as a
            # share of the control's rate (none where the control's is 0: nothing to divide by).
            if r["always_valid_low"] is not None and (control_rate.get(r["metric"]) or 0) > 0:
                self.assertIn(f'{r["metric"]} · {r["variant"]}', dom)
                drawn += 1
        self.assertGreaterEqual(drawn, 2, "the goal's two variants are drawn")
        self.assertIn("difference from the control", dom)
        self.assertIn("<svg", dom)
        shot = ARTIFACTS / "experiment-page.png"
        subprocess.run([chromium, *flags, "--window-size=1100,1600", f"--screenshot={shot}", page.as_uri()],
                       capture_output=True, timeout=120)
        self.assertTrue(shot.exists() and shot.stat().st_size > 10_000, "no screenshot")


if __name__ == "__main__":
    unittest.main()
