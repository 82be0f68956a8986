"""Per-key quotas: requests/min and tokens/min as token buckets, and a lifetime token budget.

A bucket holds up to a minute's allowance and refills continuously (``limit/60`` per second), so a key may
burst its whole minute at once and then runs at its rate. Prompt tokens are taken up front by ``admit``;
``charge`` takes generated tokens afterwards and may drive the tokens bucket negative, which makes the
key's next requests wait until it has paid them back.

``MemoryLimiter`` serves one gateway process; ``SqlLimiter`` keeps the buckets in PostgreSQL so that
several processes share them. Keys without limits cost nothing on either.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import Connection, text

from aifab.errors import InvalidRequest, RateLimited
from aifab.gateway.protocol import Limiter
from aifab.identity import ApiKey
from aifab.state import Database

log = logging.getLogger(__name__)

FLUSH_S = 1.0
BUDGET_RETRY_S = 3600.0  # a spent budget comes back only when an operator raises it


def make_limiter(db: Database) -> Limiter:
    """Shared buckets in PostgreSQL (several gateway processes); in memory for SQLite (one process)."""
    return SqlLimiter(db) if db.engine.dialect.name == "postgresql" else MemoryLimiter(db)


def limited(key: ApiKey) -> bool:
    return key.rpm is not None or key.tpm is not None or key.budget_tokens is not None


def _check_size(key: ApiKey, prompt_tokens: int) -> None:
    # Waiting would never help such a request, so it is a 400 rather than a 429 that clients retry.
    if key.tpm is not None and prompt_tokens > key.tpm:
        raise InvalidRequest(
            f"the prompt has {prompt_tokens} tokens; key {key.name!r} may use {key.tpm} tokens per minute",
            code="request_too_large",
        )


def _budget_refusal(key: ApiKey, spent: int, prompt_tokens: int) -> RateLimited:
    return RateLimited(
        f"key {key.name!r} has spent {spent} of its {key.budget_tokens} token budget "
        f"and this request needs {prompt_tokens} more",
        retry_after=BUDGET_RETRY_S, code="budget_exceeded",
    )


def _rate_refusal(key: ApiKey, kind: str, wait: float) -> RateLimited:
    what = f"{key.rpm} requests" if kind == "rpm" else f"{key.tpm} tokens"
    return RateLimited(f"key {key.name!r} is limited to {what} per minute; retry in {wait:.2f} s",
                       retry_after=wait)


@dataclass
class _Bucket:
    cap: float
    level: float
    updated: float

    @property
    def rate(self) -> float:
        return self.cap / 60.0

    def refill(self, now: float) -> None:
        self.level = min(self.cap, self.level + (now - self.updated) * self.rate)
        self.updated = now

    def wait(self, need: float) -> float:
        """Seconds until ``need`` tokens are there (0 = now)."""
        return 0.0 if self.level >= need else (need - self.level) / self.rate


class MemoryLimiter:
    """Buckets in this process's memory. Budget spend is loaded from ``key_usage`` at start and written
    back every ``flush_s`` seconds and on ``close``, so a crash forgets at most that much spend."""

    def __init__(self, db: Database | None = None, *, flush_s: float = FLUSH_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._buckets: dict[tuple[str, str], _Bucket] = {}
        self._spent = _load_spent(db) if db is not None else {}
        self._usage = _Batcher(lambda delta: _write_usage(db, delta), flush_s) if db is not None else None

    async def admit(self, key: ApiKey, prompt_tokens: int) -> None:
        if not limited(key):
            return
        _check_size(key, prompt_tokens)
        spent = self._spent.get(key.id, 0)
        if key.budget_tokens is not None and spent + prompt_tokens > key.budget_tokens:
            raise _budget_refusal(key, spent, prompt_tokens)
        now = self._clock()
        rpm = self._bucket(key.id, "rpm", key.rpm, now)
        tpm = self._bucket(key.id, "tpm", key.tpm, now)
        waits = {"rpm": rpm.wait(1) if rpm else 0.0, "tpm": tpm.wait(max(prompt_tokens, 0)) if tpm else 0.0}
        kind = max(waits, key=waits.__getitem__)
        if waits[kind] > 0:
            raise _rate_refusal(key, kind, waits[kind])
        if rpm:
            rpm.level -= 1
        if tpm:
            tpm.level -= prompt_tokens
        self._spend(key, 1, prompt_tokens, 0)

    async def charge(self, key: ApiKey, tokens: int) -> None:
        """Generated tokens (or a correction, negative allowed); counted as completion tokens."""
        if not limited(key) or not tokens:
            return
        tpm = self._bucket(key.id, "tpm", key.tpm, self._clock())
        if tpm:
            tpm.level = min(tpm.cap, tpm.level - tokens)
        self._spend(key, 0, 0, tokens)

    def flush(self) -> None:
        if self._usage is not None:
            self._usage.flush()

    async def close(self) -> None:
        if self._usage is not None:
            await asyncio.to_thread(self._usage.close)

    def _bucket(self, key_id: str, kind: str, limit: int | None, now: float) -> _Bucket | None:
        if limit is None:
            return None
        bucket = self._buckets.get((key_id, kind))
        if bucket is None or bucket.cap != limit:
            bucket = self._buckets[(key_id, kind)] = _Bucket(cap=float(limit), level=float(limit), updated=now)
        bucket.refill(now)
        return bucket

    def _spend(self, key: ApiKey, requests: int, prompt: int, completion: int) -> None:
        if key.budget_tokens is None:
            return
        self._spent[key.id] = self._spent.get(key.id, 0) + prompt + completion
        if self._usage is not None:
            self._usage.add(key, requests, prompt, completion)


class SqlLimiter:
    """Buckets in the ``rate_buckets`` table, shared by every gateway process on one PostgreSQL.

    ``admit`` is one transaction of conditional upserts (budget, then rpm, then tpm): each takes its cost
    only if the refilled level covers it, under the row's lock, so concurrent processes never admit more
    than the limit; a refusal rolls back what the earlier ones took. Time is the database's clock, so
    hosts with skewed clocks agree. ``charge`` is batched and written every ``flush_s`` seconds (a crash
    forgets at most that much), so a key's tokens bucket and budget lag its streams by up to that long."""

    def __init__(self, db: Database, *, flush_s: float = FLUSH_S) -> None:
        self.db = db
        self._charges = _Batcher(self._write_charges, flush_s)

    async def admit(self, key: ApiKey, prompt_tokens: int) -> None:
        if not limited(key):
            return
        _check_size(key, prompt_tokens)
        await asyncio.to_thread(self._admit, key, prompt_tokens)

    async def charge(self, key: ApiKey, tokens: int) -> None:
        if tokens and (key.tpm is not None or key.budget_tokens is not None):
            self._charges.add(key, 0, 0, tokens)

    def flush(self) -> None:
        self._charges.flush()

    async def close(self) -> None:
        await asyncio.to_thread(self._charges.close)

    def _admit(self, key: ApiKey, prompt_tokens: int) -> None:
        with self.db.engine.begin() as conn:  # an exception rolls back what was taken
            if key.budget_tokens is not None:
                args = {"key_id": key.id, "need": prompt_tokens, "budget": key.budget_tokens}
                if conn.execute(_TAKE_BUDGET, args).first() is None:
                    spent = conn.scalar(_SPENT_ONE, {"key_id": key.id}) or 0
                    raise _budget_refusal(key, int(spent), prompt_tokens)
            for kind, limit, need in (("rpm", key.rpm, 1), ("tpm", key.tpm, max(prompt_tokens, 0))):
                if limit is None:
                    continue
                args = {"key_id": key.id, "kind": kind, "cap": float(limit), "rate": limit / 60.0, "need": need}
                if conn.execute(_TAKE, args).first() is None:
                    level = conn.scalar(_PEEK, args) or 0.0
                    raise _rate_refusal(key, kind, max((need - level) * 60.0 / limit, 0.001))

    def _write_charges(self, delta: _Delta) -> None:
        key = delta.key
        with self.db.engine.begin() as conn:  # rows locked in admit's order (usage, then tpm): no deadlock
            if key.budget_tokens is not None:
                _add_usage(conn, delta)
            if key.tpm is not None:
                conn.execute(_DEBIT, {"key_id": key.id, "cap": float(key.tpm), "rate": key.tpm / 60.0,
                                      "tokens": delta.completion})


