"""``import_jsonl``: OpenAI chat fine-tuning files; malformed lines reported by number and skipped, or the
whole file refused with ``strict``; duplicates dropped; the file's hash kept as the version's source."""

from __future__ import annotations

import hashlib
import json

import pytest

from aifab.errors import InvalidRequest
from aifab.finetune.datasets import import_jsonl, read_jsonl
from aifab.testing.interactions import TOPICS


def chat(topic: str, **extra) -> str:
    return json.dumps({"messages": [{"role": "system", "content": "Be brief."},
                                    {"role": "user", "content": f"What are {topic}?"},
                                    {"role": "assistant", "content": f"{topic} explained.", **extra}]})


BAD = {
    3: "{not json",
    5: json.dumps([1, 2]),
    6: json.dumps({"messages": [{"role": "user", "content": "hi"}]}),
    8: json.dumps({"messages": [{"role": "tool", "content": "x"}, {"role": "assistant", "content": "y"}]}),
    9: json.dumps({"messages": [{"role": "user", "content": 3}, {"role": "assistant", "content": "y"}]}),
    11: json.dumps({"messages": [{"role": "assistant", "content": "y"}]}),
    12: chat("weights", weight=2),
    13: json.dumps({"messages": [{"role": "user", "content": "q"}], "chosen": "a", "rejected": "b"}),
}
REASONS = {
    3: "not valid JSON", 5: "expected a JSON object", 6: "'messages' must end with an assistant message",
    8: "message 1: 'role' must be system, user or assistant, not 'tool'", 9: "message 1: 'content' must be a string",
    11: "'messages' needs at least one user message", 12: "message 3: 'weight' must be 0 or 1",
    13: "a preference line (chosen/rejected) in an sft import",
}


def write_file(path, good: list[str]) -> None:
    rows, good_iter = [], iter(good)
    for number in range(1, 14 + len(good)):
        rows.append(BAD.get(number) or ("" if number == 4 else next(good_iter, "")))
    path.write_text("\n".join(rows) + "\n")


def test_malformed_lines_are_reported_by_number_and_skipped(store, tmp_path):
    path = tmp_path / "train.jsonl"
    write_file(path, [chat(t) for t in TOPICS[:11]] + [chat(TOPICS[0]), chat("weights", weight=0)])
    reported: list[str] = []
    saved = import_jsonl(store, path, "file-ds", report=reported.append)
    assert reported == list(saved.problems) and len(reported) == len(BAD)
    for line, (number, reason) in zip(reported, sorted(REASONS.items()), strict=True):
        assert line.startswith(f"line {number}: ") and reason in line, line
    v = saved.version
    assert v.counts["dropped"] == {"malformed": 8, "duplicate": 1} and v.counts["train"] + v.counts["eval"] == 12
    assert v.source == {"from": "file", "path": str(path.resolve()),
                        "sha256": hashlib.sha256(path.read_bytes()).hexdigest()}
    kept = list(v.examples("train")) + list(v.examples("eval"))
    assert {"role": "assistant", "content": "weights explained.", "weight": 0} in [e["messages"][-1] for e in kept]


def test_strict_refuses_the_whole_file(store, tmp_path):
    path = tmp_path / "train.jsonl"
    write_file(path, [chat(t) for t in TOPICS[:12]])
    with pytest.raises(InvalidRequest, match=r"8 malformed line\(s\), nothing imported \(--strict\): line 3: "):
        import_jsonl(store, path, "strict-ds", strict=True)
    assert store.list() == [] and not (store.root / "strict-ds").exists()


def test_preference_lines(store, tmp_path):
    path = tmp_path / "prefs.jsonl"
    good = [json.dumps({"messages": [{"role": "user", "content": f"Tell me about {t}."}],
                        "chosen": f"{t}: a fair summary.", "rejected": "No idea."}) for t in TOPICS[:10]]
    bad = [json.dumps({"messages": [{"role": "user", "content": "q"}], "chosen": "same", "rejected": "same"}),
           json.dumps({"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}],
                       "chosen": "x", "rejected": "y"}),
           json.dumps({"messages": [{"role": "user", "content": "q"}], "chosen": "", "rejected": "y"}),
           chat("plain")]
    path.write_text("\n".join(good + bad) + "\n")
    parsed = read_jsonl(path, kind="preference")
    assert [p.split(": ", 1)[1] for p in parsed.problems] == [
        "'chosen' and 'rejected' are the same", "the 'messages' of a preference line must end with a user message",
        "'chosen' must be a non-empty string", "'chosen' and 'rejected' are required in a preference import"]
    assert [p.split(":")[0] for p in parsed.problems] == ["line 11", "line 12", "line 13", "line 14"]
    v = import_jsonl(store, path, "prefs", kind="preference").version
    assert v.kind == "preference" and v.counts["train"] + v.counts["eval"] == 10


def test_a_missing_file_or_an_empty_one_is_a_clear_error(store, tmp_path):
    with pytest.raises(InvalidRequest, match="no such file"):
        import_jsonl(store, tmp_path / "nope.jsonl", "x")
    (tmp_path / "empty.jsonl").write_text("\n\n")
    with pytest.raises(InvalidRequest, match=r"0 example\(s\).*at least 10"):
        import_jsonl(store, tmp_path / "empty.jsonl", "x")
