"""``POST /v1/retrieve``: ranked passages of a collection for a query, with scores and source metadata
(no generation). Apps answer through ``/v1/chat/completions`` (see ``OpenAIServing``)."""

from __future__ import annotations

import asyncio
import time
from typing import Any, Literal

from fastapi import Request
from pydantic import BaseModel, ConfigDict, Field

from aifab.errors import NotFound
from aifab.rag import Rag
from aifab.serve.deps import Caller, may_read
from aifab.serve.routing import api_router

router = api_router("/v1")
Scalar = str | int | float | bool


class RetrieveRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    collection: str = Field(min_length=1)
    query: str = Field(min_length=1)
    top_k: int | None = Field(None, ge=1, le=100)
    filters: dict[str, Scalar | list[Scalar]] = Field(
        default_factory=dict, description="equality on document_id or a metadata key; a list means any of"
    )
    mode: Literal["hybrid", "dense", "lexical"] | None = None
    mmr: bool | None = None
    reranker: Literal["none", "maxsim"] | None = None


def _rag(request: Request) -> Rag:
    rag = getattr(request.app.state, "rag", None)
    if rag is None:
        raise NotFound("this server has no corpus configured")
    return rag


@router.post("/retrieve")
async def retrieve(body: RetrieveRequest, request: Request, caller: Caller) -> dict[str, Any]:
    may_read(caller, body.collection)
    rag = _rag(request)
    overrides = {k: v for k, v in {"mode": body.mode, "mmr": body.mmr, "reranker": body.reranker}.items() if v is not None}
    settings = rag.settings.rag.model_copy(update=overrides)
    start = time.perf_counter()
    passages = await asyncio.to_thread(
        rag.retrieve, body.collection, body.query, settings=settings, top_k=body.top_k, where=body.filters,
        acl=caller.acl_filter() if caller is not None else None,
    )
    return {
        "object": "list",
        "collection": body.collection,
        "query": body.query,
        "data": [{"object": "retrieval.passage", "rank": i, **p.to_dict()} for i, p in enumerate(passages, start=1)],
        "latency_ms": round((time.perf_counter() - start) * 1000, 3),
    }
