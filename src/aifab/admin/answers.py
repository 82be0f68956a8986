"""A grounded answer to one question, as ``aifab ask`` prints it: offline in the CLI's process, or in the
server's when it holds the data directory (``POST /v1/admin/ask``)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from aifab.config import AppSettings
from aifab.engines.protocol import Engine, SamplingParams
from aifab.errors import InvalidRequest
from aifab.rag import Rag

Mode = Literal["hybrid", "dense", "lexical"]


class Question(BaseModel):
    """A question for a collection or an app."""

    model_config = ConfigDict(extra="forbid")

    question: str
    collection: str | None = None
    app: str | None = None
    top_k: int | None = Field(None, ge=1, le=100)
    mode: Mode | None = None


def resolve_app(rag: Rag, q: Question) -> AppSettings:
    """The app that answers: a configured one, or an ad-hoc one over a collection; unknown names are one
    clear error before any model runs."""
    if (q.app is None) == (q.collection is None):
        raise InvalidRequest("give either --collection NAME or --app NAME")
    app = rag.app(q.app) if q.app else rag.app_for_collection(q.collection or "")
    overrides = {k: v for k, v in {"top_k": q.top_k, "mode": q.mode}.items() if v is not None}
    if overrides:
        app = app.model_copy(update={"retrieval": app.retrieval.model_copy(update=overrides)})  # type: ignore[union-attr]
    if app.collection is None:
        raise InvalidRequest(f"the app '{q.app}' has no collection to search")
    rag.corpus.collections.version(app.collection)  # unknown collection: one line, before a model loads
    return app


async def answer(rag: Rag, app: AppSettings, engine: Engine, question: str,
                 on_text: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Retrieve, generate (``on_text`` gets each piece as it comes) and cite."""
    prepared = await rag.prepare(app, [{"role": "user", "content": question}], engine, max_tokens=app.max_tokens)
    sampling = SamplingParams(temperature=app.temperature, max_tokens=app.max_tokens)
    parts = []
    async for delta in rag.generate(prepared, engine, sampling):
        parts.append(delta.text)
        if on_text is not None and delta.text:
            on_text(delta.text)
    text = "".join(parts)
    cited = await asyncio.to_thread(rag.cite, prepared, text)  # attribution embeds: off the event loop
    return {"question": question, "query": prepared.query, "answer": text, "citations": cited}
