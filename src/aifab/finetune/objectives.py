"""Losses: token log-probabilities at the targets only, SFT cross-entropy and sigmoid DPO.

``target_logprobs`` runs the decoder over a packed micro-batch and applies the output projection to
the hidden states of the target positions only. That is what the model's own forward computes for
those positions when its logits are ``lm_head(hidden)`` (Llama, Mistral, Qwen2, SmolLM, ...); a model
that rescales or soft-caps its logits goes through its own forward instead (with ``logits_to_keep``).
"""

from __future__ import annotations

import contextlib
from typing import Any

import torch
import torch.nn.functional as F

from aifab.finetune.attention import PACKED, SEGMENTS, use_packed_attention
from aifab.finetune.collate import MicroBatch

# config attributes of architectures whose logits are not plain lm_head(hidden)
LOGIT_TRANSFORMS = ("final_logit_softcapping", "logit_scale", "logits_scaling", "output_multiplier_scale")


def core_model(model: Any) -> Any:
    """The transformers ``*ForCausalLM`` under a PEFT wrapper (LoRA layers are injected in place)."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def _plain_head(core: Any) -> bool:
    config = core.config.get_text_config()
    return not any(getattr(config, key, None) not in (None, 0, 1, 1.0) for key in LOGIT_TRANSFORMS)


def target_logprobs(model: Any, mb: MicroBatch) -> torch.Tensor:
    """log p(target) for every target of ``mb``, [N] float32, differentiable."""
    core = core_model(model)
    if core.config._attn_implementation != PACKED:
        use_packed_attention(model)  # without it the sequences of a row would attend to each other
    inputs = {"input_ids": mb.input_ids, "position_ids": mb.position_ids, "use_cache": False,
              SEGMENTS: mb.segments}
    if _plain_head(core):
        hidden = core.get_decoder()(**inputs).last_hidden_state
        logits = core.get_output_embeddings()(hidden[0, mb.cols])
    else:
        keep = torch.unique(mb.cols)  # sorted: a target's column is found by searchsorted
        logits = core(**inputs, logits_to_keep=keep).logits[0, torch.searchsorted(keep, mb.cols)]
    return -F.cross_entropy(logits.float(), mb.labels, reduction="none")


def sequence_logprobs(model: Any, mb: MicroBatch, n_seqs: int) -> torch.Tensor:
    """Sum of target log-probabilities per sequence, [n_seqs]."""
    lp = target_logprobs(model, mb)
    return torch.zeros(n_seqs, dtype=lp.dtype).index_add(0, mb.seq, lp)


def reference(model: Any) -> contextlib.AbstractContextManager[Any]:
    """The reference policy of DPO: the base, i.e. the PEFT model with its adapter switched off."""
    return model.disable_adapter()  # type: ignore[no-any-return]


def dpo_loss(policy: torch.Tensor, ref: torch.Tensor, beta: float) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Sigmoid DPO (Rafailov et al. 2023) over pairs laid out as [chosen0, rejected0, chosen1, ...].

    Returns the summed loss of the pairs (the caller divides by the step's pair count) and the
    implicit rewards ``beta * (log pi - log pi_ref)`` of the chosen and rejected answers."""
    pc, pr = policy[0::2], policy[1::2]
    rc, rr = ref[0::2], ref[1::2]
    logits = beta * ((pc - rc) - (pr - rr))
    loss = -F.logsigmoid(logits).sum()
    return loss, {"chosen": (beta * (pc - rc)).detach(), "rejected": (beta * (pr - rr)).detach()}
