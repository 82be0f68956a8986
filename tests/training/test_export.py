from __future__ import annotations

import pytest
import torch

from aifab.errors import EngineError
from aifab.training.config import ModelConfig, TokenizerConfig
from aifab.training.export import check_logits, to_transformers, write_package
from aifab.training.model import Transformer
from aifab.training.tokenizer import train_tokenizer

ARCHS = {
    "LlamaForCausalLM": dict(),
    "LlamaForCausalLM-bias-untied": dict(bias=True, tie_embeddings=False),
    "GPT2LMHeadModel": dict(positions="learned", norm="layernorm", mlp="gelu"),
    "GPT2LMHeadModel-bias-untied": dict(positions="learned", norm="layernorm", mlp="gelu", bias=True,
                                        tie_embeddings=False),
}


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    path = tmp_path_factory.mktemp("tok") / "train.txt"
    path.write_text("the quick brown fox jumps over the lazy dog\n" * 40)
    return train_tokenizer(path, TokenizerConfig(vocab_size=280))


def perturbed(arch, vocab):
    torch.manual_seed(0)
    model = Transformer(ModelConfig(n_layer=2, n_head=2, n_embd=32, block_size=16, vocab_size=vocab, **arch))
    with torch.no_grad():
        for p in model.parameters():  # every tensor away from its init (norm gains 1, biases 0)
            p.add_(torch.randn_like(p) * 0.2)
    return model


@pytest.mark.parametrize("name", list(ARCHS))
def test_export_maps_to_a_standard_architecture_with_equal_logits(name, tokenizer):
    model = perturbed(ARCHS[name], tokenizer.vocab_size)
    hf = to_transformers(model, tokenizer)
    assert type(hf).__name__ == name.split("-")[0]
    assert check_logits(model, hf) < 1e-4


def test_a_wrong_mapping_is_caught(tokenizer):
    model = perturbed({}, tokenizer.vocab_size)
    hf = to_transformers(model, tokenizer)
    with torch.no_grad():  # as if q and k had been swapped on export
        attn = hf.model.layers[0].self_attn
        attn.q_proj.weight, attn.k_proj.weight = attn.k_proj.weight, attn.q_proj.weight
    with pytest.raises(EngineError, match="disagrees"):
        check_logits(model, hf)


def test_package_directory_loads_in_plain_transformers(tmp_path, tokenizer):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = perturbed(ARCHS["GPT2LMHeadModel"], tokenizer.vocab_size)
    pkg = write_package(model, tokenizer, tmp_path / "pkg", name="tiny", lineage={"data_sha256": "abc"})
    assert not (tmp_path / "pkg.partial").exists()
    assert pkg.lineage["data_sha256"] == "abc" and pkg.context_length == 16 and len(pkg.sha256) == 64
    hf = AutoModelForCausalLM.from_pretrained(tmp_path / "pkg")
    tok = AutoTokenizer.from_pretrained(tmp_path / "pkg")
    ids = tok("the lazy fox", return_tensors="pt")["input_ids"]
    with torch.no_grad():
        assert torch.allclose(hf(input_ids=ids).logits, model.eval()(ids)[0], atol=1e-5)
