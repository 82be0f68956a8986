"""The ``ToolCallParser`` seam: model text in, content and OpenAI tool calls out, streamed or whole.

A parser is made per generation and fed the model's text delta by delta. Whatever the split, the
concatenation of what it returns equals what it returns for the whole text in one ``feed`` (the
conformance suite in :mod:`aifab.testing.toolparsers` checks that for every parser).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Protocol


def call_id() -> str:
    """A tool call id in OpenAI's shape (``call_`` and 24 characters)."""
    return "call_" + uuid.uuid4().hex[:24]


@dataclass
class ToolCall:
    """One complete call: ``arguments`` is a JSON object as a string, as OpenAI sends it."""

    name: str
    arguments: str
    id: str = field(default_factory=call_id)


@dataclass
class CallFragment:
    """A piece of the ``index``-th call of the answer: the first carries id and name, later ones only
    more of the arguments (OpenAI's ``delta.tool_calls[i]``)."""

    index: int
    arguments: str = ""
    id: str | None = None
    name: str | None = None


@dataclass
class Parsed:
    """What one ``feed`` (or ``finish``) yields: content text, and call fragments in order."""

    text: str = ""
    calls: list[CallFragment] = field(default_factory=list)

    def __iadd__(self, other: Parsed) -> Parsed:
        self.text += other.text
        self.calls += other.calls
        return self


class ToolCallParser(Protocol):
    """Parses one generation. ``feed`` never raises on odd model output: what is not a well-formed call
    (bad JSON, an unknown tool, an unclosed block at the end) comes back as text."""

    def feed(self, text: str) -> Parsed: ...

    def finish(self) -> Parsed:
        """The end of the generation: flush what was held back."""
        ...


def assemble(fragments: list[CallFragment]) -> list[ToolCall]:
    """Join streamed fragments into whole calls, as a client does."""
    calls: dict[int, ToolCall] = {}
    for f in fragments:
        if f.index not in calls:
            calls[f.index] = ToolCall(name=f.name or "", arguments="", id=f.id or call_id())
        calls[f.index].arguments += f.arguments
    return [calls[i] for i in sorted(calls)]


def parse_whole(parser: ToolCallParser, text: str) -> tuple[str, list[ToolCall]]:
    """A whole (non-streamed) answer: its content and its calls."""
    out = parser.feed(text)
    out += parser.finish()
    return out.text, assemble(out.calls)
