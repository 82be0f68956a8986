"""The FastAPI application: wiring only."""

from __future__ import annotations

from fastapi import FastAPI

from aifab import __version__
from aifab.serve import errors
from aifab.serve.metrics import Metrics
from aifab.serve.middleware import BodyLimit, RequestCounter
from aifab.serve.pool import ModelPool
from aifab.serve.routes import openai, ops
from aifab.serve.service import OpenAIServing


def create_app(pool: ModelPool, *, max_body_bytes: int = 2 * 1024 * 1024) -> FastAPI:
    """An app serving the models in ``pool``. The caller owns the pool (and closes it)."""
    app = FastAPI(title="aifab", version=__version__, docs_url="/docs", redoc_url=None)
    metrics = Metrics(pool.queue_depths)
    app.state.pool = pool
    app.state.metrics = metrics
    app.state.serving = OpenAIServing(pool, metrics=metrics)
    errors.install(app)
    app.include_router(openai.router)
    app.include_router(ops.router)

    app.add_middleware(RequestCounter, metrics=metrics)
    app.add_middleware(BodyLimit, max_bytes=max_body_bytes)
    return app
