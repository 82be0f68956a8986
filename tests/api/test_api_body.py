"""One parser, one depth limit, one message naming the bad field; the call a remote upstream gets."""

from __future__ import annotations

import orjson
import pytest

from aifab.api import MAX_DEPTH, Call, ChatCompletionRequest, parse_json, validate
from aifab.errors import InvalidRequest


def _chat(**extra: object) -> bytes:
    return orjson.dumps({"model": "m", "messages": [{"role": "user", "content": "hi"}], **extra})


@pytest.mark.parametrize("role", [{"a": 1}, ["user"], 3, None])
def test_a_role_of_the_wrong_type_is_a_400_naming_it(role):
    body = orjson.dumps({"model": "m", "messages": [{"role": "user", "content": "a"}, {"role": role, "content": "b"}]})
    with pytest.raises(InvalidRequest) as err:
        validate(ChatCompletionRequest, body)
    assert err.value.status_code == 400 and err.value.param == "messages.1.role"


def test_json_nested_too_deep_is_invalid_json_not_a_recursion_error():
    deep = b"[" * 10_000 + b"]" * 10_000
    with pytest.raises(InvalidRequest, match="not valid JSON"):
        parse_json(deep)
    with pytest.raises(InvalidRequest, match="not valid JSON"):
        validate(ChatCompletionRequest, b'{"model": "m", "messages": ' + deep + b"}")
    ok = b"[" * (MAX_DEPTH - 1) + b"]" * (MAX_DEPTH - 1)
    assert isinstance(parse_json(ok), list)


def test_a_missing_or_empty_model_is_named():
    with pytest.raises(InvalidRequest) as err:
        validate(ChatCompletionRequest, b'{"messages": [{"role": "user", "content": "x"}]}')
    assert err.value.param == "model"
    with pytest.raises(InvalidRequest, match="request body"):
        validate(ChatCompletionRequest, b"[1, 2]")


def test_a_remote_upstream_gets_what_the_client_set_for_its_own_model_name():
    req = validate(ChatCompletionRequest, _chat(tools=[{"type": "function", "function": {"name": "f"}}], n=2,
                                                temperature=0.5, stream=True))
    req.max_tokens = 7  # the gateway's clamp
    sent = orjson.loads(Call(req, "chatcmpl-1", "chat").encode("upstream-model"))
    assert sent["model"] == "upstream-model" and sent["max_tokens"] == 7 and sent["n"] == 2
    assert sent["tools"][0]["function"]["name"] == "f"  # unknown to aifab, kept for the upstream
    assert sent["stream_options"] == {"include_usage": True}
    assert "presence_penalty" not in sent and "ignore_eos" not in sent  # defaults the client did not send
    assert sent["messages"] == [{"role": "user", "content": "hi"}]
