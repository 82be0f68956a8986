"""Quotas as a key holder meets them: bursts admit a minute's allowance plus what refills meanwhile,
Retry-After says when the next request gets in, generated tokens and budgets make later requests wait,
and on PostgreSQL two gateway processes together never admit more than the limit."""

from __future__ import annotations

import asyncio
import logging
import time

import pytest
from sqlalchemy import text

from aifab.errors import InvalidRequest, RateLimited
from aifab.gateway.keys import KeyStore
from aifab.gateway.quotas import MemoryLimiter, SqlLimiter, make_limiter
from aifab.identity import ApiKey
from aifab.state import Database


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def key(name: str = "k1", **limits) -> ApiKey:
    return ApiKey(id=name, name=name, prefix="afk-xxxxxx", **limits)


async def burst(limiters, key: ApiKey, n: int, tokens: int) -> tuple[int, float]:
    """``n`` admits spread over ``limiters`` at once: (admitted, seconds the burst took)."""
    async def one(limiter) -> int:
        try:
            await limiter.admit(key, tokens)
            return 1
        except RateLimited:
            return 0

    start = time.monotonic()
    admitted = sum(await asyncio.gather(*(one(limiters[i % len(limiters)]) for i in range(n))))
    return admitted, time.monotonic() - start


def assert_near_limit(admitted: int, elapsed: float, per_minute: float) -> None:
    expected = per_minute + elapsed * per_minute / 60  # a full bucket plus its refill during the burst
    print(f"admitted {admitted}, expected {expected:.1f} in {elapsed:.3f} s")
    assert abs(admitted - expected) <= 0.05 * expected


@pytest.mark.parametrize("limits, tokens, per_minute", [({"rpm": 100}, 10, 100), ({"tpm": 1000}, 10, 100)])
async def test_a_burst_admits_a_minutes_allowance(limits, tokens, per_minute):
    admitted, elapsed = await burst([MemoryLimiter()], key(**limits), 1000, tokens)
    assert_near_limit(admitted, elapsed, per_minute)


async def test_retry_after_says_when_the_next_request_gets_in():
    clock = Clock()
    limiter, k = MemoryLimiter(clock=clock), key(rpm=60, tpm=600)  # 1 request and 10 tokens a second
    for _ in range(60):
        await limiter.admit(k, 0)
    with pytest.raises(RateLimited) as refused:
        await limiter.admit(k, 0)
    assert refused.value.retry_after == pytest.approx(1.0) and "60 requests per minute" in refused.value.message
    clock.now += 0.25
    with pytest.raises(RateLimited) as refused:
        await limiter.admit(k, 0)
    assert refused.value.retry_after == pytest.approx(0.75)
    clock.now += 10  # 10 requests and 100 tokens back
    await limiter.admit(k, 550)  # 600 - 550 = 50 tokens left
    with pytest.raises(RateLimited) as refused:
        await limiter.admit(k, 80)
    assert refused.value.retry_after == pytest.approx(3.0) and "600 tokens per minute" in refused.value.message
    with pytest.raises(InvalidRequest, match="600 tokens per minute"):
        await limiter.admit(k, 601)  # waiting would never help


async def test_charged_tokens_make_later_requests_wait():
    clock = Clock()
    limiter, k = MemoryLimiter(clock=clock), key(tpm=600)
    await limiter.admit(k, 100)
    await limiter.charge(k, 700)  # the bucket is 200 tokens in debt
    with pytest.raises(RateLimited) as refused:
        await limiter.admit(k, 10)
    assert refused.value.retry_after == pytest.approx(21.0)
    clock.now += 21
    await limiter.admit(k, 10)


async def test_unlimited_keys_are_not_counted():
    limiter, k = MemoryLimiter(), key()
    for _ in range(10_000):
        await limiter.admit(k, 1_000_000)
        await limiter.charge(k, 1_000_000)


@pytest.fixture
def sqlite_db(state_db):
    return state_db


def spent(db: Database, key_id: str) -> int:
    with db.engine.connect() as conn:
        return conn.scalar(text("SELECT prompt_tokens + completion_tokens FROM key_usage WHERE key_id = :k"),
                           {"k": key_id}) or 0


