"""Liveness, readiness and metrics."""

from __future__ import annotations

from typing import Any

from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST

from aifab.serve.deps import MetricsDep, Pool
from aifab.serve.routing import api_router

router = api_router()


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz")
async def readyz(pool: Pool) -> Any:
    models = {name: engine.health() for name, engine in pool.items()}
    ready = all(h.ok for h in models.values())  # a gateway-only process has no models of its own
    body = {
        "status": "ready" if ready else "not ready",
        "models": {n: {"ok": h.ok, "running": h.running, "waiting": h.waiting} for n, h in models.items()},
    }
    return JSONResponse(body, status_code=200 if ready else 503)


@router.get("/metrics")
async def metrics(m: MetricsDep) -> Response:
    return Response(m.render(), media_type=CONTENT_TYPE_LATEST)
