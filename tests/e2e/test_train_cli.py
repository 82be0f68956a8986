"""`aifab train` as a user runs it: a real process, killed with -9 or Ctrl-C and run again, bad input."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import pytest
import torch

from aifab.testing.text import write_text_corpus

pytestmark = [pytest.mark.integration]

TINY = ["--tokenizer", "char", "--n-layer", "2", "--n-head", "2", "--n-embd", "32", "--block-size", "32",
        "--batch-size", "8", "--steps", "400", "--warmup", "10", "--eval-every", "100", "--eval-batches", "4",
        "--log-every", "5", "--checkpoint-every", "20", "--sample-tokens", "0", "--package", "none",
        "--threads", "1"]


def command(corpus, data, name, *extra):
    return [sys.executable, "-m", "aifab.cli.main", "train", str(corpus), "--data-dir", str(data), "--name", name,
            *TINY, *extra]


def train_records(data, name):
    path = data / "runs" / name / "train" / "metrics.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()]


def losses(data, name):
    records = train_records(data, name)
    return ([(r["step"], r["loss"]) for r in records if r["kind"] == "train"],
            [(r["step"], r["val_loss"]) for r in records if r["kind"] == "eval"])


def wait_for(predicate, proc, timeout=120.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.01)
    raise TimeoutError


@pytest.fixture
def corpus(tmp_path):
    return write_text_corpus(tmp_path / "corpus")


def test_kill_9_then_the_same_command_resumes_bit_identically(corpus, tmp_path):
    data = tmp_path / "data"
    whole = subprocess.run(command(corpus, data, "whole"), capture_output=True, text=True, timeout=300)
    assert whole.returncode == 0, whole.stderr

    proc = subprocess.Popen(command(corpus, data, "killed"), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    last = data / "runs" / "killed" / "train" / "last.pt"
    wait_for(last.exists, proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -9
    killed_at = torch.load(last, weights_only=False)["step"]
    assert 20 <= killed_at < 400

    again = subprocess.run(command(corpus, data, "killed"), capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr
    assert "data: unchanged" in again.stderr and "resuming at step" in again.stderr
    train_a, eval_a = losses(data, "whole")
    train_b, eval_b = losses(data, "killed")
    assert [s for s, _ in train_a] == list(range(400))
    assert train_a == train_b and eval_a == eval_b  # bit-identical, step by step


def test_ctrl_c_saves_a_checkpoint_and_exits_130(corpus, tmp_path):
    data = tmp_path / "data"
    proc = subprocess.Popen(command(corpus, data, "int", "--checkpoint-every", "1000"),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    metrics = data / "runs" / "int" / "train" / "metrics.jsonl"
    wait_for(lambda: metrics.exists() and '"kind": "train"' in metrics.read_text(), proc)
    proc.send_signal(signal.SIGINT)
    _out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    saved = torch.load(data / "runs" / "int" / "train" / "last.pt", weights_only=False)
    assert 0 < saved["step"] < 400  # no periodic checkpoint was due: this one is Ctrl-C's
    assert f"interrupted at step {saved['step']}: checkpoint saved" in err
    assert losses(data, "int")[0][-1][0] == saved["step"] - 1
    assert "Traceback" not in err


GOOD = "some good text\n" * 5


@pytest.mark.parametrize("files, message", [
    ({"b.txt": GOOD, "a.txt": b"GIF89a\x00\x01\x00\x00"}, "a.txt is a binary file"),
    ({"b.txt": GOOD, "a.txt": "\u00c6r\u00f8".encode("latin-1")}, "a.txt is not UTF-8"),
    ({"a.txt": "\n\n", "b.md": "  "}, "the corpus is empty after cleaning"),
    ({"a.txt": "short text\n" * 3}, "context longer than the data"),
])
def test_bad_input_gets_one_line_before_any_work(tmp_path, files, message):
    corpus = tmp_path / "in"
    corpus.mkdir()
    for name, content in files.items():
        (corpus / name).write_bytes(content if isinstance(content, bytes) else content.encode())
    r = subprocess.run(command(corpus, tmp_path / "data", "bad"), capture_output=True, text=True, timeout=120)
    assert r.returncode == 1
    lines = [line for line in r.stderr.splitlines() if line.startswith("aifab: error:")]
    assert len(lines) == 1 and message in lines[0], r.stderr
    assert "Traceback" not in r.stderr
    assert not (tmp_path / "data" / "runs" / "bad" / "train").exists()
