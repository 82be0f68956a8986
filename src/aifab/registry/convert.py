"""Convert a GGUF model package into a safetensors (transformers) package, keeping it whole.

The torch engine, fine-tuning and plain ``transformers`` need safetensors; the defaults ship as GGUF.
transformers dequantises a llama-architecture GGUF to float32. The chat template, special tokens and
generation defaults travel with the package, and the lineage records where it came from.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from aifab.errors import InvalidRequest
from aifab.registry.package import MANIFEST_FILE, ModelPackage


def gguf_to_safetensors(package: ModelPackage, dest: Path) -> Path:
    """Write ``package`` (GGUF) to ``dest`` as config + safetensors + tokenizer + ``aifab.json``.

    Written to a sibling ``.partial`` directory first and renamed at the end, so an interrupted
    conversion never leaves a half package behind.
    """
    if package.format != "gguf":
        raise InvalidRequest(f"model '{package.name}' is {package.format}, not GGUF; nothing to convert")
    from transformers import AutoModelForCausalLM, AutoTokenizer

    src = Path(package.path)
    tmp = dest.with_name(dest.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    model = AutoModelForCausalLM.from_pretrained(str(src.parent), gguf_file=src.name)
    model.hf_quantizer = None  # type: ignore[assignment]  # weights are dequantised; save_pretrained refuses otherwise
    model.save_pretrained(str(tmp))
    tokenizer = AutoTokenizer.from_pretrained(str(src.parent), gguf_file=src.name)
    if package.chat_template and not getattr(tokenizer, "chat_template", None):
        tokenizer.chat_template = package.chat_template
    tokenizer.save_pretrained(str(tmp))
    manifest = package.to_dict()
    manifest.update(
        format="safetensors",
        path=str(dest),
        sha256="",
        lineage={**package.lineage, "converted_from": {"name": package.name, "sha256": package.sha256}},
    )
    (tmp / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2))
    shutil.rmtree(dest, ignore_errors=True)
    tmp.rename(dest)
    return dest
