"""JSON and JSON Lines → blocks of flattened ``path.to.key: value`` lines.

Flattening keeps every value next to the keys that give it meaning, which is what a retriever needs
from a record, and gives a chunk text that can be cited. A JSON document gives one block per top-level
element (key of an object, item of an array); a JSON Lines file gives one block per line, its paths
relative to the record. ``metadata``: ``records`` for JSON Lines.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from aifab.corpus.loaders.build import DocumentBuilder
from aifab.corpus.loaders.text import TextLoader
from aifab.errors import InvalidDocument


class JsonLoader(TextLoader):
    formats: tuple[str, ...] = ("json",)

    def parse(self, text: str, builder: DocumentBuilder) -> None:
        try:
            value = json.loads(text)
        except json.JSONDecodeError as error:
            raise InvalidDocument(f"invalid JSON at line {error.lineno} column {error.colno} ({error.msg})") from None
        if isinstance(value, dict):
            for key, item in value.items():
                builder.record("\n".join(flatten(item, _key_path("", key))))
        elif isinstance(value, list):
            for index, item in enumerate(value):
                builder.record("\n".join(flatten(item, f"[{index}]")))
        else:
            builder.record("\n".join(flatten(value, "")))


class JsonlLoader(TextLoader):
    formats: tuple[str, ...] = ("jsonl",)

    def parse(self, text: str, builder: DocumentBuilder) -> None:
        records = 0
        for number, line in enumerate(text.split("\n"), start=1):
            if not line.strip():
                continue
            try:
                value = json.loads(line)
            except json.JSONDecodeError as error:
                raise InvalidDocument(f"line {number} is not valid JSON ({error.msg})") from None
            builder.record("\n".join(flatten(value, "")))
            records += 1
        builder.metadata["records"] = records


def flatten(value: Any, path: str) -> Iterator[str]:
    """``"path: value"`` lines for every leaf under ``value``; an empty object or array is a leaf."""
    if isinstance(value, dict) and value:
        for key, item in value.items():
            yield from flatten(item, _key_path(path, key))
    elif isinstance(value, list) and value:
        for index, item in enumerate(value):
            yield from flatten(item, f"{path}[{index}]")
    else:
        text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
        yield f"{path}: {text}" if path else text


def _key_path(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key
