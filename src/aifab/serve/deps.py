"""Shared objects reach route handlers through ``Annotated`` dependencies on ``app.state``. They are
``async def``: FastAPI runs a plain ``def`` dependency in its thread pool, a thread hop per request for
reading an attribute."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from aifab.api import CALL_SCOPE, Call
from aifab.errors import Forbidden
from aifab.gateway.front import LOCAL_ADMIN
from aifab.gateway.front import Gateway as GatewayApp
from aifab.gateway.upstreams import GATEWAY_SCOPE
from aifab.identity import KEY_SCOPE, ApiKey
from aifab.serve.metrics import Metrics
from aifab.serve.pool import ModelPool
from aifab.serve.service import OpenAIServing


async def _serving(request: Request) -> OpenAIServing:
    return request.app.state.serving


async def _metrics(request: Request) -> Metrics:
    return request.app.state.metrics


async def _pool(request: Request) -> ModelPool:
    return request.app.state.pool


Serving = Annotated[OpenAIServing, Depends(_serving)]
MetricsDep = Annotated[Metrics, Depends(_metrics)]
Pool = Annotated[ModelPool, Depends(_pool)]


async def _caller(request: Request) -> ApiKey | None:
    """The API key the gateway admitted the request with (None: no key needed, a loopback-only server)."""
    return request.scope.get(KEY_SCOPE)


Caller = Annotated[ApiKey | None, Depends(_caller)]


async def _handed(request: Request) -> Call | None:
    """The model request the gateway validated and handed over (None: this app was called directly)."""
    return request.scope.get(CALL_SCOPE)


async def _gateway(request: Request) -> GatewayApp | None:
    """The gateway in front of this app (None: the app runs alone, as in tests)."""
    return request.scope.get(GATEWAY_SCOPE)


Handed = Annotated[Call | None, Depends(_handed)]
Gateway = Annotated[GatewayApp | None, Depends(_gateway)]


def may_read(caller: ApiKey | None, collection: str) -> None:
    if caller is not None and not caller.allows_collection(collection):
        raise Forbidden(f"the key '{caller.name}' may not use the collection '{collection}'", param="collection")


def may_write(caller: ApiKey | None, collection: str) -> None:
    """Changing a collection needs an admin key or one that names the collection in its scope."""
    if caller is not None and not (caller.admin or (caller.collections and collection in caller.collections)):
        raise Forbidden(f"the key '{caller.name}' may not change the collection '{collection}'", param="collection")


def may_read_server_files(caller: ApiKey | None, what: str) -> None:
    """Work on files of the server's own machine (a path to ingest, a question set, a backup to write) is for
    the holder of the data directory's token file alone: an admin key over the network must not reach the
    server's disk."""
    if caller is None or caller.id != LOCAL_ADMIN.id:
        raise Forbidden(f"{what} works on files of the server's machine: it needs the data directory's token file")


def may_use_tool(caller: ApiKey | None, name: str) -> None:
    """A tool outside the key's tool scope is refused (403), whether it exists or not."""
    if caller is not None and not caller.allows_tool(name):
        raise Forbidden(f"the key '{caller.name}' may not use the tool '{name}'", param="name")
