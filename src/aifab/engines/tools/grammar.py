"""Forced tool calls (``tool_choice`` required or a named function): the JSON schema a call must match,
narrowed so that every call the grammar allows fits in ``max_tokens``, parses and validates.

The engines compile the schema to a grammar (GBNF on llama.cpp, xgrammar on torch) and cache it per
schema. The narrowing only ever removes values the original schema accepts, so what the model writes
validates against the tool's own ``parameters``:

- strings get a ``maxLength`` (at most 64 characters, fewer when the budget is tight) and arrays a
  ``maxItems`` (at most 4); objects take no properties beyond those listed (``additionalProperties``
  false); a value of any type becomes a short string;
- a bounded integer or number is drawn from at most 256 values of its range, because llama.cpp's
  grammar converter ignores ``minimum``/``maximum``; other numbers stay within ±10^15 without an
  exponent (an exponent can make a number too large to be finite); ``format`` is dropped (an annotation in JSON
  Schema, not checked by validators by default);
- ``oneOf`` is read as ``anyOf`` (a value matching two branches is rare in tool schemas, and then the
  call does not validate: a limit);
- an enum value or property name with a quote, backslash or control character is refused (llama.cpp's
  converter writes such literals into a broken grammar);
- keywords no grammar here can enforce (``pattern``, ``not``, ``allOf``, ``if``, ``multipleOf``, ...)
  make a 400 that names the tool and the keyword, rather than a call that may not validate.

The budget is in bytes (a token is at least one byte): every string character counts 4 (the widest
UTF-8 character; the grammars allow no ``\\u`` escapes in bounded strings) and every separator its
optional space, so the bound is safe whatever the tokenizer.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from typing import Any

from aifab.engines.tools.protocol import CallFragment, Parsed, call_id
from aifab.errors import InvalidRequest

ANNOTATIONS = frozenset({"title", "description", "default", "examples", "$schema", "$id", "$comment",
                         "deprecated", "readOnly", "writeOnly", "format", "$defs", "definitions",
                         "contentMediaType", "contentEncoding"})
KNOWN = frozenset({"type", "properties", "required", "additionalProperties", "items", "enum", "const",
                   "anyOf", "oneOf", "$ref", "minLength", "maxLength", "minItems", "maxItems", "minimum",
                   "maximum", "exclusiveMinimum", "exclusiveMaximum", "nullable"}) | ANNOTATIONS
STEPS = [(64, 4), (32, 3), (16, 2), (8, 2), (4, 1), (1, 1), (0, 0)]  # (string chars, array items), widest first
MAX_VALUES = 256
MAX_DEPTH = 8
PRIMITIVE_BYTES = {"boolean": 6, "null": 5, "integer": 18, "number": 35}  # and a space; 16 digits a part
LIMIT = 10**15  # unbounded numbers get this range: xgrammar then bounds their digits (llama.cpp's have 16)


class Unsupported(ValueError):
    """A schema keyword no grammar here can enforce."""


@dataclass(frozen=True)
class Caps:
    chars: int
    items: int


def _enum_cost(values: list[Any]) -> int:
    for v in values:
        if "\\" in json.dumps(v, ensure_ascii=False):
            # llama-cpp-python's converter does not escape backslashes in literals: the grammar breaks.
            raise Unsupported(f"an enum or const value with a quote, backslash or control character ({v!r})")
    return max(len(json.dumps(v, ensure_ascii=False).encode()) for v in values) + 1


def _range(schema: dict[str, Any], integral: bool) -> list[Any] | None:
    """At most ``MAX_VALUES`` values inside a bounded numeric range (None when it is unbounded)."""
    if not any(k in schema for k in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum")):
        return None
    lows = [math.ceil(schema["minimum"])] if "minimum" in schema else []
    lows += [math.floor(schema["exclusiveMinimum"]) + 1] if "exclusiveMinimum" in schema else []
    highs = [math.floor(schema["maximum"])] if "maximum" in schema else []
    highs += [math.ceil(schema["exclusiveMaximum"]) - 1] if "exclusiveMaximum" in schema else []
    first = max(lows) if lows else min(highs) - MAX_VALUES + 1
    last = min(min(highs) if highs else first + MAX_VALUES - 1, first + MAX_VALUES - 1)
    if first <= last:
        return list(range(first, last + 1))
    if integral:
        raise Unsupported("an integer range with no integer in it")
    # A range between two integers: its middle, and its ends where they are included.
    lo = max(schema.get("minimum", -math.inf), schema.get("exclusiveMinimum", -math.inf))
    hi = min(schema.get("maximum", math.inf), schema.get("exclusiveMaximum", math.inf))
    values = [(lo + hi) / 2] + [v for v in (schema.get("minimum"), schema.get("maximum")) if v is not None]
    return sorted({v for v in values if lo <= v <= hi and v not in (schema.get("exclusiveMinimum"),
                                                                  schema.get("exclusiveMaximum"))})


class _Narrower:
    def __init__(self, root: dict[str, Any], caps: Caps) -> None:
        self.root, self.caps = root, caps

    def resolve(self, ref: str) -> dict[str, Any]:
        m = re.fullmatch(r"#/(\$defs|definitions)/([^/]+)", ref)
        target = (self.root.get(m.group(1)) or {}).get(m.group(2)) if m else None
        if not isinstance(target, dict):
            raise Unsupported(f"$ref {ref!r} (only local #/$defs/... references)")
        return target

    def narrow(self, schema: Any, depth: int = 0) -> tuple[dict[str, Any], int]:
        """``(narrowed schema, worst-case bytes of a value)``."""
        if depth > MAX_DEPTH:
            raise Unsupported(f"nesting deeper than {MAX_DEPTH} levels (a recursive $ref?)")
        if schema is True or schema == {}:
            schema = {"type": "string"}
        if not isinstance(schema, dict):
            raise Unsupported(f"a schema that is not an object: {schema!r}")
        unknown = sorted(set(schema) - KNOWN)
        if unknown:
            raise Unsupported(f"the keyword '{unknown[0]}'")
        if "$ref" in schema:
            return self.narrow({**self.resolve(schema["$ref"]), **{k: v for k, v in schema.items() if k != "$ref"}},
                               depth + 1)
        if "const" in schema:
            return {"enum": [schema["const"]]}, _enum_cost([schema["const"]])
        if "enum" in schema:
            if not schema["enum"]:
                raise Unsupported("an empty enum")
            return {"enum": list(schema["enum"])}, _enum_cost(schema["enum"])
        branches = schema.get("anyOf") or schema.get("oneOf")
        if branches:
            rest = {k: v for k, v in schema.items() if k not in ("anyOf", "oneOf")}
            parts = [self.narrow({**rest, **b}, depth) for b in branches]  # a choice, not a level: no deeper
            return {"anyOf": [p[0] for p in parts]}, max(p[1] for p in parts)
        kind = schema.get("type")
        if isinstance(kind, list):
            return self.narrow({**schema, "type": None, "anyOf": [{"type": t} for t in kind]}, depth)
        if schema.get("nullable") and kind:
            return self.narrow({**schema, "nullable": False, "anyOf": [{"type": kind}, {"type": "null"}], "type": None},
                               depth)
        if kind is None:
            kind = "object" if "properties" in schema else "array" if "items" in schema else "string"
        if kind == "object":
            return self.object(schema, depth)
        if kind == "array":
            item, cost = self.narrow(schema.get("items", {"type": "string"}), depth + 1)
            low = int(schema.get("minItems", 0))
            high = max(low, min(int(schema.get("maxItems", self.caps.items)), self.caps.items))
            return {"type": "array", "items": item, "minItems": low, "maxItems": high}, 4 + high * (cost + 2)
        if kind == "string":
            low = int(schema.get("minLength", 0))
            high = max(low, min(int(schema.get("maxLength", self.caps.chars)), self.caps.chars))
            return {"type": "string", "minLength": low, "maxLength": high}, 3 + 4 * high
        if kind in ("integer", "number"):
            values = _range(schema, kind == "integer")
            if values is not None:
                return {"enum": values}, _enum_cost(values)
            return {"type": kind, "minimum": -LIMIT, "maximum": LIMIT}, PRIMITIVE_BYTES[kind]
        if kind in ("boolean", "null"):
            return {"type": kind}, PRIMITIVE_BYTES[kind]
        raise Unsupported(f"the type {kind!r}")

    def object(self, schema: dict[str, Any], depth: int) -> tuple[dict[str, Any], int]:
        props, cost = {}, 4  # { } and their spaces
        for key, sub in (schema.get("properties") or {}).items():
            _enum_cost([key])  # a property name is a literal in the grammar too
            props[key], c = self.narrow(sub, depth + 1)
            cost += len(json.dumps(key, ensure_ascii=False).encode()) + 5 + c  # key, : and , with spaces
        required = [k for k in schema.get("required", []) if k in props]
        if len(required) < len(schema.get("required", [])):
            raise Unsupported("a required property that is not among the properties")
        return {"type": "object", "properties": props, "required": required, "additionalProperties": False}, cost


def call_schema(tools: list[dict[str, Any]], max_tokens: int) -> dict[str, Any]:
    """The schema of one call ``{"name": ..., "arguments": {...}}`` to one of ``tools`` (OpenAI tool
    objects), narrowed to fit ``max_tokens``. Raises ``InvalidRequest`` naming the tool."""
    worst: tuple[int, str] = (0, "")
    for caps in (Caps(*s) for s in STEPS):
        branches, worst = [], (0, "")
        for tool in tools:
            fn = tool["function"]
            params = fn.get("parameters") or {"type": "object", "properties": {}}
            try:
                args, cost = _Narrower(params, caps).narrow(params)
            except (Unsupported, TypeError, ValueError) as exc:
                raise InvalidRequest(
                    f"tool '{fn['name']}': its parameters use {exc}, which a forced call's grammar cannot "
                    "enforce; simplify the schema or use tool_choice 'auto'", param="tools") from exc
            if args.get("type") != "object":
                raise InvalidRequest(f"tool '{fn['name']}': parameters must be an object schema", param="tools")
            name = fn["name"]
            branches.append({"type": "object", "properties": {"name": {"enum": [name]}, "arguments": args},
                             "required": ["name", "arguments"], "additionalProperties": False})
            worst = max(worst, (cost + len(name) + 36, name))  # {"name": "...", "arguments": ...}, spaces, end token
        if worst[0] <= max_tokens:
            return branches[0] if len(branches) == 1 else {"anyOf": branches}
    raise InvalidRequest(
        f"tool '{worst[1]}': a forced call may need {worst[0]} tokens even with its strings and lists cut short; "
        f"raise max_tokens to at least {worst[0]}", param="max_tokens")


_HEAD = re.compile(r'\s*\{\s*"name"\s*:\s*"((?:[^"\\]|\\.)*)"\s*,\s*"arguments"\s*:\s*')
_CONTROL = re.compile(r"[\x00-\x1f]")


class ConstrainedCall:
    """A ``ToolCallParser`` for what a forced call's grammar makes the model write: one
    ``{"name": ..., "arguments": {...}}`` object. It is valid by construction, so its arguments stream
    as they come (only a trailing run of ``}`` and spaces waits, since the last ``}`` is not theirs).
    A raw control character inside a string (the grammars allow tabs) is sent escaped."""

    def __init__(self, tool_names: list[str] | None = None) -> None:
        self._buf = ""
        self._started = False

    def feed(self, text: str) -> Parsed:
        self._buf += _CONTROL.sub(lambda m: f"\\u{ord(m.group()):04x}", text)
        out = Parsed()
        if not self._started:
            m = _HEAD.match(self._buf)
            if m is None:
                return out
            out.calls.append(CallFragment(0, id=call_id(), name=json.loads(f'"{m.group(1)}"')))
            self._buf, self._started = self._buf[m.end():], True
        keep = len(self._buf) - len(self._buf.rstrip("} \t\n\r"))
        if len(self._buf) > keep:
            out.calls.append(CallFragment(0, arguments=self._buf[: len(self._buf) - keep]))
            self._buf = self._buf[len(self._buf) - keep:]
        return out

    def finish(self) -> Parsed:
        out = Parsed()
        if not self._started:  # cut off before the name (only a cancelled generation): nothing to call
            out.text, self._buf = self._buf, ""
            return out
        tail = self._buf.rstrip()
        tail = tail[:-1].rstrip() if tail.endswith("}") else tail
        if tail:
            out.calls.append(CallFragment(0, arguments=tail))
        self._buf = ""
        return out
