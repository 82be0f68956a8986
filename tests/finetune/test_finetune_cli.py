"""`aifab finetune` as a user runs it: a real subprocess, its output and its exit code."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from finetune_helpers import ANSWER, chat, questions, write_jsonl

pytest.importorskip("peft")


def aifab(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "aifab.cli.main", *args], capture_output=True, text=True, timeout=300)


def test_help_lists_the_flags():
    r = aifab("finetune", "--help")
    assert r.returncode == 0
    for flag in ("--base", "--dataset", "--method", "--lora-r", "--epochs", "--lr", "--batch-tokens", "--max-length",
                 "--no-resume", "--json"):
        assert flag in r.stdout


def test_a_run_on_a_jsonl_file_prints_json_and_registers_the_model(tiny_dir, tmp_path):
    d = str(tmp_path / "d")
    assert aifab("models", "import", str(tiny_dir), "--name", "tiny", "--data-dir", d).returncode == 0
    data = write_jsonl(tmp_path / "blue.jsonl", [chat(q, ANSWER) for q in questions(30)])
    r = aifab("finetune", "--base", "tiny", "--dataset", str(data), "--name", "tiny-blue", "--max-steps", "6",
              "--batch-size", "4", "--lr", "0.01", "--threads", "1", "--eval-generate", "3", "--json", "--data-dir", d)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["name"] == "tiny-blue" and out["method"] == "sft" and out["steps"] == 6
    assert out["eval"]["answered"] == 3 and out["tokens_per_s"] > 0
    assert out["package"]["lineage"]["dataset"]["name"] == "blue"
    shown = json.loads(aifab("models", "show", "tiny-blue", "--json", "--data-dir", d).stdout)
    assert list(shown["adapters"]) == ["tiny-blue"]
    again = aifab("finetune", "--base", "tiny", "--dataset", str(data), "--name", "tiny-blue", "--data-dir", d)
    assert again.returncode == 1 and "already exists" in again.stderr and "Traceback" not in again.stderr


def test_a_missing_dataset_is_one_line_and_exit_1(tmp_path):
    r = aifab("finetune", "--dataset", "no-such-dataset", "--data-dir", str(tmp_path / "d"))
    assert r.returncode == 1
    assert r.stderr.strip().count("\n") == 0 and "no dataset 'no-such-dataset'" in r.stderr
    assert "Traceback" not in r.stderr
