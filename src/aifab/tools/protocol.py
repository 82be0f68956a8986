"""The ``Tool`` seam: one callable capability that apps, the CLI and ``/mcp`` expose to a model.

Every connector (``sql``, ``web``, ``openapi``, ``mcp``) makes tools of this shape, and every one runs the
conformance suite in :mod:`aifab.testing.tools`. A tool validates its own arguments against ``spec.parameters``
(:func:`aifab.tools.schema.check_arguments`); what the caller did wrong (bad arguments, a refused query or
address) is a :class:`ToolRefused`, whose message goes back to the model as the tool's error; what went wrong
on the far side (a database down, an HTTP 500, a timeout) is a :class:`ToolFailed`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from aifab.errors import InvalidRequest, UpstreamError


@dataclass(frozen=True)
class ToolSpec:
    """What a model (and an MCP client) is told: a name, what the tool does, a JSON schema of its arguments
    object. ``name`` matches ``^[A-Za-z0-9_-]{1,64}$`` (what OpenAI accepts); a connector that makes several
    tools names them ``CONNECTOR-TOOL``."""

    name: str
    description: str
    parameters: dict[str, Any]

    def openai(self) -> dict[str, Any]:
        """The spec as an OpenAI ``tools[]`` entry."""
        return {"type": "function",
                "function": {"name": self.name, "description": self.description, "parameters": self.parameters}}


@dataclass
class ToolResult:
    """``text`` is what the model reads (already cut to the tool's ``max_result_chars``, saying so when cut);
    ``data`` is the structured form (rows, JSON) for the CLI and MCP's ``structuredContent``."""

    text: str
    data: Any = None
    truncated: bool = False
    meta: dict[str, Any] = field(default_factory=dict)  # e.g. {"rows": 12}, {"url": ..., "status": 200}


class ToolRefused(InvalidRequest):
    """The call was not made: its arguments break the schema or a safety rule (a write query, a private
    address). The message names the rule and is safe to show the model and the client."""

    code = "tool_refused"


class ToolFailed(UpstreamError):
    """The call was made and failed on the far side (unreachable, an error status, a timeout)."""

    code = "tool_failed"


class Tool(Protocol):
    """One tool. ``call`` is async and bounded by the tool's own timeout; it never mutates what it reads
    from unless the connector documents otherwise (none here does)."""

    @property
    def spec(self) -> ToolSpec: ...

    async def call(self, arguments: dict[str, Any]) -> ToolResult: ...

    async def aclose(self) -> None:
        """Release connections and subprocesses; called once, at shutdown."""
        ...
