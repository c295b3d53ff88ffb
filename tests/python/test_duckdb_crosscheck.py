"""DuckDB reads convoscope's Parquet on its own and gets the same funnel and experiment counts.

This proves the stored files are standard hive-partitioned Parquet, and gives the report SQL an
independent second implementation. It drives the real binary: `serve`, the fixture posted over
HTTP, SIGTERM (which must flush and exit 0), then `report ... --format json`.
"""

import json
import os
import signal
import subprocess
import unittest
from pathlib import Path

import duckdb

from support import BIN, WorkDir, post_fixture, serve

INGEST = "ingest-token-for-duckdb"


class DuckDbCrossCheck(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = WorkDir()
        d = Path(cls.tmp.name)
        cls.store = d / "store"
        proc, base, cls.env = serve(d, f"ingest:{INGEST}")
        post_fixture(base, INGEST)
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=60)
        log = (d / "serve.log").read_text()
        assert code == 0, f"serve exited {code} on SIGTERM: {log}"

    @classmethod
    def tearDownClass(cls):
        cls.tmp.cleanup()

    def report(self, name):
        out = subprocess.run(
            [BIN, "report", name, "--format", "json", "--storage", f"file://{self.store}"],
            env=self.env, check=True, capture_output=True, text=True,
        ).stdout
        return json.loads(out)["rows"]

    def duck(self, sql):
        con = duckdb.connect()
        con.execute(
            f"CREATE VIEW events AS SELECT * FROM read_parquet('{self.store}/events/*/*.parquet', hive_partitioning = true)"
        )
        return con.execute(sql).fetchall()

    def test_files_are_hive_partitioned_parquet(self):
        rows = self.duck("SELECT count(*), count(DISTINCT event_id), min(date), max(date) FROM events")
        n, distinct, lo, hi = rows[0]
        self.assertEqual(n, 43)
        self.assertEqual(distinct, 43)
        self.assertEqual((str(lo), str(hi)), ("2026-02-01", "2026-02-20"))

    def test_funnel_counts_agree(self):
        ours = {(r["campaign"], r["template"]): (r["sent"], r["delivered"], r["read"], r["replied"], r["converted"]) for r in self.report("funnel")}
        theirs = self.duck("""
            WITH sends AS (
                SELECT message_id, min(occurred_at) AS sent_at, max(campaign) AS campaign,
                       max(template) AS template, max(contact_key) AS contact_key
                FROM events WHERE event_type IN ('send.accepted', 'message.sent') AND message_id IS NOT NULL
                GROUP BY message_id)
            SELECT s.campaign, s.template, count(*),
                   count(*) FILTER (WHERE EXISTS (SELECT 1 FROM events e WHERE e.message_id = s.message_id
                                                  AND e.event_type IN ('message.delivered', 'message.read'))),
                   count(*) FILTER (WHERE EXISTS (SELECT 1 FROM events e WHERE e.message_id = s.message_id
                                                  AND e.event_type = 'message.read')),
                   count(*) FILTER (WHERE EXISTS (SELECT 1 FROM events e WHERE e.reply_to = s.message_id
                                                  AND e.event_type IN ('interaction.reply', 'message.inbound'))),
                   count(*) FILTER (WHERE EXISTS (SELECT 1 FROM events c WHERE c.contact_key = s.contact_key
                                                  AND c.event_type = 'conversion' AND c.occurred_at >= s.sent_at
                                                  AND c.occurred_at <= s.sent_at + INTERVAL 7 DAY))
            FROM sends s GROUP BY ALL ORDER BY ALL""")
        self.assertEqual(ours, {(r[0], r[1]): tuple(r[2:]) for r in theirs})

    def test_experiment_counts_agree(self):
        # The goal rows of the whole experiment (not its slices); contacts met by more than one
        # variant are left out of every arm.
        ours = {(r["experiment"], r["variant"]): (r["exposures"], r["conversions"])
                for r in self.report("experiment") if r["metric"] == "converted" and r["slice"] is None}
        theirs = self.duck("""
            WITH first AS (
                SELECT experiment, contact_key, arg_min(variant, occurred_at) AS variant, min(occurred_at) AS at
                FROM events
                WHERE event_type IN ('send.accepted', 'message.sent') AND experiment IS NOT NULL
                  AND variant IS NOT NULL AND contact_key IS NOT NULL
                GROUP BY ALL
                HAVING count(DISTINCT variant) = 1)
            SELECT experiment, variant, count(*),
                   count(*) FILTER (WHERE EXISTS (SELECT 1 FROM events c WHERE c.contact_key = f.contact_key
                                                  AND c.event_type = 'conversion' AND c.occurred_at >= f.at
                                                  AND c.occurred_at <= f.at + INTERVAL 7 DAY))
            FROM first f GROUP BY ALL ORDER BY ALL""")
        self.assertEqual(ours, {(r[0], r[1]): tuple(r[2:]) for r in theirs})


