"""``/v1/admin/evals``: stored eval runs over HTTP, with the OpenAI error envelope for a bad request."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
import pytest

from aifab.config import load_settings
from aifab.corpus.service import Corpus
from aifab.evals import EvalRun, EvalRuns, Row
from aifab.identity import KEY_SCOPE, ApiKey
from aifab.registry import Registry
from aifab.serve import ModelPool, create_app
from aifab.state import Database
from aifab.testing import MemoryStore


def a_run(run_id, suite, started):
    start = datetime(2026, 1, 1, tzinfo=UTC) + timedelta(minutes=started)
    return EvalRun(run_id, suite, start, start + timedelta(seconds=1), True, {"name": suite}, {"suite": "0" * 64},
                   {"retrieval:kb": {"recall@5": 0.9}}, [Row("retrieval:kb", "recall@5", 0.9, 0.6, verdict="pass")])


@pytest.fixture
async def client(tmp_path):
    settings = load_settings(data_dir=tmp_path / "data")
    db = Database(settings.effective_database_url)
    db.upgrade()
    runs = EvalRuns(db)
    for run in (a_run("eval-1", "a", 1), a_run("eval-2", "b", 2)):
        runs.add(run)
    app = create_app(ModelPool({}), corpus=Corpus(settings, Registry(db, tmp_path / "models"), MemoryStore()))
    key: dict[str, ApiKey | None] = {"key": None}

    async def with_key(scope, receive, send):  # what the gateway puts in the scope
        await app(scope | {KEY_SCOPE: key["key"]} if scope["type"] == "http" else scope, receive, send)

    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=with_key), base_url="http://test") as c:
        c.key = key
        yield c
    db.close()


async def test_runs_are_listed_newest_first_and_fetched_by_id(client):
    r = await client.get("/v1/admin/evals")
    assert r.status_code == 200 and [x["id"] for x in r.json()["data"]] == ["eval-2", "eval-1"]
    r = await client.get("/v1/admin/evals", params={"suite": "a"})
    assert [x["id"] for x in r.json()["data"]] == ["eval-1"]
    r = await client.get("/v1/admin/evals/eval-1")
    assert r.status_code == 200 and r.json()["verdicts"][0]["metric"] == "recall@5"
    assert r.json()["started_at"] == "2026-01-01T00:01:00+00:00"


async def test_unknown_run_and_a_non_admin_key_get_the_error_envelope(client):
    r = await client.get("/v1/admin/evals/eval-9")
    assert r.status_code == 404 and "no eval run 'eval-9'" in r.json()["error"]["message"]
    client.key["key"] = ApiKey(id="k1", name="reader", prefix="sk-x")
    r = await client.get("/v1/admin/evals")
    assert r.status_code == 403 and r.json()["error"]["message"] == "the key 'reader' is not an admin key"
    client.key["key"] = ApiKey(id="k2", name="root", prefix="sk-y", admin=True)
    assert (await client.get("/v1/admin/evals")).status_code == 200
