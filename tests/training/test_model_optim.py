from __future__ import annotations

import math

import pytest
import torch

from aifab.training.config import ModelConfig, OptimConfig
from aifab.training.model import Transformer
from aifab.training.optim import lr_at, make_optimizer
from aifab.training.preflight import param_count

ARCHS = [dict(), dict(positions="learned", norm="layernorm", mlp="gelu", bias=True, tie_embeddings=False)]


@pytest.mark.parametrize("arch", ARCHS)
def test_model_is_causal_and_gives_a_loss(arch):
    torch.manual_seed(0)
    model = Transformer(ModelConfig(n_layer=2, n_head=2, n_embd=32, block_size=16, vocab_size=50, **arch)).eval()
    x = torch.randint(50, (2, 16))
    logits, loss = model(x, torch.randint(50, (2, 16)))
    assert logits.shape == (2, 16, 50) and loss is not None
    assert abs(loss.item() - math.log(50)) < 0.5  # untrained: close to uniform
    changed = x.clone()
    changed[:, 10:] = (changed[:, 10:] + 1) % 50  # only the future of position 9 changes
    logits2, _ = model(changed)
    assert torch.allclose(logits[:, :10], logits2[:, :10], atol=1e-6)
    assert not torch.allclose(logits[:, 10:], logits2[:, 10:])
    assert (model.head.weight is model.tok.weight) == model.config.tie_embeddings


@pytest.mark.parametrize("arch", ARCHS + [dict(positions="learned", norm="layernorm", mlp="gelu")])
def test_parameter_count_from_the_config_matches_the_model(arch):
    cfg = ModelConfig(n_layer=3, n_head=2, n_embd=24, block_size=16, vocab_size=37, **arch)
    assert param_count(cfg) == Transformer(cfg).num_params()


def test_swiglu_hidden_size_and_generation_length():
    cfg = ModelConfig(n_embd=128, vocab_size=10, block_size=8)
    assert cfg.hidden == 352 and cfg.hidden % 32 == 0
    out = Transformer(cfg).generate(torch.zeros(1, 3, dtype=torch.long), 12)
    assert out.shape == (1, 15)  # longer than the block: the context slides


def test_weight_decay_only_on_matrices():
    model = Transformer(ModelConfig(n_layer=1, n_head=2, n_embd=16, block_size=8, vocab_size=20, bias=True))
    opt = make_optimizer(model, OptimConfig(weight_decay=0.1), "cpu")
    decayed, plain = opt.param_groups
    assert decayed["weight_decay"] == 0.1 and all(p.dim() == 2 for p in decayed["params"])
    assert plain["weight_decay"] == 0.0 and all(p.dim() == 1 for p in plain["params"]) and plain["params"]


def test_warmup_then_cosine_to_min_lr():
    cfg = OptimConfig(steps=1000, warmup=100, lr=1e-3, min_lr=1e-4)
    assert lr_at(0, cfg) == pytest.approx(1e-3 / 101)
    assert lr_at(99, cfg) == pytest.approx(1e-3 * 100 / 101)
    assert lr_at(100, cfg) == pytest.approx(1e-3)
    assert lr_at(550, cfg) == pytest.approx((1e-3 + 1e-4) / 2)
    assert lr_at(1000, cfg) == pytest.approx(1e-4)
    lrs = [lr_at(s, cfg) for s in range(100, 1001)]
    assert all(a >= b for a, b in zip(lrs, lrs[1:], strict=False))
