"""What the gateway changes in an answer on its way back: the response id (the gateway's own, which the
audit log and feedback use), the output guardrails' redactions, and the usage it reads (and drops from a
stream when the client did not ask for it). Tool-call arguments pass the output guards as content does
(one guard per call, so a secret split across argument fragments is still caught)."""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any, Protocol

import orjson

from aifab.api import Call
from aifab.api.events import EVENT_KEY, cited_chunks
from aifab.gateway.exchange import Exchange
from aifab.gateway.protocol import Verdict

CONTENT_FILTER = "content_filter"  # OpenAI's finish_reason for an answer stopped by a filter


class Emit(Protocol):
    text: str
    verdicts: list[Verdict]
    blocked: Verdict | None


class OutputGuard(Protocol):
    def feed(self, text: str) -> Emit: ...

    def finish(self) -> Emit: ...


class GuardFactory(Protocol):
    def __call__(self) -> OutputGuard | None: ...


class _Choices:
    """Per choice index (and per tool call of a choice, keyed ``(index, call)``): its output guard, and
    whether it was blocked."""

    def __init__(self, ex: Exchange, guards: GuardFactory, keep: bool) -> None:
        self.ex, self.guards = ex, guards
        self._guard: dict[Hashable, OutputGuard | None] = {}
        self.blocked: set[Hashable] = set()
        self.keep = keep  # keep the answer's text for the audit log
        self._calls: dict[int, dict[str, Any]] = {}  # choice 0's tool calls, for the audit log

    def text(self, index: Hashable, text: str, final: bool) -> str:
        """The text to send for ``text`` arriving on choice ``index`` (``final``: its last piece)."""
        if index not in self._guard:
            self._guard[index] = self.guards()
        guard = self._guard[index]
        if guard is not None and index not in self.blocked:
            out = guard.feed(text) if text else None
            parts = [out] if out is not None else []
            if final:
                parts.append(guard.finish())
            text = ""
            for emit in parts:
                self.ex.verdicts.extend(emit.verdicts)
                if emit.blocked is not None:
                    self.blocked.add(index)
                    break
                text += emit.text
            if final:
                self._guard[index] = None  # finished: nothing is held back any more
        elif index in self.blocked:
            text = ""
        if self.keep and text and index == 0:
            self.ex.response = (self.ex.response or []) + [text]
        return text

    def pending(self) -> list[Hashable]:
        return [i for i, g in self._guard.items() if g is not None and i not in self.blocked]

    def calls(self, index: int, calls: Any, final: bool) -> None:
        """Choice ``index``'s tool calls (whole, or a stream's fragments), in place: their arguments through
        the guards; at ``final``, what the guards still hold goes out as one more fragment per call. A
        blocked call blocks its choice. Names (and arguments, where content is kept) go to the audit log."""
        if not isinstance(calls, list):
            calls = []
        for pos, call in enumerate(calls):
            fn = call.get("function") if isinstance(call, dict) else None
            if not isinstance(fn, dict):
                continue
            n = call.get("index", pos)
            if index == 0 and isinstance(fn.get("name"), str):
                self._record(n, name=fn["name"])
            if isinstance(fn.get("arguments"), str):
                fn["arguments"] = self.text((index, n), fn["arguments"], final)
                if index == 0 and self.keep:
                    self._record(n, arguments=fn["arguments"])
        if final:
            for key in [k for k in self.pending() if isinstance(k, tuple) and k[0] == index]:
                tail = self.text(key, "", final=True)
                if tail:
                    calls.append({"index": key[1], "function": {"arguments": tail}})
                    if index == 0 and self.keep:
                        self._record(key[1], arguments=tail)
        if any(isinstance(k, tuple) and k[0] == index for k in self.blocked):
            self.blocked.add(index)

    def _record(self, n: int, *, name: str | None = None, arguments: str = "") -> None:
        entry = self._calls.get(n)
        if entry is None:
            entry = self._calls[n] = {"name": name or ""}
            self.ex.tool_calls = (self.ex.tool_calls or []) + [entry]
        if arguments:
            entry["arguments"] = entry.get("arguments", "") + arguments


