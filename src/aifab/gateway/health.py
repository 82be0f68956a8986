"""Passive outlier ejection (a circuit breaker with half-open probes), active health checks and the retry
budget. Times are ``time.monotonic()`` seconds."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable, Iterable

from aifab.gateway.protocol import Upstream, UpstreamState

log = logging.getLogger("aifab.gateway")
MAX_EJECTION = 30.0


class Breaker:
    """Passive outlier ejection. Closed -> (``eject_after`` consecutive failures) -> ejected for
    ``eject_seconds``, doubling per ejection up to 30 s -> half-open: the next request is a probe that
    closes it on success or ejects it again. A refused connection also marks the upstream unhealthy until
    an active health check sees it answer again."""

    def __init__(self, eject_after: int, eject_seconds: float, on_eject: Callable[[Upstream], None] | None = None) -> None:
        self.eject_after, self.eject_seconds = eject_after, eject_seconds
        self.on_eject = on_eject

    @staticmethod
    def available(state: UpstreamState, now: float) -> bool:
        return state.healthy and state.ejected_until <= now

    def success(self, up: Upstream) -> None:
        s = up.state
        if s.half_open:
            log.info("upstream %s answers again", up.name)
        s.consecutive_failures, s.ejections, s.half_open = 0, 0, False

    def failure(self, up: Upstream, *, hard: bool = False) -> None:
        s = up.state
        s.consecutive_failures += 1
        if hard:
            s.healthy = False
        if hard or s.half_open or s.consecutive_failures >= self.eject_after:
            if s.ejected_until <= time.monotonic():  # not again while already out
                self.eject(up)

    def eject(self, up: Upstream) -> None:
        s = up.state
        s.ejections += 1
        wait = min(MAX_EJECTION, self.eject_seconds * 2 ** (s.ejections - 1))
        s.ejected_until, s.half_open = time.monotonic() + wait, True
        log.warning("upstream %s ejected for %.1f s after %d failure(s)", up.name, wait, s.consecutive_failures)
        if self.on_eject is not None:
            self.on_eject(up)


class HealthChecker:
    """Probes every remote upstream each ``interval`` seconds (GET …/models): one that does not answer is
    taken out of rotation, one that answers again is put back at once (within one interval of its return)."""

    def __init__(self, upstreams: Iterable[Upstream], breaker: Breaker, interval: float) -> None:
        self.upstreams = list(upstreams)
        self.breaker, self.interval = breaker, interval
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self.upstreams and self._task is None:
            self._task = asyncio.ensure_future(self._run())

    async def _run(self) -> None:
        while True:
            await asyncio.gather(*(self._check(up) for up in self.upstreams))
            await asyncio.sleep(self.interval)

    async def _check(self, up: Upstream) -> None:
        ok = await up.probe()
        s = up.state
        if ok and not s.healthy:
            log.info("upstream %s passes its health check again", up.name)
            s.healthy, s.ejected_until = True, 0.0
        elif not ok and s.healthy:
            log.warning("upstream %s fails its health check", up.name)
            s.healthy = False

    async def stop(self) -> None:
        await cancel(self._task)
        self._task = None


async def cancel(task: asyncio.Task[None] | None) -> None:
    """Cancel a background task and wait until it has stopped."""
    if task is not None:
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            pass


class RetryBudget:
    """Retries may be at most ``ratio`` of the requests of the last ``window`` seconds, plus ``floor`` per
    second (Envoy's retry budget): a failing pool cannot multiply its own load."""

    def __init__(self, ratio: float, *, floor: float = 3.0, window: float = 10.0) -> None:
        self.ratio, self.floor, self.window = ratio, floor, window
        self._requests: deque[float] = deque()
        self._retries: deque[float] = deque()

    def request(self) -> None:
        self._requests.append(time.monotonic())

    def try_retry(self) -> bool:
        now = time.monotonic()
        for q in (self._requests, self._retries):
            while q and q[0] < now - self.window:
                q.popleft()
        if len(self._retries) < self.ratio * len(self._requests) + self.floor * self.window:
            self._retries.append(now)
            return True
        return False
