"""``/v1/admin/*`` and ``/v1/me``: the admin API, which the web UI and the CLI beside a running server use.

The gateway admits only admin keys (or the data directory's token file, or anyone on a loopback server with
no keys) to ``/v1/admin/``. Every handler calls the operation the CLI runs offline (``aifab.admin``), so both
give the same answer."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import orjson
from fastapi import Query, Request
from fastapi.encoders import jsonable_encoder
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from aifab.admin import state
from aifab.admin.answers import Question
from aifab.admin.backup import make_backup
from aifab.admin.keys import KeyChange, NewKey, create_key, key_dict, update_key
from aifab.corpus.service import Corpus
from aifab.errors import AifabError, ConfigError, InvalidRequest, NotFound, error_event
from aifab.gateway.keys import KeyStore
from aifab.gateway.rollouts import RolloutStore
from aifab.gateway.usage import parse_since
from aifab.rag.harness import answer, resolve_app
from aifab.serve.deps import Caller, Gateway, Pool, may_read_server_files
from aifab.serve.routing import api_router

router = api_router("/v1")


def _corpus(request: Request) -> Corpus:
    corpus = getattr(request.app.state, "corpus", None)
    if corpus is None:
        raise NotFound("this server has no state store configured")
    return corpus


def _keys(request: Request, gateway: Gateway) -> KeyStore:
    return gateway.keys if gateway is not None and gateway.keys is not None else KeyStore(_corpus(request).registry.db)


@router.get("/me")
async def me(caller: Caller) -> dict[str, Any]:
    """Who the request's key is and what it may use; ``keyless``: no key is needed here (a loopback server
    with no keys), which also opens the admin API."""
    if caller is None:
        return {"object": "identity", "id": None, "name": None, "admin": True, "keyless": True,
                "models": None, "collections": None, "tools": None}
    return {"object": "identity", "id": caller.id, "name": caller.name, "admin": caller.admin, "keyless": False,
            "models": caller.models, "collections": caller.collections, "tools": caller.tools}


# --- keys and usage ----------------------------------------------------------------------------------

@router.get("/admin/keys")
def list_keys(request: Request, gateway: Gateway,
              all: Annotated[bool, Query(description="include revoked keys")] = False) -> dict[str, Any]:
    return {"object": "list", "data": [key_dict(k) for k in _keys(request, gateway).list(include_revoked=all)]}


@router.post("/admin/keys", status_code=201)
def create(request: Request, body: NewKey, gateway: Gateway) -> dict[str, Any]:
    """A new key; its secret is in this answer only (``key``): the server keeps a hash."""
    corpus = _corpus(request)
    key, secret, first = create_key(_keys(request, gateway), corpus.settings, corpus.registry, body)
    return {**key_dict(key), "key": secret, "first": first}


@router.patch("/admin/keys/{name_or_id}")
def update(request: Request, name_or_id: str, body: KeyChange, gateway: Gateway) -> dict[str, Any]:
    """Change an active key's scopes, limits or secret; a running gateway applies it from the next request."""
    corpus = _corpus(request)
    return key_dict(update_key(_keys(request, gateway), corpus.settings, corpus.registry, name_or_id, body))


@router.delete("/admin/keys/{name_or_id}")
def revoke(request: Request, name_or_id: str, gateway: Gateway) -> dict[str, Any]:
    return key_dict(_keys(request, gateway).revoke(name_or_id))


@router.get("/admin/usage/series")
def usage_series(
    request: Request,
    since: Annotated[str, Query(description="an ISO date or time, or a span back from now: 7d, 24h")] = "7d",
    bucket: Annotated[str, Query(description="bucket width: 1h, 30m, 1d")] = "1h",
) -> dict[str, Any]:
    """Requests and tokens per key over time, in buckets."""
    now = datetime.now(UTC)
    width = now - parse_since(bucket, now)
    return state.usage_series(_corpus(request).registry.db, since=parse_since(since, now),
                              bucket_s=int(width.total_seconds()), now=now)


# --- the registry and rollouts -----------------------------------------------------------------------

@router.get("/admin/models")
def list_models(request: Request, pool: Pool) -> dict[str, Any]:
    loaded = {name for name, _ in pool.items()}
    return {"object": "list", "data": [{**p.to_dict(), "loaded": p.name in loaded}
                                       for p in _corpus(request).registry.list()]}