_REFILLED = "LEAST(:cap, b.level + GREATEST(extract(epoch FROM statement_timestamp()) - b.updated, 0) * :rate)"
_TAKE = text(f"""
    INSERT INTO rate_buckets AS b (key_id, kind, level, updated)
    SELECT :key_id, :kind, :cap - :need, extract(epoch FROM statement_timestamp()) WHERE :cap >= :need
    ON CONFLICT (key_id, kind) DO UPDATE
        SET level = {_REFILLED} - :need, updated = GREATEST(b.updated, excluded.updated)
        WHERE {_REFILLED} >= :need
    RETURNING b.level""")
_PEEK = text(f"SELECT {_REFILLED} FROM rate_buckets AS b WHERE key_id = :key_id AND kind = :kind")
_DEBIT = text(f"""
    UPDATE rate_buckets AS b SET level = {_REFILLED} - :tokens,
        updated = GREATEST(b.updated, extract(epoch FROM statement_timestamp()))
    WHERE key_id = :key_id AND kind = 'tpm'""")
_TAKE_BUDGET = text("""
    INSERT INTO key_usage AS u (key_id, requests, prompt_tokens, completion_tokens)
    SELECT :key_id, 1, :need, 0 WHERE :need <= :budget
    ON CONFLICT (key_id) DO UPDATE SET requests = u.requests + 1, prompt_tokens = u.prompt_tokens + :need
        WHERE u.prompt_tokens + u.completion_tokens + :need <= :budget
    RETURNING u.requests""")
