"""``/v1/*``: the OpenAI-compatible endpoints."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any, TypeVar

from fastapi import APIRouter, Request, Response
from fastapi.responses import StreamingResponse
from starlette.types import Send

from aifab.errors import Forbidden
from aifab.serve.deps import Caller, Pool, Serving
from aifab.serve.schemas import ChatCompletionRequest, CompletionRequest, EmbeddingRequest

router = APIRouter(prefix="/v1")
T = TypeVar("T")
CLIENT_CLOSED = 499  # nginx's code for "client closed the request"; nobody reads it, logs do


async def _unless_disconnected(request: Request, work: Awaitable[T]) -> T | Response:
    """Run ``work`` (which may wait in the queue for a slot), cancelling it if the client leaves
    first, so a request abandoned while queued never occupies a slot."""
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


def _respond(result: Any, version: str, response: Response) -> Any:
    if isinstance(result, Response):  # the client left
        return result
    if isinstance(result, dict):
        response.headers[VERSION_HEADER] = version
        return result
    return _ClosingStream(result, media_type="text/event-stream",
                          headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no", VERSION_HEADER: version})


@router.get("/models")
async def list_models(serving: Serving) -> dict[str, Any]:
    return serving.list_models()


@router.post("/models/{name}/load")
async def load_model(name: str, pool: Pool, caller: Caller) -> dict[str, Any]:
    """Load a registered model (a fine-tuned adapter goes onto its running base) without a restart."""
    if caller is not None and not caller.admin:
        raise Forbidden("loading models needs an admin key")
    loaded = await pool.load(name)
    return {"id": name, "object": "model", "loaded": True, "newly_loaded": loaded}


@router.post("/chat/completions")
async def chat_completions(body: ChatCompletionRequest, serving: Serving, request: Request, caller: Caller,
                           response: Response) -> Any:
    result = await _unless_disconnected(request, serving.chat(body, caller))
    return _respond(result, serving.fingerprint(body.model), response)


@router.post("/completions")
async def completions(body: CompletionRequest, serving: Serving, request: Request, response: Response) -> Any:
    result = await _unless_disconnected(request, serving.complete(body))
    return _respond(result, serving.fingerprint(body.model), response)


@router.post("/embeddings")
async def embeddings(body: EmbeddingRequest, serving: Serving, response: Response) -> dict[str, Any]:
    result = await serving.embed(body)
    response.headers[VERSION_HEADER] = serving.fingerprint(body.model)
    return result
