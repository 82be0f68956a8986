"""What a training run is made of: one dataclass per stage, read from TOML and overridden by flags.

``train.toml`` has one table per section (``[data]``, ``[tokenizer]``, ``[model]``, ``[train]``,
``[run]``); every key is also a flag of ``aifab train`` with the same name (``n_layer`` -> ``--n-layer``).
Key names are unique across sections, so a flag needs no section prefix. Unknown keys are errors.
Precedence: defaults < TOML < flags. The spec round-trips through ``to_dict``/``from_dict``.
"""

from __future__ import annotations

import math
import tomllib
import types
import typing
from dataclasses import MISSING, asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

from aifab.errors import ConfigError

# The combinations that have a standard transformers architecture (export.py writes them).
ARCHITECTURES = {
    ("rope", "rmsnorm", "swiglu"): "llama",
    ("learned", "layernorm", "gelu"): "gpt2",
}


@dataclass
class ModelConfig:
    """Shape and parts of the model. ``vocab_size`` comes from the tokenizer stage."""

    n_layer: int = 4
    n_head: int = 4
    n_embd: int = 128
    block_size: int = 64
    vocab_size: int = 0
    positions: Literal["rope", "learned"] = "rope"
    norm: Literal["rmsnorm", "layernorm"] = "rmsnorm"
    mlp: Literal["swiglu", "gelu"] = "swiglu"
    mlp_hidden: int = 0  # 0: 4 x width for GELU, ~8/3 x width (multiple of 32) for SwiGLU
    tie_embeddings: bool = True
    bias: bool = False
    dropout: float = 0.0
    rope_theta: float = 10000.0
    norm_eps: float = 1e-5

    def __post_init__(self) -> None:
        self.check()

    def check(self) -> None:
        if self.n_embd % self.n_head:
            raise ConfigError(f"width {self.n_embd} is not divisible by heads {self.n_head}")
        if self.positions == "rope" and (self.n_embd // self.n_head) % 2:
            raise ConfigError(f"RoPE needs an even head size; width/heads = {self.n_embd // self.n_head}")
        if min(self.n_layer, self.n_head, self.n_embd, self.block_size) < 1:
            raise ConfigError("layers, heads, width and block size must be at least 1")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"dropout must be in [0, 1), not {self.dropout}")
        if self.architecture is None:
            known = "; ".join(f"{'+'.join(k)} ({v})" for k, v in ARCHITECTURES.items())
            raise ConfigError(
                f"positions={self.positions}, norm={self.norm}, mlp={self.mlp} has no transformers "
                f"equivalent that aifab exports; use one of: {known}"
            )

    @property
    def architecture(self) -> str | None:
        return ARCHITECTURES.get((self.positions, self.norm, self.mlp))

    @property
    def hidden(self) -> int:
        if self.mlp_hidden:
            return self.mlp_hidden
        if self.mlp == "gelu":
            return 4 * self.n_embd
        return 32 * math.ceil(8 * self.n_embd / 3 / 32)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelConfig:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


def _f(default: Any, help: str, **kw: Any) -> Any:
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata={"help": help, **kw})
    return field(default=default, metadata={"help": help, **kw})


@dataclass
class DataConfig:
    sources: list[str] = _f([], "text files or folders (walked recursively, sorted)")
    collection: str = _f("", "an aifab collection whose documents are the corpus (its live version)")
    extensions: list[str] = _f([".txt", ".md", ".rst", ".text"], "file suffixes taken from folders")
    split: str = _f("tail", "train/val split: tail (last fraction of the text) or documents (by hash)",
                    choices=("tail", "documents"))
    val_fraction: float = _f(0.1, "fraction held out for validation")
    repair_encoding: bool = _f(True, "fix mojibake (ftfy) and normalise line endings")
    dedup_documents: bool = _f(True, "drop exact duplicate documents")
    dedup_lines: bool = _f(False, "drop exact repeats of lines of at least dedup_min_line_chars characters")
    dedup_min_line_chars: int = _f(40, "shorter lines are never dropped as duplicates")
    min_doc_chars: int = _f(1, "drop documents shorter than this (after cleaning)")
    max_doc_chars: int = _f(0, "drop documents longer than this (0: no limit)")


