from __future__ import annotations

import json

import pytest

from aifab.errors import InvalidDocument, InvalidRequest
from aifab.training import data
from aifab.training.config import DataConfig


def build(tmp_path, cfg=None, sources=None):
    cfg = cfg or DataConfig(sources=[str(tmp_path / "in")])
    return data.build(data.discover(cfg), cfg, tmp_path / "out")


def write(path, text, mode="w"):
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")


def test_tail_split_is_the_sorted_concatenation(tmp_path):
    write(tmp_path / "in/b/2.txt", "second document\n" * 5)
    write(tmp_path / "in/a.txt", "first document\n" * 5)
    write(tmp_path / "in/c.bin", "ignored: not a text suffix")
    write(tmp_path / "in/.hidden/x.txt", "ignored: hidden")
    stats = build(tmp_path)
    whole = "first document\n" * 5 + "\n" + "second document\n" * 5 + "\n"
    cut = int(len(whole) * 0.9)
    assert (tmp_path / "out/train.txt").read_text() == whole[:cut]
    assert (tmp_path / "out/val.txt").read_text() == whole[cut:]
    assert stats["documents"] == 2 and stats["train_chars"] == cut
    assert json.loads((tmp_path / "out/data.json").read_text())["sha256"] == stats["sha256"]


def test_hash_is_deterministic_and_follows_the_content(tmp_path):
    write(tmp_path / "in/a.txt", "alpha beta gamma\n" * 20)
    first = build(tmp_path)["sha256"]
    assert build(tmp_path)["sha256"] == first
    write(tmp_path / "in/a.txt", "alpha beta delta\n" * 20)
    assert build(tmp_path)["sha256"] != first


def test_cleaning_dedups_documents_and_lines_and_filters_length(tmp_path):
    line = "this line is long enough to count as a duplicate line"
    write(tmp_path / "in/1.txt", f"{line}\nshort\nshort\nunique one\r\n")
    write(tmp_path / "in/2.txt", f"{line}\nshort\nshort\nunique one\r\n")  # the same document
    write(tmp_path / "in/3.txt", f"{line}\nunique two\n")
    write(tmp_path / "in/4.txt", "tiny")
    cfg = DataConfig(sources=[str(tmp_path / "in")], dedup_lines=True, min_doc_chars=10, val_fraction=0.5)
    stats = build(tmp_path, cfg)
    text = (tmp_path / "out/train.txt").read_text() + (tmp_path / "out/val.txt").read_text()
    assert text.count(line) == 1 and text.count("short") == 2 and "\r" not in text and "tiny" not in text
    assert (stats["duplicate_documents"], stats["duplicate_lines"], stats["filtered_length"]) == (1, 1, 1)


def test_encoding_repair_fixes_mojibake(tmp_path):
    write(tmp_path / "in/a.txt", "The caf\u00c3\u00a9 is open. " * 10)  # UTF-8 read as Latin-1
    build(tmp_path, DataConfig(sources=[str(tmp_path / "in")], val_fraction=0.5))
    assert "café" in (tmp_path / "out/train.txt").read_text()


def test_document_split_is_deterministic_by_content(tmp_path):
    for i in range(40):
        write(tmp_path / f"in/{i}.txt", f"document number {i}\n")
    cfg = DataConfig(sources=[str(tmp_path / "in")], split="documents", val_fraction=0.25)
    build(tmp_path, cfg)
    val = (tmp_path / "out/val.txt").read_text()
    build(tmp_path, cfg)
    assert (tmp_path / "out/val.txt").read_text() == val
    assert 0 < val.count("document number") < 40


@pytest.mark.parametrize("content, message", [
    (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "bad.txt is a binary file"),
    ("caf\u00e9 na\u00efve".encode("latin-1"), r"bad.txt is not UTF-8 \(byte 0xe9 at offset 3\)"),
])
def test_bad_files_are_named_before_anything_is_written(tmp_path, content, message):
    write(tmp_path / "in/good.txt", "fine text\n" * 10)
    write(tmp_path / "in/bad.txt", content)
    with pytest.raises(InvalidDocument, match=message):
        build(tmp_path)
    assert not (tmp_path / "out").exists()


def test_empty_corpus_is_refused(tmp_path):
    (tmp_path / "in").mkdir()
    with pytest.raises(InvalidRequest, match="no text files under"):
        build(tmp_path)
    write(tmp_path / "in/empty.txt", "  \n\n")
    with pytest.raises(InvalidRequest, match="the corpus is empty after cleaning"):
        build(tmp_path)
    with pytest.raises(InvalidRequest, match="the corpus is empty"):
        data.discover(DataConfig())
