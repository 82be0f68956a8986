"""Engines register by name; the name comes from the model package (or config), never an if/elif.

Out-of-tree engines register through the ``aifab.engines`` entry-point group.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from importlib.metadata import entry_points
from typing import Any

from aifab.errors import ConfigError

_BUILTIN = {
    "llamacpp": "aifab.engines.llamacpp.engine",
    "torch": "aifab.engines.torch.engine",
    "sentence-transformers": "aifab.engines.embeddings",
}
_REGISTRY: dict[str, Callable[..., Any]] = {}


def register(name: str) -> Callable[[type], type]:
    def deco(cls: type) -> type:
        _REGISTRY[name] = cls
        return cls

    return deco


def engine_class(name: str) -> Callable[..., Any]:
    """The engine factory registered as ``name`` (importing its module on first use)."""
    if name not in _REGISTRY:
        if name in _BUILTIN:
            importlib.import_module(_BUILTIN[name])
        else:
            for ep in entry_points(group="aifab.engines"):
                if ep.name == name:
                    _REGISTRY[name] = ep.load()
    if name not in _REGISTRY:
        raise ConfigError(f"unknown engine '{name}' (known: {', '.join(sorted(set(_BUILTIN) | set(_REGISTRY)))})")
    return _REGISTRY[name]
