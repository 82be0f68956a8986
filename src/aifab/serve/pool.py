"""The loaded models of a server, by name. A fine-tuned adapter shares its base's engine (``AdapterView``);
models can be loaded while the server runs (``load``), e.g. a candidate being promoted."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterable

from aifab.engines.protocol import Engine
from aifab.errors import InvalidRequest, NotFound

Loader = Callable[[str, "ModelPool"], Engine]  # name -> a loaded engine (may add a shared base with ``keep``)


class ModelPool:
    def __init__(self, engines: dict[str, Engine], *, loader: Loader | None = None) -> None:
        self._engines = dict(engines)
        self._loader = loader
        self._kept: list[Engine] = []  # engines serving only as bases of adapters
        self._lock = threading.Lock()  # loads run in worker threads, one at a time

    def get(self, name: str, *, apps: Iterable[str] = ()) -> Engine:
        """The engine serving ``name``. An unknown name's 404 lists what can be called instead: the loaded
        models and ``apps`` (the RAG apps, which are called by name as models too)."""
        try:
            return self._engines[name]
        except KeyError:
            others = f"; apps: {', '.join(sorted(apps))}" if apps else ""
            raise NotFound(
                f"The model '{name}' does not exist (loaded: {', '.join(sorted(self._engines)) or 'none'}{others})",
                param="model",
                code="model_not_found",
            ) from None

    def items(self) -> list[tuple[str, Engine]]:
        return sorted(self._engines.items())

    def engines(self) -> list[Engine]:
        """Every engine, including bases held only for their adapters."""
        return [*self._engines.values(), *self._kept]

    def keep(self, engine: Engine) -> None:
        self._kept.append(engine)

    async def load(self, name: str) -> bool:
        """Load ``name`` from the registry unless it is loaded; True when it was loaded now."""
        if name in self._engines:
            return False
        if self._loader is None:
            raise InvalidRequest("this server does not load models while it runs")
        return await asyncio.to_thread(self._load, name, self._loader)

    def _load(self, name: str, loader: Loader) -> bool:
        with self._lock:
            if name in self._engines:
                return False
            self._engines[name] = loader(name, self)
            return True

    def queue_depths(self) -> dict[str, tuple[int, int]]:
        out = {}
        for name, engine in self._engines.items():
            h = engine.health()
            out[name] = (h.running, h.waiting)
        return out

    def close(self) -> None:
        for engine in self.engines():
            engine.close()
