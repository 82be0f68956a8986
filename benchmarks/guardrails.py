"""Guardrails latency: the default guardrail set (``aifab.gateway.guards.Guardrails`` with default settings)
on the requests the gateway sees, against the disabled set (``enabled=False``, the no-op) in the same run.

Inputs (deterministic): *typical*, chat requests of 2-8 KB over 4-10 messages (prose, code, a few e-mail
addresses and phone numbers, no attack); *long*, one 64 KB message (a pasted document); *adversarial*,
64 KB built to make regexes backtrack (digit runs, "@" runs, unterminated key blocks, repeated trigger
words). Output: a 2 KB answer through ``check_output`` and streamed in 4-character chunks.

    .venv/bin/python benchmarks/guardrails.py              # ~5 s
    .venv/bin/python benchmarks/guardrails.py --quick      # ~2 s
    .venv/bin/python benchmarks/guardrails.py --injection-corpus injections.jsonl   # + detection figures

``--injection-corpus``: a JSON-lines file with ``text`` and ``label`` ("malicious"/"benign") per row (the
bastioncorpus format); prints how many of each the injection guard blocks or only flags. Target: p99 of
``check_input`` ≤ 20 ms for the long input (the gateway calls it on the event loop). ``run()`` returns the
table as a dict for the gateway benchmark."""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "src"))
from inference import Contention, percentile  # noqa: E402 - shared benchmark helpers

from aifab.config import GuardrailSettings  # noqa: E402
from aifab.gateway.guards import Guardrails, InjectionGuard  # noqa: E402

TARGET_MS = 20.0
_PROSE = [
    "The quarterly report shows revenue growth in all regions, with the strongest results in northern Europe.",
    "Could you rewrite this paragraph so that it sounds friendlier but keeps every fact intact?",
    "We moved the meeting to Thursday at 10:30; the agenda is attached and version 2.4.1 of the slides too.",
    "In 1999 the company had 120 employees; by 2023-10-05 it had grown to 4,500 with offices in 12 countries.",
    "Please summarise the main arguments for and against remote work in a short table.",
    "The invoice total is $1,299.99 including VAT; payment is due within 30 days of 2024-01-15.",
    "Our support policy: tickets are answered within 24 hours, critical incidents within 2 hours.",
    "Contact jane.doe@example.com or call +44 20 7946 0958 if the shipment has not arrived by Friday.",
    "The system requirements list 8 GB of RAM and Python 3.11; ignore the warnings printed by pip.",
]
_CODE = [
    "def mean(xs: list[float]) -> float:\n    return sum(xs) / len(xs) if xs else 0.0\n",
    "for i, row in enumerate(rows):\n    if row['status'] != 'ok':\n        log.warning('row %d failed', i)\n",
    "SELECT id, name, created_at FROM users WHERE created_at > '2024-01-01' ORDER BY id LIMIT 100;\n",
    "async def fetch(client, url):\n    r = await client.get(url, timeout=10)\n    r.raise_for_status()\n    return r.json()\n",
]


def _paragraphs(rng: random.Random, size: int) -> str:
    parts: list[str] = []
    while sum(map(len, parts)) < size:
        parts.append(rng.choice(_CODE) if rng.random() < 0.3 else " ".join(rng.choices(_PROSE, k=3)))
    return "\n\n".join(parts)[:size]