_SPENT_ONE = text("SELECT prompt_tokens + completion_tokens FROM key_usage WHERE key_id = :key_id")
# Works on SQLite and PostgreSQL. Counts of a key deleted meanwhile are dropped instead of failing the batch.
_ADD_USAGE = text("""
    INSERT INTO key_usage (key_id, requests, prompt_tokens, completion_tokens)
    SELECT CAST(:key_id AS VARCHAR), :requests, :prompt, :completion WHERE EXISTS (SELECT 1 FROM api_keys WHERE id = :key_id)
    ON CONFLICT (key_id) DO UPDATE SET requests = key_usage.requests + excluded.requests,
        prompt_tokens = key_usage.prompt_tokens + excluded.prompt_tokens,
        completion_tokens = key_usage.completion_tokens + excluded.completion_tokens""")


def _load_spent(db: Database) -> dict[str, int]:
    with db.engine.connect() as conn:
        rows = conn.execute(text("SELECT key_id, prompt_tokens + completion_tokens FROM key_usage"))
        return {key_id: int(spent) for key_id, spent in rows}


def _add_usage(conn: Connection, d: _Delta) -> None:
    conn.execute(_ADD_USAGE, {"key_id": d.key.id, "requests": d.requests, "prompt": d.prompt,
                              "completion": d.completion})


def _write_usage(db: Database, delta: _Delta) -> None:
    with db.engine.begin() as conn:
        _add_usage(conn, delta)


@dataclass
class _Delta:
    key: ApiKey
    requests: int = 0
    prompt: int = 0
    completion: int = 0


class _Batcher:
    """Adds up counts per key and hands them to ``write``, one key per call (one transaction each, so
    that no transaction holds two keys' rows), from a background thread every ``interval`` seconds
    (started on the first count). Counts whose write failed are logged and kept for the next try."""

    def __init__(self, write: Callable[[_Delta], None], interval: float) -> None:
        self._write = write
        self._interval = interval
        self._lock = threading.Lock()
        self._pending: dict[str, _Delta] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def add(self, key: ApiKey, requests: int, prompt: int, completion: int) -> None:
        with self._lock:
            delta = self._pending.get(key.id)
            if delta is None:
                delta = self._pending[key.id] = _Delta(key)
            delta.requests += requests
            delta.prompt += prompt
            delta.completion += completion
            if self._thread is None and not self._stop.is_set():
                self._thread = threading.Thread(target=self._run, name="aifab-usage", daemon=True)
                self._thread.start()

    def flush(self) -> None:
        with self._lock:
            batch, self._pending = self._pending, {}
        deltas = list(batch.values())
        for i, delta in enumerate(deltas):
            try:
                self._write(delta)
            except Exception:  # the database is busy or away: keep what is not written for the next try
                log.exception("could not write key usage; retrying in %.1f s", self._interval)
                for d in deltas[i:]:
                    self.add(d.key, d.requests, d.prompt, d.completion)
                raise

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self.flush()

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                self.flush()
            except Exception:  # already logged by flush; the thread must live on
                continue
