"""The OpenAI-compatible fine-tuning API's service: uploaded files (``/v1/files``, purpose ``fine-tune``)
and jobs (``/v1/fine_tuning/jobs``). A job's training file is checked and imported as a dataset version
when the job is created, so a malformed file is refused at once with its line numbers."""

from __future__ import annotations

import re
import time
import uuid
from pathlib import Path
from typing import Any

from sqlalchemy import select

from aifab.errors import InvalidRequest, NotFound, PayloadTooLarge, hide_paths
from aifab.finetune.datasets import DatasetStore, check_jsonl, import_jsonl
from aifab.finetune.jobs import JobRunner, JobStore
from aifab.identity import ApiKey
from aifab.state import Database
from aifab.state.files import write_atomic
from aifab.state.tables import FileRow

PURPOSES = ("fine-tune",)
MAX_FILE_BYTES = 512 * 1024 * 1024
SUFFIX = re.compile(r"^[A-Za-z0-9._-]{1,40}$")
HYPER = {"n_epochs": int, "batch_size": int, "learning_rate_multiplier": float}
EXTRA = {"max_steps": int, "lora_r": int, "max_length": int, "lr": float, "gate_margin": float}


class FinetuneService:
    def __init__(self, db: Database, data_dir: Path, *, config: Path | None = None) -> None:
        self.db, self.dir = db, Path(data_dir)
        self.jobs = JobStore(db)
        self.runner = JobRunner(self.jobs, data_dir=self.dir, config=config)
        self.datasets = DatasetStore(db, self.dir / "datasets")

    # --- files ------------------------------------------------------------------------------------

    def add_file(self, filename: str, data: bytes, purpose: str, key: ApiKey | None) -> dict[str, Any]:
        if purpose not in PURPOSES:
            raise InvalidRequest(f"purpose must be one of {', '.join(PURPOSES)}, not {purpose!r}", param="purpose")
        if len(data) > MAX_FILE_BYTES:
            raise PayloadTooLarge(f"files are limited to {MAX_FILE_BYTES} bytes")
        check_jsonl(data)
        file_id = "file-" + uuid.uuid4().hex[:24]
        path = self.dir / "files" / f"{file_id}.jsonl"
        write_atomic(path, data)
        try:
            with self.db.session() as s:
                s.add(FileRow(id=file_id, purpose=purpose, filename=Path(filename or "upload.jsonl").name,
                              bytes=len(data), path=str(path), key_id=key.id if key else None))
        except BaseException:  # e.g. the database's disk is full: no file without its row
            path.unlink(missing_ok=True)
            raise
        return self.file(file_id, key)

    def _file_row(self, file_id: str, key: ApiKey | None) -> FileRow:
        with self.db.session() as s:
            row = s.get(FileRow, file_id)
            if row is None or not _owned(row.key_id, key):
                raise NotFound(f"no file with id '{file_id}'", param="file_id")
            s.expunge(row)
            return row

    def file(self, file_id: str, key: ApiKey | None) -> dict[str, Any]:
        return _file_dict(self._file_row(file_id, key))

    def files(self, key: ApiKey | None) -> list[dict[str, Any]]:
        with self.db.session() as s:
            rows = [r for r in s.scalars(select(FileRow).order_by(FileRow.created_at.desc())) if _owned(r.key_id, key)]
        return [_file_dict(r) for r in rows]

    def content(self, file_id: str, key: ApiKey | None) -> bytes:
        return Path(self._file_row(file_id, key).path).read_bytes()

    def delete_file(self, file_id: str, key: ApiKey | None) -> dict[str, Any]:
        row = self._file_row(file_id, key)
        Path(row.path).unlink(missing_ok=True)
        with self.db.session() as s:
            s.delete(s.get(FileRow, file_id))
        return {"id": file_id, "object": "file", "deleted": True}

    # --- jobs -------------------------------------------------------------------------------------

    def create_job(self, body: dict[str, Any], key: ApiKey | None) -> dict[str, Any]:
        base = body.get("model")
        if not isinstance(base, str) or not base:
            raise InvalidRequest("'model' (the base model to fine-tune) is required", param="model")
        if key is not None and not key.allows_model(base):
            from aifab.errors import Forbidden

            raise Forbidden(f"the key '{key.name}' may not use the model '{base}'", param="model")
        file_id = body.get("training_file")
        if not isinstance(file_id, str):
            raise InvalidRequest("'training_file' (a file id from /v1/files) is required", param="training_file")
        suffix = body.get("suffix")
        if suffix is not None and (not isinstance(suffix, str) or not SUFFIX.match(suffix)):
            raise InvalidRequest("'suffix' is up to 40 letters, digits, '.', '_' or '-'", param="suffix")
        method = _method(body.get("method"))
        hyper = _hyperparameters(body, method)
        row = self._file_row(file_id, key)
        kind = "preference" if method == "dpo" else "sft"
        saved = import_jsonl(self.datasets, Path(row.path), f"file-{file_id.removeprefix('file-')[:16]}", kind=kind,
                             strict=True)
        job = self.jobs.create(base=base, dataset=saved.version.ref, method=method, hyperparameters=hyper,
                               suffix=suffix, key_id=key.id if key else None, training_file=file_id)
        self.runner.submit()
        return job

    def job(self, job_id: str, key: ApiKey | None) -> dict[str, Any]:
        self._own_job(job_id, key)
        return _shown(self.jobs.get(job_id), key)

    def _own_job(self, job_id: str, key: ApiKey | None) -> None:
        if not _owned(self.jobs.row(job_id).key_id, key):
            raise NotFound(f"no fine-tuning job with id '{job_id}'", param="fine_tuning_job_id")

    def list_jobs(self, key: ApiKey | None, *, limit: int, after: str | None) -> list[dict[str, Any]]:
        owner = key.id if key is not None and not key.admin else None
        return [_shown(j, key) for j in self.jobs.list(limit=limit, after=after, key_id=owner)]

    def cancel(self, job_id: str, key: ApiKey | None) -> dict[str, Any]:
        self._own_job(job_id, key)
        return self.runner.cancel(job_id)

    def events(self, job_id: str, key: ApiKey | None, *, limit: int, after: str | None) -> list[dict[str, Any]]:
        self._own_job(job_id, key)
        return [_shown(e, key) for e in self.jobs.events(job_id, limit=limit, after=after)]


