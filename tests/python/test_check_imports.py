"""scripts/check_imports.py holds the tree to its layers, and would catch an import against them."""

import subprocess
import sys
import tempfile
import unittest
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent
SCRIPT = ROOT / "scripts" / "check_imports.py"


def run(root):
    return subprocess.run([sys.executable, str(SCRIPT), str(root)], capture_output=True, text=True)


class CheckImports(unittest.TestCase):
    def test_the_tree_follows_its_layers(self):
        r = run(ROOT)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)

    def tree(self, files):
        d = tempfile.TemporaryDirectory()
        self.addCleanup(d.cleanup)
        for name, text in files.items():
            p = Path(d.name) / "src" / name
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_text(text)
        return Path(d.name)

    def test_an_import_up_the_layers_is_caught(self):
        root = self.tree({
            "wal/mod.rs": "use crate::event::Event;\nuse crate::server::App;\n",
            "sandbox/mod.rs": "fn f() { crate::ingest::parse(); }\n",
            "rollup/mod.rs": "use crate::{error::Result, analytics::id_key};\n",
        })
        r = run(root)
        self.assertEqual(r.returncode, 1, r.stdout)
        self.assertIn("wal/mod.rs: wal (layer", r.stdout)
        self.assertIn("crate::server", r.stdout)
        self.assertIn("crate::analytics", r.stdout)
        self.assertNotIn("crate::event", r.stdout)
        # The sandbox sits above ingest in the layers, but talks to the collector over HTTP only:
        # its rule is that it uses neither server nor ingest, which the layers alone allow.
        self.assertIn("sandbox/mod.rs: sandbox", r.stdout)

    def test_http_outside_the_server_is_caught(self):
        root = self.tree({"store/mod.rs": "use axum::Router;\n", "server/mod.rs": "use axum::Router;\n"})
        r = run(root)
        self.assertEqual(r.returncode, 1, r.stdout)
        self.assertIn("store/mod.rs: uses axum", r.stdout)
        self.assertNotIn("server/mod.rs", r.stdout)

    def test_tests_and_comments_are_not_imports(self):
        root = self.tree({"wal/mod.rs": "// crate::server is above\nfn f() {}\n#[cfg(test)]\nmod tests {\n    use crate::server::App;\n}\n"})
        self.assertEqual(run(root).returncode, 0)


if __name__ == "__main__":
    unittest.main()