def theta(arms):
    """CUPED's pooled slope over both arms' (x, y) pairs: joint covariance over joint variance."""
    pts = [p for arm in arms for p in arm]
    n = len(pts)
    mx, my = sum(x for x, _ in pts) / n, sum(y for _, y in pts) / n
    vx = sum((x - mx) ** 2 for x, _ in pts) / (n - 1)
    cov = sum((x - mx) * (y - my) for x, y in pts) / (n - 1)
    return cov / vx if vx > 0 else 0.0


def stratum_effect(c, t):
    """The treatment coefficient of y = g0 + g1 treated + g2 x by least squares, and its
    variance (GrowthBook's per-stratum regression), by the normal equations."""
    rows = [(1.0, 0.0, x, y) for x, y in c] + [(1.0, 1.0, x, y) for x, y in t]
    xtx = [[sum(r[i] * r[j] for r in rows) for j in range(3)] for i in range(3)]
    xty = [sum(r[i] * r[3] for r in rows) for i in range(3)]
    det = (xtx[0][0] * (xtx[1][1] * xtx[2][2] - xtx[1][2] * xtx[2][1])
           - xtx[0][1] * (xtx[1][0] * xtx[2][2] - xtx[1][2] * xtx[2][0])
           + xtx[0][2] * (xtx[1][0] * xtx[2][1] - xtx[1][1] * xtx[2][0]))
    scale = max(abs(v) for row in xtx for v in row)
    if abs(det) <= 1e-12 * scale ** 3:
        return None  # no pre-period variation here: the stratum is pooled
    inv = [[0.0] * 3 for _ in range(3)]
    for i in range(3):
        for j in range(3):
            m = [[xtx[r][k] for k in range(3) if k != i] for r in range(3) if r != j]
            inv[i][j] = (-1) ** (i + j) * (m[0][0] * m[1][1] - m[0][1] * m[1][0]) / det
    g = [sum(inv[i][k] * xty[k] for k in range(3)) for i in range(3)]
    rss = sum((r[3] - g[0] - g[1] * r[1] - g[2] * r[2]) ** 2 for r in rows)
    return g[1], rss / (len(rows) - 3) * inv[1][1]


