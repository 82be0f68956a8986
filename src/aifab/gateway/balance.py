"""Balancing: the order in which a request tries a route's upstreams (the first, then retries).

- least-outstanding (default): fewest requests in flight per unit of weight, ties taken in turn;
- weighted round-robin: nginx's smooth weighted round-robin;
- prefix affinity: consistent hashing of the session id or the prompt's prefix, with bounded load
  (an upstream already carrying more than ``c`` × the mean passes the request on along the ring).
"""

from __future__ import annotations

import bisect
import hashlib
import math
import random
from collections.abc import Sequence
from typing import Protocol

from aifab.gateway.protocol import Upstream

VNODES = 64
LOAD_FACTOR = 1.25


class Balancer(Protocol):
    def order(self, upstreams: Sequence[Upstream], affinity: str | None) -> list[Upstream]: ...


class LeastOutstanding:
    def order(self, upstreams: Sequence[Upstream], affinity: str | None) -> list[Upstream]:
        if len(upstreams) == 1:
            return list(upstreams)
        return sorted(upstreams, key=lambda u: (u.state.outstanding / u.weight, random.random()))  # ties: at random


class WeightedRoundRobin:
    def __init__(self) -> None:
        self._current: dict[str, float] = {}

    def order(self, upstreams: Sequence[Upstream], affinity: str | None) -> list[Upstream]:
        total = sum(u.weight for u in upstreams)
        for u in upstreams:
            self._current[u.name] = self._current.get(u.name, 0.0) + u.weight
        best = max(upstreams, key=lambda u: self._current[u.name])
        self._current[best.name] -= total
        return [best, *(u for u in upstreams if u is not best)]


class PrefixAffinity:
    """A hash ring with ``VNODES`` points per unit of weight; rebuilt when the member set changes."""

    def __init__(self, load_factor: float = LOAD_FACTOR) -> None:
        self.load_factor = load_factor
        self._members: tuple[str, ...] = ()
        self._points: list[int] = []
        self._owners: list[str] = []
        self._fallback = LeastOutstanding()

    def order(self, upstreams: Sequence[Upstream], affinity: str | None) -> list[Upstream]:
        if affinity is None:
            return self._fallback.order(upstreams, None)
        by_name = {u.name: u for u in upstreams}
        self._ring(upstreams)
        cap = math.ceil(self.load_factor * (sum(u.state.outstanding for u in upstreams) + 1) / len(upstreams))
        start = bisect.bisect(self._points, _hash(affinity)) % len(self._points)
        seen: list[Upstream] = []
        for i in range(len(self._points)):
            member = by_name.get(self._owners[(start + i) % len(self._points)])
            if member is not None and member not in seen:
                seen.append(member)
                if len(seen) == len(by_name):
                    break
        within = [u for u in seen if u.state.outstanding < cap]
        return within + [u for u in seen if u not in within]

    def _ring(self, upstreams: Sequence[Upstream]) -> None:
        members = tuple(sorted(f"{u.name}:{u.weight}" for u in upstreams))
        if members == self._members:
            return
        points = sorted(
            (_hash(f"{u.name}#{i}"), u.name) for u in upstreams for i in range(max(1, round(VNODES * u.weight)))
        )
        self._members = members
        self._points = [p for p, _ in points]
        self._owners = [name for _, name in points]


def _hash(text: str) -> int:
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "big")


def make_balancer(kind: str) -> Balancer:
    return {"least_outstanding": LeastOutstanding, "round_robin": WeightedRoundRobin, "prefix": PrefixAffinity}[kind]()
