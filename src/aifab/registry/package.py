"""The model package: the one format in which a model moves through aifab.

A package is a manifest plus files: weights (GGUF or safetensors), tokenizer, chat template, special
tokens, context length, generation defaults, license, sha256 of the weights, and lineage. Training and
fine-tuning write it, the registry versions it, engines load it. The manifest is plain data and
round-trips through ``to_dict``/``from_dict``; it is also written as ``aifab.json`` next to the weights
when aifab itself produces a package.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Literal

Kind = Literal["chat", "completion", "embedding"]
Format = Literal["gguf", "safetensors", "sentence-transformers"]
MANIFEST_FILE = "aifab.json"


@dataclass
class GenerationDefaults:
    temperature: float = 0.7
    top_p: float = 0.95
    max_tokens: int = 256


@dataclass
class ModelPackage:
    """Everything an engine needs to load and serve a model, and where it came from."""

    name: str
    kind: Kind
    format: Format
    path: str  # the GGUF file, or the directory holding safetensors + tokenizer
    sha256: str = ""
    chat_template: str | None = None
    special_tokens: dict[str, str] = field(default_factory=dict)
    context_length: int = 2048
    embedding_dimensions: int | None = None
    generation: GenerationDefaults = field(default_factory=GenerationDefaults)
    license: str | None = None
    lineage: dict[str, Any] = field(default_factory=dict)
    adapters: dict[str, str] = field(default_factory=dict)  # LoRA adapter name -> directory
    created: int = 0  # Unix time the registry registered this version (set by the registry, 0 = not registered)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelPackage:
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        values["generation"] = GenerationDefaults(**data.get("generation", {}))
        return cls(**values)

    @property
    def fingerprint(self) -> str:
        """Which version of the model this is, as responses name it: the registered name and the start of
        the weights' digest (a re-registered package with new weights gets a new fingerprint)."""
        return f"{self.name}@{self.sha256[:12]}" if self.sha256 else self.name

    @property
    def engine(self) -> str:
        """The engine that serves this package by default (an ``aifab.engines`` registry name)."""
        return {"gguf": "llamacpp", "safetensors": "torch", "sentence-transformers": "sentence-transformers"}[
            self.format
        ]

    def weight_files(self) -> list[Path]:
        p = Path(self.path)
        if p.is_file():
            return [p]
        return sorted(p.glob("*.safetensors")) or sorted(p.glob("*.gguf"))


def sha256_of(paths: list[Path], chunk: int = 1 << 20) -> str:
    """One digest over the given files, in order (names are not hashed, only bytes)."""
    h = hashlib.sha256()
    for p in paths:
        with open(p, "rb") as fh:
            while block := fh.read(chunk):
                h.update(block)
    return h.hexdigest()
