"""``aifab datasets import FILE.jsonl``: a dataset from a file in OpenAI's chat fine-tuning format.

SFT lines: ``{"messages": [{"role": "system"|"user"|"assistant", "content": "...", "weight"?: 0|1}]}`` with
at least one user and one assistant message, the last one from the assistant. Preference lines:
``{"messages": [...], "chosen": "...", "rejected": "..."}`` where the messages are the prompt (ending with a
user message). Other fields of a line (OpenAI's ``tools``, say) are not kept. Each malformed line is
reported with its number and skipped; ``strict`` refuses the whole file instead. The file's content is
taken as it is: it is not PII-redacted (the operator chose it).
"""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aifab.errors import InvalidRequest
from aifab.finetune.datasets.dedup import dedupe, example_text
from aifab.finetune.datasets.store import (
    KINDS,
    MIN_EXAMPLES,
    DatasetStore,
    Saved,
    check_name,
    example_hash,
)

ROLES = ("system", "user", "assistant")
SHOWN = 5  # malformed lines quoted in a --strict refusal (all are reported one by one)


class Malformed(ValueError):
    """Why one line is not a usable example (the message is shown after ``line N:``)."""


@dataclass(frozen=True)
class Parsed:
    examples: list[dict[str, Any]]
    problems: list[str]  # "line 17: 'messages' must end with an assistant message"
    lines: int  # non-blank lines read
    sha256: str  # of the whole file


def import_jsonl(store: DatasetStore, path: Path, name: str, *, kind: str = "sft", strict: bool = False,
                 min_examples: int = MIN_EXAMPLES, report: Callable[[str], None] | None = None) -> Saved:
    """Read ``path``, drop duplicates, split and store it as the next version of ``name``. Each malformed
    line is passed to ``report`` as it is found; with ``strict`` any malformed line refuses the import."""
    check_name(name)
    parsed = read_jsonl(path, kind=kind, report=report)
    if strict and parsed.problems:
        first = "; ".join(parsed.problems[:SHOWN])
        more = f" (and {len(parsed.problems) - SHOWN} more)" if len(parsed.problems) > SHOWN else ""
        raise InvalidRequest(f"{path}: {len(parsed.problems)} malformed line(s), nothing imported (--strict): "
                             f"{first}{more}", param="file")
    ordered = sorted(parsed.examples, key=example_hash)
    deduped = dedupe(ordered, example_text)
    dropped = {"malformed": len(parsed.problems), "duplicate": deduped.exact, "near_duplicate": deduped.near}
    counts = {"lines": parsed.lines, "dropped": {k: v for k, v in dropped.items() if v}}
    source = {"from": "file", "path": str(path.resolve()), "sha256": parsed.sha256}
    saved = store.save(name, kind=kind, examples=deduped.kept, counts=counts, source=source,
                       min_examples=min_examples)
    return Saved(saved.version, saved.created, saved.counts, tuple(parsed.problems))


def read_jsonl(path: Path, *, kind: str = "sft", report: Callable[[str], None] | None = None) -> Parsed:
    """Every well-formed example of ``path`` and one problem line for each malformed one."""
    if kind not in KINDS:
        raise InvalidRequest(f"kind must be sft or preference, not {kind!r}", param="kind")
    if not path.is_file():
        raise InvalidRequest(f"no such file: {path}", param="file")  # a path the user gave, not a stored name
    examples: list[dict[str, Any]] = []
    problems: list[str] = []
    digest = hashlib.sha256()
    lines = 0
    with path.open("rb") as f:
        for number, raw in enumerate(f, start=1):
            digest.update(raw)
            if not raw.strip():
                continue
            lines += 1
            try:
                examples.append(parse_line(raw, kind))
            except Malformed as exc:
                problems.append(f"line {number}: {exc}")
                if report is not None:
                    report(problems[-1])
    return Parsed(examples, problems, lines, digest.hexdigest())


def check_jsonl(data: bytes) -> str:
    """The kind of a fine-tuning file (``sft`` or ``preference``, told by its first line), or
    ``InvalidRequest`` quoting its first malformed lines: the check ``/v1/files`` makes at upload, so that
    junk is refused at once rather than when a job is created. Stops at the first few problems."""
    kind, problems = None, []
    for number, raw in enumerate(io.BytesIO(data), start=1):
        if not raw.strip():
            continue
        if kind is None:
            kind = "preference" if _names_answers(raw) else "sft"
        try:
            parse_line(raw, kind)
        except Malformed as exc:
            problems.append(f"line {number}: {exc}")
            if len(problems) == SHOWN:
                break
    if kind is None:
        raise InvalidRequest("the file is empty", param="file")
    if problems:
        more = " (and maybe more)" if len(problems) == SHOWN else ""
        raise InvalidRequest("the file is not fine-tuning JSONL (one chat example per line): "
                             f"{'; '.join(problems)}{more}", param="file")
    return kind


def _names_answers(raw: bytes) -> bool:
    try:
        data = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError):
        return False
    return isinstance(data, dict) and ("chosen" in data or "rejected" in data)


def parse_line(raw: bytes, kind: str) -> dict[str, Any]:
    """One line as a clean example (only the fields aifab keeps); raises ``Malformed``."""
    try:
        data = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise Malformed("not UTF-8 text") from None
    except json.JSONDecodeError as exc:
        raise Malformed(f"not valid JSON ({exc.msg} at column {exc.colno})") from None
    if not isinstance(data, dict):
        raise Malformed("expected a JSON object")
    preference = "chosen" in data or "rejected" in data
    if preference != (kind == "preference"):
        raise Malformed("a preference line (chosen/rejected) in an sft import: use --kind preference"
                        if preference else "'chosen' and 'rejected' are required in a preference import")
    messages = _messages(data.get("messages"))
    if not any(m["role"] == "user" for m in messages):
        raise Malformed("'messages' needs at least one user message")
    if not preference:
        if messages[-1]["role"] != "assistant":
            raise Malformed("'messages' must end with an assistant message")
        if not messages[-1]["content"].strip():
            raise Malformed("the last assistant message is empty")
        return {"messages": messages}
    if messages[-1]["role"] != "user":
        raise Malformed("the 'messages' of a preference line must end with a user message")
    chosen, rejected = _answer(data, "chosen"), _answer(data, "rejected")
    if chosen == rejected:
        raise Malformed("'chosen' and 'rejected' are the same")
    return {"messages": messages, "chosen": chosen, "rejected": rejected}


def _messages(value: Any) -> list[dict[str, Any]]:
    if not isinstance(value, list) or not value:
        raise Malformed("'messages' must be a non-empty list")
    out = []
    for i, m in enumerate(value, start=1):
        if not isinstance(m, dict):
            raise Malformed(f"message {i} is not an object")
        role, content = m.get("role"), m.get("content")
        if role not in ROLES:
            raise Malformed(f"message {i}: 'role' must be system, user or assistant, not {role!r}")
        if not isinstance(content, str):
            raise Malformed(f"message {i}: 'content' must be a string")
        clean: dict[str, Any] = {"role": role, "content": content}
        if isinstance(m.get("name"), str):
            clean["name"] = m["name"]
        if "weight" in m:
            if role != "assistant" or m["weight"] not in (0, 1) or isinstance(m["weight"], bool):
                raise Malformed(f"message {i}: 'weight' must be 0 or 1, on an assistant message")
            clean["weight"] = m["weight"]
        out.append(clean)
    return out


def _answer(data: dict[str, Any], field: str) -> str:
    value = data.get(field)
    if not isinstance(value, str) or not value.strip():
        raise Malformed(f"'{field}' must be a non-empty string")
    return value