_ENVELOPE = frozenset({"id", "object", "created", "model", "choices", "system_fingerprint", "service_tier"})


def _empty(choice: dict[str, Any], holder: dict[str, Any], field_: str) -> bool:
    """A choice that carries nothing once its text is held back. A delta with the role is not empty: the
    first delta of a chat stream carries it, as OpenAI's does, with or without text."""
    if choice.get("logprobs") or (holder is not choice and not set(holder) <= {field_}):
        return False
    return not (set(choice) - {"index", "finish_reason", "logprobs", "delta", "text"})


def _content(choice: dict[str, Any], chat: bool, stream: bool) -> tuple[dict[str, Any] | None, str]:
    if not chat:
        return choice, "text"
    holder = choice.get("delta" if stream else "message")
    return (holder, "content") if isinstance(holder, dict) else (None, "content")


def rewrite_body(body: bytes, ex: Exchange, rid: str | None, chat: bool, guards: GuardFactory, keep: bool) -> bytes:
    """A whole (non-streamed) JSON answer."""
    obj = orjson.loads(body)
    obj["model"] = ex.model  # the name the client called (an alias or route, not the upstream's own)
    if rid is not None:
        obj["id"] = rid
    _read_usage(obj, ex)
    choices = _Choices(ex, guards, keep)
    for choice in obj.get("choices") or []:
        holder, field_ = _content(choice, chat, stream=False)
        if holder is None:
            continue
        index = choice.get("index", 0)
        if isinstance(holder.get(field_), str):
            if chat and "citations" in holder:
                _read_context(holder["citations"], ex)
            holder[field_] = choices.text(index, holder[field_], final=True)
        if chat and holder.get("tool_calls"):
            choices.calls(index, holder["tool_calls"], final=True)
        if index in choices.blocked:
            choice["finish_reason"] = CONTENT_FILTER
            holder.pop("tool_calls", None)
    return orjson.dumps(obj)


def _read_context(citations: Any, ex: Exchange) -> None:
    """The chunk ids a RAG app grounded its answer on, for the audit log (and feedback, and lineage)."""
    if isinstance(citations, list):
        ex.context = cited_chunks(citations)


def _read_usage(obj: dict[str, Any], ex: Exchange) -> None:
    usage = obj.get("usage")
    if isinstance(usage, dict):
        ex.prompt_tokens = int(usage.get("prompt_tokens") or 0)
        ex.completion_tokens = int(usage.get("completion_tokens") or 0)


