"""Packaging: the trained model as a transformers directory and a model package in the registry.

aifab's ``Transformer`` maps onto a standard architecture (see ``model.ARCHITECTURES``): Llama for
RoPE + RMSNorm + SwiGLU, GPT-2 for learned positions + LayerNorm + GELU. Export renames (and for
GPT-2's ``Conv1D`` transposes) the tensors, splits the fused q/k/v and gate/up projections, writes
``config.json`` + ``model.safetensors`` + the tokenizer + ``generation_config.json`` + ``aifab.json``,
and checks that transformers' model gives the same logits as aifab's before anything is registered.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import torch

from aifab.errors import EngineError
from aifab.registry import GenerationDefaults, ModelPackage
from aifab.registry.package import MANIFEST_FILE, sha256_of
from aifab.training.model import ModelConfig, Transformer
from aifab.training.tokenizer import EOS, TextTokenizer

Tensors = dict[str, torch.Tensor]


def _llama(cfg: ModelConfig, sd: Tensors, special: dict[str, int]) -> tuple[Any, Tensors]:
    from transformers import LlamaConfig

    C, H = cfg.n_embd, cfg.hidden
    out: Tensors = {"model.embed_tokens.weight": sd["tok.weight"], "model.norm.weight": sd["norm.weight"]}
    for i in range(cfg.n_layer):
        src, dst = f"blocks.{i}.", f"model.layers.{i}."
        out[dst + "input_layernorm.weight"] = sd[src + "norm1.weight"]
        out[dst + "post_attention_layernorm.weight"] = sd[src + "norm2.weight"]
        for kind in ("weight", "bias") if cfg.bias else ("weight",):
            q, k, v = sd[f"{src}attn.qkv.{kind}"].split(C)
            out[f"{dst}self_attn.q_proj.{kind}"], out[f"{dst}self_attn.k_proj.{kind}"] = q, k
            out[f"{dst}self_attn.v_proj.{kind}"] = v
            out[f"{dst}self_attn.o_proj.{kind}"] = sd[f"{src}attn.proj.{kind}"]
            gate, up = sd[f"{src}mlp.up.{kind}"].split(H)
            out[f"{dst}mlp.gate_proj.{kind}"], out[f"{dst}mlp.up_proj.{kind}"] = gate, up
            out[f"{dst}mlp.down_proj.{kind}"] = sd[f"{src}mlp.down.{kind}"]
    if not cfg.tie_embeddings:
        out["lm_head.weight"] = sd["head.weight"]
    config = LlamaConfig(
        vocab_size=cfg.vocab_size, hidden_size=C, intermediate_size=H, num_hidden_layers=cfg.n_layer,
        num_attention_heads=cfg.n_head, num_key_value_heads=cfg.n_head, head_dim=C // cfg.n_head,
        max_position_embeddings=cfg.block_size, rms_norm_eps=cfg.norm_eps, hidden_act="silu",
        rope_parameters={"rope_type": "default", "rope_theta": cfg.rope_theta},
        attention_bias=cfg.bias, mlp_bias=cfg.bias, tie_word_embeddings=cfg.tie_embeddings, **special,  # type: ignore[arg-type]
    )
    return config, out


def _gpt2(cfg: ModelConfig, sd: Tensors, special: dict[str, int]) -> tuple[Any, Tensors]:
    from transformers import GPT2Config

    def bias(key: str, size: int) -> torch.Tensor:
        return sd[key] if key in sd else torch.zeros(size)

    C, H = cfg.n_embd, cfg.hidden
    out: Tensors = {"transformer.wte.weight": sd["tok.weight"], "transformer.wpe.weight": sd["pos.weight"],
                    "transformer.ln_f.weight": sd["norm.weight"], "transformer.ln_f.bias": bias("norm.bias", C)}
    for i in range(cfg.n_layer):
        src, dst = f"blocks.{i}.", f"transformer.h.{i}."
        for a, b in (("norm1", "ln_1"), ("norm2", "ln_2")):
            out[f"{dst}{b}.weight"], out[f"{dst}{b}.bias"] = sd[f"{src}{a}.weight"], bias(f"{src}{a}.bias", C)
        # GPT-2's Conv1D stores weights as [in, out]: transposed from nn.Linear.
        for a, b, size in (("attn.qkv", "attn.c_attn", 3 * C), ("attn.proj", "attn.c_proj", C),
                           ("mlp.up", "mlp.c_fc", H), ("mlp.down", "mlp.c_proj", C)):
            out[f"{dst}{b}.weight"] = sd[f"{src}{a}.weight"].t().contiguous()
            out[f"{dst}{b}.bias"] = bias(f"{src}{a}.bias", size)
    if not cfg.tie_embeddings:
        out["lm_head.weight"] = sd["head.weight"]
    config = GPT2Config(
        vocab_size=cfg.vocab_size, n_positions=cfg.block_size, n_embd=C, n_layer=cfg.n_layer, n_head=cfg.n_head,
        n_inner=H, activation_function="gelu", resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
        layer_norm_epsilon=cfg.norm_eps, tie_word_embeddings=cfg.tie_embeddings, **special,  # type: ignore[arg-type]
    )
    return config, out


def to_transformers(model: Transformer, tokenizer: TextTokenizer) -> Any:
    """A transformers ``*ForCausalLM`` holding ``model``'s weights (float32, eval mode)."""
    from transformers import GPT2LMHeadModel, LlamaForCausalLM

    cfg = model.config
    sd = {k: v.detach().float().cpu() for k, v in model.state_dict().items()}
    special = {"bos_token_id": tokenizer.eos_id, "eos_token_id": tokenizer.eos_id, "pad_token_id": tokenizer.eos_id}
    if cfg.architecture == "llama":
        config, weights = _llama(cfg, sd, special)
        hf: Any = LlamaForCausalLM(config)
    else:
        config, weights = _gpt2(cfg, sd, special)
        hf = GPT2LMHeadModel(config)
    missing, unexpected = hf.load_state_dict(weights, strict=False)
    missing = [k for k in missing if not (k == "lm_head.weight" and cfg.tie_embeddings)]
    if missing or unexpected:
        raise EngineError(f"export to {type(hf).__name__} does not line up: missing {missing}, unexpected {unexpected}")
    if cfg.tie_embeddings:
        hf.tie_weights()
    return hf.float().eval()


