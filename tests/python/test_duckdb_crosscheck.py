"""DuckDB reads convoscope's Parquet on its own and gets the same funnel and experiment counts.

This proves the stored files are standard hive-partitioned Parquet, and gives the report SQL an
independent second implementation. It drives the real binary: `serve`, the fixture posted over
HTTP, SIGTERM (which must flush and exit 0), then `report ... --format json`.
"""

import json
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
        self.assertEqual(n, 32)
        self.assertEqual(distinct, 32)
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


if __name__ == "__main__":
    unittest.main()
