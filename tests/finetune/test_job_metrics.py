"""A fine-tuning job's per-step metrics become OpenAI ``metrics`` events while its training child runs."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

from aifab.finetune.jobs import JobRunner, JobStore, MetricsTail


def line(step: int, loss: float) -> str:
    return json.dumps({"step": step, "loss": loss, "lr": 1e-4, "tokens": 10, "targets": 4}) + "\n"


def test_the_tail_reads_whole_lines_once_and_rereads_a_rewritten_file(tmp_path):
    path = tmp_path / "metrics.jsonl"
    tail = MetricsTail(path)
    assert tail.read() == []  # not written yet
    path.write_text(line(0, 2.5) + line(1, 2.0) + '{"step": 2, "lo')
    assert [(r["step"], r["loss"]) for r in tail.read()] == [(0, 2.5), (1, 2.0)]
    with open(path, "a") as f:
        f.write('ss": 1.5}\n' + "not json\n")
    assert [(r["step"], r["loss"]) for r in tail.read()] == [(2, 1.5)]
    assert tail.read() == []
    path.write_text(line(0, 2.5) + line(1, 2.0) + line(2, 1.5) + line(3, 1.25))  # a resumed run rewrote it
    path.write_text(line(0, 2.5) + line(1, 2.0))
    assert tail.read() == []  # shorter: read again from the start, but steps already reported are not repeated
    with open(path, "a") as f:
        f.write(line(2, 1.4) + line(3, 1.2))
    assert [r["step"] for r in tail.read()] == [3]
    assert [r["step"] for r in MetricsTail(path, after=3).read()] == [3]  # ``after`` counts steps done
    assert MetricsTail(path, after=4).read() == []


def test_the_runner_turns_the_childs_metrics_into_events(state_db, tmp_path):
    store = JobStore(state_db)
    job = store.create(base="tiny", dataset="d@v1", method="sft", hyperparameters={}, suffix=None, key_id=None)
    path = tmp_path / "metrics.jsonl"
    child = textwrap.dedent(f"""
        import json, sys
        with open({str(path)!r}, "a") as f:
            for step, loss in enumerate([3.0, 2.0, 1.0]):
                f.write(json.dumps({{"step": step, "loss": loss, "lr": 0.001, "tokens": 8}}) + "\\n")
                f.flush()
                print(f"step {{step}}", file=sys.stderr, flush=True)
        print(json.dumps({{"ok": True}}))
    """)
    proc = subprocess.Popen([sys.executable, "-c", child], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    runner = JobRunner(store, data_dir=tmp_path)
    out = runner._follow(job["id"], proc, MetricsTail(path, after=store.last_step(job["id"])))
    assert proc.wait() == 0 and json.loads(out["stdout"]) == {"ok": True}
    metrics = [e for e in reversed(store.events(job["id"], limit=100)) if e["type"] == "metrics"]
    assert [(e["data"]["step"], e["data"]["train_loss"]) for e in metrics] == [(1, 3.0), (2, 2.0), (3, 1.0)]
    assert all(e["object"] == "fine_tuning.job.event" and e["level"] == "info" for e in metrics)
    assert store.last_step(job["id"]) == 3
    assert any(e["type"] == "message" and e["message"] == "step 0" for e in store.events(job["id"], limit=100))


def test_the_loop_writes_each_steps_metrics_before_the_next_step(tmp_path):
    """Not only at checkpoints: a job runner following the file draws the loss while training runs."""
    import torch

    from aifab.finetune.config import FinetuneConfig
    from aifab.finetune.loop import Loop, StepStats

    model = torch.nn.Linear(2, 1)
    seen: list[int] = []

    def step(batch: list[int]) -> StepStats:
        seen.append(len((tmp_path / "metrics.jsonl").read_text().splitlines()))  # lines on disk so far
        loss = model(torch.ones(1, 2)).pow(2).sum()
        loss.backward()
        return StepStats(loss=loss.detach().item(), tokens=2, targets=1)

    cfg = FinetuneConfig(checkpoint_every=50, lr=0.01)
    Loop(model, [[0], [1], [2], [3]], step, cfg, tmp_path, "fp").run()
    assert seen == [0, 1, 2, 3]
    assert [r["step"] for r in MetricsTail(tmp_path / "metrics.jsonl").read()] == [0, 1, 2, 3]
