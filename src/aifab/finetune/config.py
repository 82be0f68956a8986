"""Fine-tuning hyper-parameters: one dataclass, mapped 1:1 to ``aifab finetune`` flags."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any, Literal

from aifab.errors import InvalidRequest

Method = Literal["sft", "dpo", "full"]
METHODS = ("sft", "dpo", "full")
# Every linear layer of a Llama-style block: LoRA on attention and MLP both learns more per parameter
# than on q/v alone (QLoRA, Dettmers et al. 2023, section 4).
LLAMA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
DEFAULT_LR = {"sft": 2e-4, "dpo": 5e-5, "full": 2e-5}
# Settings that change how a run is carried out, not what it computes: free to change on resume.
OPERATIONAL = {"checkpoint_every", "threads", "eval_generate", "eval_max_new_tokens", "batch_tokens", "gate_margin"}


@dataclass
class FinetuneConfig:
    """How to fine-tune. ``lr=None`` picks the method's default (LoRA 2e-4, DPO 5e-5, full 2e-5).

    ``batch_size`` examples (pairs for DPO) make one optimizer step, whatever their lengths; they are
    packed into rows of ``max_length`` tokens and run as forwards of at most ``batch_tokens`` tokens
    (``batch_tokens`` bounds memory, not the optimisation). The learning rate warms up linearly for
    ``warmup_ratio`` of the steps and decays linearly to 0, as transformers' ``Trainer`` does."""

    method: Method = "sft"
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.05
    target_modules: list[str] = field(default_factory=lambda: list(LLAMA_TARGETS))
    epochs: int = 1
    max_steps: int = 0  # > 0: stop after this many steps (the data repeats as needed)
    lr: float | None = None
    batch_size: int = 8
    batch_tokens: int = 4096
    max_length: int = 512
    warmup_ratio: float = 0.05
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    beta: float = 0.1  # DPO: strength of the KL anchor to the reference (the base)
    seed: int = 0
    packing: bool = True
    checkpoint_every: int = 50
    threads: int = 0  # 0: torch's default (OMP_NUM_THREADS, else the cores)
    eval_generate: int = 200  # eval examples answered by greedy generation for exact match (0: none)
    eval_max_new_tokens: int = 16
    gate_margin: float | None = 0.0  # the candidate must beat the base on the eval split by this; None: no gate

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise InvalidRequest(f"method {self.method!r}: expected one of {', '.join(METHODS)}", param="method")
        positive = {"lora_r": self.lora_r, "lora_alpha": self.lora_alpha, "batch_size": self.batch_size,
                    "batch_tokens": self.batch_tokens, "max_length": self.max_length,
                    "checkpoint_every": self.checkpoint_every}
        for name, value in positive.items():
            if value <= 0:
                raise InvalidRequest(f"{name} must be positive, got {value}", param=name)
        if self.epochs <= 0 and self.max_steps <= 0:
            raise InvalidRequest("epochs or max_steps must be positive", param="epochs")
        if self.lr is not None and self.lr <= 0:
            raise InvalidRequest(f"lr must be positive, got {self.lr}", param="lr")
        if not 0 <= self.lora_dropout < 1 or not 0 <= self.warmup_ratio < 1:
            raise InvalidRequest("lora_dropout and warmup_ratio must be in [0, 1)", param="lora_dropout")

    @property
    def uses_lora(self) -> bool:
        return self.method in ("sft", "dpo")

    @property
    def learning_rate(self) -> float:
        return self.lr if self.lr is not None else DEFAULT_LR[self.method]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FinetuneConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise InvalidRequest(f"unknown fine-tuning setting(s): {', '.join(unknown)}", param=unknown[0])
        return cls(**data)

    def hyperparameters(self) -> dict[str, Any]:
        """What the lineage records: the settings that shape the weights."""
        out = {k: v for k, v in self.to_dict().items() if k not in OPERATIONAL}
        out["lr"] = self.learning_rate
        if not self.uses_lora:
            for key in ("lora_r", "lora_alpha", "lora_dropout", "target_modules"):
                out.pop(key)
        if self.method != "dpo":
            out.pop("beta")
        return out


def lr_at(step: int, total: int, cfg: FinetuneConfig) -> float:
    """Linear warm-up then linear decay to 0 (transformers' ``get_linear_schedule_with_warmup``)."""
    warmup = int(cfg.warmup_ratio * total + 0.999999)  # ceil, as Trainer's get_warmup_steps
    peak = cfg.learning_rate
    if step < warmup:
        return peak * step / max(1, warmup)
    return peak * max(0.0, (total - step) / max(1, total - warmup))
