"""The loaded models of a server, by name."""

from __future__ import annotations

from aifab.engines.protocol import Engine
from aifab.errors import NotFound


class ModelPool:
    def __init__(self, engines: dict[str, Engine]) -> None:
        self._engines = dict(engines)

    def get(self, name: str) -> Engine:
        try:
            return self._engines[name]
        except KeyError:
            raise NotFound(
                f"The model '{name}' does not exist (loaded: {', '.join(sorted(self._engines)) or 'none'})",
                param="model",
                code="model_not_found",
            ) from None

    def items(self) -> list[tuple[str, Engine]]:
        return sorted(self._engines.items())

    def queue_depths(self) -> dict[str, tuple[int, int]]:
        out = {}
        for name, engine in self._engines.items():
            h = engine.health()
            out[name] = (h.running, h.waiting)
        return out

    def close(self) -> None:
        for engine in self._engines.values():
            engine.close()
