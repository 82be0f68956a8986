"""``/v1/admin/evals``: the eval runs the state store keeps (``aifab eval run``), newest first, for a
dashboard or a CI job to read. The gateway admits only admin keys to ``/v1/admin/*``; a handler refuses
any other key too, so this app stays closed when it is reached some other way."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import Query, Request
from pydantic import BaseModel, ConfigDict, ValidationError

from aifab.errors import Forbidden, InvalidRequest, NotFound
from aifab.evals import EvalRuns
from aifab.evals.local import LocalHarnesses
from aifab.evals.runner import Baseline, run_suite
from aifab.evals.suite import AnswersCheck, RetrievalCheck, Suite, TaskCheck
from aifab.identity import ApiKey
from aifab.serve.deps import Caller, may_read_server_files
from aifab.serve.routing import api_router

router = api_router("/v1/admin")
CHECKS: dict[str, type[RetrievalCheck | AnswersCheck | TaskCheck]] = {
    "retrieval": RetrievalCheck, "answers": AnswersCheck, "task": TaskCheck}


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


class Measure(BaseModel):
    """One check of a suite, as ``aifab eval run`` beside this server sends it: its fields, and the folder its
    relative paths start from (the suite's, on this machine)."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["retrieval", "answers", "task"]
    check: dict[str, Any]
    root: str


@router.post("/evals/measure")
def measure(request: Request, body: Measure, caller: Caller) -> dict[str, Any]:
    """Run one check's harness in this server, which holds the data directory's store. It reads the question
    set or dataset from this machine's files, so only the holder of the data directory's token file may."""
    may_read_server_files(caller, "measuring a check")
    rag, corpus = request.app.state.rag, request.app.state.corpus
    if rag is None:
        raise NotFound("this server has no corpus configured")
    try:
        check = CHECKS[body.kind].model_validate(body.check)
    except ValidationError as exc:
        raise InvalidRequest(f"bad {body.kind} check: {exc.errors()[0]['msg']}") from None
    check._root = Path(body.root)
    harnesses = LocalHarnesses(corpus.settings, rag=lambda: rag, registry=lambda: corpus.registry)
    measured = getattr(harnesses, body.kind)(check, lambda done, total: None)
    return {"object": "eval.measured", "metrics": measured.metrics, "inputs": measured.inputs, "rows": measured.rows}


@router.post("/evals/{run_id}/rerun", status_code=201)
def rerun(request: Request, run_id: str, caller: Caller) -> dict[str, Any]:
    """Run a stored run's suite again, as it was (the same question sets, read where that run read them), and
    judge it against that run as the baseline; the new run is stored and returned. The web UI's "Run again"."""
    runs = _runs(request, caller)
    rag, corpus = request.app.state.rag, request.app.state.corpus
    if rag is None:
        raise NotFound("this server has no corpus configured")
    before = runs.get(run_id)
    if "root" not in before.hashes:
        raise InvalidRequest(f"the run {run_id} does not record where its suite was: run the suite with `aifab eval run`")
    suite = Suite.model_validate(before.config).rooted(Path(before.hashes["root"]))
    missing = [str(p) for p in suite.files().values() if not p.is_file()]
    if missing:
        raise InvalidRequest(f"the suite's question sets are gone: {', '.join(missing)}")
    harnesses = LocalHarnesses(corpus.settings, rag=lambda: rag, registry=lambda: corpus.registry)
    result = run_suite(suite, before.hashes["suite"], harnesses, baseline=Baseline.of_run(before))
    runs.add(result)
    return result.to_dict()
