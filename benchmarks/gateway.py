"""aifab's gateway against the LiteLLM proxy, both in front of the same fake upstream, in one run.

    .venv/bin/python benchmarks/gateway.py                      # ~6-7 min on 2 cores
    .venv/bin/python benchmarks/gateway.py --quick              # smoke run, ~1 min
    .venv/bin/python benchmarks/gateway.py --targets direct,litellm

Targets: ``direct`` (the fake upstream itself: the floor), ``aifab`` (``aifab up`` with one remote route
and no local model), ``litellm`` (one LiteLLM proxy worker, ``baselines/setup_litellm.sh``). Phases:
latency at each ``--concurrency`` (closed-loop asyncio client, targets interleaved in ``--rounds``),
streaming TTFT at 1, saturation throughput (wrk), the default guardrail set's own latency
(``benchmarks/guardrails.py``, when it exists) and the gateway's RSS after 1k and after
``--leak-requests`` requests. Processes are pinned: gateway on its own core, upstream and load
generators on the others.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.util
import json
import os
import signal
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results" / "gateway.json"
sys.path.insert(0, str(HERE))
from baselines.litellm_proxy import LiteLLMMissing, LiteLLMProxy  # noqa: E402
from inference import Contention, wait_quiet  # noqa: E402 - shared benchmark helpers
from loadgen import LatencyResult, latency_run, wrk_available, wrk_run  # noqa: E402

from aifab.testing import FakeUpstream  # noqa: E402
from aifab.testing.server import RemoteAifabServer  # noqa: E402

MODEL = "fake"
PROMPT = "Say hello in five words, and keep it short."
TARGETS = ("direct", "aifab", "litellm")
AIFAB_CONFIG = """[models]
chat = ""
embedding = ""

