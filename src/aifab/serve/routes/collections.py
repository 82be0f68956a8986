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
from aifab.corpus.uploads import check_name, save_upload, upload_source
from aifab.errors import (
    AifabError,
    InsufficientStorage,
    InvalidDocument,
    InvalidRequest,
    NotFound,
    out_of_space,
)
from aifab.serve.deps import Caller, may_read, may_write
from aifab.serve.routing import api_router
from aifab.state.tables import DocumentRow
from aifab.stores.protocol import Filter

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


def _visible(caller: Caller) -> Filter:
    """The documents a key sees are the ones its retrieval sees: public ones and those sharing a tag."""
    return Filter(acl=caller.acl_filter() if caller is not None else None)


def _document(corpus: Corpus, name: str, document_id: str, caller: Caller) -> DocumentRow:
    """One document of the live version, or 404, also when the key's ACL tags do not cover it."""
    doc = next((d for d in corpus.collections.documents(name) if d.document_id == document_id), None)
    if doc is None or not _visible(caller).allows_acl(doc.acl):
        raise NotFound(f"collection '{name}' has no document '{document_id}'")
    return doc


def _document_dict(d: DocumentRow) -> dict[str, Any]:
    return {"object": "document", "id": d.document_id, "source": d.source, "format": d.format, "title": d.title,
            "chunks": d.chunks, "acl": d.acl, "size_bytes": d.size_bytes, "updated_at": d.updated_at}


@router.get("/collections/{name}/documents")
def list_documents(request: Request, name: str, caller: Caller) -> dict[str, Any]:
    may_read(caller, name)
    corpus = _corpus(request)
    docs = corpus.collections.documents(name) if corpus.collections.get(name).live_version else []
    visible = _visible(caller)
    return {"object": "list", "data": [_document_dict(d) for d in docs if visible.allows_acl(d.acl)]}


@router.get("/collections/{name}/documents/{document_id}")
def get_document(request: Request, name: str, document_id: str, caller: Caller) -> dict[str, Any]:
    may_read(caller, name)
    return _document_dict(_document(_corpus(request), name, document_id, caller))


@router.delete("/collections/{name}/documents/{document_id}")
def delete_document(request: Request, name: str, document_id: str, caller: Caller) -> dict[str, Any]:
    may_write(caller, name)
    corpus = _corpus(request)
    source = _document(corpus, name, document_id, caller).source
    chunks = corpus.collections.delete_document(name, document_id)
    if source.startswith("upload:"):  # gone for good: later versions must not bring it back
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
    named, errors = [], []
    for upload in file:
        try:
            named.append((check_name(upload.filename), upload))
        except InvalidDocument as exc:
            errors.append({"path": upload.filename or "", "reason": exc.message})
    if not named and not errors:
        raise InvalidRequest("no file in the upload (multipart field 'file')", param="file")
    # the job (and what it will ingest) is recorded before the files: a crash between the two leaves a
    # job that start-up recovery resumes or cleans up, never an upload nobody knows about
    job_id = corpus.jobs.queue(name, request={"kind": "upload", "files": [n for n, _ in named],
                                              "acl": list(acl or ()), "errors": errors})
    sources: list[Source] = []
    try:
        for filename, upload in named:
            data = await upload.read()
            sources.append(await asyncio.to_thread(save_upload, corpus.uploads_dir, name, filename, data))
    except Exception as exc:
        error = out_of_space(exc) or exc
        reason = error.message if isinstance(error, AifabError) else f"internal error: {type(exc).__name__}"
        await asyncio.to_thread(corpus.fail, job_id, name, sources, reason, errors)
        if error is exc:
            raise
        raise error from exc
    future = request.app.state.ingest_worker.submit(_run, corpus, name, sources, acl or (), errors, job_id)
    if wait:
        await asyncio.wrap_future(future)
        return JSONResponse(jsonable_encoder(_job(corpus, job_id)), status_code=200)
    return _job(corpus, job_id)


def _run(corpus: Corpus, name: str, sources: list[Source], acl: list[str], errors: list[dict[str, str]],
         job_id: str) -> None:
    """The worker's task: an error that stops the whole job (another ingest running, the embedding model
    missing, a full disk) is recorded on the job, where the client polling it will see it, and the files
    of the upload that no document came from are removed. A full disk is raised on (507 to a waiting
    client)."""
    try:
        corpus.ingest(name, sources, acl=acl, errors=errors, job_id=job_id)
    except Exception as exc:
        error = out_of_space(exc) or exc
        if isinstance(error, AifabError):
            corpus.fail(job_id, name, sources, error.message, errors)
            if isinstance(error, InsufficientStorage):
                raise error from exc
            return
        log.exception("ingest job %s failed", job_id)
        corpus.fail(job_id, name, sources, f"internal error: {type(exc).__name__}", errors)


def resume_interrupted(app: Any) -> list[dict[str, Any]]:
    """At start-up: ingest jobs of a process that is gone are resumed on this server's ingest worker
    (upload jobs whose files are here) or cleaned up; see :meth:`Corpus.recover`."""
    corpus: Corpus | None = getattr(app.state, "corpus", None)
    if corpus is None:
        return []

    def resume(job_id: str, name: str, sources: list[Source], acl: list[str], errors: list[dict[str, str]]) -> None:
        app.state.ingest_worker.submit(_run, corpus, name, sources, acl, errors, job_id)

    recovered = corpus.recover(resume)
    for job in recovered:
        log.warning("ingest job %s into '%s' was interrupted by a stop: %s", job["id"], job["collection"],
                    job["recovery"]["action"].replace("_", " "))
    return recovered


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
