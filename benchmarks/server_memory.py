"""Peak RSS of ``aifab up`` with both default models, through a round trip that wakes every model the
server holds: a chat completion, ``/v1/embeddings``, an ingest over HTTP (the corpus embedder) and
``/v1/retrieve`` (query embedding and the maxsim reranker's token vectors).

The baseline is the same server from another source tree (``--baseline-src``, e.g. a worktree of the
commit before a change), measured in the same run, one server at a time. Peak RSS is the kernel's
high-water mark of the server process (``VmHWM``), and also the largest of psutil's samples every 50 ms.

    .venv/bin/python benchmarks/server_memory.py --baseline-src /path/to/old/src   # ~1 min per server
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from inference import RssMonitor, free_port  # noqa: E402 - a sibling benchmark script

HERE = Path(__file__).resolve().parents[1] / "src"
DOC = "\n\n".join(
    f"## Topic {i}\n\nThe standard library module number {i} reads files line by line, keeps a cache of "
    f"recent entries and documents every argument it takes, with examples for case {i}." for i in range(40)
)


def vm_hwm(pid: int) -> int:
    """The kernel's peak resident set size of ``pid`` in bytes (Linux)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return 0


def measure(src: Path, work: Path) -> dict[str, Any]:
    import subprocess

    import httpx

    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {**os.environ, "PYTHONPATH": str(src), "AIFAB_SERVE__LOG_LEVEL": "warning"}
    log = open(work / "server.log", "wb")  # noqa: SIM115 - closed with the process
    proc = subprocess.Popen([sys.executable, "-m", "aifab.cli.main", "up", "--port", str(port), "--data-dir",
                             str(work / "data")], stdout=log, stderr=subprocess.STDOUT, env=env, cwd=work)
    mon = RssMonitor(proc.pid, interval=0.05).start()
    try:
        with httpx.Client(base_url=base, timeout=300) as c:
            deadline = time.monotonic() + 300
            while True:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError((work / "server.log").read_text(errors="replace"))
                try:
                    if c.get("/readyz").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                time.sleep(0.2)
            time.sleep(1)
            out: dict[str, Any] = {"idle_rss": mon.sample()}
            c.post("/v1/chat/completions", json={"model": "smollm2-135m-instruct", "max_tokens": 8,
                                                 "messages": [{"role": "user", "content": "Hi"}]}).raise_for_status()
            c.post("/v1/embeddings", json={"model": "all-minilm-l6-v2", "input": ["warm up"]}).raise_for_status()
            r = c.post("/v1/collections/docs/documents?wait=true", files={"file": ("doc.md", DOC.encode())})
            r.raise_for_status()
            r = c.post("/v1/retrieve", json={"collection": "docs", "query": "read a file line by line"})
            r.raise_for_status()
            assert r.json()["data"], r.text
            time.sleep(0.2)
            out["after_rss"] = mon.sample()
            out["peak_sampled"] = mon.peak
            out["peak_hwm"] = vm_hwm(proc.pid)
            return out
    finally:
        mon.stop()
        proc.terminate()
        proc.wait(timeout=30)
        log.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--baseline-src", type=Path, help="the baseline's src/ folder (measured first)")
    ap.add_argument("--src", type=Path, default=HERE, help="the src/ folder measured [default: this checkout]")
    args = ap.parse_args()
    runs = [("baseline", args.baseline_src)] if args.baseline_src else []
    runs.append(("aifab", args.src))
    results = {}
    for name, src in runs:
        with tempfile.TemporaryDirectory(prefix="aifab-mem-") as tmp:
            print(f"measuring {name} ({src})...", file=sys.stderr)
            results[name] = measure(src, Path(tmp))
    mib = 2**20
    print(f"{'server':<10} {'idle MiB':>9} {'after MiB':>10} {'peak (VmHWM) MiB':>17} {'peak (sampled) MiB':>19}")
    for name, r in results.items():
        print(f"{name:<10} {r['idle_rss'] / mib:>9.0f} {r['after_rss'] / mib:>10.0f} {r['peak_hwm'] / mib:>17.0f} "
              f"{r['peak_sampled'] / mib:>19.0f}")
    if "baseline" in results:
        drop = results["baseline"]["peak_hwm"] - results["aifab"]["peak_hwm"]
        print(f"peak RSS drop: {drop / mib:.0f} MiB ({drop / results['baseline']['peak_hwm']:.1%})")


if __name__ == "__main__":
    main()
