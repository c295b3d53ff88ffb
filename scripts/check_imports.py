#!/usr/bin/env python3
"""Checks that data flows down: every `crate::` path in src/ names a module below its own.

The layers, bottom first, are the architecture `src/lib.rs` maps; a module may use modules of
lower layers only (and its own). On top of that, the HTTP server frameworks stay in the
modules that serve HTTP: nothing below `server` knows HTTP.

    scripts/check_imports.py            # the repository's src/
    scripts/check_imports.py DIR        # another tree's src/ (the tests use this)

Unit tests (`#[cfg(test)] mod tests` at the bottom of a file, or a module's `tests.rs`) are
not checked: a test may build its input with a module above.
"""

import re
import sys
from pathlib import Path

# Bottom first. A module may import the modules of lower layers only.
LAYERS = [
    ["error"],
    ["ids", "config", "util", "signature"],
    ["event", "experiments"],
    ["pii"],
    ["audit"],
    ["ingest", "rollup", "metrics", "wal"],
    ["store"],
    ["flush", "maintenance", "generate"],
    ["analytics"],
    ["render", "send", "cluster"],
    ["server"],
    ["sandbox"],
    ["demo"],
    ["cli"],
]
LAYER = {m: i for i, layer in enumerate(LAYERS) for m in layer}

# Edges the layers allow but the architecture does not: the sandbox stands in for a provider
# and talks to the collector over HTTP only, as a real provider does.
FORBIDDEN = {"sandbox": {"server", "ingest", "wal", "store", "flush", "analytics"}}

# Server-side HTTP: only these files and folders may use it.
HTTP_CRATES = ("axum", "hyper", "hyper_util", "tower", "tower_http")
HTTP_ALLOWED = ("server/", "sandbox/", "util/ceiling.rs", "demo.rs", "cli.rs")

CRATE_PATH = re.compile(r"\bcrate::(\w+)")
USE_GROUP = re.compile(r"\buse\s+crate::\{([^;]*)\}", re.S)
HTTP_USE = re.compile(r"\b(?:use\s+|::)?(" + "|".join(HTTP_CRATES) + r")::")


def code_of(path):
    """The file's code without comments, string literals and its unit tests."""
    if path.name == "tests.rs":
        return ""
    text = path.read_text()
    cut = re.search(r"^#\[cfg\(test\)\]\s*\nmod tests\b", text, re.M)
    if cut:
        text = text[: cut.start()]
    text = re.sub(r"//[^\n]*", "", text)
    text = re.sub(r'"(?:\\.|[^"\\])*"', '""', text)
    return text


def module_of(src, path):
    rel = path.relative_to(src)
    if len(rel.parts) == 1:
        return rel.stem
    return rel.parts[0]


def violations(src):
    src = Path(src)
    out = []
    for path in sorted(src.rglob("*.rs")):
        me = module_of(src, path)
        if me in ("lib", "main"):
            continue
        rel = path.relative_to(src).as_posix()
        if me not in LAYER:
            out.append(f"{rel}: module {me!r} has no layer in scripts/check_imports.py")
            continue
        code = code_of(path)
        used = set(CRATE_PATH.findall(code))
        for group in USE_GROUP.findall(code):
            used.update(re.findall(r"(?:^|,)\s*(\w+)", group))
        for other in sorted(used):
            if other == me or other in ("Error", "Result", "self"):
                continue
            if other not in LAYER:
                continue
            if other in FORBIDDEN.get(me, ()):
                out.append(f"{rel}: {me} uses crate::{other}; it reaches the collector over HTTP only")
            elif LAYER[other] >= LAYER[me]:
                out.append(f"{rel}: {me} (layer {LAYER[me]}) uses crate::{other} (layer {LAYER[other]}), "
                           f"which is not below it")
        if not rel.startswith(HTTP_ALLOWED):
            for crate in sorted(set(HTTP_USE.findall(code))):
                out.append(f"{rel}: uses {crate}, but only {', '.join(HTTP_ALLOWED)} may serve HTTP")
    return out


def main():
    root = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parent.parent
    found = violations(root / "src")
    for v in found:
        print(v)
    if found:
        print(f"{len(found)} import(s) against the layers (scripts/check_imports.py)")
        return 1
    print(f"imports follow the layers ({sum(len(l) for l in LAYERS)} modules)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
