"""benchmarks/loadgen.py and benchmarks/gateway.py's arithmetic, against the fake upstream (no gateway)."""

from __future__ import annotations

import asyncio
import importlib.util
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

from aifab.testing import FakeUpstream

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"


def _load(name: str):
    spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCH / f"{name}.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[f"bench_{name}"] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def gateway():
    return _load("gateway")


@pytest.fixture(scope="module")
def loadgen(gateway):
    return sys.modules["loadgen"]  # gateway.py imports it from benchmarks/


BODY = {"model": "fake", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}


def test_percentile_is_numpys_linear(loadgen):
    values = [5.0, 1.0, 4.0, 2.5, 9.0, 7.0, 3.0]
    for q in (0, 50, 90, 99, 100):
        assert loadgen.percentile(values, q) == pytest.approx(np.percentile(values, q))
    assert loadgen.percentile([], 50) is None


@pytest.mark.integration
def test_latency_run_times_every_request_and_counts_failures(loadgen):
    with FakeUpstream() as up:
        url = f"{up.url}/chat/completions"
        ok = asyncio.run(loadgen.latency_run(url, BODY, concurrency=4, requests=40))
        stream = asyncio.run(loadgen.latency_run(url, {**BODY, "stream": True}, concurrency=2, requests=10))
    assert (len(ok.ms), ok.errors, ok.untimed) == (40, 0, 4) and all(ms > 0 for ms in ok.ms)
    assert len(stream.ms) == 10 and stream.errors == 0
    with FakeUpstream(fail_rate=1.0) as up:
        bad = asyncio.run(loadgen.latency_run(f"{up.url}/chat/completions", BODY, concurrency=2, requests=6))
    assert (len(bad.ms), bad.errors) == (0, 6) and "HTTP 500" in bad.first_error


@pytest.mark.integration
@pytest.mark.skipif(shutil.which("wrk") is None, reason="wrk is not installed (apt-get install -y wrk)")
def test_wrk_run_reports_rate_and_non_2xx(loadgen):
    with FakeUpstream() as up:
        ok = loadgen.wrk_run(f"{up.url}/chat/completions", BODY, connections=4, duration_s=1)
    with FakeUpstream(fail_rate=1.0, fail_mode="status429") as up:
        bad = loadgen.wrk_run(f"{up.url}/chat/completions", BODY, connections=4, duration_s=1)
    assert ok.requests > 0 and ok.rps > 0 and ok.non_2xx == 0 and ok.socket_errors == 0
    assert bad.requests > 0 and bad.non_2xx == bad.requests


def test_cpu_lists(gateway):
    assert gateway.parse_cpus("0,2-4") == {0, 2, 3, 4}
    gw, up, client = gateway.default_cpus()
    assert gw and up and client and (len(gateway.os.sched_getaffinity(0)) == 1 or not gw & (up | client))


def test_rows_subtract_the_direct_floor_and_judge_the_targets(gateway):
    lat = {"1": {"direct": {"p50_ms": 0.3, "p99_ms": 0.5}, "aifab": {"p50_ms": 1.0, "p99_ms": 6.0},
                 "litellm": {"p50_ms": 12.3, "p99_ms": 20.5}}}
    rps = {n: {"rps": r, "non_2xx": 0, "socket_errors": 0} for n, r in
           (("direct", 9000.0), ("aifab", 1600.0), ("litellm", 100.0))}
    rows = {r["metric"].strip(): r for r in gateway.build_rows({"latency": lat, "rps": rps})}
    p50, p99 = rows["added latency p50 @1"], rows["added latency p99 @1"]
    assert p50["aifab"] == pytest.approx(0.7) and p50["litellm"] == pytest.approx(12.0) and p50["met"] is True
    assert p50["ratio"] == pytest.approx(12.0 / 0.7)
    assert p99["aifab"] == pytest.approx(5.5) and p99["met"] is False
    assert rows["max requests/s (wrk)"]["ratio"] == pytest.approx(16.0) and rows["max requests/s (wrk)"]["met"]