async def test_a_spent_budget_refuses_and_survives_a_restart(sqlite_db):
    k, _ = KeyStore(sqlite_db).create("b", budget_tokens=1000)
    limiter = make_limiter(sqlite_db)
    assert isinstance(limiter, MemoryLimiter)
    await limiter.admit(k, 400)
    await limiter.charge(k, 500)
    with pytest.raises(RateLimited) as refused:
        await limiter.admit(k, 200)
    assert refused.value.code == "budget_exceeded" and refused.value.retry_after >= 3600
    assert "spent 900 of its 1000" in refused.value.message
    await limiter.close()
    assert spent(sqlite_db, k.id) == 900
    restarted = MemoryLimiter(sqlite_db)
    with pytest.raises(RateLimited, match="spent 900"):
        await restarted.admit(k, 200)
    await restarted.admit(k, 100)
    await restarted.close()


async def test_budget_spend_is_written_within_the_flush_interval(sqlite_db):
    k, _ = KeyStore(sqlite_db).create("b", budget_tokens=1000)
    limiter = MemoryLimiter(sqlite_db, flush_s=0.05)
    await limiter.admit(k, 30)
    deadline = time.monotonic() + 10
    while spent(sqlite_db, k.id) != 30 and time.monotonic() < deadline:
        await asyncio.sleep(0.02)
    assert spent(sqlite_db, k.id) == 30  # written by the background flush, before close
    await limiter.close()


ROUNDS = 150  # admits and charges per task in the deadlock test


@pytest.mark.integration
class TestSqlLimiter:
    @pytest.fixture
    def dbs(self, postgres_url):
        """Two Database objects on one PostgreSQL: two gateway processes sharing the buckets."""
        opened = [Database(postgres_url), Database(postgres_url)]
        opened[0].upgrade()
        yield opened
        for db in opened:
            db.close()

    async def test_two_processes_together_stay_within_the_limit(self, dbs):
        limiters = [make_limiter(db) for db in dbs]
        assert all(isinstance(limiter, SqlLimiter) for limiter in limiters)
        admitted, elapsed = await burst(limiters, key(rpm=100, tpm=1000), 1000, 5)
        assert_near_limit(admitted, elapsed, 100)

    async def test_retry_after_and_charges(self, dbs):
        limiter, k = SqlLimiter(dbs[0]), key(rpm=60, tpm=600)
        for _ in range(60):
            await limiter.admit(k, 0)
        with pytest.raises(RateLimited) as refused:
            await limiter.admit(k, 0)
        assert 0.5 < refused.value.retry_after <= 1.0
        other, k2 = SqlLimiter(dbs[1]), key("k2", tpm=600)
        await other.admit(k2, 100)
        await other.charge(k2, 600)
        other.flush()
        with pytest.raises(RateLimited) as refused:
            await limiter.admit(k2, 10)  # the debt is seen by the other process
        assert 10 < refused.value.retry_after <= 11.0

    async def test_the_budget_is_shared(self, dbs):
        k, _ = KeyStore(dbs[0]).create("b", budget_tokens=100)
        first, second = SqlLimiter(dbs[0]), SqlLimiter(dbs[1])
        await first.admit(k, 60)
        with pytest.raises(RateLimited, match="spent 60 of its 100") as refused:
            await second.admit(k, 60)
        assert refused.value.code == "budget_exceeded"
        await second.charge(k, 30)
        await second.close()
        assert spent(dbs[0], k.id) == 90
        with pytest.raises(RateLimited, match="spent 90"):
            await first.admit(k, 20)
        await first.close()

    async def test_admits_and_charges_of_two_processes_do_not_deadlock(self, dbs, caplog):
        k, _ = KeyStore(dbs[0]).create("busy", rpm=10**6, tpm=10**8, budget_tokens=10**12)
        limiters = [SqlLimiter(db, flush_s=0.005) for db in dbs]

        async def requests(limiter: SqlLimiter) -> None:
            for _ in range(ROUNDS):
                await limiter.admit(k, 10)
                await limiter.charge(k, 10)

        await asyncio.gather(*(requests(limiter) for limiter in limiters for _ in range(3)))
        for limiter in limiters:
            await limiter.close()
        assert spent(dbs[0], k.id) == 2 * 3 * ROUNDS * 20
        assert not [r for r in caplog.records if r.levelno >= logging.ERROR]  # no flush lost a deadlock