@dataclass
class TokenizerConfig:
    tokenizer: str = _f("bpe", "bpe (byte-level, trained on the training split) or char",
                        choices=("bpe", "char"))
    vocab_size: int = _f(2048, "BPE vocabulary size (ignored for char)")
    min_frequency: int = _f(2, "BPE: a merge must occur at least this often")


@dataclass
class OptimConfig:
    steps: int = _f(2000, "optimizer steps")
    batch_size: int = _f(12, "sequences per micro-batch (per process)")
    grad_accum: int = _f(1, "micro-batches per step")
    lr: float = _f(1e-3, "peak learning rate")
    min_lr: float = _f(1e-4, "learning rate at the end of the cosine decay")
    warmup: int = _f(100, "linear warm-up steps")
    weight_decay: float = _f(0.1, "AdamW decoupled weight decay (matrices and embeddings only)")
    beta1: float = _f(0.9, "AdamW beta1")
    beta2: float = _f(0.99, "AdamW beta2")
    grad_clip: float = _f(1.0, "clip the global gradient norm (0: off)")
    seed: int = _f(1337, "seed of init, data order and dropout")
    device: str = _f("auto", "auto (cuda if present), cpu, cuda, cuda:N, mps")
    precision: str = _f("auto", "auto (bf16 autocast where supported), fp32 or bf16",
                        choices=("auto", "fp32", "bf16"))
    compile: str = _f("auto", "torch.compile: auto (on for cuda), on or off", choices=("auto", "on", "off"))
    threads: int = _f(0, "CPU threads for torch (0: all cores)")
    eval_every: int = _f(250, "steps between validations (and sample generations)")
    eval_batches: int = _f(50, "batches per validation")
    log_every: int = _f(10, "steps between metric lines")
    checkpoint_every: int = _f(250, "steps between checkpoints")
    patience: int = _f(0, "stop after this many validations without improvement (0: never)")
    sample_tokens: int = _f(100, "tokens generated at each validation (0: none)")
    sample_prompt: str = _f("\n", "prompt of the sample generations")
    distributed: str = _f("auto", "auto (DDP when started by torchrun) or ray (Ray Train TorchTrainer)",
                          choices=("auto", "ray"))
    workers: int = _f(2, "ray: number of training workers")
    ray_address: str = _f("", "ray: cluster address (empty: start a local Ray)")


@dataclass
class RunConfig:
    name: str = _f("default", "run name: its directory is <data_dir>/runs/NAME")
    run_dir: str = _f("", "override the run directory")
    package: str = _f("", "registry name of the trained model (default: the run name; 'none': skip)")
    restart: bool = _f(False, "discard this run's checkpoints and train from step 0")


MODEL_HELP = {
    "n_layer": "transformer blocks", "n_head": "attention heads", "n_embd": "width (embedding size)",
    "block_size": "context length in tokens", "positions": "rope or learned",
    "norm": "rmsnorm or layernorm", "mlp": "swiglu or gelu",
    "mlp_hidden": "MLP hidden size (0: 4x width for gelu, ~8/3x for swiglu)",
    "tie_embeddings": "share input and output embeddings", "bias": "biases in linear layers and norms",
    "dropout": "dropout probability", "rope_theta": "RoPE base", "norm_eps": "norm epsilon",
}
MODEL_CHOICES = {"positions": ("rope", "learned"), "norm": ("rmsnorm", "layernorm"), "mlp": ("swiglu", "gelu")}
SECTIONS: dict[str, type] = {
    "data": DataConfig, "tokenizer": TokenizerConfig, "model": ModelConfig, "train": OptimConfig,
    "run": RunConfig,
}


@dataclass
class Option:
    """One key of the spec, as the CLI shows it."""

    section: str
    name: str
    type: type
    default: Any
    help: str
    choices: tuple[str, ...] | None = None


