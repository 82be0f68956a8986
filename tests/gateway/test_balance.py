"""Balancers, the circuit breaker, the retry budget and route resolution, without sockets."""

from __future__ import annotations

import time
from collections import Counter

import pytest

from aifab.config import GatewaySettings
from aifab.errors import ConfigError
from aifab.gateway.balance import LeastOutstanding, PrefixAffinity, WeightedRoundRobin
from aifab.gateway.health import Breaker, RetryBudget
from aifab.gateway.protocol import UpstreamState
from aifab.gateway.router import Router


class Member:
    def __init__(self, name: str, weight: float = 1.0, outstanding: int = 0) -> None:
        self.name, self.weight = name, weight
        self.state = UpstreamState(outstanding=outstanding)


def test_least_outstanding_prefers_the_idlest_and_takes_turns_on_ties():
    a, b, c = Member("a", outstanding=3), Member("b", outstanding=1), Member("c", outstanding=1)
    lo = LeastOutstanding()
    firsts = Counter(lo.order([a, b, c], None)[0].name for _ in range(200))
    assert set(firsts) == {"b", "c"} and min(firsts.values()) >= 70
    assert lo.order([a, b, c], None)[-1] is a


def test_least_outstanding_counts_weight_as_capacity():
    big, small = Member("big", weight=4, outstanding=3), Member("small", weight=1, outstanding=1)
    assert LeastOutstanding().order([big, small], None)[0] is big  # 3/4 < 1/1


def test_weighted_round_robin_splits_by_weight_smoothly():
    a, b = Member("a", weight=3), Member("b", weight=1)
    rr = WeightedRoundRobin()
    picks = [rr.order([a, b], None)[0].name for _ in range(8)]
    assert Counter(picks) == {"a": 6, "b": 2}
    assert "bb" not in "".join(picks)  # interleaved, not in runs


def test_prefix_affinity_is_sticky_and_moves_only_the_lost_members_keys():
    members = [Member(n) for n in "abcd"]
    pa = PrefixAffinity()
    keys = [f"session-{i}" for i in range(400)]
    first = {k: pa.order(members, k)[0].name for k in keys}
    assert first == {k: pa.order(members, k)[0].name for k in keys}  # sticky
    assert min(Counter(first.values()).values()) > 50  # spread over all four
    without_c = [m for m in members if m.name != "c"]
    moved = [k for k in keys if first[k] != "c" and pa.order(without_c, k)[0].name != first[k]]
    assert not moved  # consistent hashing: only c's keys move


def test_prefix_affinity_bounds_the_load_of_a_hot_member():
    members = [Member(n) for n in "abc"]
    pa = PrefixAffinity(load_factor=1.25)
    home = pa.order(members, "hot")[0]
    home.state.outstanding = 10  # far above 1.25 x the mean
    assert pa.order(members, "hot")[0] is not home
    assert pa.order(members, "hot")[-1] is home


def test_breaker_ejects_after_consecutive_failures_and_half_opens():
    up = Member("u")
    breaker = Breaker(eject_after=3, eject_seconds=0.2)
    breaker.failure(up)
    breaker.failure(up)
    assert Breaker.available(up.state, time.monotonic())
    breaker.failure(up)
    assert not Breaker.available(up.state, time.monotonic())
    time.sleep(0.25)
    assert Breaker.available(up.state, time.monotonic())  # half-open: one trial
    breaker.failure(up)  # the trial failed: out again, for twice as long
    assert up.state.ejected_until - time.monotonic() > 0.3
    up.state.ejected_until = 0
    breaker.success(up)
    assert up.state.ejections == 0 and not up.state.half_open


def test_a_refused_connection_ejects_at_once_until_a_health_check_passes():
    up = Member("u")
    Breaker(eject_after=5, eject_seconds=0.01).failure(up, hard=True)
    time.sleep(0.02)
    assert not Breaker.available(up.state, time.monotonic())  # unhealthy, whatever the timer says


def test_retry_budget_caps_retries_at_a_share_of_requests():
    budget = RetryBudget(0.2, floor=0.0, window=10)
    for _ in range(50):
        budget.request()
    granted = sum(budget.try_retry() for _ in range(50))
    assert granted == 10


def _router(routes: dict) -> Router:
    return Router(GatewaySettings(routes=routes), None)  # type: ignore[arg-type]


def test_router_resolves_aliases_and_serves_unrouted_models_locally():
    r = _router({"chat": {"upstreams": [{"url": "http://h:1/v1", "model": "m"}], "aliases": ["gpt-4o"]}})
    assert r.resolve("gpt-4o").name == "chat" and not r.resolve("gpt-4o").local
    assert r.resolve("smollm").local
    assert r.public_names() == ["chat", "gpt-4o"]


def test_router_splits_canary_traffic_by_percent_and_sticks_per_session():
    r = _router({"chat": {"upstreams": [{"url": "http://h:1/v1"}], "split": {"chat-v2": 10}},
                 "chat-v2": {"upstreams": [{"url": "http://h:2/v1"}]}})
    route = r.resolve("chat")
    share = sum(r.split(route, None).name == "chat-v2" for _ in range(4000)) / 4000
    assert 0.08 < share < 0.12
    assert len({r.split(route, "session-7").name for _ in range(20)}) == 1


def test_router_refuses_a_name_routed_twice_and_a_split_over_100():
    with pytest.raises(ConfigError, match="routed twice"):
        _router({"a": {"aliases": ["x"]}, "b": {"aliases": ["x"]}})
    with pytest.raises(ConfigError, match="120"):
        _router({"a": {"split": {"b": 70, "c": 50}}})


def test_upstream_secret_comes_from_env_and_never_shows(monkeypatch):
    monkeypatch.setenv("UPSTREAM_KEY", "sk-very-secret-value")
    r = _router({"saas": {"upstreams": [{"url": "https://api.example.com/v1", "api_key_env": "UPSTREAM_KEY"}]}})
    up = r.resolve("saas").upstreams[0]
    assert "sk-very" not in repr(up) and "sk-very" not in repr(vars(up).get("name"))
    with pytest.raises(ConfigError, match="MISSING_KEY"):
        _router({"saas": {"upstreams": [{"url": "https://api.example.com/v1", "api_key_env": "MISSING_KEY"}]}})
