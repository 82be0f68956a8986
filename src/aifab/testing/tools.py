"""``ToolConformance``: what every ``Tool`` must do, as a test class to subclass::

    class TestMyTool(ToolConformance):
        @pytest.fixture
        async def tool(self):
            tool = MyTool(...)
            yield tool
            await tool.aclose()

        good_arguments = {"query": "select 1"}     # a call that succeeds
        bad_arguments = {"qurey": "select 1"}      # a call the schema refuses

Every connector's tools (sql, web, openapi, mcp) run it, so a new connector cannot differ in the basics
the tool loop, the CLI and ``/mcp`` rely on.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import jsonschema
import pytest

from aifab.tools import Tool, Toolbox, ToolRefused, ToolResult, ToolSpec
from aifab.tools.box import NAME


class ToolConformance:
    good_arguments: dict[str, Any] = {}
    bad_arguments: Any = {"no such argument": 1}

    @pytest.fixture
    async def tool(self) -> Tool:
        raise NotImplementedError("subclasses provide the tool under test")

    def test_the_spec_is_what_openai_and_mcp_accept(self, tool: Tool) -> None:
        spec = tool.spec
        assert NAME.match(spec.name), spec.name
        assert spec.description.strip(), "a model picks tools by their description"
        assert spec.parameters.get("type") == "object"
        jsonschema.Draft202012Validator.check_schema(spec.parameters)
        entry = spec.openai()
        assert entry["type"] == "function" and entry["function"]["name"] == spec.name

    def test_good_arguments_validate_and_give_text(self, tool: Tool) -> None:
        jsonschema.validate(self.good_arguments, tool.spec.parameters)

    async def test_a_call_gives_a_result_with_text(self, tool: Tool) -> None:
        result = await Toolbox([tool]).call(tool.spec.name, self.good_arguments)
        assert isinstance(result, ToolResult) and isinstance(result.text, str) and result.text

    async def test_bad_arguments_are_refused_before_anything_runs(self, tool: Tool) -> None:
        with pytest.raises(ToolRefused, match=tool.spec.name):
            await Toolbox([tool]).call(tool.spec.name, self.bad_arguments)

    async def test_a_long_result_is_cut_and_says_so(self, tool: Tool) -> None:
        box = Toolbox([tool], limits={tool.spec.name: (30.0, 100)})
        result = await box.call(tool.spec.name, self.good_arguments)
        assert len(result.text) <= 100
        if result.truncated:
            assert "cut" in result.text

    async def test_closing_twice_is_harmless(self, tool: Tool) -> None:
        await tool.aclose()
        await tool.aclose()


class FakeTool:
    """A tool for unit tests: answers ``text`` (default: its name and arguments as JSON); ``hang`` makes a
    call wait until cancelled (for timeouts), ``fail`` makes it raise that error. ``calls`` records them."""

    def __init__(self, name: str = "lookup", *, text: str | None = None, hang: bool = False,
                 fail: Exception | None = None, parameters: dict[str, Any] | None = None) -> None:
        self._spec = ToolSpec(name, f"Looks things up ({name}).", parameters or {
            "type": "object", "properties": {"query": {"type": "string"}}, "required": ["query"],
            "additionalProperties": False})
        self.text, self.hang, self.fail = text, hang, fail
        self.calls: list[dict[str, Any]] = []
        self.closed = 0

    @property
    def spec(self) -> ToolSpec:
        return self._spec

    async def call(self, arguments: dict[str, Any]) -> ToolResult:
        self.calls.append(arguments)
        if self.hang:
            await asyncio.Event().wait()
        if self.fail is not None:
            raise self.fail
        return ToolResult(self.text if self.text is not None else f"{self._spec.name} {json.dumps(arguments)}",
                          data=arguments)

    async def aclose(self) -> None:
        self.closed += 1
