"""``/v1/tools``: the configured ``[tools.*]`` a key may use, listed and run over plain HTTP: the same
Toolbox and key scope as ``/mcp`` (a tool outside the key's scope is not listed, and running it is 403)."""

from __future__ import annotations

from typing import Any

from fastapi import Request
from pydantic import BaseModel, ConfigDict, Field

from aifab.serve.agent import guarded
from aifab.serve.deps import Caller, may_use_tool
from aifab.serve.routing import api_router
from aifab.tools import Toolbox

router = api_router("/v1")


class ToolCall(BaseModel):
    model_config = ConfigDict(extra="forbid")

    arguments: dict[str, Any] = Field(default_factory=dict, description="checked against the tool's schema")


def _toolbox(request: Request) -> Toolbox:
    return request.app.state.serving.toolbox or Toolbox([])


@router.get("/tools")
async def list_tools(request: Request, caller: Caller) -> dict[str, Any]:
    """The tools this key may use, as OpenAI ``tools[]`` entries."""
    specs = [s for s in _toolbox(request).specs() if caller is None or caller.allows_tool(s.name)]
    return {"object": "list", "data": [s.openai() for s in specs]}


@router.post("/tools/{name}")
async def call_tool(name: str, body: ToolCall, request: Request, caller: Caller) -> dict[str, Any]:
    """Run one tool: its text (what a model would read), structured data, and whether the text was cut."""
    may_use_tool(caller, name)
    result = guarded(await _toolbox(request).call(name, body.arguments), request.app.state.serving.tool_guard)
    return {"object": "tool.result", "name": name, "text": result.text, "data": result.data,
            "truncated": result.truncated, "meta": result.meta}
