"""The eval harnesses run over a live :class:`Rag`: retrieval metrics and answer checks on a question set.

``aifab eval retrieval|answers`` and eval suites (``aifab.evals``) both call these, so that a number
means the same wherever it is measured; the judging itself lives in :mod:`aifab.rag.evaluate`."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from aifab.config import AppSettings, RetrievalSettings
from aifab.engines import load_engine
from aifab.engines.protocol import Engine, SamplingParams
from aifab.errors import InvalidRequest
from aifab.rag.evaluate import QA, evaluate_retrieval, judge_answer, summarise_answers
from aifab.rag.service import Rag

Progress = Callable[[int], None]  # questions done so far


def resolve_app(rag: Rag, app_name: str | None, collection: str | None, *, top_k: int | None = None,
                mode: str | None = None) -> AppSettings:
    """The app to answer with: a configured one, or an ad-hoc one over ``collection``, with retrieval
    overrides. An unknown collection is said here, in one line, before any model loads."""
    if (app_name is None) == (collection is None):
        raise InvalidRequest("give either --collection NAME or --app NAME")
    app = rag.app(app_name) if app_name else rag.app_for_collection(collection or "")
    overrides = {k: v for k, v in {"top_k": top_k, "mode": mode}.items() if v is not None}
    if overrides:
        app = app.model_copy(update={"retrieval": app.retrieval.model_copy(update=overrides)})  # type: ignore[union-attr]
    if app.collection is None:
        raise InvalidRequest(f"the app '{app_name}' has no collection to search")
    rag.corpus.collections.version(app.collection)
    return app


def retrieval_settings(rag: Rag, **overrides: Any) -> RetrievalSettings:
    """``rag`` settings with the given overrides (None: the configured value)."""
    return rag.settings.rag.model_copy(update={k: v for k, v in overrides.items() if v is not None})


@contextmanager
def open_engine(rag: Rag, app: AppSettings, announce: Callable[[str], None] | None = None) -> Iterator[Engine]:
    """The app's chat model, loaded for the block and closed after it."""
    package = rag.corpus.registry.get(app.model or "")
    if announce:
        announce(f"loading {package.name}...")
    engine = load_engine(package, rag.settings)
    try:
        yield engine
    finally:
        engine.close()


async def answer(rag: Rag, app: AppSettings, engine: Engine, question: str,
                 on_text: Callable[[str], None] | None = None) -> dict[str, Any]:
    """One grounded answer with its citations; ``on_text`` sees the answer as it streams."""
    prepared = await rag.prepare(app, [{"role": "user", "content": question}], engine, max_tokens=app.max_tokens)
    sampling = SamplingParams(temperature=app.temperature, max_tokens=app.max_tokens)
    parts = []
    async for delta in rag.generate(prepared, engine, sampling):
        parts.append(delta.text)
        if on_text:
            on_text(delta.text)
    text = "".join(parts)
    cited = await asyncio.to_thread(rag.cite, prepared, text)  # attribution embeds: off a server's event loop
    return {"question": question, "query": prepared.query, "answer": text, "citations": cited}


def measure_retrieval(rag: Rag, collection: str, qas: Sequence[QA], settings: RetrievalSettings, *,
                      on_progress: Progress | None = None) -> tuple[dict[str, float], list[dict[str, Any]]]:
    """recall@1/5/10, MRR@10, nDCG@10 of retrieval from ``collection`` (10 deep), and one row per question."""
    rag.corpus.collections.version(collection)  # an unknown collection: one line, before the first question
    return evaluate_retrieval(
        lambda q: [(p.text, p.metadata) for p in rag.retrieve(collection, q, settings=settings, top_k=10)],
        qas, on_progress=on_progress,
    )


def measure_answers(rag: Rag, app: AppSettings, engine: Engine, qas: Sequence[QA], *,
                    on_progress: Progress | None = None) -> tuple[dict[str, float], list[dict[str, Any]]]:
    """Answer every question with ``app`` and judge each answer (see :func:`judge_answer`)."""
    rows = []
    for i, item in enumerate(qas):
        result = asyncio.run(answer(rag, app, engine, item.question))
        rows.append(judge_answer(item, result["answer"], result["citations"]))
        if on_progress:
            on_progress(i + 1)
    return summarise_answers(rows), rows
