"""Reading the dataset store's layout and bare JSONL files: validation, splits, names."""

from __future__ import annotations

import json

import pytest
from finetune_helpers import chat, questions, write_dataset, write_jsonl

from aifab.errors import InvalidRequest
from aifab.finetune.data import MIN_SPLIT, load_dataset_dir, resolve_dataset


def test_a_version_directory_is_read_with_its_identity(tmp_path):
    d = write_dataset(tmp_path, [chat("a?", "b")] * 3, [chat("c?", "d")], name="support", version="v2")
    ds = load_dataset_dir(d)
    assert (ds.name, ds.version, ds.kind) == ("support", "v2", "sft")
    assert len(ds.train) == 3 and len(ds.eval) == 1
    assert ds.lineage()["sha256"] == "0" * 64 and ds.lineage()["counts"] == {"train": 3, "eval": 1}


def test_every_bad_line_is_named_with_its_number(tmp_path):
    good = json.dumps(chat("q?", "a"))
    lines = [
        good,
        "{not json",
        json.dumps({"messages": [{"role": "robot", "content": "x"}]}),
        json.dumps({"messages": [{"role": "user", "content": "only a question"}]}),
        good,
        json.dumps({"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": 3}]}),
        json.dumps({"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a", "weight": 0}]}),
    ]
    path = tmp_path / "bad.jsonl"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(InvalidRequest) as err:
        load_dataset_dir(path)
    message = err.value.message
    assert "5 bad line(s)" in message
    for number in (2, 3, 4, 6, 7):
        assert f"line {number}:" in message
    assert "line 1:" not in message and "line 5:" not in message
    assert "not JSON" in message and "'robot'" in message and "no assistant message" in message


def test_preference_lines_and_kind_mismatch(tmp_path):
    pair = {"messages": [{"role": "user", "content": "Hi"}], "chosen": "Hello!", "rejected": "Go away."}
    d = write_dataset(tmp_path, [pair] * 2, [pair], kind="preference", name="prefs")
    ds = load_dataset_dir(d)
    assert ds.kind == "preference" and ds.train[0].chosen == "Hello!"
    mixed = write_dataset(tmp_path, [pair, chat("q?", "a")], [], kind="preference", name="mixed")
    with pytest.raises(InvalidRequest, match="line 2: a sft example in a preference dataset"):
        load_dataset_dir(mixed)
    same = write_dataset(tmp_path, [{**pair, "rejected": "Hello!"}], [], kind="preference", name="same")
    with pytest.raises(InvalidRequest, match="line 1: 'chosen' and 'rejected' are the same"):
        load_dataset_dir(same)


def test_a_bare_file_is_split_90_10_the_same_way_every_time(tmp_path):
    rows = [chat(q, str(i)) for i, q in enumerate(questions(50))]
    path = write_jsonl(tmp_path / "mine.jsonl", rows)
    a, b = load_dataset_dir(path), load_dataset_dir(path)
    assert (len(a.train), len(a.eval)) == (45, 5)
    assert [e.line for e in a.eval] == [e.line for e in b.eval]
    assert {e.line for e in a.train} | {e.line for e in a.eval} == set(range(1, 51))
    assert a.name == "mine" and len(a.sha256) == 64


def test_a_bare_file_too_small_to_split_is_refused_with_the_minimum(tmp_path):
    path = write_jsonl(tmp_path / "few.jsonl", [chat(q, "a") for q in questions(MIN_SPLIT - 1)])
    with pytest.raises(InvalidRequest, match=f"has {MIN_SPLIT - 1} example.*at least {MIN_SPLIT}"):
        load_dataset_dir(path)


def test_names_resolve_to_the_latest_version_or_the_one_asked(tmp_path):
    root = tmp_path / "datasets"
    for v in ("v1", "v2", "v10"):
        write_dataset(root, [chat("q?", v)], [], name="tickets", version=v)
    assert resolve_dataset("tickets", tmp_path).name == "v10"
    assert resolve_dataset("tickets@v2", tmp_path).name == "v2"
    with pytest.raises(InvalidRequest, match="no version v3"):
        resolve_dataset("tickets@v3", tmp_path)
    with pytest.raises(InvalidRequest, match="no dataset 'nope'"):
        resolve_dataset("nope", tmp_path)
