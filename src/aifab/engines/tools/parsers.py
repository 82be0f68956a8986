"""Tool-call parsers for the formats models write: Hermes/ChatML ``<tool_call>`` blocks and Mistral's
``[TOOL_CALLS]`` list.

Why a whole call is held back until its block closes (rather than streaming its arguments as they
come): a block that turns out malformed must come back as text, and fragments already sent to a client
cannot be taken back. The arguments of a call still arrive in their own fragment after the one with
the id and name, as OpenAI streams them. Calls decoded under a grammar (``tool_choice`` required or
named) are valid by construction and stream their arguments as generated (``grammar.ConstrainedCall``).

Whitespace directly around a call (the newline a model writes before ``<tool_call>`` or after
``</tool_call>``) is not content; any other text is, unchanged.
"""

from __future__ import annotations

import json
from typing import Any

from aifab.engines.tools.protocol import CallFragment, Parsed, call_id


def _held_prefix(text: str, tag: str) -> int:
    """Length of the longest end of ``text`` that could be the start of ``tag``."""
    for n in range(min(len(text), len(tag) - 1), 0, -1):
        if tag.startswith(text[-n:]):
            return n
    return 0


def decode_call(obj: Any, names: frozenset[str] | None) -> tuple[str, str] | None:
    """``(name, arguments JSON)`` of ``{"name": ..., "arguments": {...}}`` (``parameters`` is also read,
    as Llama 3 writes it; arguments given as a JSON string are decoded), or None if it is not a call to
    a known tool."""
    if not isinstance(obj, dict) or not isinstance(obj.get("name"), str) or not obj["name"]:
        return None
    if names is not None and obj["name"] not in names:
        return None
    args = obj.get("arguments", obj.get("parameters", {}))
    if isinstance(args, str):
        try:
            args = json.loads(args)
        except ValueError:
            return None
    if not isinstance(args, dict):
        return None
    return obj["name"], json.dumps(args, ensure_ascii=False)


class TaggedParser:
    """Calls sit between an opening marker and a closing one (or the end of the generation when
    ``close`` is None); everything else is content. Subclasses say how a block's body decodes."""

    open: str
    close: str | None

    def __init__(self, tool_names: list[str] | None = None) -> None:
        self.names = frozenset(tool_names) if tool_names is not None else None
        self._buf = ""
        self._in_call = False
        self._ws = ""  # trailing whitespace of the content, held until we know whether a call follows
        self._after_call = False
        self._count = 0

    def decode(self, body: str) -> list[tuple[str, str]] | None:
        """The calls in a block's body, or None when it is malformed (the block is then text)."""
        raise NotImplementedError

    def feed(self, text: str) -> Parsed:
        self._buf += text
        out = Parsed()
        while True:
            if not self._in_call:
                i = self._buf.find(self.open)
                if i < 0:
                    keep = _held_prefix(self._buf, self.open)
                    self._content(self._buf[: len(self._buf) - keep], out)
                    self._buf = self._buf[len(self._buf) - keep :]
                    return out
                self._content(self._buf[:i], out)
                self._buf, self._in_call = self._buf[i + len(self.open) :], True
            else:
                j = self._buf.find(self.close) if self.close is not None else -1
                if j < 0:
                    return out
                body, self._buf = self._buf[:j], self._buf[j + len(self.close or "") :]
                self._in_call = False
                self._block(body, out)

    def finish(self) -> Parsed:
        out = Parsed()
        if self._in_call:
            self._in_call = False
            if self.close is None:
                self._block(self._buf, out)
            else:  # cut off before its closing tag (max_tokens): not a call
                self._content(self.open + self._buf, out)
        else:
            self._content(self._buf, out)
        self._buf = ""
        out.text += self._ws
        self._ws = ""
        return out

    def _block(self, body: str, out: Parsed) -> None:
        calls = self.decode(body)
        if not calls:
            self._content(self.open + body + (self.close or ""), out)
            return
        self._ws, self._after_call = "", True
        for name, arguments in calls:
            out.calls.append(CallFragment(self._count, id=call_id(), name=name))
            out.calls.append(CallFragment(self._count, arguments=arguments))
            self._count += 1

    def _content(self, text: str, out: Parsed) -> None:
        if self._after_call:
            text = text.lstrip()
            if not text:
                return
            self._after_call = False
        text = self._ws + text
        kept = text.rstrip()
        self._ws = text[len(kept) :]
        out.text += kept


class HermesParser(TaggedParser):
    """``<tool_call>{"name": ..., "arguments": {...}}</tool_call>``, one block per call (Hermes, Qwen2.5,
    and aifab's format for templates without their own)."""

    open, close = "<tool_call>", "</tool_call>"

    def decode(self, body: str) -> list[tuple[str, str]] | None:
        try:
            call = decode_call(json.loads(body), self.names)
        except ValueError:
            return None
        return [call] if call else None


class MistralParser(TaggedParser):
    """``[TOOL_CALLS][{"name": ..., "arguments": {...}}, ...]`` up to the end of the answer (Mistral)."""

    open, close = "[TOOL_CALLS]", None

    def decode(self, body: str) -> list[tuple[str, str]] | None:
        try:
            value = json.loads(body)
        except ValueError:
            return None
        items = value if isinstance(value, list) else [value]
        calls = [decode_call(item, self.names) for item in items]
        if not calls or any(c is None for c in calls):
            return None
        return [c for c in calls if c is not None]
