"""The FastAPI application: wiring only."""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager

from fastapi import FastAPI

from aifab import __version__
from aifab.corpus.service import Corpus
from aifab.errors import out_of_space
from aifab.evals import EvalRuns
from aifab.finetune.service import MAX_FILE_BYTES, FinetuneService
from aifab.gateway.guards.pipeline import Guardrails
from aifab.rag import Rag
from aifab.serve import errors
from aifab.serve.agent import input_guard, no_guard
from aifab.serve.mcp import McpEndpoint
from aifab.serve.metrics import Metrics
from aifab.serve.middleware import BodyLimit, RequestCounter
from aifab.serve.pool import ModelPool
from aifab.serve.routes import admin, collections, evals, finetuning, openai, ops, rag, reports, tools
from aifab.serve.service import OpenAIServing
from aifab.tools import Toolbox
from aifab.web import install as install_web_ui

log = logging.getLogger("aifab.serve")


def create_app(
    pool: ModelPool, *, max_body_bytes: int = 2 * 1024 * 1024, corpus: Corpus | None = None,
    finetune: FinetuneService | None = None,
) -> FastAPI:
    """An app serving the models in ``pool`` and, when given, the document collections of ``corpus``
    with retrieval and the RAG apps of its settings, and the fine-tuning API of ``finetune``; ``/mcp`` serves
    retrieval, the apps and the corpus settings' ``[tools.*]`` as MCP tools. The caller
    owns the pool and the corpus (and closes them); the app starts and stops the fine-tuning runner and the
    tools."""
    app = FastAPI(title="aifab", version=__version__, docs_url="/docs", redoc_url=None, lifespan=_lifespan)
    metrics = Metrics(pool.queue_depths)
    app.state.pool = pool
    app.state.metrics = metrics
    app.state.rag = Rag(corpus.settings, corpus) if corpus is not None else None
    guard = input_guard(Guardrails(corpus.settings.gateway.guardrails)) if corpus is not None else no_guard
    app.state.serving = OpenAIServing(pool, metrics=metrics, rag=app.state.rag, tool_guard=guard)
    errors.install(app)
    app.include_router(openai.router)
    app.include_router(ops.router)
    app.include_router(reports.router)
    app.state.corpus = corpus
    app.state.ingest_worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="aifab-ingest")
    app.include_router(collections.router)
    app.include_router(rag.router)
    app.state.finetune = finetune
    app.include_router(finetuning.router)
    app.state.mcp = McpEndpoint(app, app.state)
    app.add_route("/mcp", app.state.mcp, include_in_schema=False)
    app.include_router(tools.router)
    app.include_router(admin.router)
    app.state.evals = EvalRuns(corpus.registry.db) if corpus is not None else None
    app.include_router(evals.router)
    install_web_ui(app)  # "/" and "/ui/*": the web UI's page and files (no OpenAPI entries)
    uploads = {UPLOADS: corpus.settings.corpus.max_file_bytes * 4} if corpus is not None else {}
    if finetune is not None:
        uploads[FILES] = MAX_FILE_BYTES

    app.add_middleware(RequestCounter, metrics=metrics)
    app.add_middleware(BodyLimit, max_bytes=max_body_bytes, overrides=uploads)
    return app


UPLOADS = re.compile(r"^/v1/collections/[^/]+/documents$")  # bodies up to a few files of corpus.max_file_bytes
FILES = re.compile(r"^/v1/files$")


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    try:
        await asyncio.to_thread(collections.resume_interrupted, app)
    except Exception as exc:  # a full disk must not keep the server from starting (and serving reads)
        if out_of_space(exc) is None:
            raise
        log.warning("interrupted ingest jobs were not recovered: %s", exc)
    corpus = app.state.corpus
    if corpus is not None and corpus.settings.tools:  # a tool that cannot start stops the start-up, named
        app.state.serving.toolbox = await Toolbox.open(corpus.settings)
    if app.state.finetune is not None:
        loop, pool = asyncio.get_running_loop(), app.state.pool

        def serve_it(name: str) -> None:  # a finished job's model is served at once, like OpenAI's
            asyncio.run_coroutine_threadsafe(pool.load(name), loop).result(timeout=600)

        app.state.finetune.runner.on_success = serve_it
        app.state.finetune.runner.start()
    try:
        async with app.state.mcp.run():
            yield
    finally:
        app.state.ingest_worker.shutdown(wait=False, cancel_futures=True)
        if app.state.finetune is not None:
            app.state.finetune.runner.close()
        if app.state.serving.toolbox is not None:
            await app.state.serving.toolbox.aclose()
