"""External service integration: tools over databases, the web, HTTP APIs and MCP servers (``[tools.*]``),
behind one :class:`Tool` seam."""

from aifab.tools.box import Toolbox
from aifab.tools.protocol import Tool, ToolFailed, ToolRefused, ToolResult, ToolSpec

__all__ = ["Tool", "ToolFailed", "ToolRefused", "ToolResult", "ToolSpec", "Toolbox"]
