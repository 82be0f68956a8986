"""Arguments checked against a tool's JSON schema before anything runs, so a model's bad call becomes the
tool's error message (which the model can correct) rather than an exception deep in a connector."""

from __future__ import annotations

from typing import Any

import jsonschema

from aifab.tools.protocol import ToolRefused


def validator(schema: dict[str, Any]) -> jsonschema.Draft202012Validator:
    """A validator for a tool's schema: built once per tool (building one costs more than a check)."""
    return jsonschema.Draft202012Validator(schema)


def check_arguments(name: str, schema: dict[str, Any] | jsonschema.Draft202012Validator,
                    arguments: Any) -> dict[str, Any]:
    """``arguments`` if it is an object valid under ``schema`` (or a :func:`validator` of it); else a
    :class:`ToolRefused` that says where and why (the first error, by path)."""
    if not isinstance(arguments, dict):
        raise ToolRefused(f"tool '{name}': arguments must be a JSON object, not {type(arguments).__name__}")
    validator = schema if isinstance(schema, jsonschema.Draft202012Validator) else jsonschema.Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(arguments), key=lambda e: list(e.absolute_path))
    if errors:
        first = errors[0]
        where = "/".join(str(p) for p in first.absolute_path) or "arguments"
        raise ToolRefused(f"tool '{name}': {where}: {first.message}")
    return arguments


def cut(text: str, limit: int) -> tuple[str, bool]:
    """``text`` cut to ``limit`` characters, ending with a note that says how much was left out."""
    if len(text) <= limit:
        return text, False
    note = f"\n[... cut: {len(text) - limit} more characters]"
    return text[: max(0, limit - len(note))] + note, True