class ExperimentStatisticsCrossCheck(unittest.TestCase):
    """The experiment report's CUPED, from DuckDB's own reading of the events: each contact's
    first exposure, variant and country, its conversion within the window after it (y) and in
    the 14 days before it (x), and the adjustment computed here from those pairs."""

    def test_cuped_from_the_raw_events(self):
        tmp = WorkDir()
        self.addCleanup(tmp.cleanup)
        store = Path(tmp.name) / "store"
        env = dict(os.environ, CONVOSCOPE_STORAGE=f"file://{store}")
        subprocess.run([BIN, "generate", "--events", "60000", "--days", "10", "--seed", "3"], env=env, check=True,
                       capture_output=True, timeout=300)
        out = subprocess.run([BIN, "report", "experiment", "--format", "json"], env=env, check=True,
                             capture_output=True, text=True, timeout=300).stdout
        rows = [r for r in json.loads(out)["rows"] if r["metric"] == "converted" and r["slice"] is None]
        con = duckdb.connect()
        con.execute(f"CREATE VIEW events AS SELECT * FROM read_parquet('{store}/events/*/*.parquet', hive_partitioning = true)")
        pairs = con.execute("""
            WITH sends AS (
                SELECT experiment, variant, contact_key, message_id, min(occurred_at) AS t0
                FROM events
                WHERE event_type IN ('send.accepted', 'message.sent') AND experiment IS NOT NULL
                  AND variant IS NOT NULL AND contact_key IS NOT NULL
                GROUP BY ALL),
            firsts AS (
                SELECT experiment, contact_key, arg_min(variant, t0) AS variant, min(t0) AS t0
                FROM sends GROUP BY ALL HAVING count(DISTINCT variant) = 1),
            billed AS (
                SELECT message_id, max(country) AS country FROM events
                WHERE event_type IN ('send.accepted', 'message.sent', 'message.delivered', 'message.read')
                GROUP BY ALL),
            countries AS (
                SELECT s.experiment, s.contact_key, max(b.country) AS country
                FROM sends s JOIN billed b USING (message_id) GROUP BY ALL),
            conversions AS (
                SELECT event_id, max(contact_key) AS contact_key, min(occurred_at) AS t0
                FROM events WHERE event_type = 'conversion' AND contact_key IS NOT NULL GROUP BY ALL)
            SELECT f.experiment, f.variant, coalesce(c.country, '(none)'),
                   (SELECT count(*) > 0 FROM conversions v WHERE v.contact_key = f.contact_key
                      AND v.t0 >= f.t0 AND v.t0 <= f.t0 + INTERVAL 7 DAY)::INT AS y,
                   (SELECT count(*) > 0 FROM conversions v WHERE v.contact_key = f.contact_key
                      AND v.t0 < f.t0 AND v.t0 >= f.t0 - INTERVAL 14 DAY)::INT AS x
            FROM firsts f LEFT JOIN countries c USING (experiment, contact_key)""").fetchall()
        by = {}
        for exp, variant, country, y, x in pairs:
            by.setdefault((exp, variant), []).append((country, float(x), float(y)))
        self.assertGreater(sum(x for *_, x, _ in pairs), 20, "the generated contacts have a pre-period")
        checked = 0
        for r in rows:
            if r["cuped_abs_diff"] is None:
                continue
            control = by[(r["experiment"], next(v for v in ["control"] if (r["experiment"], v) in by))]
            arm = by[(r["experiment"], r["variant"])]
            self.assertEqual(len(arm), r["exposures"])
            if r["cuped_method"] == "cuped":
                th = theta([[(x, y) for _, x, y in control], [(x, y) for _, x, y in arm]])
                adj = lambda a: sum(y - th * x for _, x, y in a) / len(a)
                diff = adj(arm) - adj(control)
            else:
                # Countries with at least 50 contacts in each arm stand alone; the rest pool.
                countries = sorted({c for c, *_ in control} | {c for c, *_ in arm})
                strata, rest = [], ([], [])
                for k in countries:
                    c = [(x, y) for cc, x, y in control if cc == k]
                    t = [(x, y) for cc, x, y in arm if cc == k]
                    if len(c) >= 50 and len(t) >= 50 and stratum_effect(c, t) is not None:
                        strata.append((c, t))
                    else:
                        rest[0].extend(c)
                        rest[1].extend(t)
                if len(rest[0]) >= 50 and len(rest[1]) >= 50 and stratum_effect(*rest) is not None:
                    strata.append(rest)
                elif rest[0] or rest[1]:
                    big = max(range(len(strata)), key=lambda i: len(strata[i][0]) + len(strata[i][1]))
                    strata[big] = (strata[big][0] + rest[0], strata[big][1] + rest[1])
                total = sum(len(c) + len(t) for c, t in strata)
                diff = sum((len(c) + len(t)) / total * stratum_effect(c, t)[0] for c, t in strata)
            self.assertAlmostEqual(r["cuped_abs_diff"], diff, places=9, msg=f'{r["variant"]} {r["cuped_method"]}')
            checked += 1
        self.assertGreaterEqual(checked, 2)


if __name__ == "__main__":
    unittest.main()