[gateway.routes.{model}]
upstreams = [{{ url = "{url}" }}]
"""
Log = Callable[[str], None]


@dataclass
class Target:
    name: str
    url: str  # the OpenAI base, …/v1
    headers: dict[str, str]
    pid: int | None = None  # the gateway process; None = the upstream itself
    info: str = ""


# -- CPUs and processes ---------------------------------------------------------------------------------


def parse_cpus(spec: str) -> set[int]:
    """``"0,2-3"`` -> {0, 2, 3}."""
    out: set[int] = set()
    for part in filter(None, spec.split(",")):
        lo, _, hi = part.partition("-")
        out.update(range(int(lo), int(hi or lo) + 1))
    return out


def default_cpus() -> tuple[set[int], set[int], set[int]]:
    """(gateway, upstream, client): the gateway alone on one core, the rest shared out."""
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) == 1:
        return {cpus[0]}, {cpus[0]}, {cpus[0]}
    gateway, rest = {cpus[1]}, [c for c in cpus if c != cpus[1]]
    upstream = {rest[1]} if len(rest) > 1 else {rest[0]}
    client = set(rest) - upstream or upstream
    return gateway, upstream, client


def pin(pid: int, cpus: set[int]) -> None:
    """Every thread of a process and of its children (threads started later inherit it)."""
    root = psutil.Process(pid)
    for proc in [root, *root.children(recursive=True)]:
        for thread in proc.threads():
            with contextlib.suppress(ProcessLookupError):
                os.sched_setaffinity(thread.id, cpus)


def rss(pid: int) -> int:
    root = psutil.Process(pid)
    return sum(p.memory_info().rss for p in [root, *root.children(recursive=True)])


def _cpu_seconds(pid: int) -> float:
    root = psutil.Process(pid)
    return sum(sum(p.cpu_times()[:2]) for p in [root, *root.children(recursive=True)])


def settle(pids: list[int], log: Log, *, busy: float = 0.05, window: float = 0.3, max_wait: float = 60) -> None:
    """Wait until every gateway is idle (< ``busy`` of a core): one still draining the last run's work
    (an audit log, a logging queue) must not run while the other is measured, nor inflate its RSS."""
    deadline = time.monotonic() + max_wait
    while time.monotonic() < deadline:
        before = [_cpu_seconds(p) for p in pids]
        time.sleep(window)
        if all(_cpu_seconds(p) - b < busy * window for p, b in zip(pids, before, strict=True)):
            return
    log(f"  warning: a gateway was still busy after {max_wait:.0f} s")


def cpus_str(cpus: set[int]) -> str:
    return ",".join(map(str, sorted(cpus)))


# -- the targets ------------------------------------------------------------------------------------------


def start_targets(args: argparse.Namespace, stack: contextlib.ExitStack, upstream: FakeUpstream,
                  errors: dict[str, str], log: Log) -> list[Target]:
    targets = [Target("direct", upstream.url, {}, info=f"fake upstream pid {upstream.pid}")]
    if "aifab" in args.targets:
        log("starting aifab up ...")
        data = args.work_dir / "aifab-data"
        cfg = args.work_dir / "aifab.toml"
        cfg.write_text(AIFAB_CONFIG.format(model=MODEL, url=upstream.url))
        try:
            srv = stack.enter_context(RemoteAifabServer(data, args=["--config", str(cfg)]))
            targets.append(Target("aifab", f"{srv.url}/v1", {}, srv.proc.pid, f"aifab up pid {srv.proc.pid}"))
        except (RuntimeError, TimeoutError) as exc:
            errors["aifab"] = str(exc)[-3000:]
            log("  aifab FAILED to start (see errors)")
    if "litellm" in args.targets:
        log("starting the LiteLLM proxy ...")
        try:
            lite = stack.enter_context(LiteLLMProxy(upstream.url, model=MODEL, work_dir=args.work_dir / "litellm"))
            targets.append(Target("litellm", lite.url, lite.headers, lite.pid,
                                  f"litellm {lite.version()} pid {lite.pid}, 1 worker"))
        except LiteLLMMissing as exc:
            errors["litellm"] = str(exc)
            log(f"  litellm skipped: {exc}")
        except (RuntimeError, TimeoutError) as exc:
            errors["litellm"] = str(exc)[-3000:]
            log("  litellm FAILED to start (see errors)")
    return targets


def body(args: argparse.Namespace, stream: bool = False) -> dict[str, Any]:
    out: dict[str, Any] = {"model": MODEL, "messages": [{"role": "user", "content": PROMPT}],
                           "max_tokens": args.max_tokens}
    if stream:
        out.update(stream=True, stream_options={"include_usage": True})
    return out


class Driver:
    """Runs the load generators against targets and counts what each gateway was sent."""

    def __init__(self, args: argparse.Namespace, targets: list[Target], log: Log) -> None:
        self.args, self.log = args, log
        self.pids = [t.pid for t in targets if t.pid is not None]
        self.sent: Counter[str] = Counter()

    def settle(self) -> None:
        settle(self.pids, self.log)

    def latency(self, t: Target, concurrency: int, requests: int, stream: bool = False) -> LatencyResult:
        self.settle()
        res = asyncio.run(latency_run(f"{t.url}/chat/completions", body(self.args, stream), headers=t.headers,
                                      concurrency=concurrency, requests=requests))
        self.sent[t.name] += len(res.ms) + res.errors + res.untimed
        return res

    def wrk(self, t: Target, duration_s: float) -> dict[str, Any]:
        self.settle()
        res = wrk_run(f"{t.url}/chat/completions", body(self.args), headers=t.headers,
                      connections=self.args.connections, duration_s=duration_s).to_dict()
        self.sent[t.name] += res["requests"]
        return res

    def top_up(self, t: Target, total: int) -> None:
        """Send requests until ``t`` has been sent ``total`` (wrk in slices sized by its rate)."""
        rate = 0.0
        while self.sent[t.name] < total:
            left = total - self.sent[t.name]
            if not wrk_available():
                self.latency(t, self.args.connections, left)
                continue
            rate = self.wrk(t, min(60.0, max(1.0, left / rate)) if rate else 3.0)["rps"] or 1.0


# -- phases ------------------------------------------------------------------------------------------------


def latency_phase(drv: Driver, targets: list[Target], log: Log) -> dict[str, Any]:
    """Per concurrency: each target in turn, ``--rounds`` times, so that drift hits all alike."""
    args = drv.args
    out: dict[str, Any] = {}
    plan = [(str(c), c, args.requests, False) for c in args.concurrency] + [("stream@1", 1, args.stream_requests, True)]
    for key, conc, n, stream in plan:
        pooled = {t.name: LatencyResult() for t in targets}
        for r in range(args.rounds):
            for t in targets:
                log(f"latency {key}: {t.name} round {r + 1}/{args.rounds} ({n // args.rounds} requests)")
                pooled[t.name].extend(drv.latency(t, conc, max(1, n // args.rounds), stream))
        out[key] = {name: res.summary() for name, res in pooled.items()}
    return out


def rps_phase(drv: Driver, targets: list[Target], log: Log) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for t in targets:
        log(f"max rps: {t.name} (wrk, {drv.args.connections} connections, {drv.args.wrk_duration:.0f} s)")
        out[t.name] = drv.wrk(t, drv.args.wrk_duration)
    return out


def guardrail_phase(quick: bool, log: Log) -> dict[str, Any]:
    """``benchmarks/guardrails.py``'s ``run(quick) -> {case: {"p50_ms", "p99_ms", "cpu_p99_ms",
    "disabled_p50_ms", "disabled_p99_ms"}}`` (the default set against the disabled one), when it exists."""
    path = HERE / "guardrails.py"
    if not path.exists():
        log("guardrails: skipped (benchmarks/guardrails.py does not exist)")
        return {"skipped": "benchmarks/guardrails.py does not exist"}
    spec = importlib.util.spec_from_file_location("bench_guardrails", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    log("guardrails: the default set's own latency (in this process, on the client cores) ...")
    return {"cases": module.run(quick=quick)}


def cadence_phase(quick: bool, work_dir: Path, log: Log) -> dict[str, Any]:
    """``benchmarks/stream_cadence.py``: a paced 64-word answer through aifab with the default guardrails,
    with them off, and from the upstream alone: content deltas and time to the first text."""
    spec = importlib.util.spec_from_file_location("bench_cadence", HERE / "stream_cadence.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    log("stream cadence: default guardrails vs off vs the upstream alone (own servers) ...")
    return module.run(quick=quick, work_dir=work_dir / "cadence")  # type: ignore[no-any-return]


def mib(n: int) -> float:
    return n / 2**20


# -- the report --------------------------------------------------------------------------------------------


def _get(d: dict[str, Any], *keys: str) -> Any:
    for k in keys:
        if not isinstance(d, dict) or d.get(k) is None:
            return None
        d = d[k]
    return d


def _minus(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else a - b


def _div(a: float | None, b: float | None) -> float | None:
    return None if a is None or not b else a / b


def _pair(a: float | None, b: float | None) -> str | None:
    return None if a is None or b is None else f"{a:.2f} / {b:.2f}"


def build_rows(rep: dict[str, Any]) -> list[dict[str, Any]]:
    """One dict per table line: metric, direct/aifab/litellm values, ratio, target (aifab's), met."""
    rows: list[dict[str, Any]] = []

    def add(metric: str, unit: str, d: Any = None, a: Any = None, lt: Any = None, ratio: Any = None,
            target: str = "", met: bool | None = None) -> None:
        rows.append({"metric": metric, "unit": unit, "direct": d, "aifab": a, "litellm": lt, "ratio": ratio,
                     "target": target, "met": met})

    limits = {("1", "p50"): 1.0, ("1", "p99"): 5.0, ("50", "p99"): 20.0}
    for key, res in rep["latency"].items():
        what = "TTFT" if key.startswith("stream") else "latency"
        conc = key.split("@")[-1]
        for q in ("p50", "p99"):
            d, a, lt = (_get(res, n, f"{q}_ms") for n in TARGETS)
            add(f"{what} {q} @{conc}", "ms", d, a, lt)
            added_a, added_l = _minus(a, d), _minus(lt, d)
            limit = limits.get((key, q))
            add(f"  added {what} {q} @{conc}", "ms", None, added_a, added_l, _div(added_l, added_a),
                f"aifab <= {limit:g} ms" if limit else "",
                None if limit is None or added_a is None else added_a <= limit)
    rps = rep.get("rps", {})
    ra, rl = _get(rps, "aifab", "rps"), _get(rps, "litellm", "rps")
    ratio = _div(ra, rl)
    add("max requests/s (wrk)", "req/s", _get(rps, "direct", "rps"), ra, rl, ratio, "aifab/LiteLLM >= 15",
        None if ratio is None else ratio >= 15)
    errs = {n: f"{r['non_2xx']}/{r['socket_errors']}" for n, r in rps.items()}
    add("  non-2xx / socket errors at max", "n", errs.get("direct"), errs.get("aifab"), errs.get("litellm"))
    for case, g in rep.get("guardrails", {}).get("cases", {}).items():
        p99 = g.get("p99_ms")
        cpu = f" (cpu {g['cpu_p99_ms']:.2f})" if g.get("cpu_p99_ms") is not None else ""
        add(f"guard {case} p50 / p99", "ms", _pair(g.get("disabled_p50_ms"), g.get("disabled_p99_ms")),
            (_pair(g.get("p50_ms"), p99) or "-") + cpu, target="p99 <= 20 ms",
            met=None if p99 is None else p99 <= 20)
    cad = rep.get("cadence", {})
    if "ratios" in cad:
        r = cad["ratios"]
        add("stream: non-empty content deltas, guardrails on (off)", "n", cad["direct"]["content_deltas"],
            f"{cad['aifab']['content_deltas']:.0f} ({cad['aifab-noguard']['content_deltas']:.0f})", None,
            r["content_deltas_guarded_over_off"], "on/off >= 0.9", r["content_deltas_guarded_over_off"] >= 0.9)
        add("stream: time to first text p50, guardrails on (off)", "ms", cad["direct"]["ttft_p50_ms"],
            f"{cad['aifab']['ttft_p50_ms']:.2f} ({cad['aifab-noguard']['ttft_p50_ms']:.2f})")
        added = r["added_ttft_p50_ms_guarded_vs_direct"]
        add("  added time to first text p50, guardrails on", "ms", None, added, None, None, "<= 2 ms", added <= 2)
    leak = rep.get("leak", {})
    if "rss_1k" in leak:
        add("aifab RSS after 1k requests", "MiB", None, mib(leak["rss_1k"]))
        add(f"aifab RSS after {leak['requests']:,} requests", "MiB", None, mib(leak["rss_n"]),
            ratio=leak["rss_n"] / leak["rss_1k"], target="no leak (ratio ~1)")
    end = {n: mib(v) for n, v in rep.get("rss_end", {}).items()}
    if end:
        add("gateway RSS at the end of the run", "MiB", None, end.get("aifab"), end.get("litellm"))
    return rows


def _cell(v: Any, unit: str) -> str:
    if v is None:
        return "-"
    if isinstance(v, str):
        return v
    return f"{v:,.0f}" if unit == "req/s" or abs(v) >= 1000 else f"{v:.2f}" if unit == "ms" else f"{v:.1f}"


def print_table(rows: list[dict[str, Any]]) -> None:
    head = ("metric", "direct", "aifab", "LiteLLM", "ratio", "target", "met")
    lines = [(r["metric"] + f" [{r['unit']}]", _cell(r["direct"], r["unit"]), _cell(r["aifab"], r["unit"]),
              _cell(r["litellm"], r["unit"]), "-" if r["ratio"] is None else f"{r['ratio']:.1f}x", r["target"],
              {True: "yes", False: "NO", None: ""}[r["met"]]) for r in rows]
    widths = [max(len(x[i]) for x in [head, *lines]) for i in range(len(head))]
    for i, line in enumerate([head, *lines]):
        print("  ".join(c.ljust(w) if j == 0 or j >= 5 else c.rjust(w) for j, (c, w) in enumerate(zip(line, widths, strict=True))))
        if i == 0:
            print("  ".join("-" * w for w in widths))
    print("ratio: latency rows = LiteLLM's added / aifab's added; max requests/s = aifab / LiteLLM;"
          " RSS = after N / after 1k.\nguardrail rows: wall p50 / p99 (CPU p99) of the default set in the aifab"
          " column, of the disabled set (the no-op) in the direct column; the target is judged on every case.")


# -- main --------------------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    gw, up, cl = default_cpus()
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--targets", default=",".join(TARGETS), help="comma-separated subset of %(default)s")
    ap.add_argument("--concurrency", default="1,50", help="latency phase concurrencies [default: %(default)s]")
    ap.add_argument("--requests", type=int, default=2000, help="per target and concurrency [default: %(default)s]")
    ap.add_argument("--stream-requests", type=int, default=500, help="streaming TTFT at 1 [default: %(default)s]")
    ap.add_argument("--rounds", type=int, default=2, help="targets interleaved this many times [default: %(default)s]")
    ap.add_argument("--warmup", type=int, default=300, help="requests per target before timing [default: %(default)s]")
    ap.add_argument("--max-tokens", type=int, default=16, help="of the (short) chat requests [default: %(default)s]")
    ap.add_argument("--connections", type=int, default=64, help="wrk connections at saturation [default: %(default)s]")
    ap.add_argument("--wrk-duration", type=float, default=10, help="seconds per wrk run [default: %(default)s]")
    ap.add_argument("--leak-requests", type=int, default=100_000,
                    help="aifab's RSS after 1k and after this many requests; 0 = skip [default: %(default)s]")
    ap.add_argument("--upstream-latency-ms", type=float, default=0.0, help="the fake upstream's own delay")
    ap.add_argument("--gateway-cpus", default=cpus_str(gw), help="[default: %(default)s]")
    ap.add_argument("--upstream-cpus", default=cpus_str(up), help="[default: %(default)s]")
    ap.add_argument("--client-cpus", default=cpus_str(cl), help="this process and wrk [default: %(default)s]")
    ap.add_argument("--quiet-wait", type=float, default=None,
                    help="before each phase, wait up to this many seconds for other processes to go quiet "
                         "[default: 30, --quick 0]")
    ap.add_argument("--quick", action="store_true", help="a smoke run: few requests, short wrk, 5k for RSS")
    ap.add_argument("--work-dir", type=Path, default=Path(tempfile.gettempdir()) / "aifab-bench-gateway")
    ap.add_argument("--json", type=Path, default=RESULTS, help="results file [default: benchmarks/results/gateway.json]")
    args = ap.parse_args(argv)
    args.targets = [t for t in args.targets.split(",") if t]
    if bad := set(args.targets) - set(TARGETS):
        ap.error(f"unknown targets {sorted(bad)}; choose from {TARGETS}")
    args.concurrency = [int(c) for c in args.concurrency.split(",")]
    if args.quiet_wait is None:
        args.quiet_wait = 0.0 if args.quick else 30.0
    if args.quick:
        args.requests, args.stream_requests, args.rounds, args.warmup = 300, 100, 1, 100
        args.wrk_duration, args.leak_requests = 3.0, min(args.leak_requests, 5_000)
    for name in ("gateway_cpus", "upstream_cpus", "client_cpus"):
        setattr(args, name, parse_cpus(getattr(args, name)))
    return args


def start_all(args: argparse.Namespace, stack: contextlib.ExitStack, rep: dict[str, Any], log: Log) -> list[Target]:
    """The fake upstream and the gateways, each pinned to its cores."""
    os.sched_setaffinity(0, args.client_cpus)  # children (the upstream, wrk) inherit this until pinned
    upstream = stack.enter_context(FakeUpstream(latency_ms=args.upstream_latency_ms, name="bench-upstream"))
    pin(upstream.proc.pid, args.upstream_cpus)  # type: ignore[union-attr]
    targets = start_targets(args, stack, upstream, rep["errors"], log)
    for t in targets:
        if t.pid is not None:
            pin(t.pid, args.gateway_cpus)
    rep["targets"] = {t.name: {"url": t.url, "info": t.info} for t in targets}
    rep["cpus"] = {"gateway": cpus_str(args.gateway_cpus), "upstream": cpus_str(args.upstream_cpus),
                   "client": cpus_str(args.client_cpus)}
    log("cpus: gateway (aifab, litellm) {gateway}; fake upstream {upstream}; client and wrk {client}".format(**rep["cpus"]))
    return targets


def run(args: argparse.Namespace, stack: contextlib.ExitStack, log: Log) -> dict[str, Any]:
    rep: dict[str, Any] = {"errors": {}}
    targets = start_all(args, stack, rep, log)
    drv = Driver(args, targets, log)
    cont = Contention()

    def phase(name: str, fn: Callable[[], Any]) -> Any:
        wait_quiet(args.quiet_wait, log)
        cont.end("(waiting)")
        try:
            return fn()
        finally:
            cont.end(name)

    leak = next((t for t in targets if t.name == "aifab"), None) if args.leak_requests else None
    if leak is not None:  # first: "after 1k" means a fresh gateway; these requests also warm it up
        log("aifab: 1,000 requests at 50 concurrent, then RSS")
        phase("leak 1k", lambda: drv.latency(leak, 50, 1000))
        drv.settle()
        rep["leak"] = {"rss_1k": rss(leak.pid)}  # type: ignore[arg-type]
    for t in targets:
        log(f"warm-up: {t.name}, {args.warmup} requests")
        drv.latency(t, max(args.concurrency), args.warmup)
    rep["latency"] = phase("latency", lambda: latency_phase(drv, targets, log))
    if wrk_available():
        rep["rps"] = phase("max rps", lambda: rps_phase(drv, targets, log))
    else:
        rep["errors"]["rps"] = "wrk is not installed (apt-get install -y wrk): no saturation run"
        log(rep["errors"]["rps"])
    rep["guardrails"] = phase("guardrails", lambda: guardrail_phase(args.quick, log))
    (args.work_dir / "cadence").mkdir(exist_ok=True)
    rep["cadence"] = phase("stream cadence", lambda: cadence_phase(args.quick, args.work_dir, log))
    if leak is not None:
        log(f"aifab: topping up to {args.leak_requests:,} requests, then RSS")
        phase("leak top-up", lambda: drv.top_up(leak, args.leak_requests))
        drv.settle()
        rep["leak"].update(rss_n=rss(leak.pid), requests=drv.sent["aifab"])  # type: ignore[arg-type]
    drv.settle()
    rep["rss_end"] = {t.name: rss(t.pid) for t in targets if t.pid is not None}
    rep["sent"] = dict(drv.sent)
    cont.phases.pop("(waiting)", None)
    rep["foreign_cpu_cores"] = cont.phases
    return rep


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    t0 = time.perf_counter()

    def log(msg: str) -> None:
        print(f"[{time.perf_counter() - t0:6.1f}s] {msg}", file=sys.stderr, flush=True)

    def on_term(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, on_term)
    args.work_dir.mkdir(parents=True, exist_ok=True)
    load_before = os.getloadavg()[0]
    with contextlib.ExitStack() as stack:  # every process started is stopped on the way out, error or not
        rep = run(args, stack, log)
    rep["config"] = {k: sorted(v) if isinstance(v, set) else v for k, v in vars(args).items()}
    rep["config"].update(cpu_count=os.cpu_count(), python=sys.version.split()[0])
    rep["load_average"] = {"before": load_before, "after": os.getloadavg()[0]}
    rep["rows"] = build_rows(rep)
    rep["total_s"] = time.perf_counter() - t0

    print(f"\naifab gateway benchmark: {args.requests} requests per target and concurrency in {args.rounds} "
          f"rounds, max_tokens={args.max_tokens}, {os.cpu_count()} CPUs, {rep['total_s']:.0f} s")
    for name, t in rep["targets"].items():
        print(f"  {name}: {t['info']}")
    print("  cpus: gateway {gateway}, fake upstream {upstream}, client + wrk {client}".format(**rep["cpus"]))
    print(f"  load average (1 min) before {load_before:.2f}, after {rep['load_average']['after']:.2f}\n")
    print_table(rep["rows"])
    for key, res in rep["latency"].items():
        for name, s in res.items():
            if s["errors"]:
                print(f"  {name} @{key}: {s['errors']} failed requests, first: {s['first_error']}")
    busy = ", ".join(f"{k} {v:.2f}" for k, v in rep["foreign_cpu_cores"].items())
    print(f"  CPU used by other processes (cores, mean per phase): {busy}")
    if any(v > 0.2 for v in rep["foreign_cpu_cores"].values()):
        print("  WARNING: the machine was not idle during the run; figures are unreliable - rerun on a quiet machine")
    for name, err in rep["errors"].items():
        print(f"\nERROR in {name}:\n{err}")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(rep, indent=2, default=str) + "\n")
    print(f"\nwritten: {args.json}")
    return 1 if rep["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
