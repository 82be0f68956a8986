"""``/mcp`` key scopes under attack: the forms in ``aifab.testing.mcp.ATTACKS`` (hidden tools by name
variants, a hidden built-in, collections outside the scope) against a key scoped to ``search`` over another
collection, through the official ``mcp`` client on a real loopback stack. Baseline, same run: the same
calls with an unscoped key, which must get answers (so a refusal is the scope's doing, not a broken call).

Run:  .venv/bin/python benchmarks/tools_mcp.py      (about 10 s; needs mcp-server-time)
"""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path

from aifab.testing.mcp import ATTACKS, SCOPED, mcp_client, mcp_stack, run_attacks


async def _baseline(url: str, secret: str) -> int:
    """How many attack calls an unscoped key gets answered (the calls themselves work)."""
    answered = 0
    async with mcp_client(url, secret) as client:
        names = {t.name for t in (await client.list_tools()).tools}
        for _, name, arguments in ATTACKS:
            if name in names and not (await client.call_tool(name, arguments)).is_error:
                answered += 1
    return answered


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp, mcp_stack(Path(tmp), {"scoped": SCOPED, "open": {}}) as (url, keys):
        outcomes = asyncio.run(run_attacks(url, keys["scoped"]))
        baseline = asyncio.run(_baseline(url, keys["open"]))
    width = max(len(what) for what, _ in outcomes)
    print(f"{'attack on a scoped key':<{width}}  outcome")
    for what, outcome in outcomes:
        print(f"{what:<{width}}  {outcome}")
    through = sum(outcome == "GOT THROUGH" for _, outcome in outcomes)
    print(f"\ngot through: {through} of {len(outcomes)}  (baseline, unscoped key: {baseline} of {len(ATTACKS)} "
          "calls answered; the rest name no tool or break the schema for anyone)")


if __name__ == "__main__":
    main()
