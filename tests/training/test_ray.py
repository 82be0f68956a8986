"""The Ray Train path: the same loop in 2 CPU workers (a torch process group between them)."""

from __future__ import annotations

import os

import pytest

from aifab.testing.requirements import require_module
from aifab.training.evaluate import read_metrics
from aifab.training.pipeline import Pipeline

pytestmark = [pytest.mark.slow, pytest.mark.integration]


@pytest.fixture
def local_ray(monkeypatch):
    # in the fixture, not at import: where Ray is required but missing, this test fails and the others run
    require_module("ray", install="pip install 'aifab[ray]'")
    import ray

    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    monkeypatch.setenv("RAY_TRAIN_V2_ENABLED", "1")
    src = os.path.dirname(os.path.dirname(os.path.abspath(__import__("aifab").__file__)))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [src, os.environ.get("PYTHONPATH")])))
    yield
    ray.shutdown()


def test_ray_train_with_two_cpu_workers(tiny_spec, tmp_path, local_ray):
    spec = tiny_spec(distributed="ray", workers=2, steps=20, threads=1)
    out = Pipeline(spec, data_dir=tmp_path / "d").run()
    assert out["outcome"]["step"] == 20
    records = read_metrics(tmp_path / "d/runs/default/train/metrics.jsonl")
    train = [r for r in records if r["kind"] == "train"]
    assert [r["step"] for r in train] == list(range(20))  # one writer (rank 0), every step
    assert train[-1]["tokens"] == 20 * 8 * 32 * 2  # two workers' batches per step
    evals = [r["val_loss"] for r in records if r["kind"] == "eval"]
    assert evals[-1] < evals[0]
