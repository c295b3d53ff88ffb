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
            (d / "clean.log").write_text("stored 3 events for contact_key 9f2c\n")
            self.assertEqual(self.scan(d).returncode, 0, self.scan(d).stderr)
            # A number from fixtures/meta, inside zstd Parquet where a byte search cannot see it.
            duckdb.connect().execute(
                f"COPY (SELECT '15550109876' AS contact, repeat('x', 1000) AS pad) TO '{d / 'leak.parquet'}' "
                "(FORMAT parquet, COMPRESSION zstd)")
            (d / "serve.log").write_text("inbound: Hi Dana, your spring offer is ready: SPRING20\n")
            r = self.scan(d)
            self.assertEqual(r.returncode, 1)
            self.assertIn("leak.parquet: contains '15550109876'", r.stderr)
            self.assertIn("serve.log: contains 'Hi Dana", r.stderr)


if __name__ == "__main__":
    unittest.main()
