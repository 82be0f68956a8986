"""Feedback on logged responses: the request body checked field by field, who may rate what, and the
interactions the dataset builder reads (the latest feedback last)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from aifab.errors import Forbidden, InvalidRequest, NotFound
from aifab.feedback import MAX_TEXT_BYTES, FeedbackInput, FeedbackStore, feedback_from_request
from aifab.gateway.usage import parse_since
from aifab.identity import ApiKey
from aifab.testing.interactions import InteractionLog

ALICE = ApiKey(id="id-alice", name="alice", prefix="afk-a")
BOB = ApiKey(id="id-bob", name="bob", prefix="afk-b")
ADMIN = ApiKey(id="id-root", name="root", prefix="afk-r", admin=True)


@pytest.fixture
def db(state_db):
    return state_db


def test_the_request_body_is_checked_field_by_field():
    assert feedback_from_request({"response_id": "chatcmpl-1", "rating": "down", "correction": "Paris.",
                                  "comment": "  "}) == FeedbackInput("chatcmpl-1", "down", "Paris.", None)
    cases = [
        ([1], None, "JSON object"),
        ({"rating": "up"}, "response_id", "'response_id' is required"),
        ({"response_id": "x" * 65, "rating": "up"}, "response_id", "longer than 64"),
        ({"response_id": "r", "rating": "meh"}, "rating", "\"up\" or \"down\", not 'meh'"),
        ({"response_id": "r"}, "rating", "not None"),
        ({"response_id": "r", "rating": "up", "correction": 5}, "correction", "must be a string"),
        ({"response_id": "r", "rating": "up", "comment": "é" * (MAX_TEXT_BYTES // 2 + 1)}, "comment", "64 KB"),
        ({"response_id": "r", "rating": "up", "corection": "typo"}, "corection", "unknown field 'corection'"),
    ]
    for body, param, message in cases:
        with pytest.raises(InvalidRequest) as err:
            feedback_from_request(body)
        assert err.value.param == param and message in err.value.message, body


def test_record_stores_feedback_against_the_logged_response(db):
    log = InteractionLog(db)
    mine = log.request("Capital of France?", "Lyon.", key="alice", key_id=ALICE.id)
    theirs = log.request("Capital of Spain?", "Madrid.", key="bob", key_id=BOB.id)
    anonymous = log.request("Capital of Italy?", "Rome.", key=None)
    store = FeedbackStore(db)
    stored = store.record(mine, "down", correction="Paris.", comment="wrong city", key=ALICE)
    assert stored["object"] == "feedback" and stored["id"].startswith("fb-") and stored["response_id"] == mine
    assert (stored["rating"], stored["correction"], stored["comment"]) == ("down", "Paris.", "wrong city")
    with pytest.raises(Forbidden):
        store.record(theirs, "up", key=ALICE)
    with pytest.raises(Forbidden):
        store.record(anonymous, "up", key=ALICE)
    assert store.record(theirs, "up", key=ADMIN)["rating"] == "up"
    assert store.record(anonymous, "up")["rating"] == "up"  # no auth: a local gateway, the CLI
    with pytest.raises(NotFound, match="no logged response with id 'chatcmpl-none'"):
        store.record("chatcmpl-none", "up")
    with pytest.raises(InvalidRequest) as err:
        store.record(mine, "sideways")
    assert err.value.param == "rating"
    assert [f.id for f in store.for_response(mine)] == [stored["id"]]


def test_a_gateway_redactor_is_applied_before_storing(db):
    rid = InteractionLog(db).request("Who do I call?", "Nobody.")
    store = FeedbackStore(db, redact=lambda t: t.replace("jane@example.com", "[EMAIL]"))
    stored = store.record(rid, "down", correction="Mail jane@example.com.", comment="jane@example.com")
    assert (stored["correction"], stored["comment"]) == ("Mail [EMAIL].", "[EMAIL]")


def test_interactions_join_the_log_with_its_feedback_latest_last(db):
    log = InteractionLog(db)
    old = log.request("Old question?", "Old.", ago=timedelta(days=3))
    rated = log.request("Question?", "Answer.", model="alias", route="m2")
    log.request("Unrated?", "Yes.")
    log.rate(old, "up")
    first = log.rate(rated, "up")
    last = log.rate(rated, "down", correction="Better answer.")
    store = FeedbackStore(db)
    found = {i.id: i for i in store.interactions()}
    assert set(found) == {old, rated}
    i = found[rated]
    assert [f.id for f in i.feedback] == [first, last] and i.latest is not None and i.latest.id == last
    assert i.request == {"messages": [{"role": "user", "content": "Question?"}]} and i.response == "Answer."
    assert (i.model, i.route, i.allow_training, i.status) == ("alias", "m2", True, 200)
    assert i.ts.tzinfo is not None
    assert [x.id for x in store.interactions(since=parse_since("1d"))] == [rated]
    assert [x.id for x in store.interactions(model="m2")] == [rated]
    assert [x.id for x in store.interactions(model="alias")] == [rated]
    assert store.interactions(model="m9") == []
