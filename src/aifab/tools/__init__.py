"""External service integration: tools over databases, the web, HTTP APIs and MCP servers (``[tools.*]``),
behind one :class:`Tool` seam."""

from aifab.tools.box import Toolbox
from aifab.tools.protocol import Tool, ToolFailed, ToolRefused, ToolResult, ToolSpec

BUILTIN_TOOLS = ("search", "ask")
"""The tools ``/mcp`` has of its own (retrieval over the collections, the RAG apps): a key's tool scope may name
them beside ``[tools.*]`` entries, and no ``[tools.*]`` entry may take their names."""

__all__ = ["BUILTIN_TOOLS", "Tool", "ToolFailed", "ToolRefused", "ToolResult", "ToolSpec", "Toolbox"]
