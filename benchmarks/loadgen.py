"""Load generators for HTTP benchmarks: a closed-loop asyncio client for latency, wrk for throughput.

``latency_run`` opens ``concurrency`` keep-alive connections (aiohttp) with one untimed request each,
then keeps ``concurrency`` requests in flight until ``requests`` have completed, and times each one
with ``perf_counter_ns``: the whole response, or for a stream the first content token (TTFT). ``wrk_run`` drives ``wrk`` (``apt-get install wrk``) with a
Lua script that POSTs a JSON body and prints its summary as one JSON line. (wrk cannot stop after a
number of requests: ``wrk.thread:stop()`` ends the thread but wrk still sleeps out ``-d``.)
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import subprocess
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import orjson
from inference import percentile  # benchmarks/ is on sys.path: shared helpers


@dataclass
class LatencyResult:
    """Milliseconds per successful request (TTFT for streams), with the failures counted apart."""

    ms: list[float] = field(default_factory=list)
    errors: int = 0
    untimed: int = 0  # one request per connection before the clock starts: connects are not timed
    first_error: str = ""
    seconds: float = 0.0

    def extend(self, other: LatencyResult) -> None:
        self.ms += other.ms
        self.errors += other.errors
        self.untimed += other.untimed
        self.first_error = self.first_error or other.first_error
        self.seconds += other.seconds

    def summary(self) -> dict[str, Any]:
        return {"requests": len(self.ms), "errors": self.errors, "first_error": self.first_error,
                "p50_ms": percentile(self.ms, 50), "p99_ms": percentile(self.ms, 99),
                "mean_ms": sum(self.ms) / len(self.ms) if self.ms else None,
                "rps": len(self.ms) / self.seconds if self.seconds else None}


async def _first_token_ns(resp: aiohttp.ClientResponse) -> int | None:
    """Read an SSE stream to its end; the time its first non-empty content piece arrived."""
    first: int | None = None
    async for line in resp.content:
        if first is not None or not line.startswith(b"data: {"):
            continue
        for choice in orjson.loads(line[6:]).get("choices") or []:
            if (choice.get("delta") or {}).get("content") or choice.get("text"):
                first = time.perf_counter_ns()
    return first


async def _one(session: aiohttp.ClientSession, url: str, body: bytes, headers: dict[str, str],
               stream: bool) -> float:
    t0 = time.perf_counter_ns()
    async with session.post(url, data=body, headers=headers) as resp:
        if resp.status != 200:
            raise RuntimeError(f"HTTP {resp.status}: {(await resp.text())[:200]}")
        if stream:
            t1 = await _first_token_ns(resp)
            if t1 is None:
                raise RuntimeError("stream without a content token")
        else:
            await resp.read()
            t1 = time.perf_counter_ns()
    return (t1 - t0) / 1e6


async def latency_run(url: str, payload: dict[str, Any], *, headers: dict[str, str] | None = None,
                      concurrency: int = 1, requests: int = 1000, timeout: float = 60.0) -> LatencyResult:
    """``requests`` POSTs of ``payload`` to ``url``, ``concurrency`` at a time (closed loop)."""
    body = orjson.dumps(payload)
    hdrs = {"Content-Type": "application/json", **(headers or {})}
    stream = bool(payload.get("stream"))
    out = LatencyResult()
    left = requests
    conn = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=conn, timeout=aiohttp.ClientTimeout(total=timeout)) as session:

        async def worker() -> None:
            nonlocal left
            while left > 0:
                left -= 1
                try:
                    out.ms.append(await _one(session, url, body, hdrs, stream))
                except (TimeoutError, aiohttp.ClientError, RuntimeError) as exc:
                    out.errors += 1
                    out.first_error = out.first_error or f"{type(exc).__name__}: {exc}"

        async def connect() -> None:
            with contextlib.suppress(aiohttp.ClientError, TimeoutError, RuntimeError):
                await _one(session, url, body, hdrs, stream)

        await asyncio.gather(*(connect() for _ in range(concurrency)))
        out.untimed = concurrency
        t0 = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        out.seconds = time.perf_counter() - t0
    return out


_WRK_LUA = """
wrk.method = "POST"
wrk.body = [==[{body}]==]
{headers}
function done(s, latency, requests)
  io.write(string.format('WRKJSON {{"requests":%d,"duration_us":%d,"non_2xx":%d,"connect_errors":%d,'
    .. '"read_errors":%d,"write_errors":%d,"timeouts":%d,"p50_ms":%.3f,"p99_ms":%.3f}}\\n',
    s.requests, s.duration, s.errors.status, s.errors.connect, s.errors.read, s.errors.write,
    s.errors.timeout, latency:percentile(50) / 1000, latency:percentile(99) / 1000))
end
"""


@dataclass
class WrkResult:
    requests: int
    seconds: float
    rps: float
    non_2xx: int
    socket_errors: int
    p50_ms: float
    p99_ms: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def wrk_available() -> bool:
    return shutil.which("wrk") is not None


def wrk_run(url: str, payload: dict[str, Any], *, headers: dict[str, str] | None = None,
            connections: int = 64, duration_s: float = 10.0, timeout_s: float = 10.0) -> WrkResult:
    """One wrk thread: plenty for a single gateway process, and it leaves the core to the upstream."""
    hdrs = {"Content-Type": "application/json", **(headers or {})}
    lua = _WRK_LUA.format(body=json.dumps(payload),
                          headers="\n".join(f'wrk.headers["{k}"] = "{v}"' for k, v in hdrs.items()))
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write(lua)
    try:
        cmd = ["wrk", "-t1", f"-c{connections}", f"-d{max(1, round(duration_s))}s", "--timeout", f"{max(1, round(timeout_s))}s",
               "-s", f.name, url]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=duration_s + timeout_s + 30,
                              check=False)
    finally:
        Path(f.name).unlink(missing_ok=True)
    line = next((x for x in proc.stdout.splitlines() if x.startswith("WRKJSON ")), None)
    if proc.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed ({proc.returncode}): {proc.stderr.strip() or proc.stdout.strip()}")
    d = json.loads(line[8:])
    seconds = d["duration_us"] / 1e6
    return WrkResult(requests=d["requests"], seconds=seconds, rps=d["requests"] / seconds if seconds else 0.0,
                     non_2xx=d["non_2xx"],
                     socket_errors=d["connect_errors"] + d["read_errors"] + d["write_errors"] + d["timeouts"],
                     p50_ms=d["p50_ms"], p99_ms=d["p99_ms"])
