"""DDP under torchrun: two CPU processes (gloo) train one model; rank 0 writes, and a rerun resumes."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from aifab.testing.text import write_text_corpus

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_torchrun_two_cpu_processes(tmp_path):
    corpus = write_text_corpus(tmp_path / "corpus")
    data = tmp_path / "data"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
           "-m", "aifab.cli.main", "train", str(corpus), "--data-dir", str(data), "--tokenizer", "char",
           "--n-layer", "2", "--n-head", "2", "--n-embd", "32", "--block-size", "32", "--batch-size", "4",
           "--eval-every", "10", "--eval-batches", "2", "--log-every", "5", "--checkpoint-every", "10",
           "--sample-tokens", "0", "--package", "none", "--threads", "1", "--warmup", "2"]
    first = subprocess.run([*cmd, "--steps", "20"], capture_output=True, text=True, timeout=300)
    assert first.returncode == 0, first.stderr[-3000:]
    assert "x 2 processes" in first.stderr
    records = [json.loads(line) for line in (data / "runs/default/train/metrics.jsonl").read_text().splitlines()]
    train = [r for r in records if r["kind"] == "train"]
    assert [r["step"] for r in train] == list(range(20))  # written once, by rank 0
    assert train[-1]["tokens"] == 20 * 4 * 32 * 2
    state = torch.load(data / "runs/default/train/last.pt", weights_only=False)
    assert len(state["samplers"]) == 2 and not torch.equal(state["samplers"][0], state["samplers"][1])
