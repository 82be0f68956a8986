"""``/v1/*``: the OpenAI-compatible endpoints."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import StreamingResponse

from aifab.serve.deps import Serving
from aifab.serve.schemas import ChatCompletionRequest, CompletionRequest, EmbeddingRequest

router = APIRouter(prefix="/v1")


def _respond(result: Any) -> Any:
    if isinstance(result, dict):
        return result
    return StreamingResponse(
        result, media_type="text/event-stream", headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    )


@router.get("/models")
async def list_models(serving: Serving) -> dict[str, Any]:
    return serving.list_models()


@router.post("/chat/completions")
async def chat_completions(body: ChatCompletionRequest, serving: Serving) -> Any:
    return _respond(await serving.chat(body))


@router.post("/completions")
async def completions(body: CompletionRequest, serving: Serving) -> Any:
    return _respond(await serving.complete(body))


@router.post("/embeddings")
async def embeddings(body: EmbeddingRequest, serving: Serving) -> dict[str, Any]:
    return await serving.embed(body)
