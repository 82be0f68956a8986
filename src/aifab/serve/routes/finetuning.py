"""``/v1/files`` and ``/v1/fine_tuning/jobs``: the OpenAI fine-tuning API, so the official SDK can drive a
fine-tune end to end (upload, create, follow, cancel; the result is a model this server can load)."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from fastapi import Body, Form, Query, Request, UploadFile
from fastapi.responses import Response

from aifab.errors import NotFound
from aifab.finetune.service import FinetuneService
from aifab.serve.deps import Caller
from aifab.serve.routing import api_router

router = api_router("/v1")
Limit = Annotated[int, Query(ge=1, le=100)]


def _service(request: Request) -> FinetuneService:
    service = getattr(request.app.state, "finetune", None)
    if service is None:
        raise NotFound("this server has no fine-tuning service")
    return service


@router.post("/files")
async def upload_file(request: Request, file: UploadFile, purpose: Annotated[str, Form()], caller: Caller) -> Any:
    data = await file.read()
    return await asyncio.to_thread(_service(request).add_file, file.filename or "", data, purpose, caller)


@router.get("/files")
def list_files(request: Request, caller: Caller) -> dict[str, Any]:
    return {"object": "list", "data": _service(request).files(caller), "has_more": False}


@router.get("/files/{file_id}")
def get_file(request: Request, file_id: str, caller: Caller) -> dict[str, Any]:
    return _service(request).file(file_id, caller)


@router.get("/files/{file_id}/content")
def file_content(request: Request, file_id: str, caller: Caller) -> Response:
    return Response(_service(request).content(file_id, caller), media_type="application/octet-stream")


@router.delete("/files/{file_id}")
def delete_file(request: Request, file_id: str, caller: Caller) -> dict[str, Any]:
    return _service(request).delete_file(file_id, caller)


JOB = {
    "type": "object",
    "required": ["model", "training_file"],
    "properties": {
        "model": {"type": "string", "description": "the base model to fine-tune"},
        "training_file": {"type": "string", "description": "a file id from /v1/files (purpose fine-tune)"},
        "suffix": {"type": "string", "maxLength": 40},
        "method": {"type": "object", "description": "OpenAI's method object: supervised or dpo, with hyperparameters"},
        "hyperparameters": {"type": "object"},
    },
}


@router.post("/fine_tuning/jobs", openapi_extra={"requestBody": {"required": True,
                                                                  "content": {"application/json": {"schema": JOB}}}})
async def create_job(request: Request, body: Annotated[dict[str, Any], Body()], caller: Caller) -> dict[str, Any]:
    return await asyncio.to_thread(_service(request).create_job, body, caller)


@router.get("/fine_tuning/jobs")
def list_jobs(request: Request, caller: Caller, limit: Limit = 20, after: str | None = None) -> dict[str, Any]:
    data = _service(request).list_jobs(caller, limit=limit + 1, after=after)
    return {"object": "list", "data": data[:limit], "has_more": len(data) > limit}


@router.get("/fine_tuning/jobs/{job_id}")
def get_job(request: Request, job_id: str, caller: Caller) -> dict[str, Any]:
    return _service(request).job(job_id, caller)


@router.post("/fine_tuning/jobs/{job_id}/cancel")
def cancel_job(request: Request, job_id: str, caller: Caller) -> dict[str, Any]:
    return _service(request).cancel(job_id, caller)


@router.get("/fine_tuning/jobs/{job_id}/events")
def job_events(request: Request, job_id: str, caller: Caller, limit: Limit = 20,
               after: str | None = None) -> dict[str, Any]:
    data = _service(request).events(job_id, caller, limit=limit + 1, after=after)
    return {"object": "list", "data": data[:limit], "has_more": len(data) > limit}
