"""``POST /v1/feedback`` through the gateway: a rating lands against the logged response it names."""

from __future__ import annotations

import httpx
import pytest

from aifab.config import load_settings
from aifab.gateway.front import Gateway
from aifab.gateway.keys import KeyStore
from aifab.serve import ModelPool, create_app
from aifab.state import Database
from aifab.state.tables import AuditRow, FeedbackRow
from aifab.testing import FakeEngine, FakeRuntime


@pytest.fixture
async def api(tmp_path):
    settings = load_settings(data_dir=tmp_path)
    db = Database(settings.effective_database_url)
    db.upgrade()
    keys = KeyStore(db)
    alice = keys.create("alice", log_content=True, allow_training=True)[1]
    bob = keys.create("bob")[1]
    engine = FakeEngine("chat", FakeRuntime("Paris is the capital."))
    gw = Gateway(create_app(ModelPool({"chat": engine})), settings, keys=keys, db=db)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=gw), base_url="http://t") as http:
        yield http, {"alice": {"Authorization": f"Bearer {alice}"}, "bob": {"Authorization": f"Bearer {bob}"}}, db
    await gw.aclose()
    engine.close()
    db.close()


async def test_feedback_is_stored_against_the_logged_response(api):
    http, auth, db = api
    r = await http.post("/v1/chat/completions", headers=auth["alice"],
                        json={"model": "chat", "messages": [{"role": "user", "content": "Capital of France?"}]})
    rid = r.json()["id"]
    fb = await http.post("/v1/feedback", headers=auth["alice"],
                         json={"response_id": rid, "rating": "down", "correction": "Paris. Mail me: jo@example.com"})
    assert fb.status_code == 200, fb.text
    assert fb.json()["object"] == "feedback" and fb.json()["rating"] == "down"
    with db.session() as s:
        row = s.get(AuditRow, rid)
        stored = s.query(FeedbackRow).one()
    assert row is not None and row.allow_training and row.request["messages"][0]["content"] == "Capital of France?"
    assert stored.response_id == row.id and "jo@example.com" not in stored.correction  # redacted at rest
    other = await http.post("/v1/feedback", headers=auth["bob"], json={"response_id": rid, "rating": "up"})
    assert other.status_code == 403


@pytest.mark.parametrize("body, status, param", [
    ({"response_id": "chatcmpl-nope", "rating": "up"}, 404, "response_id"),
    ({"response_id": "x", "rating": "meh"}, 400, "rating"),
    ({"rating": "up"}, 400, "response_id"),
])
async def test_bad_feedback_gets_the_openai_envelope(api, body, status, param):
    http, auth, _ = api
    r = await http.post("/v1/feedback", headers=auth["alice"], json=body)
    assert r.status_code == status, r.text
    assert r.json()["error"]["param"] == param
