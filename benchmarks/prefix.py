"""Prefix reuse: time to first token of a prompt that starts like one a slot's KV cache still holds, with
``engines.prefix_cache`` on against off, on the same engine in the same run (toggled between pairs).

Cases (the default SmolLM2 GGUF on llama.cpp; ``--torch`` adds the torch engine on the same model):

- **follow-up**: the next turn of a conversation, whose prompt is the previous prompt, its answer and a
  new question (about 700 tokens shared);
- **tool step**: an app's second turn, the first turn's prompt and call plus a tool result;
- **same system prompt**: a RAG app's prompt for another question: only the instructions are shared (the
  sources come after them and differ), the case reuse helps least.

Each pair warms the slot with the earlier prompt, then times the later one; medians over ``--pairs``.

Run:  .venv/bin/python benchmarks/prefix.py [--pairs 10] [--torch]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from pathlib import Path
from typing import Any

from aifab.engines.protocol import Engine, GenerationRequest, SamplingParams
from aifab.rag.prompting import DEFAULT_SYSTEM_PROMPT
from tools import load  # type: ignore[import-not-found]  # benchmarks/tools.py, beside this file

PASSAGE = ("The Danube is Europe's second-longest river. It flows through ten countries, from the Black Forest "
           "to the Black Sea, and through four capitals: Vienna, Bratislava, Budapest and Belgrade. ")


async def ttft(engine: Engine, prompt: str, max_tokens: int = 1) -> float:
    start = time.perf_counter()
    async for delta in engine.generate(GenerationRequest(prompt, SamplingParams(temperature=0, max_tokens=max_tokens))):
        if delta.text or delta.finish_reason:
            break
    return time.perf_counter() - start


async def answer(engine: Engine, prompt: str) -> str:
    text = []
    async for delta in engine.generate(GenerationRequest(prompt, SamplingParams(temperature=0, max_tokens=48))):
        text.append(delta.text)
    return "".join(text)


async def cases(engine: Engine) -> dict[str, tuple[str, str]]:
    """Per case: (the earlier prompt that warms the slot, the later prompt that is timed)."""
    sources = "\n\n".join(f'<source id="{i}">\n{PASSAGE * 3}\n</source>' for i in range(1, 5))
    history = [{"role": "system", "content": DEFAULT_SYSTEM_PROMPT},
               {"role": "user", "content": f"Sources:\n\n{sources}\n\nQuestion: Which capitals does the Danube cross?"}]
    first = engine.render_chat(history)
    reply = await answer(engine, first)
    follow = engine.render_chat(history + [{"role": "assistant", "content": reply},
                                           {"role": "user", "content": "And where does it rise?"}])
    tools = [{"type": "function", "function": {"name": "db", "description": "Reads the rivers table.",
                                                "parameters": {"type": "object", "properties": {"query": {"type": "string"}}}}}]
    ask = [{"role": "user", "content": "How long is the Danube? " + PASSAGE}]
    call = {"id": "call_1", "type": "function", "function": {"name": "db", "arguments": '{"query": "SELECT km FROM rivers"}'}}
    step1 = engine.render_chat(ask, tools)
    step2 = engine.render_chat(ask + [{"role": "assistant", "content": "", "tool_calls": [call]},
                                      {"role": "tool", "tool_call_id": "call_1", "content": "km\n2850"}], tools)
    other = engine.render_chat([history[0], {"role": "user", "content": f"Sources:\n\n{sources.replace('Danube', 'Rhine')}"
                                                                          "\n\nQuestion: Where does the Rhine end?"}])
    return {"follow-up": (first, follow), "tool step": (step1, step2), "same system prompt": (first, other)}


async def measure(engine: Engine, pairs: int) -> dict[str, dict[str, float]]:
    prefix = engine.runtime.prefix  # type: ignore[attr-defined]
    out: dict[str, dict[str, float]] = {}
    for name, (warm, timed) in (await cases(engine)).items():
        on, off = [], []
        for i in range(pairs):
            for enabled in ((True, False) if i % 2 else (False, True)):
                prefix.enabled = enabled
                prefix.forget()
                await ttft(engine, warm)
                before = prefix.reused
                (on if enabled else off).append(await ttft(engine, timed))
                if enabled:
                    shared = prefix.reused - before
        prefix.enabled = True
        out[name] = {"tokens": engine.count_tokens(timed), "shared": shared,
                     "off_ms": statistics.median(off) * 1e3, "on_ms": statistics.median(on) * 1e3,
                     "ratio": statistics.median(on) / statistics.median(off)}
    return out


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pairs", type=int, default=10)
    ap.add_argument("--torch", action="store_true")
    args = ap.parse_args()
    for kind in ["llamacpp"] + (["torch"] if args.torch else []):
        engine = load(kind, Path("/tmp/aifab-bench-tools"), "smollm2")  # the tools benchmark's loader (converts once)
        try:
            results: Any = await measure(engine, args.pairs)
        finally:
            engine.close()
        print(f"\n== {kind}: time to first token, prefix cache on vs off (medians of {args.pairs}) ==")
        print(f"{'case':<20} {'prompt':>7} {'reused':>7} {'off ms':>8} {'on ms':>8} {'on/off':>7}")
        for name, r in results.items():
            print(f"{name:<20} {r['tokens']:>7} {r['shared']:>7} {r['off_ms']:>8.1f} {r['on_ms']:>8.1f} {r['ratio']:>7.2f}")


if __name__ == "__main__":
    asyncio.run(main())
