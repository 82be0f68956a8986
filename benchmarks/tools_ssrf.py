"""The SSRF guard of the web and OpenAPI tools: how many attack forms reach their target (target 0), and what
the guard costs on an allowed fetch against plain httpx to the same loopback server, measured in the same run.

Attack forms are ``aifab.testing.ssrf_attacks.ATTACKS`` (the test suite runs the same list): literal
addresses in every spelling, DNS answers, redirects, schemes and ports. Each is fired at a guard with default
settings whose DNS is fake and whose network sends every connection it lets through to one loopback listener
that records hits, so "reached" means the guard let a connection to a forbidden address through (or the
listener was hit), without a real private network. A public page is fetched as a control: it must reach.

The overhead is the p50 of a GET of a 1 KB page, guard (``allow_networks=["127.0.0.1/32"]``) against
``httpx.AsyncClient``, interleaved request by request, with a kept-alive connection and with a new
connection per request (``Connection: close``: the guard resolves and checks on every connection).

    .venv/bin/python benchmarks/tools_ssrf.py             # ~5 s
    .venv/bin/python benchmarks/tools_ssrf.py --forms     # + each form and why it was refused
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "src"))

import httpx  # noqa: E402
from aiohttp import web  # noqa: E402

from aifab.testing.loopback import serve  # noqa: E402
from aifab.testing.ssrf_attacks import ATTACKS, CONTROL, Outcome, attack_range  # noqa: E402
from aifab.tools.ssrf import GuardedHttp  # noqa: E402


async def fire_all() -> tuple[list[Outcome], Outcome]:
    async with attack_range() as r:
        outcomes = [await r.fire(attack) for attack in ATTACKS]
        control = await r.fire(CONTROL)
    return outcomes, control


async def overhead(requests: int, close: bool) -> tuple[float, float]:
    """p50 milliseconds of (guard, plain httpx) for one GET."""
    async def kilobyte(request: web.Request) -> web.Response:
        return web.Response(text="x" * 1024)

    page = web.Application()
    page.router.add_get("/", kilobyte)
    headers = {"Connection": "close"} if close else {}
    async with serve(page) as base:
        guard = GuardedHttp(allow_networks=["127.0.0.1/32"])
        plain = httpx.AsyncClient(trust_env=False)
        times: dict[str, list[float]] = {"guard": [], "plain": []}
        for i in range(requests + 10):  # the first 10 of each warm up
            for name in ("guard", "plain") if i % 2 else ("plain", "guard"):
                start = time.perf_counter()
                if name == "guard":
                    await guard.fetch(base + "/", headers=headers)
                else:
                    (await plain.get(base + "/", headers=headers)).raise_for_status()
                if i >= 10:
                    times[name].append((time.perf_counter() - start) * 1000)
        await guard.aclose()
        await plain.aclose()
    return statistics.median(times["guard"]), statistics.median(times["plain"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=200, help="timed requests per side and mode")
    parser.add_argument("--forms", action="store_true", help="print every attack form and its outcome")
    args = parser.parse_args(argv)

    outcomes, control = asyncio.run(fire_all())
    reached = [o for o in outcomes if o.reached or not o.refused]
    if args.forms:
        for o in outcomes:
            print(f"{'REACHED' if o in reached else 'refused':8} {o.attack.name:32} {o.message}")
        print()
    print("| SSRF attack forms | refused | reached the target (target 0) | control page fetched |")
    print("|---|---|---|---|")
    print(f"| {len(outcomes)} | {sum(o.refused for o in outcomes)} | {len(reached)} | "
          f"{'yes' if control.reached and not control.refused else 'NO: ' + control.message} |")
    for o in reached:
        print(f"  reached: {o.attack.name}: {o.attack.url} ({o.message})")

    print("\n| allowed GET of 1 KB, loopback | guard p50 ms | httpx p50 ms | overhead ms | ratio |")
    print("|---|---|---|---|---|")
    for mode, close in (("kept-alive connection", False), ("new connection each", True)):
        guarded, plain = asyncio.run(overhead(args.requests, close))
        print(f"| {mode} | {guarded:.3f} | {plain:.3f} | {guarded - plain:+.3f} | {guarded / plain:.2f} |")
    return 1 if reached or control.refused else 0


if __name__ == "__main__":
    sys.exit(main())
