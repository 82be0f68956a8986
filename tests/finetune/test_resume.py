"""kill -9 in the middle of a run, then the same call again: it resumes from the last checkpoint and
ends exactly where an uninterrupted run ends (same per-step losses, same adapter bytes)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytest.importorskip("peft")
pytestmark = pytest.mark.slow  # ~30 s: three processes

CHILD = textwrap.dedent("""
    import os, signal, sys
    from pathlib import Path
    from aifab.finetune import FinetuneConfig, finetune
    from aifab.registry.inspect import inspect_path

    base, data, out, kill_at = sys.argv[1], sys.argv[2], Path(sys.argv[3]), int(sys.argv[4])
    cfg = FinetuneConfig(max_steps=12, batch_size=4, lr=1e-2, checkpoint_every=4, threads=1, eval_generate=2,
                         eval_max_new_tokens=2, lora_dropout=0.1)  # dropout: the RNG state must resume too

    def progress(info):
        if info.step == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)  # mid-run, between checkpoints (4 and 8)

    result = finetune(inspect_path(Path(base), "tiny"), data, cfg, out, progress=progress)
    print(result.package.sha256)
""")


def run(tiny_dir: Path, data: Path, out: Path, kill_at: int = 0) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", CHILD, str(tiny_dir), str(data), str(out), str(kill_at)],
                          capture_output=True, text=True, timeout=180)


def losses(out: Path) -> list[float]:
    return [json.loads(line)["loss"] for line in (out / "train" / "metrics.jsonl").read_text().splitlines()]


def test_kill_9_then_resume_ends_bit_identical(tiny_dir, constant_task, tmp_path):
    straight = run(tiny_dir, constant_task, tmp_path / "straight")
    assert straight.returncode == 0, straight.stderr

    killed = run(tiny_dir, constant_task, tmp_path / "resumed", kill_at=7)
    assert killed.returncode == -signal.SIGKILL
    assert len(losses(tmp_path / "resumed")) >= 4  # the checkpoint at step 4 and its metric lines survive
    assert not (tmp_path / "resumed" / "aifab.json").exists()

    resumed = run(tiny_dir, constant_task, tmp_path / "resumed")
    assert resumed.returncode == 0, resumed.stderr
    assert losses(tmp_path / "resumed") == losses(tmp_path / "straight")  # bit-identical, every step
    assert resumed.stdout.split()[-1] == straight.stdout.split()[-1]  # the adapter's sha256
    summary = json.loads((tmp_path / "resumed" / "train" / "summary.json").read_text())
    assert summary["resumed_from"] == 4 and summary["steps"] == 12