def typical_requests(n: int, seed: int = 0) -> list[list[str]]:
    """``n`` chat requests of 2-8 KB in 4-10 messages."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        total, count = rng.randint(2048, 8192), rng.randint(4, 10)
        out.append([_paragraphs(rng, total // count) for _ in range(count)])
    return out


def long_request(seed: int = 1) -> list[str]:
    return [_paragraphs(random.Random(seed), 65536)]


def adversarial_request() -> list[str]:
    pieces = ["1" * 4096, "a@" * 2048, "-----BEGIN PRIVATE KEY-----" * 150, "ignore previous " * 256,
              "+1 " * 1365, "eyJ" * 1365, "you are " * 512, "http://a:" * 455, "DE89 " * 819]
    return ["".join(pieces)[:65536]]


Sample = tuple[float, float]  # (wall ms, CPU ms of this thread)


def _once(fn: Callable[[], object]) -> Sample:
    wall, cpu = time.perf_counter(), time.thread_time()
    fn()
    return (time.perf_counter() - wall) * 1000.0, (time.thread_time() - cpu) * 1000.0


def _time(fn: Callable[[], object], repeat: int) -> list[Sample]:
    fn()  # warm-up
    return [_once(fn) for _ in range(repeat)]


def _time_each(fn: Callable[[list[str]], object], requests: list[list[str]]) -> list[Sample]:
    fn(requests[0])  # warm-up
    return [_once(lambda r=request: fn(r)) for request in requests]  # type: ignore[misc]


def _stream(guards: Guardrails, text: str, chunk: int = 4) -> None:
    out = guards.output_stream()
    for i in range(0, len(text), chunk):
        out.feed(text[i:i + chunk])
    out.finish()


def run(quick: bool = False) -> dict[str, dict[str, float | None]]:
    """p50/p99 in ms of each case (wall, and CPU of this thread), default set and disabled set."""
    on, off = Guardrails(GuardrailSettings()), Guardrails(GuardrailSettings(enabled=False))
    typical = typical_requests(50 if quick else 300)
    long, adversarial = long_request(), adversarial_request()
    answer = _paragraphs(random.Random(7), 2048)
    repeat = 40 if quick else 200
    cases: dict[str, Callable[[Guardrails], list[Sample]]] = {
        "input typical (2-8 KB)": lambda g: _time_each(g.check_input, typical),
        "input long (64 KB)": lambda g: _time(lambda: g.check_input(long), repeat),
        "input adversarial (64 KB)": lambda g: _time(lambda: g.check_input(adversarial), repeat // 4),
        "output 2 KB (check_output)": lambda g: _time(lambda: g.check_output(answer), repeat),
        "output 2 KB streamed, 4-char chunks": lambda g: _time(lambda: _stream(g, answer), repeat // 4),
    }
    table: dict[str, dict[str, float | None]] = {}
    for name, measure in cases.items():
        a, b = measure(on), measure(off)
        wall, cpu = [w for w, _ in a], [c for _, c in a]
        table[name] = {"p50_ms": percentile(wall, 50), "p99_ms": percentile(wall, 99),
                       "cpu_p50_ms": percentile(cpu, 50), "cpu_p99_ms": percentile(cpu, 99),
                       "disabled_p50_ms": percentile([w for w, _ in b], 50),
                       "disabled_p99_ms": percentile([w for w, _ in b], 99)}
    return table


def injection_figures(path: Path) -> dict[str, dict[str, int]]:
    """Per label: rows, blocked (score ≥ threshold), flagged only (0 < score < threshold)."""
    guard = InjectionGuard()
    out: dict[str, dict[str, int]] = {}
    for line in path.read_text().splitlines():
        row = json.loads(line)
        score = guard.score(guard.scan(row["text"]))
        d = out.setdefault(row["label"], {"rows": 0, "blocked": 0, "flagged_only": 0})
        d["rows"] += 1
        d["blocked"] += score >= 1.0
        d["flagged_only"] += 0 < score < 1.0
    return out


_COLUMNS = ("p50_ms", "p99_ms", "cpu_p50_ms", "cpu_p99_ms", "disabled_p50_ms", "disabled_p99_ms")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="fewer repetitions")
    ap.add_argument("--injection-corpus", type=Path, help="JSON lines with text and label: detection figures")
    args = ap.parse_args()
    contention = Contention()
    table = run(args.quick)
    foreign = contention.end("run")
    print(f"{'case (ms)':38} " + " ".join(f"{c.removesuffix('_ms').replace('disabled', 'off'):>8}" for c in _COLUMNS))
    for name, row in table.items():
        print(f"{name:38} " + " ".join(f"{row[c] or 0.0:8.3f}" for c in _COLUMNS))
    p99 = table["input long (64 KB)"]["p99_ms"] or 0.0
    print(f"target: input long p99 ≤ {TARGET_MS} ms: {'met' if p99 <= TARGET_MS else 'MISSED'}"
          f" (other processes used {foreign:.2f} cores meanwhile; the CPU columns are what the guardrails"
          f" themselves took)")
    if args.injection_corpus:
        for label, counts in injection_figures(args.injection_corpus).items():
            print(f"injection corpus, {label}: {counts}")


if __name__ == "__main__":
    main()