@router.get("/admin/models/{name}")
def get_model(request: Request, name: str, pool: Pool) -> dict[str, Any]:
    return {**_corpus(request).registry.get(name).to_dict(), "loaded": name in {n for n, _ in pool.items()}}


@router.get("/admin/models/{name}/lineage")
def model_lineage(request: Request, name: str) -> dict[str, Any]:
    corpus = _corpus(request)
    return state.lineage_of(corpus.registry, corpus.settings.data_dir, model=name)


@router.get("/admin/responses/{response_id}/lineage")
def response_lineage(request: Request, response_id: str) -> dict[str, Any]:
    """Which model answered a logged response, and that model's lineage."""
    corpus = _corpus(request)
    return state.lineage_of(corpus.registry, corpus.settings.data_dir, response=response_id)


class Promotion(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    name: str = Field(description="the new version: a registered model, e.g. a fine-tune")
    canary: float | None = Field(None, description="percent of the traffic to send to it")
    full: bool = Field(False, description="send it all the traffic (the old one is kept for rollback)")
    serves: str | None = Field(None, alias="as", description="the model name clients call [default: its base]")
    force: bool = Field(False, description="promote although its evaluation gate did not pass")


@router.get("/admin/rollouts")
def list_rollouts(request: Request) -> dict[str, Any]:
    return {"object": "list", "data": state.rollouts_with_traffic(_corpus(request).registry.db)}


@router.post("/admin/rollouts")
def promote(request: Request, body: Promotion) -> dict[str, Any]:
    rollout = state.promote(_corpus(request).registry, body.name, canary=body.canary, full=body.full,
                            serves=body.serves, force=body.force)
    return rollout.to_dict()


@router.post("/admin/rollouts/{model}/rollback")
def rollback(request: Request, model: str) -> dict[str, Any]:
    return RolloutStore(_corpus(request).registry.db).rollback(model).to_dict()


# --- datasets ----------------------------------------------------------------------------------------

@router.get("/admin/datasets")
def list_datasets(request: Request, name: str | None = None) -> dict[str, Any]:
    corpus = _corpus(request)
    store = state.datasets_of(corpus.registry.db, corpus.settings.data_dir)
    return {"object": "list", "data": [v.to_dict() for v in store.list(name)]}


@router.get("/admin/datasets/{ref}")
def get_dataset(request: Request, ref: str, head: Annotated[int, Query(ge=0, le=100)] = 3) -> dict[str, Any]:
    corpus = _corpus(request)
    version = state.datasets_of(corpus.registry.db, corpus.settings.data_dir).get(ref)
    return {**version.to_dict(), "head": version.head(head)}


# --- the config file, read again ------------------------------------------------------------------------

@router.post("/admin/reload")
async def reload(request: Request, gateway: Gateway,
                 dry_run: Annotated[bool, Query(description="say what would change, change nothing")] = False
                 ) -> dict[str, Any]:
    """Read the config file the server started with again and serve its apps, retrieval defaults and gateway
    routes from the next request on (``aifab apply`` does this). Other sections are read only at start:
    ``restart`` names those that changed."""
    load = getattr(request.app.state, "load_settings", None)
    rag = request.app.state.rag
    if load is None or rag is None:
        raise InvalidRequest("this server cannot read its configuration again (it was not started by `aifab up`)")
    try:
        new = await asyncio.to_thread(load)
    except ConfigError as exc:
        raise InvalidRequest(exc.message) from None
    changes, restart = state.reload_plan(rag.settings, new)
    if not dry_run and changes:
        routes = rag.settings.gateway.model_copy(update={"routes": new.gateway.routes})
        rag.settings = rag.settings.model_copy(update={"apps": new.apps, "rag": new.rag, "gateway": routes})
        if gateway is not None:
            await gateway.reload_routes(new.gateway)
    return {"object": "reload", "changes": changes, "restart": restart, "applied": not dry_run and bool(changes)}


# --- the corpus, for the CLI beside the server ---------------------------------------------------------

@router.get("/admin/collections/{name}")
def collection_detail(request: Request, name: str) -> dict[str, Any]:
    """A collection with its versions, the live version's documents and its last ingest jobs."""
    return state.collection_detail(_corpus(request), name)


class PathIngest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    collection: str
    paths: list[str] = Field(min_length=1, description="absolute paths of files or folders on the server's machine")
    acl: list[str] = Field(default_factory=list)
    prune: bool = False
    chunk_tokens: int | None = Field(None, ge=16, description="default: corpus.chunk_tokens")
    chunk_overlap: int | None = Field(None, ge=0, description="default: corpus.chunk_overlap")


@router.post("/admin/ingest", status_code=202)
async def ingest_paths(request: Request, body: PathIngest, caller: Caller) -> dict[str, Any]:
    """Ingest files of the server's own machine, as ``aifab ingest`` beside a running server does. Only the
    holder of the data directory's token file may (a network key must not read the server's files); the
    job is followed at ``/v1/ingest/jobs/{id}``."""
    may_read_server_files(caller, "an ingest of paths (upload files instead: POST /v1/collections/{name}/documents)")
    paths = [Path(p) for p in body.paths]
    relative = [str(p) for p in paths if not p.is_absolute()]
    if relative:
        raise InvalidRequest(f"paths must be absolute: {', '.join(relative)}", param="paths")
    corpus = _corpus(request)
    corpus.collections.create(body.collection, exist_ok=True)
    job_id = corpus.jobs.queue(body.collection, request={"kind": "paths", "paths": body.paths, "acl": body.acl})
    request.app.state.ingest_worker.submit(_ingest, corpus, body, paths, job_id)
    return {"object": "ingest.job", **corpus.jobs.get(job_id)}


def _ingest(corpus: Corpus, body: PathIngest, paths: list[Path], job_id: str) -> None:
    """The worker's task. The ingest records its own outcome on the job once it starts; a failure before
    that (another ingest running, a full disk) is recorded here, where the client polling the job sees it."""
    try:
        cfg = corpus.settings.corpus
        chunking = (body.chunk_tokens or cfg.chunk_tokens,
                    cfg.chunk_overlap if body.chunk_overlap is None else body.chunk_overlap)
        corpus.ingest_paths(body.collection, paths, acl=body.acl, prune=body.prune, job_id=job_id, chunking=chunking)
    except Exception as exc:
        if corpus.jobs.get(job_id)["status"] == "queued":
            reason = exc.message if isinstance(exc, AifabError) else f"internal error: {type(exc).__name__}"
            corpus.jobs.finish(job_id, "failed", {"error": reason})
        if not isinstance(exc, AifabError):
            raise


class BackupRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    path: str = Field(description="absolute path on the server's machine: a new .tar.gz file, or a new directory")


@router.post("/admin/backup", status_code=201)
def backup(request: Request, body: BackupRequest, caller: Caller) -> dict[str, Any]:
    """A consistent backup of the data directory, made in this process (``aifab backup`` beside a running
    server): queries go on meanwhile. Only the token file's holder may: it writes the server's files."""
    may_read_server_files(caller, "a backup (run `aifab backup` on the server's machine)")
    corpus = _corpus(request)
    return make_backup(corpus.settings, corpus.store, Path(body.path))


@router.post("/admin/ask")
async def ask(request: Request, body: Question, pool: Pool) -> StreamingResponse:
    """A grounded answer as ``aifab ask`` gives it: SSE events ``{"text"}`` while it decodes, then
    ``{"result": {question, query, answer, citations}}``."""
    rag = request.app.state.rag
    if rag is None:
        raise NotFound("this server has no corpus configured")
    app = resolve_app(rag, body.app, body.collection, top_k=body.top_k, mode=body.mode)
    engine = pool.get(app.model or "")
    queue: asyncio.Queue[bytes | None] = asyncio.Queue()

    async def run() -> None:
        try:
            result = await answer(rag, app, engine, body.question,
                                  on_text=lambda t: queue.put_nowait(_event({"text": t})))
            queue.put_nowait(_event({"result": jsonable_encoder(result)}))
        except AifabError as exc:
            queue.put_nowait(error_event(exc))
        finally:
            queue.put_nowait(None)

    async def events() -> AsyncIterator[bytes]:
        task = asyncio.ensure_future(run())
        try:
            while (item := await queue.get()) is not None:
                yield item
            yield b"data: [DONE]\n\n"
        finally:
            task.cancel()

    return StreamingResponse(events(), media_type="text/event-stream")


def _event(data: dict[str, Any]) -> bytes:
    return b"data: " + orjson.dumps(data) + b"\n\n"
