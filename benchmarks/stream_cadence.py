"""Streaming cadence as a client sees it: the default output guardrails against guardrails off and against
the upstream alone, in one run.

A fake upstream streams a 64-word prose answer at a fixed pace (one word a token, ``--tokens-per-s``); three
targets are read by the same client: ``direct`` (the upstream itself), ``aifab`` (``aifab up`` with one
remote route and the default guardrails: output secrets redacted, PII flagged) and ``aifab-noguard`` (the
same with ``gateway.guardrails.enabled = false``). Per request: time to the first *text* (the first
non-empty content delta, what a chat UI can show), and the number of non-empty content deltas.

    .venv/bin/python benchmarks/stream_cadence.py            # ~1 min
    .venv/bin/python benchmarks/stream_cadence.py --quick

Figures (issue targets): non-empty content deltas aifab ÷ aifab-noguard ≥ 0.9; added time to first text,
aifab - direct, p50 ≤ 2 ms. ``run()`` returns the table for ``benchmarks/gateway.py``."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import orjson

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "src"))

from aifab.testing import FakeUpstream  # noqa: E402
from aifab.testing.server import RemoteAifabServer  # noqa: E402

PROSE = ("The sea rolls in under a grey sky and the gulls call over the harbour while the boats rock gently at "
         "their moorings, waiting for the tide to turn and the wind to rise before the long night comes down "
         "over the water and the lights of the town begin to shine one by one along the quay where the old "
         "men sit and talk about the storms of other years and the ships that never came home again.")
CONFIG = """[models]
chat = ""
embedding = ""

[gateway.guardrails]
enabled = {enabled}

[gateway.routes.fake]
upstreams = [{{ url = "{url}" }}]
"""


async def _one(session: aiohttp.ClientSession, url: str) -> tuple[float, int, str]:
    """(ms to the first non-empty content delta, how many non-empty content deltas, the text)."""
    body = {"model": "fake", "messages": [{"role": "user", "content": "Describe the sea."}], "max_tokens": 64,
            "stream": True}
    t0 = time.perf_counter()
    first, pieces = None, []
    async with session.post(f"{url}/chat/completions", json=body) as resp:
        resp.raise_for_status()
        async for line in resp.content:
            if not line.startswith(b"data: {"):
                continue
            for choice in orjson.loads(line[6:]).get("choices") or []:
                text = (choice.get("delta") or {}).get("content")
                if text:
                    first = first if first is not None else (time.perf_counter() - t0) * 1000
                    pieces.append(text)
    assert first is not None, "a stream without text"
    return first, len(pieces), "".join(pieces)


async def _measure(url: str, n: int) -> dict[str, Any]:
    async with aiohttp.ClientSession() as session:
        await _one(session, url)  # warm-up
        runs = [await _one(session, url) for _ in range(n)]
    ttft = [r[0] for r in runs]
    return {"ttft_p50_ms": statistics.median(ttft), "ttft_p90_ms": sorted(ttft)[int(0.9 * (len(ttft) - 1))],
            "content_deltas": statistics.median(r[1] for r in runs), "text": runs[-1][2]}


def run(quick: bool = False, tokens_per_s: float = 50.0, work_dir: Path | None = None) -> dict[str, Any]:
    n = 5 if quick else 20
    work = Path(work_dir or tempfile.mkdtemp(prefix="aifab-cadence-"))
    table: dict[str, Any] = {}
    with contextlib.ExitStack() as stack:
        upstream = stack.enter_context(FakeUpstream(reply=PROSE, tokens_per_s=tokens_per_s))
        urls = {"direct": upstream.url}
        for name, enabled in (("aifab", "true"), ("aifab-noguard", "false")):
            cfg = work / f"{name}.toml"
            cfg.write_text(CONFIG.format(enabled=enabled, url=upstream.url))
            srv = stack.enter_context(RemoteAifabServer(work / name, args=["--config", str(cfg)]))
            urls[name] = f"{srv.url}/v1"
        for name, url in urls.items():
            table[name] = asyncio.run(_measure(url, n))
    base, on, off = table["direct"], table["aifab"], table["aifab-noguard"]
    assert on["text"] == off["text"] == base["text"], "the answers differ"
    table["ratios"] = {
        "content_deltas_guarded_over_off": on["content_deltas"] / off["content_deltas"],
        "added_ttft_p50_ms_guarded_vs_direct": on["ttft_p50_ms"] - base["ttft_p50_ms"],
        "added_ttft_p50_ms_noguard_vs_direct": off["ttft_p50_ms"] - base["ttft_p50_ms"],
    }
    return table


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="5 requests per target instead of 20")
    ap.add_argument("--tokens-per-s", type=float, default=50.0, help="the upstream's pace [default: %(default)s]")
    args = ap.parse_args()
    table = run(args.quick, args.tokens_per_s)
    print(f"{'target':<15} {'TTFT p50 ms':>12} {'TTFT p90 ms':>12} {'content deltas':>15}")
    for name in ("direct", "aifab", "aifab-noguard"):
        r = table[name]
        print(f"{name:<15} {r['ttft_p50_ms']:>12.2f} {r['ttft_p90_ms']:>12.2f} {r['content_deltas']:>15.0f}")
    ratios = table["ratios"]
    print(f"content deltas, default guardrails ÷ off: {ratios['content_deltas_guarded_over_off']:.2f} (target ≥ 0.9)")
    print(f"added TTFT p50, default guardrails vs upstream alone: {ratios['added_ttft_p50_ms_guarded_vs_direct']:.2f} ms"
          f" (target ≤ 2 ms; guardrails off: {ratios['added_ttft_p50_ms_noguard_vs_direct']:.2f} ms)")
    out = HERE / "results" / "stream_cadence.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps({k: {kk: vv for kk, vv in v.items() if kk != "text"} for k, v in table.items()},
                              indent=2))


if __name__ == "__main__":
    main()
