"""Packed micro-batches compute what each sequence computes alone: loss and gradients."""

from __future__ import annotations

import pytest

from aifab.finetune.collate import pack
from aifab.finetune.render import Sequence

torch = pytest.importorskip("torch")
pytest.importorskip("peft")


@pytest.fixture(scope="module")
def lora_model(tiny_dir):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(tiny_dir, dtype=torch.float32, attn_implementation="sdpa")
    # non-zero B matrices: the adapter takes part in the result, as it does after some training
    return get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj", "up_proj"],
                                            init_lora_weights=False))


@pytest.fixture(scope="module")
def seqs():
    g = torch.Generator().manual_seed(1)
    out = []
    for n in (37, 5, 64, 20, 51):
        ids = torch.randint(10, 1000, (n,), generator=g).tolist()
        out.append(Sequence(ids, list(range(max(1, n - 6), n))))
    return out


def alone(model, seqs) -> torch.Tensor:
    """Reference: each sequence through the model's own forward, full logits."""
    out = []
    for s in seqs:
        logits = model(input_ids=torch.tensor([s.ids])).logits[0].float()
        lp = torch.log_softmax(logits, -1)
        out += [lp[p - 1, s.ids[p]] for p in s.targets]
    return torch.stack(out)


def packed(model, seqs, batch_tokens: int, packing: bool = True) -> torch.Tensor:
    from aifab.finetune.objectives import target_logprobs

    mbs = pack(seqs, batch_tokens=batch_tokens, packing=packing)
    return torch.cat([target_logprobs(model, mb) for mb in mbs]), len(mbs)


def grads(model) -> torch.Tensor:
    g = torch.cat([p.grad.flatten() for p in model.parameters() if p.requires_grad and p.grad is not None])
    model.zero_grad(set_to_none=True)
    return g


def test_packed_loss_equals_unpacked(lora_model, seqs):
    with torch.no_grad():
        ref = alone(lora_model, seqs)
        one_row, n = packed(lora_model, seqs, batch_tokens=4096)
        rows, m = packed(lora_model, seqs, batch_tokens=80)
        single, k = packed(lora_model, seqs, batch_tokens=4096, packing=False)
    assert (n, m, k) == (1, 3, 5)
    for got in (one_row, rows, single):
        assert torch.allclose(got, ref, atol=1e-4), (got - ref).abs().max()
    assert abs(float(one_row.mean() - ref.mean())) < 1e-5


def test_packed_gradients_equal_unpacked(lora_model, seqs):
    (-alone(lora_model, seqs).sum()).backward()
    ref = grads(lora_model)
    (-packed(lora_model, seqs, batch_tokens=4096)[0].sum()).backward()
    got = grads(lora_model)
    assert torch.allclose(got, ref, atol=1e-4, rtol=1e-4), (got - ref).abs().max()


def test_rows_hold_no_padding_and_every_target_once(seqs):
    mbs = pack(seqs, batch_tokens=80)
    assert sum(mb.tokens for mb in mbs) == sum(len(s) for s in seqs)
    assert sum(mb.n_targets for mb in mbs) == sum(len(s.targets) for s in seqs)
    assert all(mb.tokens <= 80 or len(mb.segments) == 1 for mb in mbs)
