"""Fine-tuning: a chat model + a dataset -> LoRA (SFT or DPO) or a full fine-tune -> a model package.

``finetune()`` trains and registers; ``evaluate()`` scores a package (or an in-memory model) on
held-out examples for the evaluation gate; ``load_dataset_dir()`` reads what the dataset store writes.
torch, transformers and peft are imported by the submodules, so importing this package stays cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from aifab.finetune.config import FinetuneConfig
    from aifab.finetune.data import Dataset, Example, load_dataset_dir
    from aifab.finetune.evaluation import evaluate
    from aifab.finetune.run import FinetuneResult, finetune

__all__ = ["Dataset", "Example", "FinetuneConfig", "FinetuneResult", "evaluate", "finetune", "load_dataset_dir"]

_WHERE = {"FinetuneConfig": "config", "Dataset": "data", "Example": "data", "load_dataset_dir": "data",
          "evaluate": "evaluation", "FinetuneResult": "run", "finetune": "run"}


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(name)
    import importlib

    return getattr(importlib.import_module(f"aifab.finetune.{_WHERE[name]}"), name)
