"""Shared objects reach route handlers through ``Annotated`` dependencies on ``app.state``."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from aifab.serve.metrics import Metrics
from aifab.serve.pool import ModelPool
from aifab.serve.service import OpenAIServing


def _serving(request: Request) -> OpenAIServing:
    return request.app.state.serving


def _metrics(request: Request) -> Metrics:
    return request.app.state.metrics


def _pool(request: Request) -> ModelPool:
    return request.app.state.pool


Serving = Annotated[OpenAIServing, Depends(_serving)]
MetricsDep = Annotated[Metrics, Depends(_metrics)]
Pool = Annotated[ModelPool, Depends(_pool)]
