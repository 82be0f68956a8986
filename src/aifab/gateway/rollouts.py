"""Rollouts: a served model name split between its current version and a candidate (a canary), then
promoted in full or rolled back. Written by ``aifab models promote|rollback``, read by every gateway
process (polled each second), so a change needs no restart."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import select

from aifab.errors import InvalidRequest, NotFound
from aifab.state import Database
from aifab.state.tables import RolloutRow

log = logging.getLogger("aifab.gateway")


@dataclass(frozen=True)
class Rollout:
    model: str  # the name clients call
    current: str  # what serves it now
    candidate: str | None = None
    percent: float = 0.0  # of the traffic sent to the candidate
    previous: str | None = None  # what rollback returns to

    def to_dict(self) -> dict[str, object]:
        return {"model": self.model, "current": self.current, "candidate": self.candidate,
                "percent": self.percent, "previous": self.previous}


class RolloutStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    def all(self) -> dict[str, Rollout]:
        with self.db.session() as s:
            return {r.model: _rollout(r) for r in s.scalars(select(RolloutRow))}

    def canary(self, model: str, candidate: str, percent: float) -> Rollout:
        """Send ``percent`` of ``model``'s traffic to ``candidate``."""
        if not 0 < percent < 100:
            raise InvalidRequest("a canary takes between 0 and 100 percent (use --full for all of it)",
                                 param="percent")
        with self.db.session() as s:
            row = s.get(RolloutRow, model) or RolloutRow(model=model, current=model, previous=None)
            if candidate == row.current:
                raise InvalidRequest(f"'{candidate}' already serves '{model}'", param="model")
            row.candidate, row.percent, row.updated_at = candidate, percent, datetime.now(UTC)
            s.add(row)
            s.flush()
            return _rollout(row)

    def full(self, model: str, candidate: str) -> Rollout:
        """``candidate`` serves all of ``model``; the old version is kept for rollback."""
        with self.db.session() as s:
            row = s.get(RolloutRow, model) or RolloutRow(model=model, current=model)
            if candidate == row.current:
                raise InvalidRequest(f"'{candidate}' already serves '{model}'", param="model")
            row.previous, row.current = row.current, candidate
            row.candidate, row.percent, row.updated_at = None, 0.0, datetime.now(UTC)
            s.add(row)
            s.flush()
            return _rollout(row)

    def rollback(self, model: str) -> Rollout:
        """Stop a canary, or return a full promotion to the version before it."""
        with self.db.session() as s:
            row = s.get(RolloutRow, model)
            if row is None:
                raise NotFound(f"'{model}' has no rollout to roll back", param="model")
            if row.candidate is not None:
                row.candidate, row.percent = None, 0.0
            elif row.previous is not None:
                row.current, row.previous = row.previous, None
            else:
                raise InvalidRequest(f"'{model}' is served by '{row.current}' with nothing to roll back to")
            row.updated_at = datetime.now(UTC)
            s.flush()
            return _rollout(row)


def _rollout(row: RolloutRow) -> Rollout:
    return Rollout(row.model, row.current, row.candidate, row.percent or 0.0, row.previous)


class RolloutWatcher:
    """Reads the rollouts each ``interval`` seconds and hands them to the router, after making sure every
    version they name is loaded (``load``: e.g. an adapter put onto its running base). A version that
    cannot be loaded keeps its rollout from taking effect, and says why in the log."""

    def __init__(self, store: RolloutStore, apply: Callable[[dict[str, Rollout]], None],
                 load: Callable[[str], Awaitable[None]], *, interval: float = 1.0) -> None:
        self.store, self.apply, self.load, self.interval = store, apply, load, interval
        self._seen: dict[str, Rollout] | None = None
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.ensure_future(self._run())

    async def refresh(self) -> None:
        rollouts = await asyncio.to_thread(self.store.all)
        if rollouts == self._seen:
            return
        ready = {}
        for name, r in rollouts.items():
            try:
                for version in {r.current, r.candidate} - {None, name}:
                    await self.load(version)  # type: ignore[arg-type]
            except Exception as exc:  # noqa: BLE001 — one bad rollout must not stop the others
                log.warning("rollout of '%s' not applied: %s", name, getattr(exc, "message", exc))
                continue
            ready[name] = r
        self.apply(ready)
        self._seen = rollouts

    async def _run(self) -> None:
        while True:
            try:
                await self.refresh()
            except Exception:  # the database may be briefly unavailable
                log.exception("reading rollouts failed")
            await asyncio.sleep(self.interval)

    async def stop(self) -> None:
        from aifab.gateway.health import cancel

        await cancel(self._task)
        self._task = None