def _shown(item: dict[str, Any], key: ApiKey | None) -> dict[str, Any]:
    """A job or event as ``key`` may see it: a trainer's error may name server paths, which only an
    admin sees."""
    if key is None or key.admin:
        return item
    out = dict(item)
    if isinstance(out.get("message"), str):
        out["message"] = hide_paths(out["message"])
    if isinstance(out.get("error"), dict):
        out["error"] = {**out["error"], "message": hide_paths(out["error"]["message"] or "")}
    return out


def _owned(owner: str | None, key: ApiKey | None) -> bool:
    return key is None or key.admin or owner == key.id


def _file_dict(row: FileRow) -> dict[str, Any]:
    created = int(row.created_at.timestamp()) if row.created_at else int(time.time())
    return {"id": row.id, "object": "file", "bytes": row.bytes, "created_at": created, "filename": row.filename,
            "purpose": row.purpose, "status": "processed", "status_details": None}


def _method(method: Any) -> str:
    if method is None:
        return "sft"
    kind = method.get("type") if isinstance(method, dict) else None
    if kind in ("supervised", "dpo"):
        return "sft" if kind == "supervised" else "dpo"
    raise InvalidRequest("method.type must be 'supervised' or 'dpo'", param="method")


def _object(holder: dict[str, Any], field: str, where: str = "") -> dict[str, Any]:
    """``holder[field]`` when it is an object (none: empty); anything else is a 400 naming it."""
    value = holder.get(field)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InvalidRequest(f"'{where}{field}' must be an object", param=f"{where}{field}")
    return value


def _hyperparameters(body: dict[str, Any], method: str) -> dict[str, Any]:
    """OpenAI's (top-level or under ``method``) plus aifab's extras; "auto" means the default."""
    kind = "dpo" if method == "dpo" else "supervised"
    given = dict(_object(body, "hyperparameters"))
    nested = _object(_object(body, "method"), kind, "method.")
    given.update(_object(nested, "hyperparameters", f"method.{kind}."))
    out: dict[str, Any] = {}
    for name, value in given.items():
        cast = HYPER.get(name) or EXTRA.get(name)
        if cast is None and name != "beta":
            raise InvalidRequest(f"unknown hyperparameter '{name}'", param=f"hyperparameters.{name}")
        if value == "auto":
            continue
        try:
            out[name] = (cast or float)(value)
        except (TypeError, ValueError, OverflowError):
            raise InvalidRequest(f"hyperparameter '{name}' must be a number", param=f"hyperparameters.{name}") from None
    return out
