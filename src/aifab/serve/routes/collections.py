"""``/v1/collections``: create, list and delete collections; upload and delete documents; follow ingest jobs.

Uploads are saved under the data directory and ingested by one background worker (ingests are serialised,
which keeps the embedding model's threads to itself); ``?wait=true`` answers when the job is done.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Annotated, Any

from fastapi import Form, Query, Request, UploadFile
from fastapi.encoders import jsonable_encoder
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from aifab.corpus.service import Corpus
from aifab.corpus.sources import Source
from aifab.corpus.uploads import save_upload, upload_source
from aifab.errors import AifabError, InvalidDocument, InvalidRequest, NotFound
from aifab.serve.deps import Caller, may_read, may_write
from aifab.serve.routing import api_router

log = logging.getLogger("aifab.serve")

router = api_router("/v1")


class CreateCollection(BaseModel):
    name: str


def _corpus(request: Request) -> Corpus:
    corpus = getattr(request.app.state, "corpus", None)
    if corpus is None:
        raise NotFound("this server has no corpus configured")
    return corpus


def _collection_dict(corpus: Corpus, name: str) -> dict[str, Any]:
    return {"object": "collection", "id": name, **corpus.collections.get(name).to_dict()}


@router.get("/collections")
def list_collections(request: Request, caller: Caller) -> dict[str, Any]:
    corpus = _corpus(request)
    return {"object": "list", "data": [{"object": "collection", "id": c.name, **c.to_dict()}
                                       for c in corpus.collections.list()
                                       if caller is None or caller.allows_collection(c.name)]}


@router.post("/collections", status_code=201)
def create_collection(request: Request, body: CreateCollection, caller: Caller) -> dict[str, Any]:
    may_write(caller, body.name)
    corpus = _corpus(request)
    corpus.collections.create(body.name)
    return _collection_dict(corpus, body.name)


@router.get("/collections/{name}")
def get_collection(request: Request, name: str, caller: Caller) -> dict[str, Any]:
    may_read(caller, name)
    return _collection_dict(_corpus(request), name)


@router.delete("/collections/{name}")
def delete_collection(request: Request, name: str, caller: Caller) -> dict[str, Any]:
    may_write(caller, name)
    corpus = _corpus(request)
    corpus.collections.delete(name)
    return {"object": "collection", "id": name, "deleted": True}


@router.post("/collections/{name}/promote")
def promote(request: Request, name: str, version: Annotated[int, Query(ge=1)], caller: Caller) -> dict[str, Any]:
    may_write(caller, name)
    corpus = _corpus(request)
    corpus.collections.promote(name, version)
    return _collection_dict(corpus, name)


@router.get("/collections/{name}/documents")
def list_documents(request: Request, name: str, caller: Caller) -> dict[str, Any]:
    may_read(caller, name)
    corpus = _corpus(request)
    docs = corpus.collections.documents(name) if corpus.collections.get(name).live_version else []
    return {"object": "list", "data": [
        {"object": "document", "id": d.document_id, "source": d.source, "format": d.format, "title": d.title,
         "chunks": d.chunks, "acl": d.acl, "size_bytes": d.size_bytes, "updated_at": d.updated_at} for d in docs]}


@router.delete("/collections/{name}/documents/{document_id}")
def delete_document(request: Request, name: str, document_id: str, caller: Caller) -> dict[str, Any]:
    may_write(caller, name)
    corpus = _corpus(request)
    source = next((d.source for d in corpus.collections.documents(name) if d.document_id == document_id), None)
    chunks = corpus.collections.delete_document(name, document_id)
    if source and source.startswith("upload:"):  # gone for good: later versions must not bring it back
        upload_source(corpus.uploads_dir, name, source.removeprefix("upload:")).path.unlink(missing_ok=True)
    return {"object": "document", "id": document_id, "deleted": True, "chunks_deleted": chunks}


@router.post("/collections/{name}/documents", status_code=202)
async def upload_documents(
    request: Request,
    name: str,
    file: list[UploadFile],
    caller: Caller,
    acl: Annotated[list[str] | None, Form(description="ACL tags for every chunk of these files")] = None,
    wait: Annotated[bool, Query(description="answer when the ingest is done")] = False,
) -> Any:
    may_write(caller, name)
    corpus = _corpus(request)
    corpus.collections.create(name, exist_ok=True)
    sources, errors = [], []
    for upload in file:
        data = await upload.read()
        try:
            sources.append(await asyncio.to_thread(save_upload, corpus.uploads_dir, name, upload.filename, data))
        except InvalidDocument as exc:
            errors.append({"path": upload.filename or "", "reason": exc.message})
    if not sources and not errors:
        raise InvalidRequest("no file in the upload (multipart field 'file')", param="file")
    job_id = corpus.jobs.queue(name)
    future = request.app.state.ingest_worker.submit(_run, corpus, name, sources, acl or (), errors, job_id)
    if wait:
        await asyncio.wrap_future(future)
        return JSONResponse(jsonable_encoder(_job(corpus, job_id)), status_code=200)
    return _job(corpus, job_id)


def _run(corpus: Corpus, name: str, sources: list[Source], acl: list[str], errors: list[dict[str, str]],
         job_id: str) -> None:
    """The worker's task: an error that stops the whole job (another ingest running, the embedding model
    missing) is recorded on the job, where the client polling it will see it."""
    try:
        corpus.ingest(name, sources, acl=acl, errors=errors, job_id=job_id)
    except AifabError as exc:
        corpus.jobs.finish(job_id, "failed", {"errors": errors, "error": exc.message})
    except Exception as exc:
        log.exception("ingest job %s failed", job_id)
        corpus.jobs.finish(job_id, "failed", {"errors": errors, "error": f"internal error: {type(exc).__name__}"})


def _job(corpus: Corpus, job_id: str) -> dict[str, Any]:
    return {"object": "ingest.job", **corpus.jobs.get(job_id)}


@router.get("/collections/{name}/jobs")
def list_jobs(request: Request, name: str, caller: Caller) -> dict[str, Any]:
    may_read(caller, name)
    corpus = _corpus(request)
    return {"object": "list", "data": [{"object": "ingest.job", **j} for j in corpus.jobs.list(name)]}


@router.get("/ingest/jobs/{job_id}")
def get_job(request: Request, job_id: str, caller: Caller) -> dict[str, Any]:
    job = _job(_corpus(request), job_id)
    may_read(caller, job["collection"])
    return job