def options() -> list[Option]:
    """Every settable key (ModelConfig.vocab_size is set by the tokenizer stage, not by the user)."""
    out = []
    for section, cls in SECTIONS.items():
        hints = typing.get_type_hints(cls)
        for f in fields(cls):
            if f.name == "vocab_size" and cls is ModelConfig:
                continue
            typ = hints[f.name]
            choices = f.metadata.get("choices") or MODEL_CHOICES.get(f.name)
            if get_origin(typ) is Literal:
                choices, typ = tuple(get_args(typ)), str
            default = f.default if f.default is not MISSING else f.default_factory()  # type: ignore[misc,operator]
            out.append(Option(section, f.name, typ, default, f.metadata.get("help") or MODEL_HELP.get(f.name, ""),
                              choices))
    return out


@dataclass
class TrainSpec:
    data: DataConfig = field(default_factory=DataConfig)
    tokenizer: TokenizerConfig = field(default_factory=TokenizerConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: OptimConfig = field(default_factory=OptimConfig)
    run: RunConfig = field(default_factory=RunConfig)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainSpec:
        """Build from ``{section: {key: value}}``; unknown sections or keys are a ``ConfigError``."""
        built: dict[str, Any] = {}
        for section, values in data.items():
            if section not in SECTIONS:
                raise ConfigError(f"unknown section [{section}] (known: {', '.join(SECTIONS)})")
            if not isinstance(values, dict):
                raise ConfigError(f"[{section}] must be a table")
            known = {f.name: f for f in fields(SECTIONS[section])}
            for key, _value in values.items():
                if key not in known:
                    raise ConfigError(f"unknown key {key!r} in [{section}]")
            built[section] = SECTIONS[section](**values)
        spec = cls(**built)
        spec.check()
        return spec

    def check(self) -> None:
        """Refuse settings that cannot work, before any work starts."""
        for opt in options():
            value = getattr(getattr(self, opt.section), opt.name)
            if opt.choices and value not in opt.choices:
                raise ConfigError(f"{opt.name} must be one of {', '.join(opt.choices)}, not {value!r}")
        t, d = self.train, self.data
        if not 0.0 < d.val_fraction < 1.0:
            raise ConfigError(f"val_fraction must be between 0 and 1, not {d.val_fraction}")
        for name in ("steps", "batch_size", "grad_accum", "eval_every", "eval_batches", "log_every",
                     "checkpoint_every", "workers"):
            if getattr(t, name) < 1:
                raise ConfigError(f"{name} must be at least 1, not {getattr(t, name)}")
        if t.lr <= 0 or t.min_lr < 0 or t.min_lr > t.lr:
            raise ConfigError(f"need 0 <= min_lr <= lr and lr > 0 (lr={t.lr}, min_lr={t.min_lr})")
        if self.tokenizer.tokenizer == "bpe" and self.tokenizer.vocab_size < 260:
            raise ConfigError("a byte-level BPE vocabulary needs at least 260 entries (256 bytes + specials)")
        self.model.check()


def _coerce(opt: Option, value: Any) -> Any:
    """A TOML or flag value as the option's type (TOML gives ints where floats are meant)."""
    if opt.type is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return value


def load_spec(path: Path | None, overrides: dict[str, Any]) -> TrainSpec:
    """defaults < the TOML file < ``overrides`` (flag name -> value; None = not given)."""
    data: dict[str, dict[str, Any]] = {}
    if path is not None:
        if not path.is_file():
            raise ConfigError(f"config file not found: {path}")
        try:
            raw = tomllib.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise ConfigError(f"cannot read {path}: {exc}") from exc
        data = {k: dict(v) if isinstance(v, dict) else v for k, v in raw.items()}
    by_name = {o.name: o for o in options()}
    for _section, values in data.items():
        if isinstance(values, dict):
            for key, value in list(values.items()):
                if key in by_name:
                    values[key] = _coerce(by_name[key], value)
    for name, value in overrides.items():
        if value is None or (isinstance(value, list | tuple) and not value):
            continue
        opt = by_name.get(name)
        if opt is None:
            raise ConfigError(f"unknown option {name}")
        data.setdefault(opt.section, {})[name] = _coerce(opt, list(value) if isinstance(value, tuple) else value)
    try:
        return TrainSpec.from_dict(data)
    except TypeError as exc:
        raise ConfigError(f"invalid training config: {exc}") from exc


def type_name(typ: Any) -> str:
    if isinstance(typ, types.GenericAlias):
        return "list"
    return getattr(typ, "__name__", str(typ))
