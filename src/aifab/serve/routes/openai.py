"""``/v1/*``: the OpenAI-compatible endpoints."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any, TypeVar

import orjson
from fastapi import Request, Response
from fastapi.responses import StreamingResponse
from starlette.types import Send

from aifab.api import ChatCompletionRequest, CompletionRequest, EmbeddingRequest
from aifab.errors import Forbidden
from aifab.serve.deps import Caller, Gateway, Handed, Pool, Serving
from aifab.serve.routing import api_router

router = api_router("/v1")
T = TypeVar("T")
CLIENT_CLOSED = 499  # nginx's code for "client closed the request"; nobody reads it, logs do


async def _unless_disconnected(request: Request, work: Awaitable[T], handed: bool) -> T | Response:
    """Run ``work`` (which may wait in the queue for a slot), cancelling it if the client leaves
    first, so a request abandoned while queued never occupies a slot. A request ``handed`` over by the
    gateway is watched there (one watcher): the gateway cancels this task when its client leaves."""
    if handed:
        return await work
    task = asyncio.ensure_future(work)

    async def watch() -> None:
        while (await request.receive())["type"] != "http.disconnect":
            pass
        task.cancel()

    watcher = asyncio.ensure_future(watch())
    try:
        return await task
    except asyncio.CancelledError:
        if watcher.done() and not watcher.cancelled():
            return Response(status_code=CLIENT_CLOSED)
        raise
    finally:
        watcher.cancel()


class _ClosingStream(StreamingResponse):
    """Closes its generator however the response ends (sent, cancelled, client gone), so the engine slot
    it holds is freed at once rather than whenever the garbage collector finds it."""

    async def stream_response(self, send: Send) -> None:
        try:
            await super().stream_response(send)
        finally:
            aclose = getattr(self.body_iterator, "aclose", None)
            if aclose is not None:
                await aclose()


VERSION_HEADER = "x-aifab-model-version"  # which version of the model answered (a canary shows here)


def _respond(result: Any, version: str) -> Any:
    if isinstance(result, Response):  # the client left
        return result
    if isinstance(result, dict):
        return Response(orjson.dumps(result), media_type="application/json", headers={VERSION_HEADER: version})
    return _ClosingStream(result, media_type="text/event-stream",
                          headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no", VERSION_HEADER: version})


@router.get("/models")
async def list_models(serving: Serving, gateway: Gateway, caller: Caller) -> dict[str, Any]:
    """This process's models and RAG apps, and the gateway's routes to other servers; only those the
    caller's key may use."""
    models = serving.list_models()
    if gateway is not None:
        have = {d["id"] for d in models["data"]}
        models["data"] += [{"id": n, "object": "model", "created": gateway.started, "owned_by": "aifab", "kind": "route"}
                           for n in gateway.router.public_names() if n not in have]
    if caller is not None:
        models["data"] = [d for d in models["data"] if caller.allows_model(d["id"])]
    return models


@router.post("/models/{name}/load")
async def load_model(name: str, pool: Pool, caller: Caller) -> dict[str, Any]:
    """Load a registered model (a fine-tuned adapter goes onto its running base) without a restart."""
    if caller is not None and not caller.admin:
        raise Forbidden("loading models needs an admin key")
    loaded = await pool.load(name)
    return {"id": name, "object": "model", "loaded": True, "newly_loaded": loaded}


@router.post("/chat/completions")
async def chat_completions(body: ChatCompletionRequest, serving: Serving, request: Request, caller: Caller,
                           call: Handed) -> Any:
    result = await _unless_disconnected(request, serving.chat(body, caller, call), call is not None)
    return _respond(result, serving.fingerprint(body.model))


@router.post("/completions")
async def completions(body: CompletionRequest, serving: Serving, request: Request, call: Handed) -> Any:
    result = await _unless_disconnected(request, serving.complete(body, call), call is not None)
    return _respond(result, serving.fingerprint(body.model))


@router.post("/embeddings")
async def embeddings(body: EmbeddingRequest, serving: Serving, call: Handed) -> Any:
    return _respond(await serving.embed(body, call), serving.fingerprint(body.model))
