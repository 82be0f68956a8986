from __future__ import annotations

import json
import os
import signal

import pytest
import torch

from aifab.errors import ConfigError, InvalidRequest
from aifab.training import loop as loop_module
from aifab.training.evaluate import read_metrics
from aifab.training.pipeline import Pipeline


def losses(run_dir):
    records = read_metrics(run_dir / "train" / "metrics.jsonl")
    train = [(m["step"], m["loss"]) for m in records if m["kind"] == "train"]
    evals = [(m["step"], m["val_loss"]) for m in records if m["kind"] == "eval"]
    return train, evals



def test_stages_are_stamped_and_skipped_on_rerun(tiny_spec, tmp_path):
    messages = []
    first = Pipeline(tiny_spec(steps=10), data_dir=tmp_path / "d", report=messages.append).run()
    assert first["outcome"]["step"] == 10
    root = tmp_path / "d" / "runs" / "default"
    for stage in ("data", "tokenizer", "shards"):
        assert json.loads((root / stage / "stamp.json").read_text())["key"]
    assert (root / "train" / "loss.png").read_bytes()[:4] == b"\x89PNG"
    messages.clear()
    again = Pipeline(tiny_spec(steps=10), data_dir=tmp_path / "d", report=messages.append).run()
    assert any(m.startswith("data: unchanged") for m in messages)
    assert any(m.startswith("shards: unchanged") for m in messages)
    assert any(m.startswith("resuming at step 10") for m in messages)
    assert again["outcome"]["best_val_loss"] == first["outcome"]["best_val_loss"]
    with pytest.raises(ConfigError, match="--restart"):  # other settings, same run: refused, not mixed
        Pipeline(tiny_spec(steps=10, lr=5e-3), data_dir=tmp_path / "d").run()


def test_the_serving_hint_names_the_data_directory_of_the_package(tiny_spec, tmp_path, state_db):
    from aifab.registry import Registry

    data_dir = tmp_path / "my data"
    messages: list[str] = []
    registry = Registry(state_db, data_dir / "models")
    Pipeline(tiny_spec(steps=5, package="tiny"), data_dir=data_dir, registry=registry, report=messages.append).run()
    (hint,) = [m for m in messages if m.startswith("package: tiny")]
    assert hint.endswith(f"""serve it with AIFAB_MODELS__EXTRA='["tiny"]' aifab up --data-dir '{data_dir}'""")


def test_ctrl_c_saves_and_the_resumed_run_equals_an_uninterrupted_one(tiny_spec, tmp_path, monkeypatch):
    Pipeline(tiny_spec(name="whole"), data_dir=tmp_path / "d").run()

    train_step = loop_module.Trainer._train_step

    def interrupted_step(self, model, lr):
        if self.step == 13:
            os.kill(os.getpid(), signal.SIGINT)  # what Ctrl-C does, here between two log lines
        return train_step(self, model, lr)

    monkeypatch.setattr(loop_module.Trainer, "_train_step", interrupted_step)
    part = Pipeline(tiny_spec(name="part"), data_dir=tmp_path / "d").run()
    monkeypatch.undo()
    assert part["outcome"]["interrupted"] and part["package"] is None
    saved = torch.load(tmp_path / "d/runs/part/train/last.pt", weights_only=False)
    assert saved["step"] == 14  # the step in progress finishes; not the last periodic checkpoint (10)
    assert losses(tmp_path / "d/runs/part")[0][-1][0] == 13  # and its loss is written before the save
    resumed = Pipeline(tiny_spec(name="part"), data_dir=tmp_path / "d").run()
    assert resumed["outcome"]["step"] == 30
    a, b = losses(tmp_path / "d/runs/whole"), losses(tmp_path / "d/runs/part")
    assert [s for s, _ in a[0]] == list(range(30))
    assert a == b  # every per-step loss and validation loss, bit for bit


def test_best_checkpoint_and_early_stopping(tiny_spec, tmp_path, monkeypatch):
    scores = iter([3.0, 2.0, 2.5, 2.6, 1.0])
    monkeypatch.setattr(loop_module, "estimate_loss", lambda *a, **k: next(scores))
    out = Pipeline(tiny_spec(steps=100, patience=2), data_dir=tmp_path / "d").run()
    assert out["outcome"]["stopped_early"] and out["outcome"]["step"] == 30
    assert (out["outcome"]["best_val_loss"], out["outcome"]["best_step"]) == (2.0, 10)
    best = torch.load(tmp_path / "d/runs/default/train/best.pt", weights_only=False)
    assert best["step"] == 10 and best["val_loss"] == 2.0


def test_context_longer_than_the_data_is_refused_before_training(tiny_spec, tmp_path, corpus):
    with pytest.raises(InvalidRequest, match="context longer than the data: the validation split has"):
        Pipeline(tiny_spec(block_size=8192), data_dir=tmp_path / "d").run()
    assert not (tmp_path / "d/runs/default/tokenizer").exists()  # refused right after the data stage


def test_a_batch_that_cannot_fit_is_refused_before_any_stage(tiny_spec, tmp_path):
    with pytest.raises(InvalidRequest, match="the batch does not fit in memory"):
        Pipeline(tiny_spec(n_embd=4096, n_head=32, n_layer=48, block_size=4096, batch_size=512),
                 data_dir=tmp_path / "d").run()
    assert not (tmp_path / "d/runs").exists()
