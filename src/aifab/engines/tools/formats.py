"""Which tool format a model speaks, and tool-bearing conversations rendered for it.

A chat template that renders ``tools`` itself and writes a call format aifab parses (Hermes/Qwen
``<tool_call>``, Mistral ``[TOOL_CALLS]``) is used as is: the tool list, assistant ``tool_calls`` and
``tool`` messages go to the template the way transformers passes them. Any other template (the default
SmolLM2's has no tool support) gets the Hermes format: the tool list in the system prompt, calls as
``<tool_call>`` blocks in assistant turns, and tool results as ``<tool_response>`` blocks in a user turn
(a role every template accepts, so templates that insist on user/assistant turns still render).
"""

from __future__ import annotations

import json
import re
from typing import Any

from aifab.engines.chat import render_chat
from aifab.engines.tools.parsers import HermesParser, MistralParser, TaggedParser
from aifab.engines.tools.protocol import ToolCallParser

# Parser by the marker its format opens a call with; the first found in a template wins.
FORMATS: dict[str, type[TaggedParser]] = {"hermes": HermesParser, "mistral": MistralParser}
_USES_TOOLS = re.compile(r"\btools\b")

HERMES_SYSTEM = (
    "You are a function calling AI model. You are provided with function signatures within <tools></tools> "
    "XML tags. You may call one or more functions to assist with the user query. Don't make assumptions "
    "about what values to plug into functions. Here are the available tools:\n<tools>\n{tools}\n</tools>\n"
    "For each function call return a json object with function name and arguments within "
    "<tool_call></tool_call> XML tags as follows:\n<tool_call>\n"
    '{{"name": <function-name>, "arguments": <args-dict>}}\n</tool_call>'
)


def tool_format(template: str | None) -> tuple[str, bool]:
    """``(format name, whether the template renders tools itself)`` for a chat template."""
    for name, parser in FORMATS.items():
        if template and parser.open in template:
            return name, bool(_USES_TOOLS.search(template))
    return "hermes", False


def parser_for(template: str | None, tool_names: list[str] | None) -> ToolCallParser:
    """A fresh parser for one generation of a model with ``template``; unknown tool names stay text."""
    return FORMATS[tool_format(template)[0]](tool_names)


def _arguments(raw: Any) -> Any:
    """OpenAI sends arguments as a JSON string; templates and the Hermes blocks want the object."""
    if isinstance(raw, str):
        try:
            return json.loads(raw)
        except ValueError:
            return raw
    return raw


def hermes_messages(messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None) -> list[dict[str, Any]]:
    """``messages`` (OpenAI shape) rewritten as plain role/content turns in the Hermes format."""
    out: list[dict[str, Any]] = []
    for m in messages:
        role, content = m["role"], m.get("content") or ""
        if role == "assistant" and m.get("tool_calls"):
            blocks = [
                "<tool_call>\n" + json.dumps(
                    {"name": c["function"]["name"], "arguments": _arguments(c["function"].get("arguments"))},
                    ensure_ascii=False) + "\n</tool_call>"
                for c in m["tool_calls"]
            ]
            out.append({"role": "assistant", "content": "\n".join(([content] if content else []) + blocks)})
        elif role == "tool":
            block = f"<tool_response>\n{content}\n</tool_response>"
            if out and out[-1].get("_tool"):  # results of parallel calls: one turn
                out[-1]["content"] += "\n" + block
            else:
                out.append({"role": "user", "content": block, "_tool": True})
        else:
            out.append({"role": role, "content": content})
    if tools:
        listing = HERMES_SYSTEM.format(tools="\n".join(json.dumps(t, ensure_ascii=False) for t in tools))
        if out and out[0]["role"] == "system":
            out[0] = {"role": "system", "content": out[0]["content"] + "\n\n" + listing}
        else:
            out.insert(0, {"role": "system", "content": listing})
    return [{k: v for k, v in m.items() if k != "_tool"} for m in out]


def render_with_tools(
    template: str | None,
    messages: list[dict[str, Any]],
    special_tokens: dict[str, str],
    tools: list[dict[str, Any]] | None,
) -> str:
    """The prompt for a conversation that offers ``tools`` (None: none offered) or carries tool turns."""
    _, native = tool_format(template)
    if native:
        turns = [
            {**m, "tool_calls": [
                {**c, "function": {**c["function"], "arguments": _arguments(c["function"].get("arguments"))}}
                for c in m["tool_calls"]
            ]} if m.get("tool_calls") else m
            for m in messages
        ]
        return render_chat(template, turns, special_tokens, tools=tools)
    return render_chat(template, hermes_messages(messages, tools), special_tokens)