def check_logits(model: Transformer, hf: Any, *, tol: float = 1e-4) -> float:
    """The largest absolute logit difference on a fixed input; raises if over ``tol``."""
    gen = torch.Generator().manual_seed(0)
    T = min(model.config.block_size, 32)
    ids = torch.randint(model.config.vocab_size, (2, T), generator=gen)
    was = model.training
    model.eval()
    with torch.no_grad():
        ours, _ = model(ids.to(next(model.parameters()).device))
        theirs = hf(input_ids=ids).logits
    model.train(was)
    diff = float((ours.float().cpu() - theirs).abs().max())
    if diff > tol:
        raise EngineError(f"exported model disagrees with the trained one (max logit difference {diff:.2e})")
    return diff


def write_package(model: Transformer, tokenizer: TextTokenizer, dest: Path, *, name: str,
                  lineage: dict[str, Any]) -> ModelPackage:
    """Write the package directory ``dest`` (via ``dest.partial``, renamed at the end)."""
    from transformers import GenerationConfig
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # one small file: a "writing shards" bar is noise in the run's log
    hf = to_transformers(model, tokenizer)
    diff = check_logits(model, hf)
    tmp = dest.with_name(dest.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    hf.generation_config = GenerationConfig(
        bos_token_id=tokenizer.eos_id, eos_token_id=tokenizer.eos_id, pad_token_id=tokenizer.eos_id,
        do_sample=True, temperature=0.8, top_p=0.95, max_new_tokens=256,
    )
    hf.save_pretrained(str(tmp))
    tokenizer.to_transformers(model.config.block_size).save_pretrained(str(tmp))
    pkg = ModelPackage(
        name=name, kind="completion", format="safetensors", path=str(dest),
        special_tokens={"eos": EOS, "bos": EOS, "pad": EOS}, context_length=model.config.block_size,
        generation=GenerationDefaults(temperature=0.8, top_p=0.95, max_tokens=256),
        lineage={**lineage, "architecture": type(hf).__name__, "export_max_logit_diff": diff},
    )
    pkg.sha256 = sha256_of(sorted(tmp.glob("*.safetensors")))
    (tmp / MANIFEST_FILE).write_text(json.dumps(pkg.to_dict(), indent=2, default=str))
    shutil.rmtree(dest, ignore_errors=True)
    tmp.rename(dest)
    return pkg
