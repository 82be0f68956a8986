"""False positives of the unlabelled-key detector (the secrets guard's ``high_entropy`` rule) on the Python
3.11 documentation, and its recall on random keys, in one run.

Corpus: every page of ``python3.11-doc`` (fetched into ``benchmarks/.cache`` by ``corpora.py`` when missing):
the reStructuredText sources (``_sources/**/*.rst.txt``, 497 pages) and the rendered HTML pages (``**/*.html``,
tags, scripts and styles stripped). The documentation holds no live credential, so every finding is counted
as a false positive, even where it is a key printed as an example (``hashlib``'s BLAKE2 key, the output of
``secrets.token_urlsafe``): the listing says which. Recall: 2,000 random strings per alphabet (base64,
URL-safe base64, letters and digits) and length (20, 24, 32, 40, 64, 88), seeded, that hold an upper-case
letter, a lower-case letter and a digit (what the rule asks of a key), each inside a sentence.

    .venv/bin/python benchmarks/secrets_fp.py            # ~30 s
    .venv/bin/python benchmarks/secrets_fp.py --list     # also print each finding with its page

Target: ≤ 1 false positive per 100 pages (reST sources)."""

from __future__ import annotations

import argparse
import html
import random
import re
import string
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "src"))
from corpora import DEFAULT_CACHE, PYTHON_DOCS_PACKAGE, CorpusUnavailable, list_files, python_docs  # noqa: E402

from aifab.gateway.guards import SecretsGuard  # noqa: E402

TARGET_PER_100 = 1.0
_SCRIPT = re.compile(r"<(script|style)\b.*?</\1>", re.S | re.I)
_TAG = re.compile(r"<[^>]+>")
ALPHABETS = {"base64": string.ascii_letters + string.digits + "+/", "base64url": string.ascii_letters + string.digits
             + "-_", "alnum": string.ascii_letters + string.digits}
LENGTHS = (20, 24, 32, 40, 64, 88)


def page_text(path: Path) -> str:
    text = path.read_text(errors="replace")
    if path.suffix == ".html":
        text = html.unescape(_TAG.sub(" ", _SCRIPT.sub(" ", text)))
    return text


def false_positives(files: list[Path], guard: SecretsGuard) -> list[tuple[Path, str]]:
    """(page, token) for every ``high_entropy`` finding."""
    out = []
    for path in files:
        text = page_text(path)
        out.extend((path, text[f.start:f.end]) for f in guard.scan(text) if f.category == "high_entropy")
    return out


def random_keys(alphabet: str, length: int, n: int, rng: random.Random) -> list[str]:
    keys: list[str] = []
    while len(keys) < n:
        key = "".join(rng.choice(alphabet) for _ in range(length))
        if any(c.islower() for c in key) and any(c.isupper() for c in key) and any(c.isdigit() for c in key):
            keys.append(key)
    return keys


def recall(guard: SecretsGuard, n: int = 2000, seed: int = 0) -> dict[tuple[str, int], float]:
    rng = random.Random(seed)
    out = {}
    for name, alphabet in ALPHABETS.items():
        for length in LENGTHS:
            keys = random_keys(alphabet, length, n, rng)
            hits = sum(any(f.category == "high_entropy" for f in guard.scan(f"the key is {k} for prod")) for k in keys)
            out[(name, length)] = hits / n
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    ap.add_argument("--list", action="store_true", help="print each finding with its page")
    args = ap.parse_args()
    try:
        sources = python_docs(args.cache)
    except CorpusUnavailable as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    guard = SecretsGuard()
    html_root = args.cache / PYTHON_DOCS_PACKAGE / "usr/share/doc/python3.11/html"
    corpora = {"reST sources": list_files(sources).files, "HTML pages": list_files(html_root, "*.html").files}
    print(f"{'corpus':14} {'pages':>6} {'MB':>6} {'findings':>9} {'pages hit':>9} {'per 100 pages':>14} {'scan s':>7}")
    figures = {}
    for name, files in corpora.items():
        t0 = time.perf_counter()
        found = false_positives(files, guard)
        took = time.perf_counter() - t0
        per_100 = 100 * len(found) / len(files)
        figures[name] = per_100
        size = sum(f.stat().st_size for f in files) / 1e6
        print(f"{name:14} {len(files):6} {size:6.1f} {len(found):9} {len({p for p, _ in found}):9} {per_100:14.2f}"
              f" {took:7.1f}")
        if args.list:
            for path, token in found:
                print(f"    {path.relative_to(html_root)}: {token}")
    rates = recall(guard)
    print("recall on random keys (share caught), by length: " + ", ".join(f"{n}" for n in LENGTHS))
    for name in ALPHABETS:
        print(f"  {name:10} " + " ".join(f"{rates[(name, n)]:.3f}" for n in LENGTHS))
    met = figures["reST sources"] <= TARGET_PER_100
    print(f"target: ≤ {TARGET_PER_100:g} false positive per 100 pages (reST sources, findings): "
          f"{'met' if met else 'MISSED'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
