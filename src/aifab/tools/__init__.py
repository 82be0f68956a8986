"""External service integration: tools over databases, the web, HTTP APIs and MCP servers (``[tools.*]``),
behind one :class:`Tool` seam. ``BUILTIN_TOOLS``: the tools ``/mcp`` has of its own (retrieval over the
collections, the RAG apps); a key's tool scope may name them beside ``[tools.*]`` entries."""

from aifab.config import BUILTIN_TOOLS
from aifab.tools.box import Toolbox
from aifab.tools.protocol import Tool, ToolFailed, ToolRefused, ToolResult, ToolSpec

__all__ = ["BUILTIN_TOOLS", "Tool", "ToolFailed", "ToolRefused", "ToolResult", "ToolSpec", "Toolbox"]
