"""The fine-tuned model as a model package: an adapter on its base, or complete weights.

LoRA (``sft``, ``dpo``): ``OUT/adapter/`` is PEFT's ``save_pretrained`` (``adapter_config.json`` +
``adapter_model.safetensors``) and ``OUT/aifab.json`` is the manifest: ``path`` is the base's
safetensors directory, ``adapters`` maps the package's name to ``OUT/adapter``, and ``sha256`` is the
adapter's (the base's is in the lineage). ``full``: ``OUT`` is a complete transformers directory
(config, safetensors, tokenizer, generation config) plus ``aifab.json``. Either way the chat
template, special tokens, context length and generation defaults are the base's, and the lineage
says what it was made from and how.
"""

from __future__ import annotations

import json
import os
from dataclasses import replace
from pathlib import Path
from typing import Any

from aifab.registry import ModelPackage
from aifab.registry.package import MANIFEST_FILE, sha256_of

ADAPTER_DIR = "adapter"


def write_manifest(pkg: ModelPackage, out_dir: Path) -> None:
    tmp = out_dir / f".{MANIFEST_FILE}.tmp"
    tmp.write_text(json.dumps(pkg.to_dict(), indent=2))
    os.replace(tmp, out_dir / MANIFEST_FILE)


def write_package(model: Any, tokenizer: Any, base: ModelPackage, out_dir: Path, *, name: str, lora: bool,
                  lineage: dict[str, Any]) -> ModelPackage:
    """Save the weights (adapter or full) under ``out_dir`` and return the package (manifest written)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    if lora:
        adapter = out_dir / ADAPTER_DIR
        model.save_pretrained(str(adapter))
        path, weights, adapters = base.path, sorted(adapter.glob("*.safetensors")), {name: str(adapter.resolve())}
    else:
        model.save_pretrained(str(out_dir))
        tokenizer.save_pretrained(str(out_dir))
        path, weights, adapters = str(out_dir.resolve()), sorted(out_dir.glob("*.safetensors")), {}
    pkg = replace(base, name=name, kind="chat", format="safetensors", path=path, sha256=sha256_of(weights),
                  adapters=adapters, lineage=lineage, license=base.license)
    write_manifest(pkg, out_dir)
    return pkg
