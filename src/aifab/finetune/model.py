"""The base model to fine-tune: a safetensors package (a GGUF one is converted once), plus LoRA."""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from aifab.errors import InvalidRequest, MissingDependency, NotFound
from aifab.finetune.config import FinetuneConfig
from aifab.registry import ModelPackage


def converted_name(base: ModelPackage) -> str:
    return f"{base.name}-safetensors"


def safetensors_base(base: ModelPackage, *, registry: Any = None, cache_dir: Path | None = None) -> ModelPackage:
    """``base`` itself when it is safetensors; else its safetensors conversion, made once and reused.

    With a registry the conversion is registered as ``NAME-safetensors`` (``Registry.convert``) and
    found there next time; without one it is cached under ``cache_dir``. A conversion of another
    version of the GGUF (another sha256) is not reused."""
    if base.format == "safetensors":
        return base
    if base.format != "gguf":
        raise InvalidRequest(f"model '{base.name}' is {base.format}: only chat models can be fine-tuned",
                             param="base")
    if registry is not None:
        name = converted_name(base)
        try:
            found = registry.get(name)
        except NotFound:
            found = None
        if found is not None and found.lineage.get("converted_from", {}).get("sha256") == base.sha256:
            return found  # type: ignore[no-any-return]
        if found is not None:
            registry.remove(name)
        return registry.convert(base.name, name)  # type: ignore[no-any-return]
    from aifab.registry.convert import gguf_to_safetensors
    from aifab.registry.inspect import inspect_path

    if cache_dir is None:
        raise InvalidRequest(f"model '{base.name}' is GGUF: converting it needs a registry or a cache directory",
                             param="base")
    dest = cache_dir / f"{base.name}-{base.sha256[:12] or 'gguf'}"
    if not (dest / "config.json").is_file():
        gguf_to_safetensors(base, dest)
    return inspect_path(dest, converted_name(base))


def load_base(path: str) -> tuple[Any, Any]:
    """(model, tokenizer) in float32 with SDPA attention, as the torch engine loads them."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path)
    try:
        model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32, attn_implementation="sdpa")
    except (ValueError, ImportError):  # an architecture without SDPA support
        model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32, attn_implementation="eager")
    _drop_gguf_quantizer(model)
    return model, tokenizer


def _drop_gguf_quantizer(model: Any) -> None:
    """A GGUF conversion (``aifab models convert``) keeps ``quantization_config: gguf`` in its config.json
    although its weights are plain float32 safetensors; transformers then marks the model quantized,
    refuses to train it (``Trainer``) and writes the stale config into every save. Clear it."""
    qc = getattr(model.config, "quantization_config", None)
    method = qc.get("quant_method") if isinstance(qc, dict) else getattr(qc, "quant_method", None)
    if qc is None or str(getattr(method, "value", method)) != "gguf":
        return
    model.hf_quantizer = None
    model.is_quantized = False
    del model.config.quantization_config


def add_lora(model: Any, cfg: FinetuneConfig) -> Any:
    """Wrap ``model`` with a fresh, trainable LoRA adapter (PEFT); the base weights are frozen."""
    try:
        from peft import LoraConfig, get_peft_model
    except ImportError as exc:
        raise MissingDependency("peft", "train") from exc
    names = {n.rsplit(".", 1)[-1] for n, _ in model.named_modules()}
    missing = [t for t in cfg.target_modules if t not in names]
    if missing:
        raise InvalidRequest(f"LoRA target module(s) {', '.join(missing)} not in this model "
                             f"(its linear layers: {', '.join(sorted(_linear_names(model)))})", param="target_modules")
    lora = LoraConfig(task_type="CAUSAL_LM", r=cfg.lora_r, lora_alpha=cfg.lora_alpha,
                      lora_dropout=cfg.lora_dropout, target_modules=list(cfg.target_modules))
    with quiet_peft():
        return get_peft_model(model, lora)


@contextlib.contextmanager
def quiet_peft() -> Iterator[None]:
    """peft calls a transformers method deprecated in 5.x: a warning for its authors, not our users."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
        yield


def _linear_names(model: Any) -> set[str]:
    return {n.rsplit(".", 1)[-1] for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)}


def trainable_state(model: Any) -> dict[str, torch.Tensor]:
    """The parameters being trained (LoRA matrices, or every weight in a full fine-tune), by name."""
    return {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}


def load_trainable(model: Any, state: dict[str, torch.Tensor]) -> None:
    params = dict(model.named_parameters())
    with torch.no_grad():
        for name, value in state.items():
            params[name].copy_(value)
