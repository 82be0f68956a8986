"""``/v1/admin/evals``: the eval runs the state store keeps (``aifab eval run``), newest first, for a
dashboard or a CI job to read. The gateway admits only admin keys to ``/v1/admin/*``; a handler refuses
any other key too, so this app stays closed when it is reached some other way."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Query, Request

from aifab.errors import Forbidden, NotFound
from aifab.evals import EvalRuns
from aifab.identity import ApiKey
from aifab.serve.deps import Caller
from aifab.serve.routing import api_router

router = api_router("/v1/admin")


def _runs(request: Request, caller: ApiKey | None) -> EvalRuns:
    if caller is not None and not caller.admin:
        raise Forbidden(f"the key '{caller.name}' is not an admin key")
    runs = getattr(request.app.state, "evals", None)
    if runs is None:
        raise NotFound("this server keeps no eval runs (it has no state store)")
    return runs


@router.get("/evals")
def list_runs(
    request: Request, caller: Caller,
    suite: Annotated[str | None, Query(description="only the runs of this suite")] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 20,
) -> dict[str, Any]:
    """The newest eval runs, of one suite or all."""
    return {"object": "list", "data": [r.to_dict() for r in _runs(request, caller).list(suite, limit=limit)]}


@router.get("/evals/{run_id}")
def get_run(request: Request, run_id: str, caller: Caller) -> dict[str, Any]:
    """One eval run: config, hashes, metrics and verdicts."""
    return _runs(request, caller).get(run_id).to_dict()
