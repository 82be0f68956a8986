"""Every tool-call parser runs the conformance suite (streamed and whole)."""

from __future__ import annotations

import json

from aifab.engines.tools.parsers import HermesParser, MistralParser
from aifab.engines.tools.protocol import ToolCallParser
from aifab.testing.toolparsers import Call, ToolParserConformance


class TestHermes(ToolParserConformance):
    malformed = '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"</tool_call>'

    def make(self, tool_names: list[str] | None) -> ToolCallParser:
        return HermesParser(tool_names)

    def write(self, calls: list[Call]) -> str:
        return "\n".join(f"<tool_call>\n{json.dumps(c, ensure_ascii=False)}\n</tool_call>" for c in calls)


class TestMistral(ToolParserConformance):
    malformed = '[TOOL_CALLS][{"name": "get_weather", "arguments": {"city": "Paris"}'

    def make(self, tool_names: list[str] | None) -> ToolCallParser:
        return MistralParser(tool_names)

    def write(self, calls: list[Call]) -> str:
        return "[TOOL_CALLS]" + json.dumps(calls, ensure_ascii=False)


def test_any_tool_name_without_a_list() -> None:
    parser = HermesParser(None)
    out = parser.feed('<tool_call>{"name": "anything", "arguments": {}}</tool_call>')
    assert [f.name for f in out.calls if f.name] == ["anything"]
