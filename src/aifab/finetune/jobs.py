"""Fine-tuning jobs (``aifab finetune`` runs, and ``/v1/fine_tuning/jobs``): a table of jobs with their
events, and a runner that executes one job at a time in a child process — so training never competes
with the server for its interpreter, a cancel is a kill, and a job interrupted by a restart is picked up
again and resumes from its last checkpoint.

While the child trains, the per-step lines of its ``metrics.jsonl`` become OpenAI ``metrics`` events
(``"type": "metrics"``, ``"data": {"step", "train_loss", ...}``; ``step`` counts steps done, from 1), which
is what draws a loss curve; its progress lines on stderr become ``message`` events."""

from __future__ import annotations

import builtins
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import select

from aifab.errors import InvalidRequest, NotFound
from aifab.state import Database
from aifab.state.tables import FinetuneJobRow

log = logging.getLogger("aifab.finetune")
ACTIVE = ("validating_files", "queued", "running")
FINAL = ("succeeded", "failed", "cancelled")


class JobStore:
    def __init__(self, db: Database) -> None:
        self.db = db
        self._write = threading.Lock()  # events are a read-modify-write of one column, from two threads

    def create(self, *, base: str, dataset: str, method: str, hyperparameters: dict[str, Any], suffix: str | None,
               key_id: str | None, training_file: str | None = None) -> dict[str, Any]:
        job_id = "ftjob-" + uuid.uuid4().hex[:24]
        params = {**hyperparameters, "training_file": training_file}
        with self.db.session() as s:
            s.add(FinetuneJobRow(id=job_id, status="queued", base=base, dataset=dataset, method=method,
                                 hyperparameters=params, suffix=suffix, key_id=key_id, events=[]))
        self.event(job_id, f"job created: {method} fine-tune of {base} on {dataset}")
        return self.get(job_id)

    def row(self, job_id: str) -> FinetuneJobRow:
        with self.db.session() as s:
            row = s.get(FinetuneJobRow, job_id)
            if row is None:
                raise NotFound(f"no fine-tuning job with id '{job_id}'", param="fine_tuning_job_id")
            s.expunge(row)
            return row

    def get(self, job_id: str) -> dict[str, Any]:
        return to_openai(self.row(job_id))

    def list(self, *, limit: int = 20, after: str | None = None, key_id: str | None = None) -> list[dict[str, Any]]:
        with self.db.session() as s:
            q = select(FinetuneJobRow).order_by(FinetuneJobRow.created_at.desc(), FinetuneJobRow.id)
            if key_id is not None:
                q = q.where(FinetuneJobRow.key_id == key_id)
            rows = list(s.scalars(q))
        if after is not None:
            ids = [r.id for r in rows]
            rows = rows[ids.index(after) + 1:] if after in ids else []
        return [to_openai(r) for r in rows[:limit]]

    def update(self, job_id: str, **fields: Any) -> None:
        with self.db.session() as s:
            row = s.get(FinetuneJobRow, job_id)
            if row is None:
                return
            for k, v in fields.items():
                setattr(row, k, v)
            if fields.get("status") in FINAL:
                row.finished_at = datetime.now(UTC)

    def event(self, job_id: str, message: str, *, level: str = "info", data: dict[str, Any] | None = None) -> None:
        self._append(job_id, [_event(message, level=level, data=data or {})])

    def metrics(self, job_id: str, rows: builtins.list[dict[str, Any]]) -> None:
        """One ``metrics`` event per line of the trainer's ``metrics.jsonl`` (``step`` there counts from 0)."""
        events = []
        for r in rows:
            data: dict[str, Any] = {"step": r["step"] + 1, "train_loss": r["loss"],
                    **{k: r[k] for k in ("lr", "tokens") if k in r}}
            events.append(_event(f"step {data['step']}: training loss {r['loss']:.4f}", data=data, type_="metrics"))
        if events:
            self._append(job_id, events)

    def last_step(self, job_id: str) -> int:
        """The last step with a ``metrics`` event, 0 if none: a resumed run reports only the steps after it."""
        steps = [e["data"]["step"] for e in self.row(job_id).events if e.get("type") == "metrics"]
        return max(steps, default=0)

    def _append(self, job_id: str, events: builtins.list[dict[str, Any]]) -> None:
        with self._write, self.db.session() as s:
            row = s.get(FinetuneJobRow, job_id)
            if row is not None:
                row.events = [*row.events, *events]

    def events(self, job_id: str, *, limit: int = 20, after: str | None = None) -> builtins.list[dict[str, Any]]:
        events = list(reversed(self.row(job_id).events))  # newest first, as OpenAI lists them
        if after is not None:
            ids = [e["id"] for e in events]
            events = events[ids.index(after) + 1:] if after in ids else []
        return events[:limit]

    def pending(self) -> builtins.list[str]:
        with self.db.session() as s:
            q = select(FinetuneJobRow.id).where(FinetuneJobRow.status.in_(ACTIVE)).order_by(FinetuneJobRow.created_at)
            return list(s.scalars(q))


