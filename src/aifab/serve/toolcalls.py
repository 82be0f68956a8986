"""Tool calls on ``/v1/chat/completions``: what ``tools``/``tool_choice``/``parallel_tool_calls`` ask of
the engine, the engine's text turned into OpenAI tool calls (streamed or whole), and their JSON shapes.

``auto`` lets the model choose; its text goes through the parser of the model's tool format
(:func:`aifab.engines.tools.parser_for`). ``required`` and a named function decode under a grammar of
the call (:func:`aifab.engines.tools.grammar.call_schema`), so the answer is a call that validates.
``none`` offers no tools (tool turns already in the history are still rendered).
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass
from typing import Any

from aifab.engines.protocol import Delta, Engine
from aifab.engines.tools import CallFragment, ToolCallParser, parser_for
from aifab.engines.tools.grammar import ConstrainedCall, call_schema
from aifab.errors import InvalidRequest


@dataclass
class ToolPlan:
    """How one request uses tools: the list the prompt shows, the grammar schema of a forced call, and
    the parser of the answer (None when the answer is plain text)."""

    offered: list[dict[str, Any]] | None
    names: list[str]
    forced: list[dict[str, Any]] | None = None  # the tools a forced call chooses among
    parallel: bool = True
    parser: Callable[[], ToolCallParser] | None = None

    def schema(self, max_tokens: int) -> dict[str, Any] | None:
        return call_schema(self.forced, max_tokens) if self.forced else None


def plan_tools(tools: list[dict[str, Any]] | None, choice: Any, parallel: bool | None, engine: Engine) -> ToolPlan:
    """Check the tool fields of a request (400s name the field) and plan how the engine serves them."""
    if not tools:
        if tools is not None:
            raise InvalidRequest("'tools' must list at least one tool (or be left out)", param="tools")
        for field, value in (("tool_choice", choice), ("parallel_tool_calls", parallel)):
            if value is not None:
                raise InvalidRequest(f"'{field}' is only allowed when 'tools' are given", param=field)
        return ToolPlan(None, [])
    names = [t["function"]["name"] for t in tools]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise InvalidRequest(f"tool '{dupes[0]}' is listed twice", param="tools")
    plan = ToolPlan(tools, names, parallel=parallel is not False)
    if choice in (None, "auto"):
        template = engine.package.chat_template
        plan.parser = lambda: parser_for(template, names)
    elif choice == "none":
        plan.offered = None
    elif choice == "required":
        plan.forced = tools
    else:
        name = choice["function"]["name"]
        if name not in names:
            raise InvalidRequest(f"tool_choice names '{name}', which is not among the tools "
                                 f"({', '.join(names)})", param="tool_choice")
        plan.forced = [t for t in tools if t["function"]["name"] == name]
    if plan.forced:
        plan.parser, plan.parallel = ConstrainedCall, True  # one call, whose fragments must all come
    return plan


async def parse_calls(gen: AsyncGenerator[Delta, None], parser: ToolCallParser,
                      *, parallel: bool) -> AsyncGenerator[Delta, None]:
    """The engine's deltas with their text split into content and tool-call fragments. The last delta
    says ``tool_calls`` when the answer called a tool. Without ``parallel``, the answer ends with its
    first call (the engine slot is freed at once)."""
    called = False
    try:
        async for delta in gen:
            parsed = parser.feed(delta.text)
            if delta.finish_reason is not None:
                parsed += parser.finish()
            called = called or bool(parsed.calls)
            done = delta.finish_reason is not None or (called and not parallel)
            reason = ("tool_calls" if called else delta.finish_reason) if done else None
            yield Delta(parsed.text, reason, delta.prompt_tokens, delta.completion_tokens, parsed.calls)
            if done:
                return
    finally:
        await gen.aclose()


def call_json(fragments: list[CallFragment]) -> list[dict[str, Any]]:
    """Whole calls, as ``message.tool_calls`` lists them."""
    calls: dict[int, dict[str, Any]] = {}
    for f in fragments:
        call = calls.setdefault(f.index, {"id": f.id, "type": "function", "function": {"name": f.name, "arguments": ""}})
        call["function"]["arguments"] += f.arguments
    return [calls[i] for i in sorted(calls)]


def fragment_json(f: CallFragment) -> dict[str, Any]:
    """One ``delta.tool_calls[i]`` entry: id, type and name in a call's first fragment, then arguments."""
    if f.id is not None:
        return {"index": f.index, "id": f.id, "type": "function", "function": {"name": f.name, "arguments": f.arguments}}
    return {"index": f.index, "function": {"arguments": f.arguments}}
