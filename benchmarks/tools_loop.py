"""The cost of one server-side tool step (an app's loop: parse the call, check the arguments, run the tool
under its timeout, the input guardrails on its result, the audit report, render the next turn), over the
tool's own time and the two model turns themselves (same run, same process).

Both sides run the very same work on a fake engine (so the model's time is small and steady) and a tool
that sleeps ``--tool-ms``:

- **loop**: ``ToolLoop.deltas`` for a question whose first turn calls the tool and whose second answers
  from its result (default guardrails; a ``Call`` receives the audit report);
- **bare**: the same two prompts generated one after the other on the same engine, plus the tool's own
  call, with nothing between them.

overhead = loop − bare, p50 over ``--runs`` pairs taken back to back. Target ≤ 5 ms.

Run:  .venv/bin/python benchmarks/tools_loop.py [--runs 200] [--tool-ms 10]
"""

from __future__ import annotations

import argparse
import asyncio
import re
import statistics
import time
from typing import Any

from aifab.api import Call
from aifab.api.requests import ChatCompletionRequest
from aifab.config import AppSettings, GuardrailSettings
from aifab.engines.protocol import GenerationRequest, SamplingParams
from aifab.gateway.guards.pipeline import Guardrails
from aifab.serve.agent import ToolLoop, input_guard, tool_conversation
from aifab.testing import FakeEngine, FakeRuntime
from aifab.tools import Toolbox, ToolResult, ToolSpec

CALL = '<tool_call>\n{"name": "db", "arguments": {"query": "SELECT name FROM rivers WHERE km > 2000"}}\n</tool_call>'
RESULT = "name\nDanube\n(1 row)"


def model(prompt: str) -> str:
    found = re.findall(r"<tool_response>\n(.*?)\n</tool_response>", prompt, re.S)
    return f"The river is {found[-1].splitlines()[1]}." if found else CALL


class SleepyTool:
    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.spec = ToolSpec("db", "Reads the rivers table.", {
            "type": "object", "properties": {"query": {"type": "string"}}, "required": ["query"]})

    async def call(self, arguments: dict[str, Any]) -> ToolResult:
        await asyncio.sleep(self.seconds)
        return ToolResult(RESULT)

    async def aclose(self) -> None:
        pass


async def drain(gen: Any) -> None:
    async for _ in gen:
        pass


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=200)
    ap.add_argument("--tool-ms", type=float, default=10.0)
    args = ap.parse_args()
    engine = FakeEngine("chat", FakeRuntime(model), context_length=16384)
    tool = SleepyTool(args.tool_ms / 1000)
    box = Toolbox([tool])
    app = AppSettings(tools=["db"], model="chat")
    guard = input_guard(Guardrails(GuardrailSettings()))
    messages = tool_conversation(app, [{"role": "user", "content": "Which river is longer than 2000 km?"}])
    sampling = SamplingParams(temperature=0, max_tokens=256)
    request = ChatCompletionRequest.model_validate({"model": "geo", "messages": [{"role": "user", "content": "x"}]})

    prompts: list[str] = []  # the two prompts the loop renders, for the bare side
    render = engine.render_chat

    def capture(msgs: list[dict[str, Any]], tools: Any = None) -> str:
        prompts.append(render(msgs, tools))
        return prompts[-1]

    engine.render_chat = capture  # type: ignore[method-assign]
    await drain(ToolLoop(app, box, engine, guard=guard).deltas(messages, sampling))
    engine.render_chat = render  # type: ignore[method-assign]
    first, second = prompts[:2]

    async def loop_side() -> float:
        t = time.perf_counter()
        call = Call(request, "chatcmpl-x", "geo")
        await drain(ToolLoop(app, box, engine, guard=guard, call=call).deltas(messages, sampling))
        return time.perf_counter() - t

    async def bare_side() -> float:
        t = time.perf_counter()
        await drain(engine.generate(GenerationRequest(first, sampling)))
        await tool.call({"query": "x"})
        await drain(engine.generate(GenerationRequest(second, sampling)))
        return time.perf_counter() - t

    for _ in range(10):  # warm-up
        await loop_side()
        await bare_side()
    loop, bare, diff = [], [], []
    for i in range(args.runs):
        a, b = (await loop_side(), await bare_side()) if i % 2 else tuple(reversed((await bare_side(), await loop_side())))
        loop.append(a)
        bare.append(b)
        diff.append(a - b)
    engine.close()
    p50 = statistics.median
    print(f"tool's own time            {args.tool_ms:.1f} ms")
    print(f"bare (2 turns + the tool)  p50 {p50(bare) * 1e3:.2f} ms")
    print(f"loop (1 server-side step)  p50 {p50(loop) * 1e3:.2f} ms")
    print(f"overhead per step          p50 {p50(diff) * 1e3:.2f} ms   (target <= 5 ms; {args.runs} pairs)")


if __name__ == "__main__":
    asyncio.run(main())
