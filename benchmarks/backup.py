"""``aifab backup`` of a running server while clients query it: failed queries, backup time, and query latency
during backups against the same server with no backup running (the baseline), in one run.

    .venv/bin/python benchmarks/backup.py                 # 10k chunks; the first run ingests them (~16 min on a busy 2-core machine)
    .venv/bin/python benchmarks/backup.py --quick         # 1k chunks, shorter phases

The corpus: generated markdown files, one paragraph (one chunk) each, ingested once with the default embedding
model into a data directory cached under ``benchmarks/.cache/backup-<chunks>/`` (git-ignored); each run
copies it to ``--work-dir`` and starts ``aifab up`` there (no chat model). ``--clients`` threads post
``/v1/retrieve`` (hybrid, top 5) in a closed loop. Phases alternate, ``--rounds`` times: *idle* (queries
only, for ``--idle-seconds``) and *backup* (queries while ``POST /v1/admin/backup`` writes a .tar.gz, then
in the next pair a .tar; only queries that start and end inside the backup's window count). Prints a table
and writes ``benchmarks/results/backup.json``. Never part of the test run.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results" / "backup.json"
CACHE = HERE / ".cache"
CONFIG = '[models]\nchat = ""\n'
FORMATS = ("tar.gz", "tar")
WORDS = ("river mountain valley city bridge harbour forest glacier canal tower market castle island lake "
         "railway museum garden desert coast plateau festival library factory vineyard meadow").split()


def corpus_dir(chunks: int, log: Any) -> Path:
    """A data directory holding the collection ``bench`` of about ``chunks`` chunks (built once, then cached)."""
    root = CACHE / f"backup-{chunks}"
    if (root / ".complete").is_file():
        return root / "data"
    shutil.rmtree(root, ignore_errors=True)
    docs = root / "docs"
    docs.mkdir(parents=True)
    rng = random.Random(0)
    for i in range(chunks):
        words = " ".join(rng.choice(WORDS) for _ in range(40))
        (docs / f"doc{i:05d}.md").write_text(f"# Document {i}\n\nItem {i}: {words}.\n")
    log(f"ingesting {chunks} generated files once into {root / 'data'} (cached for later runs)...")
    t0 = time.perf_counter()
    (root / "aifab.toml").write_text(CONFIG)
    proc = subprocess.run([sys.executable, "-m", "aifab.cli.main", "ingest", str(docs), "--collection", "bench",
                           "--data-dir", str(root / "data"), "--config", str(root / "aifab.toml"), "--json"],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"ingest failed: {proc.stderr}")
    log(f"  ingested in {time.perf_counter() - t0:.0f}s")
    shutil.rmtree(docs)
    (root / ".complete").touch()
    return root / "data"


@dataclass
class Sample:
    start: float
    end: float
    ok: bool


@dataclass
class Load:
    """``clients`` threads querying ``url`` until stopped; every query's start, end and outcome."""

    url: str
    clients: int
    samples: list[Sample] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)

    def __enter__(self) -> Load:
        self._threads = [threading.Thread(target=self._client, args=(n,)) for n in range(self.clients)]
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for t in self._threads:
            t.join()

    def _client(self, n: int) -> None:
        rng = random.Random(n)
        with httpx.Client(timeout=60) as http:
            while not self._stop.is_set():
                query = " ".join(rng.choice(WORDS) for _ in range(3))
                t0 = time.perf_counter()
                try:
                    r = http.post(f"{self.url}/v1/retrieve", json={"collection": "bench", "query": query, "top_k": 5})
                    ok = r.status_code == 200 and len(r.json()["data"]) == 5
                    if not ok:
                        self.errors.append(f"{r.status_code} {r.text[:200]}")
                except httpx.HTTPError as exc:
                    ok = False
                    self.errors.append(repr(exc))
                self.samples.append(Sample(t0, time.perf_counter(), ok))

    def between(self, t0: float, t1: float) -> list[Sample]:
        return [s for s in list(self.samples) if s.start >= t0 and s.end <= t1]


