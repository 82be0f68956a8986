"""The ``sql`` tool's security and cost, on SQLite and on PostgreSQL (same run, same machine).

1. The attack set (``aifab.testing.sql_attacks``: writes, stacked statements, comment and unicode tricks,
   ATTACH/PRAGMA/COPY, file and network functions, tables off the allow-list, an endless query) through
   the tool: how many changed the database (a snapshot before and after each; target 0) and how many
   were refused (or stopped at the time limit; target all).
2. p50 latency of one small allowed query through the tool (parse + check + read-only session) ÷ the
   same query on the driver directly (sqlite3; psycopg on an open connection): the overhead ratio.

Run:  .venv/bin/python benchmarks/tools_sql.py [--calls 300]
PostgreSQL: a private throw-away cluster (``aifab.testing.postgres``); skipped, with a line, when it is not
installed.
"""

from __future__ import annotations

import argparse
import asyncio
import sqlite3
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from aifab.config import SqlToolSettings
from aifab.testing.sql_attacks import (
    ALLOWED,
    ATTACKS,
    make_postgres,
    make_sqlite,
    postgres_snapshot,
    run_attacks,
    sqlite_snapshot,
)
from aifab.tools import Toolbox
from aifab.tools.connectors.sql import open_sql


async def p50_ms(calls: int, one: Callable[[], Awaitable[Any]]) -> float:
    for _ in range(10):  # warm-up
        await one()
    times = []
    for _ in range(calls):
        start = time.perf_counter()
        await one()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3


async def measure(url: str, snapshot: Callable[[], str], direct: Callable[[], Awaitable[Any]],
                  query: str, calls: int) -> dict[str, Any]:
    (tool,) = await open_sql("shop", SqlToolSettings(kind="sql", url=url, tables=ALLOWED, timeout_s=1.0))
    box = Toolbox([tool], limits={"shop": (5.0, 8000)})
    changed = refused = 0
    try:
        for attack in ATTACKS:
            before = snapshot()
            outcome = await _one_attack(box, attack)
            changed += snapshot() != before
            refused += outcome
        tool_ms = await p50_ms(calls, lambda: box.call("shop", {"query": query, "params": [1]}))
        direct_ms = await p50_ms(calls, direct)
    finally:
        await box.aclose()
    return {"attacks": len(ATTACKS), "changed": changed, "refused": refused, "tool_ms": tool_ms,
            "direct_ms": direct_ms, "ratio": tool_ms / direct_ms}


async def _one_attack(box: Toolbox, attack: tuple[str, str, list[Any]]) -> bool:
    (outcome,) = await run_attacks(box, "shop", [attack])
    return outcome.refused


async def sqlite_side(work: Path, calls: int) -> dict[str, Any]:
    path = make_sqlite(work / "shop.db")
    conn = sqlite3.connect(path)
    query = "SELECT name, email FROM users WHERE id = ?"

    async def direct() -> Any:
        return conn.execute(query, (1,)).fetchall()

    try:
        return await measure(f"sqlite:///{path}", lambda: sqlite_snapshot(path), direct, query, calls)
    finally:
        conn.close()


async def postgres_side(calls: int) -> dict[str, Any] | str:
    from aifab.testing.postgres import PrivatePostgres, find_bindir

    bindir = find_bindir()
    if bindir is None:
        return "skipped: PostgreSQL is not installed (sudo apt-get install postgresql)"
    import psycopg

    server = PrivatePostgres(bindir)
    server.start()
    try:
        url = server.new_database()
        make_postgres(url)
        conn = await psycopg.AsyncConnection.connect(url.replace("+psycopg", ""), autocommit=True)
        query = "SELECT name, email FROM users WHERE id = $1"

        async def direct() -> Any:
            return await (await conn.execute("SELECT name, email FROM users WHERE id = %s", (1,))).fetchall()

        try:
            return await measure(url, lambda: postgres_snapshot(url), direct, query, calls)
        finally:
            await conn.close()
    finally:
        server.stop()


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--calls", type=int, default=300, help="timed calls per side [%(default)s]")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="aifab-bench-sql-") as work:
        results: dict[str, Any] = {"SQLite": await sqlite_side(Path(work), args.calls),
                                   "PostgreSQL": await postgres_side(args.calls)}
    print(f"{'database':<11} {'attacks':>7} {'changed':>8} {'refused':>8} {'tool p50':>9} {'direct p50':>11} {'ratio':>6}")
    for name, r in results.items():
        if isinstance(r, str):
            print(f"{name:<11} {r}")
            continue
        print(f"{name:<11} {r['attacks']:>7} {r['changed']:>8} {r['refused']:>8} {r['tool_ms']:>7.2f}ms "
              f"{r['direct_ms']:>9.3f}ms {r['ratio']:>6.1f}")
    print("target: changed 0, refused = attacks; ratio is the tool's cost per call over the bare driver")


if __name__ == "__main__":
    asyncio.run(main())
