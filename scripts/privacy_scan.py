#!/usr/bin/env python3
"""Privacy scan: no phone number or message text from any fixture may appear in what the test
suite left behind: data directories, write-ahead logs, Parquet files and server logs.

    scripts/privacy_scan.py DIR [DIR ...]

Phone numbers and texts are read out of every fixture under fixtures/ (JSON, NDJSON, CSV).
Parquet files are decoded (their pages are compressed, so a byte search would prove nothing)
and every value is searched; every other file is searched as bytes. Exits 1 naming each file
and what it contains.
"""

import csv
import json
import re
import sys
from pathlib import Path
from urllib.parse import parse_qsl

ROOT = Path(__file__).resolve().parents[1]
# Keys whose values are customers' numbers, and keys whose values are what people wrote.
PHONE_KEYS = {"wa_id", "from", "to", "recipient_id", "contact", "phone", "number", "display_phone_number"}
# Button and list titles are the brand's own words, not the customer's, and are kept as
# attributes; provider error texts are not personal either.
TEXT_KEYS = {"body", "caption", "name", "pushname"}
SKIP_UNDER = {"errors", "error_data"}
MIN_TEXT = 6


def walk(value, key, phones, texts):
    if key in SKIP_UNDER:
        return
    if isinstance(value, dict):
        for k, v in value.items():
            walk(v, k, phones, texts)
    elif isinstance(value, list):
        for v in value:
            walk(v, key, phones, texts)
    elif isinstance(value, str):
        if key in PHONE_KEYS:
            for run in re.findall(r"\d{8,15}", value):
                phones.add(run)
        elif key in TEXT_KEYS and len(value) >= MIN_TEXT and " " in value.strip():
            texts.add(value)


# Twilio's form parameters by what they hold.
FORM_PHONES = {"From", "To", "WaId"}
FORM_TEXTS = {"Body", "ProfileName"}


def request_body(doc, phones, texts):
    """A provider fixture's request body (fixtures/providers/): JSON or a Twilio form."""
    body = doc.pop("body", "")
    if "json" in doc.get("content_type", ""):
        walk(json.loads(body), "", phones, texts)
        return
    params = dict(parse_qsl(body, keep_blank_values=True))
    for k, v in params.items():
        if k in FORM_PHONES:
            walk(v, "phone", phones, texts)
        # A quick-reply tap's body is its button's title, the brand's words (kept, as Meta's).
        elif k in FORM_TEXTS and v != params.get("ButtonText"):
            walk(v, "body", phones, texts)


def secrets():
    phones, texts = set(), set()
    for f in sorted((ROOT / "fixtures").rglob("*")):
        if f.name == "ab_vectors.json":  # statistics test vectors, no messages
            continue
        if f.suffix == ".json":
            try:
                doc = json.loads(f.read_text())
                if isinstance(doc, dict) and "rows" in doc and isinstance(doc.get("body"), str):
                    request_body(doc, phones, texts)
                walk(doc, "", phones, texts)
            except (ValueError, UnicodeDecodeError, RecursionError):
                pass  # the hostile corpus: not JSON on purpose
        elif f.suffix == ".ndjson":
            for line in f.read_bytes().splitlines():
                try:
                    walk(json.loads(line), "", phones, texts)
                except (ValueError, UnicodeDecodeError, RecursionError):
                    pass
        elif f.suffix == ".csv":
            for row in csv.DictReader(f.read_text().splitlines()):
                for k, v in row.items():
                    walk(v, k, phones, texts)
    return phones, texts


def leaks(data, needle, is_number):
    """Whether `needle` is in `data`. A number counts unless every place it appears is inside
    the fraction of a decimal (a cost of 0.10999999999 holds a fixture's 9999999999 by chance;
    a stored phone number is never right after a decimal point and its digits)."""
    if not is_number:
        return needle in data
    at = data.find(needle)
    while at >= 0:
        start = at
        while start > 0 and data[start - 1:start].isdigit():
            start -= 1
        in_fraction = start >= 2 and data[start - 1:start] == b"." and data[start - 2:start - 1].isdigit()
        if not in_fraction:
            return True
        at = data.find(needle, at + 1)
    return False


def parquet_text(path, con):
    # Every column as text: timestamps with time zones would otherwise need pytz.
    rows = con.execute("SELECT CAST(COLUMNS(*) AS VARCHAR) FROM read_parquet(?)", [str(path)]).fetchall()
    return "\n".join("\t".join("" if v is None else str(v) for v in r) for r in rows).encode()


def main():
    dirs = [Path(d) for d in sys.argv[1:]]
    if not dirs:
        sys.exit(__doc__)
    phones, texts = secrets()
    if len(phones) < 3 or len(texts) < 2:
        sys.exit(f"found too few secrets in fixtures/ to mean anything: {phones} {texts}")
    needles = [(p, p.encode(), True) for p in sorted(phones)] + [(t, t.encode(), False) for t in sorted(texts)]
    import duckdb
    con = duckdb.connect()
    found, scanned, parquet = [], 0, 0
    for d in dirs:
        for f in sorted(d.rglob("*")):
            if not f.is_file() or f.is_symlink():
                continue
            try:
                data = parquet_text(f, con) if f.suffix == ".parquet" else f.read_bytes()
            except Exception as e:  # noqa: BLE001 - a file we cannot read is a failure, named
                found.append(f"{f}: cannot read ({e})")
                continue
            scanned += 1
            parquet += f.suffix == ".parquet"
            for label, n, is_number in needles:
                if leaks(data, n, is_number):
                    found.append(f"{f}: contains {label!r}")
    print(f"privacy scan: {len(phones)} phone numbers and {len(texts)} texts from fixtures/, "
          f"{scanned} files ({parquet} Parquet) under {', '.join(map(str, dirs))}")
    if found:
        print("FOUND:\n  " + "\n  ".join(found[:50]), file=sys.stderr)
        sys.exit(1)
    print("privacy scan: nothing found")


if __name__ == "__main__":
    main()
