"""Baseline for benchmarks/finetune.py: plain PEFT LoRA + transformers ``Trainer``, default padding.

The same model (float32, SDPA), the same LoRA config, the same examples and hyper-parameters as the
aifab run it is compared with. The examples are tokenized by aifab's renderer, so both sides train
on the very same token ids and the same assistant-only labels (-100 elsewhere); batching is
``DataCollatorForSeq2Seq`` (pads each batch to its longest example, labels with -100), the model's
own loss over full logits, as a Trainer user would write it.

    python benchmarks/baselines/peft_trainer.py SPEC.json RESULT.json

SPEC: ``{"base": dir, "dataset": dir, "out": dir, "config": FinetuneConfig dict}``, and optionally
``"same_order": true``: the batches of aifab's plan, in its order (no shuffling by the Trainer), for
checking that both sides optimise the same way. RESULT: tokens, seconds, tokens/s, per-step losses,
peak RSS of this process.
"""

from __future__ import annotations

import json
import resource
import sys
import time
from pathlib import Path


def main(spec_path: str, result_path: str) -> None:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import DataCollatorForSeq2Seq, Trainer, TrainingArguments

    from aifab.finetune.config import FinetuneConfig
    from aifab.finetune.data import load_dataset_dir
    from aifab.finetune.loop import plan_steps
    from aifab.finetune.model import load_base
    from aifab.finetune.render import ChatRenderer
    from aifab.registry.inspect import inspect_path
    from aifab.training.loop import seed_everything

    spec = json.loads(Path(spec_path).read_text())
    cfg = FinetuneConfig.from_dict(spec["config"])
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    base = inspect_path(Path(spec["base"]), "base")
    seed_everything(cfg.seed)  # as aifab does before loading: the same LoRA initialisation
    model, tokenizer = load_base(base.path)
    renderer = ChatRenderer(tokenizer, base.chat_template, base.special_tokens, max_length=cfg.max_length)
    rows = []
    for ex in load_dataset_dir(spec["dataset"]).train:
        seq = renderer.sft(ex)
        if seq is None:
            continue
        labels = [-100] * len(seq.ids)
        for p in seq.targets:
            labels[p] = seq.ids[p]
        rows.append({"input_ids": seq.ids, "attention_mask": [1] * len(seq.ids), "labels": labels})
    if spec.get("same_order"):
        rows = [rows[i] for step in plan_steps(len(rows), cfg) for i in step]
    tokens = sum(len(r["input_ids"]) for r in rows) * cfg.epochs
    if cfg.max_steps > 0:  # which examples the sampler draws is not known here: the mean length stands in
        tokens = round(sum(len(r["input_ids"]) for r in rows) / len(rows) * cfg.batch_size * cfg.max_steps)
    model = get_peft_model(model, LoraConfig(task_type="CAUSAL_LM", r=cfg.lora_r, lora_alpha=cfg.lora_alpha,
                                             lora_dropout=cfg.lora_dropout, target_modules=cfg.target_modules))
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    args = TrainingArguments(
        output_dir=spec["out"], per_device_train_batch_size=cfg.batch_size, num_train_epochs=cfg.epochs,
        learning_rate=cfg.learning_rate, warmup_steps=cfg.warmup_ratio, lr_scheduler_type="linear",
        weight_decay=cfg.weight_decay, max_grad_norm=cfg.grad_clip, seed=cfg.seed, use_cpu=True,
        save_strategy="no", report_to=[], logging_steps=1 if spec.get("same_order") else 10,
        dataloader_num_workers=0, disable_tqdm=True,
        max_steps=cfg.max_steps if cfg.max_steps > 0 else -1,
    )
    collator = DataCollatorForSeq2Seq(tokenizer, padding=True, label_pad_token_id=-100)
    trainer_class = InOrderTrainer(Trainer) if spec.get("same_order") else Trainer
    trainer = trainer_class(model=model, args=args, train_dataset=rows, data_collator=collator)
    t0 = time.perf_counter()
    out = trainer.train()
    seconds = time.perf_counter() - t0
    model.save_pretrained(str(Path(spec["out"]) / "adapter"))
    losses = [float(h["loss"]) for h in trainer.state.log_history if "loss" in h]
    result = {"tokens": tokens, "seconds": seconds, "train_runtime": out.metrics["train_runtime"],
              "tokens_per_s": tokens / seconds, "steps": trainer.state.global_step,
              "final_loss": losses[-1] if losses else None, "losses": losses,
              "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
              "adapter": str(Path(spec["out"]) / "adapter")}
    Path(result_path).write_text(json.dumps(result, indent=2))


def InOrderTrainer(base: type) -> type:  # noqa: N802 - a class factory (transformers is imported late)
    """A Trainer that takes its dataset in the order given (the default shuffles)."""
    from torch.utils.data import SequentialSampler

    class InOrder(base):  # type: ignore[misc,valid-type]
        def _get_train_sampler(self, *args: object, **kwargs: object) -> SequentialSampler:
            return SequentialSampler(self.train_dataset)

    return InOrder


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
