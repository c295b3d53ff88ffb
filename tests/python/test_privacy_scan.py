"""The privacy scan (scripts/privacy_scan.py) finds a fixture's phone number or message text
in a plain file and inside a compressed Parquet file, and passes a clean directory."""

import subprocess
import sys
import tempfile
import unittest
from pathlib import Path

import duckdb

from support import ROOT

SCAN = [sys.executable, str(ROOT / "scripts" / "privacy_scan.py")]


class PrivacyScan(unittest.TestCase):
    def scan(self, d):
        return subprocess.run([*SCAN, str(d)], capture_output=True, text=True)

    def test_finds_planted_numbers_and_texts(self):
        with tempfile.TemporaryDirectory() as d:
            d = Path(d)
            # A cost whose float fraction happens to hold a fixture's number is not a leak.
            (d / "clean.log").write_text("stored 3 events for contact_key 9f2c\ncost 0.10999999999 and 2.15550109876\n")
            self.assertEqual(self.scan(d).returncode, 0, self.scan(d).stderr)
            # A number from fixtures/meta, inside zstd Parquet where a byte search cannot see it.
            duckdb.connect().execute(
                f"COPY (SELECT '15550109876' AS contact, repeat('x', 1000) AS pad) TO '{d / 'leak.parquet'}' "
                "(FORMAT parquet, COMPRESSION zstd)")
            (d / "serve.log").write_text("inbound: Hi Dana, your spring offer is ready: SPRING20\n")
            # The same digits after a plus, a space or a digit are a number, not a fraction.
            (d / "sent.log").write_text("to +15550109876 at 1.5\n")
            r = self.scan(d)
            self.assertEqual(r.returncode, 1)
            self.assertIn("leak.parquet: contains '15550109876'", r.stderr)
            self.assertIn("serve.log: contains 'Hi Dana", r.stderr)
            self.assertIn("sent.log: contains '15550109876'", r.stderr)
            self.assertNotIn("clean.log", r.stderr)


if __name__ == "__main__":
    unittest.main()
