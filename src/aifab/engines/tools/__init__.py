"""Tool calls at the engine level: the ``ToolCallParser`` seam and its parsers, tool-bearing
conversations rendered through chat templates, and grammars that force a call (``tool_choice``
required or named)."""

from aifab.engines.tools.formats import parser_for, render_with_tools, tool_format
from aifab.engines.tools.protocol import CallFragment, Parsed, ToolCall, ToolCallParser, assemble, parse_whole

__all__ = [
    "CallFragment",
    "Parsed",
    "ToolCall",
    "ToolCallParser",
    "assemble",
    "parse_whole",
    "parser_for",
    "render_with_tools",
    "tool_format",
]
