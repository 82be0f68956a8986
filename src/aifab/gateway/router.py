"""Routes: a model name (or alias) -> a pool of upstreams with a balancer, canary splits and fallbacks.
A model the config does not route is served by this process (an implicit local route)."""

from __future__ import annotations

import random
import time
import zlib
from dataclasses import dataclass, field

from starlette.types import ASGIApp

from aifab.config import GatewaySettings, RouteSettings, UpstreamSettings, read_secret
from aifab.errors import ConfigError
from aifab.gateway.balance import Balancer, make_balancer
from aifab.gateway.health import Breaker
from aifab.gateway.protocol import Upstream
from aifab.gateway.rollouts import Rollout
from aifab.gateway.upstreams import HttpUpstream, LocalUpstream


@dataclass
class Route:
    name: str
    settings: RouteSettings
    upstreams: list[Upstream]
    balancer: Balancer
    local: bool = False  # an implicit route to this process's own model of that name
    split: list[tuple[float, str]] = field(default_factory=list)  # cumulative percent -> route

    def candidates(self, affinity: str | None) -> list[Upstream]:
        """Upstreams in the order to try them: available ones balanced, then (all ejected: panic mode, as
        Envoy does) every one, soonest back first."""
        now = time.monotonic()
        ready = [u for u in self.upstreams if Breaker.available(u.state, now)]
        if ready:
            return self.balancer.order(ready, affinity)
        return sorted(self.upstreams, key=lambda u: u.state.ejected_until)

    def model_at(self, upstream: Upstream) -> str:
        return getattr(upstream, "model", None) or self.name


class Router:
    def __init__(self, settings: GatewaySettings, local_app: ASGIApp) -> None:
        self._local_app = local_app
        self.routes: dict[str, Route] = {}
        self._names: dict[str, str] = {}
        for name, rs in settings.routes.items():
            self.routes[name] = Route(name, rs, [_upstream(u, local_app) for u in rs.upstreams],
                                      make_balancer(rs.balance))
            for alias in [name, *rs.aliases]:
                if alias in self._names:
                    raise ConfigError(f"gateway: the model name '{alias}' is routed twice")
                self._names[alias] = name
        for route in self.routes.values():
            total = 0.0
            for target, percent in route.settings.split.items():
                total += percent
                route.split.append((total, target))
            if total > 100:
                raise ConfigError(f"gateway.routes.{route.name}.split sends {total}% of the traffic elsewhere")
        self.rollouts: dict[str, Rollout] = {}  # set by the rollout watcher
        self._local_route = RouteSettings()
        self._local = LocalUpstream(local_app)
        self._local_balancer = make_balancer("least_outstanding")

    def resolve(self, model: str) -> Route:
        name = self._names.get(model)
        if name is not None:
            return self.routes[name]
        # implicit: this process's own model (the serving app answers 404 when unknown). Not kept, so
        # made-up model names cannot grow the table.
        return Route(model, self._local_route, [self._local], self._local_balancer, local=True)

    def pick(self, model: str, affinity: str | None) -> Route:
        """The route a request for ``model`` goes to: its rollout (current version, or the candidate for
        a canary's share), then the route's configured split. Sticky per session id."""
        rollout = self.rollouts.get(model)
        if rollout is not None:
            use_candidate = rollout.candidate is not None and _roll(affinity) < rollout.percent
            model = rollout.candidate if use_candidate and rollout.candidate else rollout.current
        return self.split(self.resolve(model), affinity)

    def split(self, route: Route, affinity: str | None) -> Route:
        """The route a request of ``route`` goes to after its canary split (sticky per session id)."""
        if not route.split:
            return route
        roll = _roll(affinity)
        for bound, target in route.split:
            if roll < bound:
                return self.resolve(target)
        return route

    def remote_upstreams(self) -> list[Upstream]:
        return [u for r in self.routes.values() for u in r.upstreams if isinstance(u, HttpUpstream)]

    def public_names(self) -> list[str]:
        return sorted(n for n, target in self._names.items() if not self.routes[target].local)

    async def close(self) -> None:
        for route in self.routes.values():
            for up in route.upstreams:
                await up.close()


def _roll(affinity: str | None) -> float:
    """A number in [0, 100): the same for the same session, else at random."""
    return (zlib.crc32(affinity.encode()) % 10000) / 100 if affinity else random.random() * 100


def _upstream(us: UpstreamSettings, local_app: ASGIApp) -> Upstream:
    if us.url is None:
        return LocalUpstream(local_app, model=us.model, name=us.name or "local", weight=us.weight)
    return HttpUpstream(us.url, name=us.name, model=us.model, weight=us.weight, api_key=_secret(us))


def _secret(us: UpstreamSettings) -> str | None:
    return read_secret(us.api_key_env, us.api_key_file, f"gateway: the key of {us.url}")