class GrowthReportsCrossCheck(unittest.TestCase):
    """`trends`, `time_to_convert`, `retention` and `buttons` against DuckDB's own reading of the
    generated events: each message by the day of its first send, whether it was delivered (or
    read), read, replied to, failed, and whether its contact converted within 7 days; the times
    to each; each contact's weeks of activity; the taps and link clicks per button."""

    @classmethod
    def setUpClass(cls):
        cls.tmp = WorkDir()
        cls.store = Path(cls.tmp.name) / "store"
        cls.env = dict(os.environ, CONVOSCOPE_STORAGE=f"file://{cls.store}")
        subprocess.run([BIN, "generate", "--events", "40000", "--days", "14", "--seed", "5"], env=cls.env, check=True,
                       capture_output=True, timeout=300)
        con = duckdb.connect()
        con.execute(f"CREATE VIEW events AS SELECT * FROM read_parquet('{cls.store}/events/*/*.parquet', hive_partitioning = true)")
        cls.messages = con.execute("""
            WITH sends AS (
                SELECT message_id, min(occurred_at) AS t0, min(date) AS day, max(contact_key) AS contact_key
                FROM events WHERE event_type IN ('send.accepted', 'message.sent') AND message_id IS NOT NULL
                GROUP BY ALL),
            receipts AS (
                SELECT message_id,
                       bool_or(event_type IN ('message.delivered', 'message.read')) AS delivered,
                       bool_or(event_type = 'message.read') AS read,
                       bool_or(event_type = 'message.failed') AS failed
                FROM events GROUP BY ALL),
            replies AS (
                SELECT DISTINCT reply_to AS message_id FROM events
                WHERE event_type IN ('interaction.reply', 'message.inbound') AND reply_to IS NOT NULL)
            SELECT CAST(s.day AS DATE), coalesce(r.delivered, false)::INT, coalesce(r.read, false)::INT,
                   (p.message_id IS NOT NULL)::INT, coalesce(r.failed, false)::INT,
                   EXISTS (SELECT 1 FROM events c WHERE c.event_type = 'conversion' AND c.contact_key = s.contact_key
                           AND c.occurred_at >= s.t0 AND c.occurred_at <= s.t0 + INTERVAL 7 DAY)::INT
            FROM sends s LEFT JOIN receipts r USING (message_id) LEFT JOIN replies p USING (message_id)""").fetchall()

    @classmethod
    def tearDownClass(cls):
        cls.tmp.cleanup()

    def report(self, *args, name="trends"):
        out = subprocess.run([BIN, "report", name, "--format", "json", *args], env=self.env, check=True,
                             capture_output=True, text=True, timeout=300).stdout
        return json.loads(out)["rows"]

    def duck(self, sql):
        con = duckdb.connect()
        con.execute("SET TimeZone = 'UTC'")
        con.execute(f"CREATE VIEW events AS SELECT * FROM read_parquet('{self.store}/events/*/*.parquet', hive_partitioning = true)")
        con.execute("""CREATE VIEW sends AS
            SELECT message_id, min(occurred_at) AS t0, max(campaign) AS campaign, max(template) AS template,
                   max(variant) AS variant, max(contact_key) AS contact_key
            FROM events WHERE event_type IN ('send.accepted', 'message.sent') AND message_id IS NOT NULL
            GROUP BY ALL""")
        return con.execute(sql).fetchall()

    def test_time_to_convert(self):
        rows = self.duck("""
            WITH firsts AS (
                SELECT s.campaign, s.t0,
                       (SELECT min(occurred_at) FROM events e WHERE e.event_type = 'message.read'
                          AND e.message_id = s.message_id) AS read_at,
                       (SELECT min(occurred_at) FROM events e WHERE e.event_type IN ('interaction.reply', 'message.inbound')
                          AND e.reply_to = s.message_id) AS reply_at,
                       (SELECT min(occurred_at) FROM events c WHERE c.event_type = 'conversion'
                          AND c.contact_key = s.contact_key AND c.occurred_at >= s.t0
                          AND c.occurred_at <= s.t0 + INTERVAL 7 DAY) AS conversion_at
                FROM sends s),
            times AS (
                SELECT campaign, step, greatest((epoch_us(t1) - epoch_us(t0)) / 1e6, 0) AS s
                FROM firsts UNPIVOT (t1 FOR step IN (read_at AS 'read', reply_at AS 'reply', conversion_at AS 'conversion')))
            SELECT campaign, step, count(*), quantile_cont(s, 0.5), quantile_cont(s, 0.99),
                   count(*) FILTER (WHERE s < 60), count(*) FILTER (WHERE s >= 3600 AND s < 21600),
                   count(*) FILTER (WHERE s >= 86400 AND s < 604800), count(*) FILTER (WHERE s >= 604800)
            FROM times GROUP BY ALL""")
        theirs = {(r[0], r[1]): r[2:] for r in rows}
        ours = {(r["campaign"], r["step"]): r for r in self.report(name="time_to_convert")}
        self.assertEqual(set(ours), set(theirs))
        for key, (n, p50, p99, under_1m, h1_6, d1_7, over_7d) in theirs.items():
            r = ours[key]
            self.assertEqual((r["messages"], r["under_1m"], r["1h_to_6h"], r["1d_to_7d"], r["over_7d"]),
                             (n, under_1m, h1_6, d1_7, over_7d), key)
            # DataFusion's percentile_cont truncates its interpolation weight to 1e-6.
            self.assertAlmostEqual(r["p50_s"], p50, delta=1e-3 + 1e-6 * p50)
            self.assertAlmostEqual(r["p99_s"], p99, delta=1e-3 + 1e-6 * p99)

    def test_retention(self):
        rows = self.duck("""
            WITH firsts AS (
                SELECT contact_key, min(t0) AS t0, CAST(date_trunc('week', min(t0)) AS DATE) AS cohort_week
                FROM sends GROUP BY ALL),
            active AS (
                SELECT DISTINCT f.cohort_week, f.contact_key,
                       (CAST(date_trunc('week', e.occurred_at) AS DATE) - f.cohort_week) // 7 AS week
                FROM firsts f JOIN events e ON e.contact_key = f.contact_key
                WHERE e.event_type IN ('interaction.reply', 'message.inbound', 'conversion') AND e.occurred_at >= f.t0)
            SELECT CAST(cohort_week AS VARCHAR), week, count(*) FROM active GROUP BY ALL""")
        theirs = {(c, w): n for c, w, n in rows}
        sizes = dict(self.duck("SELECT CAST(date_trunc('week', min(t0)) AS DATE)::VARCHAR AS w, 1 FROM sends GROUP BY contact_key"))
        ours = self.report(name="retention")
        self.assertTrue(ours)
        for r in ours:
            self.assertEqual(r["active"], theirs.get((r["cohort_week"], r["week"]), 0), r)
            self.assertAlmostEqual(r["share"], r["active"] / r["contacts"], places=6)
        # Every week DuckDB saw activity in is a row (it began before the last activity).
        self.assertLessEqual(set(theirs), {(r["cohort_week"], r["week"]) for r in ours})
        self.assertEqual({r["cohort_week"] for r in ours}, set(sizes))

    def test_funnel_by_two_keys_keeps_the_top_20_levels(self):
        # DuckDB's own levels: each message's template and its contact's country (from the
        # send and its billed receipts), the 20 with the most messages by name, the rest "other".
        rows = self.duck("""
            WITH countries AS (
                SELECT message_id, max(country) AS country FROM events
                WHERE event_type IN ('send.accepted', 'message.sent', 'message.delivered', 'message.read')
                GROUP BY ALL),
            levels AS (
                SELECT s.campaign, s.template || ' / ' || coalesce(c.country, '(none)') AS level
                FROM sends s LEFT JOIN countries c USING (message_id)),
            top AS (SELECT level FROM levels GROUP BY level ORDER BY count(*) DESC, level LIMIT 20)
            SELECT l.campaign, coalesce(t.level, 'other'), count(*)
            FROM levels l LEFT JOIN top t USING (level) GROUP BY ALL""")
        theirs = {(r[0], r[1]): r[2] for r in rows}
        ours = {}
        for r in self.report("--by", "template,country", name="funnel"):
            key = (r["campaign"], r["breakdown"])
            ours[key] = ours.get(key, 0) + r["sent"]
        self.assertEqual(ours, theirs)
        self.assertEqual(len({k[1] for k in ours}), 21)

    def test_templates_and_account(self):
        # DuckDB reads Meta's changes from the attributes with its own JSON functions.
        rows = self.duck("""
            WITH u AS (
                SELECT template, locale, occurred_at, attributes->>'field' AS field, attributes->>'event' AS event,
                       attributes->>'pause' AS pause, attributes->>'new_quality_score' AS quality
                FROM events WHERE event_type = 'template.status')
            SELECT template, locale,
                   arg_max(event || coalesce(':' || pause, ''), occurred_at) FILTER (WHERE field = 'message_template_status_update'),
                   max(CAST(occurred_at AS DATE)) FILTER (WHERE event = 'PAUSED'),
                   arg_max(quality, occurred_at) FILTER (WHERE quality IS NOT NULL)
            FROM u GROUP BY ALL""")
        theirs = {(r[0], r[1]): (r[2], None if r[3] is None else str(r[3]), r[4]) for r in rows}
        ours = {(r["template"], r["locale"]): (r["status"], r["paused_on"], r["quality"])
                for r in self.report(name="templates") if r["status"] is not None}
        self.assertEqual(ours, theirs)
        self.assertEqual(ours[("winback_offer", "en_US")][:1], ("REINSTATED",))
        self.assertEqual(ours[("spring_promo_v2", "en_US")][0], "REJECTED")
        sent = self.duck("SELECT template, locale, count(*) FROM sends s JOIN (SELECT DISTINCT message_id, locale FROM events WHERE event_type = 'send.accepted') l USING (message_id) GROUP BY ALL")
        by_template = {(r["template"], r["locale"]): r["sent"] for r in self.report(name="templates")}
        for t, l, n in sent:
            self.assertEqual(by_template[(t, l)], n, (t, l))
        account = self.duck("""
            SELECT event_type, attributes->>'event', attributes->>'current_limit' FROM events
            WHERE event_type LIKE 'account.%' ORDER BY occurred_at, event_id""")
        self.assertEqual([(r["kind"], r["change"] if r["kind"] != "account.alert" else None, r["current_limit"])
                          for r in self.report(name="account")],
                         [(k, e, c) for k, e, c in account])

    def test_buttons(self):
        rows = self.duck("""
            WITH taps AS (
                SELECT CASE WHEN event_type = 'link.click' THEN coalesce(reply_to, message_id) ELSE reply_to END AS message_id,
                       CASE WHEN event_type = 'link.click' THEN '(link)'
                            ELSE coalesce(interaction_title, interaction_id, '(unnamed)') END AS button,
                       contact_key
                FROM events WHERE event_type IN ('interaction.reply', 'link.click'))
            SELECT s.template, s.variant, t.button, count(*), count(DISTINCT t.contact_key), count(DISTINCT t.message_id)
            FROM taps t JOIN sends s USING (message_id) GROUP BY ALL""")
        theirs = {(r[0], r[1], r[2]): r[3:] for r in rows}
        ours = {(r["template"], r["variant"], r["button"]): (r["taps"], r["tappers"], r["messages_tapped"])
                for r in self.report(name="buttons")}
        self.assertEqual(ours, theirs)
        self.assertIn("(link)", {k[2] for k in ours})
        self.assertIn("Interested", {k[2] for k in ours})

    def test_pricing(self):
        # Each message's category, country and Meta pricing type from its send and billed
        # receipts (the type read with DuckDB's JSON operator), priced from the rate card's CSV
        # when billable.
        card = Path(__file__).resolve().parents[2] / "queries" / "rate_card.csv"
        rows = self.duck(f"""
            WITH billed AS (
                SELECT message_id, max(category) AS category, max(country) AS country,
                       max(attributes->>'pricing_type') AS pricing_type, bool_or(coalesce(billable, false)) AS billable,
                       bool_or(event_type IN ('message.delivered', 'message.read')) AS delivered,
                       bool_or(event_type = 'message.read') AS read
                FROM events WHERE event_type IN ('send.accepted', 'message.sent', 'message.delivered', 'message.read')
                GROUP BY ALL),
            card AS (SELECT * FROM read_csv('{card}', header = true)),
            clicks AS (
                SELECT DISTINCT CASE WHEN event_type = 'link.click' THEN coalesce(reply_to, message_id)
                                     ELSE reply_to END AS message_id
                FROM events WHERE event_type IN ('interaction.reply', 'link.click')),
            converted AS (
                SELECT DISTINCT s.message_id FROM sends s JOIN events c ON c.contact_key = s.contact_key
                WHERE c.event_type = 'conversion' AND c.occurred_at >= s.t0 AND c.occurred_at <= s.t0 + INTERVAL 7 DAY),
            priced AS (
                SELECT CAST(s.t0 AS DATE)::VARCHAR AS day, b.category, b.pricing_type, b.country, b.billable,
                       b.delivered, b.read, k.message_id IS NOT NULL AS clicked, v.message_id IS NOT NULL AS converted,
                       b.billable AND r.price IS NULL AND d.price IS NULL AS unpriced,
                       CASE WHEN b.billable THEN coalesce(r.price, d.price, 0) ELSE 0 END AS cost
                FROM sends s JOIN billed b USING (message_id)
                LEFT JOIN clicks k USING (message_id) LEFT JOIN converted v USING (message_id)
                LEFT JOIN card r ON r.category = b.category AND r.country = b.country
                LEFT JOIN card d ON d.category = b.category AND d.country = '*')
            SELECT day, category, pricing_type, country, count(*), count(*) FILTER (WHERE billable),
                   count(*) FILTER (WHERE delivered), count(*) FILTER (WHERE read), count(*) FILTER (WHERE clicked),
                   count(*) FILTER (WHERE converted), count(*) FILTER (WHERE unpriced), sum(cost)
            FROM priced GROUP BY ALL""")
        theirs = {tuple(r[:4]): r[4:] for r in rows}
        ours = {(r["day"], r["category"], r["pricing_type"], r["country"]): r for r in self.report(name="pricing")}
        self.assertEqual(set(ours), set(theirs))
        per = lambda cost, n: None if n == 0 else cost / n  # noqa: E731
        for key, (n, billable, delivered, read, clicked, converted, unpriced, cost) in theirs.items():
            r = ours[key]
            self.assertEqual(
                [r[c] for c in ["messages", "billable", "delivered", "read", "clicked", "converted", "unpriced",
                                "window_open"]],
                [n, billable, delivered, read, clicked, converted, unpriced, 0], key)
            self.assertAlmostEqual(r["cost"], cost, places=6)
            for column, count in [("cost_per_delivered", delivered), ("cost_per_read", read),
                                  ("cost_per_click", clicked), ("cost_per_conversion", converted)]:
                if count == 0:
                    self.assertIsNone(r[column], (key, column))
                else:
                    self.assertAlmostEqual(r[column], per(cost, count), places=6, msg=(key, column))
        self.assertTrue(any(r["clicked"] for r in ours.values()) and any(r["converted"] for r in ours.values()))
        self.assertEqual({k[2] for k in ours} - {None}, {"regular", "free_customer_service", "free_entry_point"})
        self.assertTrue(all(r["cost"] == 0 for k, r in ours.items() if k[2] not in ("regular", None)))

    def counts(self, key):
        """DuckDB's (sent, delivered, read, replied, failed, converted) per key(day)."""
        out = {}
        for day, *flags in self.messages:
            row = out.setdefault(key(day), [0] * 6)
            row[0] += 1
            for i, f in enumerate(flags):
                row[i + 1] += f
        return out

    def test_per_day_and_per_week(self):
        import datetime
        cols = ["sent", "delivered", "read", "replied", "failed", "converted"]
        for interval, key in [("day", lambda d: d),
                              ("week", lambda d: d - datetime.timedelta(days=d.weekday()))]:
            ours = {r["period"]: [r[c] for c in cols] for r in self.report("--interval", interval)}
            theirs = {str(k): v for k, v in self.counts(key).items()}
            self.assertEqual(ours, theirs, interval)
            self.assertTrue(all(r["window_open"] == 0 for r in self.report("--interval", interval)))

    def test_beside_the_period_before(self):
        days = {str(k): v for k, v in self.counts(lambda d: d).items()}
        rows = self.report("--from", "2026-01-08", "--to", "2026-01-11", "--compare", "previous")
        self.assertEqual([r["period"] for r in rows], ["2026-01-08", "2026-01-09", "2026-01-10", "2026-01-11"])
        for r in rows:
            self.assertEqual(r["sent"], days[r["period"]][0])
            before = days[r["previous_period"]]
            self.assertEqual(r["previous_sent"], before[0])
            self.assertAlmostEqual(r["previous_read_rate"], before[2] / before[0], places=5)
            self.assertAlmostEqual(r["sent_change"], (r["sent"] - before[0]) / before[0], places=5)