def _event(message: str, *, level: str = "info", data: dict[str, Any], type_: str = "message") -> dict[str, Any]:
    return {"id": f"ftevent-{uuid.uuid4().hex[:20]}", "object": "fine_tuning.job.event", "created_at": int(time.time()),
            "level": level, "message": message, "data": data, "type": type_}


class MetricsTail:
    """The lines a training child appends to its ``metrics.jsonl``, read as they come: only whole lines, each
    step once (``after``: steps, counted from 1, already reported). A file that shrinks was rewritten by a
    resumed run (which keeps only the steps before its checkpoint) and is read again from its start."""

    def __init__(self, path: Path, *, after: int = 0) -> None:
        self.path, self.after, self.offset = path, after, 0

    def read(self) -> builtins.list[dict[str, Any]]:
        try:
            if self.path.stat().st_size < self.offset:
                self.offset = 0
            with open(self.path, "rb") as f:
                f.seek(self.offset)
                data = f.read()
        except FileNotFoundError:
            return []
        whole = data[: data.rfind(b"\n") + 1]  # a line still being written waits for the next read
        self.offset += len(whole)
        rows = []
        for line in whole.splitlines():
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(row, dict) and isinstance(row.get("step"), int) and row["step"] + 1 > self.after \
                    and isinstance(row.get("loss"), int | float):
                rows.append(row)
                self.after = row["step"] + 1
        return rows


def metrics_file(data_dir: Path, name: str) -> Path:
    """Where ``aifab finetune --name NAME --data-dir DATA_DIR`` keeps its per-step metrics: the run's
    ``train/`` folder inside the package it writes under the registry's ``models/`` folder."""
    return data_dir / "models" / name / "train" / "metrics.jsonl"


def to_openai(row: FinetuneJobRow) -> dict[str, Any]:
    """A job as the OpenAI API shows one (``fine_tuning.job``)."""
    hp = dict(row.hyperparameters)
    gate = row.gate or {}
    return {
        "id": row.id, "object": "fine_tuning.job", "created_at": _ts(row.created_at),
        "finished_at": _ts(row.finished_at), "model": row.base, "fine_tuned_model": row.result_model,
        "organization_id": "aifab", "status": row.status, "training_file": hp.pop("training_file", None),
        "validation_file": None, "result_files": [], "trained_tokens": gate.get("trained_tokens"),
        "hyperparameters": {"n_epochs": hp.get("n_epochs", 1), "batch_size": hp.get("batch_size", 8),
                            "learning_rate_multiplier": hp.get("learning_rate_multiplier", 1.0)},
        "method": {"type": "dpo" if row.method == "dpo" else "supervised"}, "suffix": row.suffix, "seed": 0,
        "error": {"code": "failed", "message": row.error, "param": None} if row.error else None,
        "estimated_finish": None, "integrations": [], "user_provided_suffix": row.suffix,
        "aifab": {"dataset": row.dataset, "gate": row.gate, "method": row.method},
    }


def _ts(value: datetime | None) -> int | None:
    return int(value.replace(tzinfo=value.tzinfo or UTC).timestamp()) if value else None


