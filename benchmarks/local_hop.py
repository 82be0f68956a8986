"""The gateway's cost on this process's own models (the local hop), against the serving app alone.

    .venv/bin/python benchmarks/local_hop.py              # ~1 min on 2 cores
    .venv/bin/python benchmarks/local_hop.py --requests 700

In one process, over httpx's ASGI transport (no sockets), a fake engine answering 20 one-word tokens:
the serving app alone (the baseline), then the gateway in front of it with the guardrails off (answers
relayed untouched) and on (the default set: answers parsed, checked, re-encoded), each non-streamed and
streamed. Per request it reports the process's CPU time (the fastest of 7 blocks: other processes only
add to it) and the number of Python function calls (cProfile; deterministic, so before/after
comparisons hold on a busy machine too). The gateway's own cost is the difference to the baseline.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import logging
import pstats
import tempfile
import time
from typing import Any

import httpx

from aifab.config import load_settings
from aifab.gateway.front import Gateway
from aifab.gateway.guards import Guardrails
from aifab.serve import ModelPool, create_app
from aifab.testing import FakeEngine, FakeRuntime

MODES = ("serve alone", "gateway, guardrails off", "gateway, guardrails on")


async def measure(app: Any, stream: bool, requests: int) -> tuple[float, float]:
    """CPU µs and Python calls per request."""
    body = {"model": "chat", "messages": [{"role": "user", "content": "Say hello in five words."}],
            "max_tokens": 16, "temperature": 0, "stream": stream}
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://bench") as c:
        for _ in range(200):
            assert (await c.post("/v1/chat/completions", json=body)).status_code == 200
        profile = cProfile.Profile()
        profile.enable()
        for _ in range(100):
            await c.post("/v1/chat/completions", json=body)
        profile.disable()
        calls = pstats.Stats(profile).total_calls / 100  # type: ignore[attr-defined]
        blocks = []
        for _ in range(7):
            t0 = time.process_time()
            for _ in range(requests // 7):
                await c.post("/v1/chat/completions", json=body)
            blocks.append((time.process_time() - t0) / (requests // 7) * 1e6)
    return min(blocks), calls


async def main(requests: int) -> None:
    logging.disable(logging.WARNING)
    rows = []
    for stream in (False, True):
        base: tuple[float, float] | None = None
        for mode in MODES:
            settings = load_settings(data_dir=tempfile.mkdtemp(prefix="aifab-bench-"),
                                     gateway={"guardrails": {"enabled": mode.endswith("on")}, "audit": False})
            engine = FakeEngine("chat", FakeRuntime(" ".join(["word"] * 20), word_tokens=True))
            app: Any = create_app(ModelPool({"chat": engine}))
            if mode != "serve alone":
                app = Gateway(app, settings, guardrails=Guardrails(settings.gateway.guardrails))
            cpu, calls = await measure(app, stream, requests)
            engine.close()
            base = base or (cpu, calls)
            rows.append((("stream" if stream else "whole"), mode, cpu, calls, cpu - base[0], calls - base[1]))
    print(f"{'answer':7} {'stack':26} {'CPU µs/req':>11} {'calls/req':>10} {'gateway µs':>11} {'gateway calls':>14}")
    for answer, mode, cpu, calls, dcpu, dcalls in rows:
        print(f"{answer:7} {mode:26} {cpu:11.0f} {calls:10.0f} {dcpu:11.0f} {dcalls:14.0f}")


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--requests", type=int, default=1400, help="timed requests per row [default: %(default)s]")
    asyncio.run(main(ap.parse_args().requests))