def percentile(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100)[int(q) - 1] if len(values) > 1 else (values or [float("nan")])[0]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--chunks", type=int, default=10_000)
    p.add_argument("--clients", type=int, default=4)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--idle-seconds", type=float, default=20.0)
    p.add_argument("--work-dir", type=Path, default=Path("/tmp/aifab-bench-backup"))
    p.add_argument("--quick", action="store_true", help="1k chunks, 1 round, 5 s idle phases")
    args = p.parse_args()
    if args.quick:
        args.chunks, args.rounds, args.idle_seconds = 1000, 1, 5.0
    log = lambda m: print(m, file=sys.stderr, flush=True)  # noqa: E731
    from aifab.testing.server import RemoteAifabServer

    cached = corpus_dir(args.chunks, log)
    shutil.rmtree(args.work_dir, ignore_errors=True)
    data = args.work_dir / "data"
    shutil.copytree(cached, data)
    (args.work_dir / "aifab.toml").write_text(CONFIG)
    with RemoteAifabServer(data, args=["--config", str(args.work_dir / "aifab.toml")]) as server:
        token = (data / "server.token").read_text().strip()
        admin = httpx.Client(base_url=server.url, headers={"authorization": f"Bearer {token}"}, timeout=600)
        chunks = admin.get("/v1/admin/collections/bench").json()["chunks"]
        phases: dict[str, list[Sample]] = {"no backup running": []} | {f"during {f} backup": [] for f in FORMATS}
        backups: dict[str, list[dict[str, Any]]] = {f: [] for f in FORMATS}
        with Load(server.url, args.clients) as load:
            time.sleep(2.0)  # warm-up: the embedding model's first calls, the store's read connections
            for r in range(args.rounds):
                for fmt in FORMATS:  # idle, then a backup: the baseline and each format in every round
                    t0 = time.perf_counter()
                    time.sleep(args.idle_seconds)
                    phases["no backup running"] += load.between(t0, time.perf_counter())
                    t0 = time.perf_counter()
                    made = admin.post("/v1/admin/backup", json={"path": str(args.work_dir / f"backup{r}.{fmt}")})
                    t1 = time.perf_counter()
                    made.raise_for_status()
                    phases[f"during {fmt} backup"] += load.between(t0, t1)
                    backups[fmt].append({"seconds": t1 - t0, "bytes": made.json()["bytes"]})
                    log(f"round {r + 1}: .{fmt} backup {t1 - t0:.2f}s, {made.json()['bytes'] / 1e6:.1f} MB")
        admin.close()
    rows = {}
    for name, samples in phases.items():
        ms = [(s.end - s.start) * 1000 for s in samples if s.ok]
        rows[name] = {"queries": len(samples), "failed": sum(not s.ok for s in samples),
                      "p50_ms": percentile(ms, 50), "p95_ms": percentile(ms, 95)}
    result = {"chunks": chunks, "clients": args.clients, "rounds": args.rounds, "phases": rows,
              "backups": {f: {"seconds": [round(b["seconds"], 2) for b in bs], "mb": round(bs[-1]["bytes"] / 1e6, 1)}
                          for f, bs in backups.items()},
              "failed_total": len(load.errors), "errors": load.errors[:5]}
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2))
    print(f"\nbackup of {chunks} chunks while {args.clients} clients POST /v1/retrieve ({args.rounds} rounds)")
    print(f"{'phase':<26} {'queries':>8} {'failed':>7} {'p50 ms':>8} {'p95 ms':>8}")
    for name, row in rows.items():
        print(f"{name:<26} {row['queries']:>8} {row['failed']:>7} {row['p50_ms']:>8.1f} {row['p95_ms']:>8.1f}")
    for fmt, b in result["backups"].items():
        print(f".{fmt} backup: median {statistics.median(b['seconds']):.2f}s "
              f"(each: {', '.join(f'{x:.2f}' for x in b['seconds'])}), {b['mb']} MB")
    print(f"failed queries in the whole run: {len(load.errors)}")


if __name__ == "__main__":
    main()