class JobRunner:
    """Runs queued jobs one at a time: ``aifab finetune ... --json`` in a child process. Its progress lines
    become the job's events; its final JSON, the result."""

    def __init__(self, store: JobStore, *, data_dir: Path, config: Path | None = None) -> None:
        self.store, self.data_dir, self.config = store, data_dir, config
        self.on_success: Callable[[str], None] | None = None  # e.g. load the new model into the server
        self._wake = threading.Event()
        self._stop = False
        self._proc: subprocess.Popen[str] | None = None
        self._current: str | None = None
        self._cancelled: set[str] = set()
        self._thread = threading.Thread(target=self._run, name="aifab-finetune-jobs", daemon=True)

    def start(self) -> None:
        if not self._thread.is_alive():
            self._thread.start()

    def submit(self) -> None:
        self._wake.set()

    def cancel(self, job_id: str) -> dict[str, Any]:
        row = self.store.row(job_id)
        if row.status in FINAL:
            raise InvalidRequest(f"job '{job_id}' has already {row.status}", param="fine_tuning_job_id")
        self._cancelled.add(job_id)
        self.store.update(job_id, status="cancelled")
        self.store.event(job_id, "job cancelled")
        if self._current == job_id and self._proc is not None and self._proc.poll() is None:
            os.killpg(self._proc.pid, signal.SIGKILL)
        return self.store.get(job_id)

    def close(self) -> None:
        self._stop = True
        self._wake.set()
        if self._proc is not None and self._proc.poll() is None:
            os.killpg(self._proc.pid, signal.SIGTERM)  # the trainer checkpoints on SIGTERM; resumed next start
        self._thread.join(timeout=10)

    def _run(self) -> None:
        while not self._stop:
            for job_id in self.store.pending():
                if self._stop:
                    return
                if job_id not in self._cancelled:
                    self._execute(job_id)
            self._wake.wait(2.0)
            self._wake.clear()

    def _execute(self, job_id: str) -> None:
        row = self.store.row(job_id)
        hp = row.hyperparameters
        name = _result_name(row)
        cmd = [sys.executable, "-m", "aifab.cli.main", "finetune", "--base", row.base, "--dataset", row.dataset,
               "--name", name, "--method", row.method, "--epochs", str(hp.get("n_epochs", 1)),
               "--batch-size", str(hp.get("batch_size", 8)), "--json", "--data-dir", str(self.data_dir)]
        for flag in ("max_steps", "lora_r", "max_length", "lr", "gate_margin"):  # aifab's own extras
            if hp.get(flag) is not None:
                cmd += [f"--{flag.replace('_', '-')}", str(hp[flag])]
        if self.config is not None:
            cmd += ["--config", str(self.config)]
        self.store.update(job_id, status="running")
        self.store.event(job_id, "training started")
        self._current = job_id
        self._proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                      start_new_session=True, env={**os.environ, "NO_COLOR": "1"})
        tail = MetricsTail(metrics_file(self.data_dir, name), after=self.store.last_step(job_id))
        out = self._follow(job_id, self._proc, tail)
        code = self._proc.wait()
        self._current = None
        if job_id in self._cancelled or self._stop:
            return
        if code != 0:
            error = out["stderr"][-1] if out["stderr"] else f"aifab finetune exited with {code}"
            self.store.update(job_id, status="failed", error=error)
            self.store.event(job_id, f"job failed: {error}", level="error")
            return
        try:
            result = json.loads(out["stdout"])
        except json.JSONDecodeError:
            self.store.update(job_id, status="failed", error="the trainer's result could not be read")
            return
        gate = result.get("gate") or {}
        gate["trained_tokens"] = result.get("tokens")
        if self.on_success is not None:
            try:
                self.on_success(name)
            except Exception as exc:  # noqa: BLE001 — the model is registered; serving it can be retried
                self.store.event(job_id, f"the new model could not be loaded: {exc}", level="warn")
        self.store.update(job_id, status="succeeded", result_model=name, gate=gate)
        self.store.event(job_id, f"new model created: {name}", data={"eval": result.get("eval"), "gate": gate})

    def _follow(self, job_id: str, proc: subprocess.Popen[str], tail: MetricsTail,
                every: float = 1.0) -> dict[str, Any]:
        """Progress lines (stderr) become events, at most one every few seconds; the metrics file is read
        every ``every`` seconds (a thread: stderr may stay quiet for a whole run) and once more at the end;
        stdout is the result."""
        lines: list[str] = []
        last = 0.0
        done = threading.Event()

        def watch() -> None:
            while not done.wait(every):
                self.store.metrics(job_id, tail.read())

        watcher = threading.Thread(target=watch, name="aifab-finetune-metrics", daemon=True)
        watcher.start()
        assert proc.stderr is not None and proc.stdout is not None
        try:
            for line in proc.stderr:
                line = line.strip()
                if not line:
                    continue
                lines.append(line)
                if time.monotonic() - last > 3 or "error" in line.lower():
                    self.store.event(job_id, line[:500])
                    last = time.monotonic()
            stdout = proc.stdout.read()
        finally:
            done.set()
            watcher.join()
        self.store.metrics(job_id, tail.read())
        return {"stdout": stdout, "stderr": lines}


def _result_name(row: FinetuneJobRow) -> str:
    return f"{row.base}-ft-{row.suffix or row.id.removeprefix('ftjob-')[:8]}"
