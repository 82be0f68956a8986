"""Fine-tuning jobs (``aifab finetune`` runs, and ``/v1/fine_tuning/jobs``): a table of jobs with their
events, and a runner that executes one job at a time in a child process — so training never competes
with the server for its interpreter, a cancel is a kill, and a job interrupted by a restart is picked up
again and resumes from its last checkpoint."""

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
        with self.db.session() as s:
            row = s.get(FinetuneJobRow, job_id)
            if row is None:
                return
            event = {"id": f"ftevent-{uuid.uuid4().hex[:20]}", "object": "fine_tuning.job.event",
                     "created_at": int(time.time()), "level": level, "message": message,
                     "data": data or {}, "type": "message"}
            row.events = [*row.events, event]

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
        out = self._follow(job_id, self._proc)
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

    def _follow(self, job_id: str, proc: subprocess.Popen[str]) -> dict[str, Any]:
        """Progress lines (stderr) become events, at most one every few seconds; stdout is the result."""
        lines: list[str] = []
        last = 0.0
        assert proc.stderr is not None and proc.stdout is not None
        for line in proc.stderr:
            line = line.strip()
            if not line:
                continue
            lines.append(line)
            if time.monotonic() - last > 3 or "error" in line.lower():
                self.store.event(job_id, line[:500])
                last = time.monotonic()
        return {"stdout": proc.stdout.read(), "stderr": lines}


def _result_name(row: FinetuneJobRow) -> str:
    return f"{row.base}-ft-{row.suffix or row.id.removeprefix('ftjob-')[:8]}"