class StreamRewriter:
    """SSE in, SSE out: complete events are rewritten one by one; a partial event waits for its end."""

    def __init__(self, ex: Exchange, rid: str, chat: bool, guards: GuardFactory, want_usage: bool, keep: bool) -> None:
        self.ex, self.rid, self.chat, self.want_usage = ex, rid, chat, want_usage
        self.choices = _Choices(ex, guards, keep)
        self._buffer = b""
        self.done = False  # [DONE] seen, an error event passed, or the output was blocked
        self.usage_seen = False
        self.tokens = 0  # completion tokens counted as they stream (corrected by the final usage)
        self._last: dict[str, Any] | None = None

    def feed(self, chunk: bytes) -> bytes:
        self._buffer += chunk
        if b"\n\n" not in self._buffer:
            return b""
        *events, self._buffer = self._buffer.replace(b"\r\n", b"\n").split(b"\n\n")
        return b"".join(self._event(e) for e in events if e and not self.done)

    def has_event(self) -> bool:
        return self.done or self.tokens > 0 or self._last is not None

    def close(self) -> bytes:
        """The rest after the upstream ended: held-back guarded text, then ``[DONE]`` if it never came."""
        out = b""
        if self._buffer.strip() and not self.done:
            out += self._event(self._buffer)
            self._buffer = b""
        if not self.done:
            out += self._flush_guards() + b"data: [DONE]\n\n"
            self.done = True
        return out

    def _event(self, event: bytes) -> bytes:
        line = event.strip()
        if not line.startswith(b"data:"):
            return event + b"\n\n"  # comments and other fields pass as they are
        payload = line[5:].strip()
        if payload == b"[DONE]":
            self.done = True
            return self._flush_guards() + b"data: [DONE]\n\n"
        obj = orjson.loads(payload)
        if not isinstance(obj, dict) or "error" in obj:
            self.done = True
            return b"data: " + payload + b"\n\n"
        if EVENT_KEY in obj:  # aifab's own event (aifab.api.events): read, passed on untouched
            if "citations" in obj:
                _read_context(obj["citations"], self.ex)
            return event + b"\n\n"
        obj["id"], obj["model"] = self.rid, self.ex.model
        self._last = obj
        if isinstance(obj.get("usage"), dict):
            _read_usage(obj, self.ex)
            self.usage_seen = True
        if not self.want_usage:
            if not obj.get("choices") and set(obj) <= {"id", "object", "created", "model", "choices", "usage",
                                                       "system_fingerprint", "service_tier"}:
                return b""  # the usage-only event the client did not ask for
            obj.pop("usage", None)
        stop = False
        choices = obj.get("choices") or []
        kept = []
        for choice in choices:
            holder, field_ = _content(choice, self.chat, stream=True)
            final = choice.get("finish_reason") is not None
            if holder is None:
                kept.append(choice)
                continue
            text = holder.get(field_) or ""
            if text:
                self.tokens += 1
            index = choice.get("index", 0)
            holder[field_] = out = self.choices.text(index, text, final)
            if self.chat and (holder.get("tool_calls") or final):
                if final and not holder.get("tool_calls"):
                    holder["tool_calls"] = []
                self.choices.calls(index, holder["tool_calls"], final)
                if not holder["tool_calls"]:
                    del holder["tool_calls"]
            if index in self.choices.blocked:
                choice["finish_reason"], stop = CONTENT_FILTER, True
                holder.pop("tool_calls", None)
            if out or holder.get("tool_calls"):
                self.ex.first_text()
            if out or final or stop or not _empty(choice, holder, field_):
                kept.append(choice)
        if choices and not kept and set(obj) <= _ENVELOPE:
            return b""  # the guard held every piece back: a step with nothing to release sends nothing
        obj["choices"] = kept
        if stop:
            self.done = True
            return b"data: " + orjson.dumps(obj) + b"\n\ndata: [DONE]\n\n"
        return b"data: " + orjson.dumps(obj) + b"\n\n"

    def _flush_guards(self) -> bytes:
        """Text still held back by output guards when the stream ends without a finish_reason."""
        out = b""
        if self._last is None:
            return out
        piece = {k: self._last[k] for k in ("id", "object", "created", "model", "system_fingerprint")
                 if k in self._last}
        for index in self.choices.pending():
            if isinstance(index, tuple):  # a tool call's held-back arguments
                calls: list[dict[str, Any]] = []
                self.choices.calls(index[0], calls, final=True)
                if calls:
                    choice = {"index": index[0], "delta": {"tool_calls": calls}, "finish_reason": None}
                    out += b"data: " + orjson.dumps({**piece, "choices": [choice]}) + b"\n\n"
                continue
            text = self.choices.text(index, "", final=True)
            if not text:
                continue
            self.ex.first_text()
            delta: dict[str, Any] = {"content": text} if self.chat else {}
            choice = {"index": index, "delta": delta, "finish_reason": None} if self.chat else \
                {"index": index, "text": text, "finish_reason": None}
            out += b"data: " + orjson.dumps({**piece, "choices": [choice]}) + b"\n\n"
        return out


class Relay:
    """A stream of this process's serving app when no output check is active: its events already carry the
    gateway's id, the public model name and only the usage the client asked for, so they pass as they are;
    the counts come from the app's report on the ``Call`` (``aifab.api.call``)."""

    done = False
    usage_seen = True

    def __init__(self, call: Call) -> None:
        self.call = call

    @property
    def tokens(self) -> int:
        return self.call.completion_tokens

    def feed(self, chunk: bytes) -> bytes:
        return chunk

    def close(self) -> bytes:
        return b""
