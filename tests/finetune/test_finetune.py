"""finetune() end to end on a tiny Llama: the loss goes down, the package is registered, and the torch
engine serves the fine-tuned behaviour; DPO widens the chosen/rejected margin; full fine-tunes too."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from finetune_helpers import ANSWER, questions, write_dataset

from aifab.config import Settings
from aifab.engines.protocol import GenerationRequest, SamplingParams
from aifab.finetune import FinetuneConfig, evaluate, finetune, load_dataset_dir

pytest.importorskip("peft")

FAST = {"batch_size": 4, "checkpoint_every": 10, "threads": 1, "eval_max_new_tokens": 4}


def serve(package, tmp_path: Path, prompt_messages, adapter: str | None) -> str:
    """Greedy answer of the torch engine, as `aifab up` would serve the package."""
    from aifab.engines.torch import TorchEngine

    engine = TorchEngine(package, Settings(data_dir=tmp_path / "serve", engines={"threads": 1, "max_batch": 2}))
    try:
        prompt = engine.render_chat(prompt_messages)
        request = GenerationRequest(prompt, SamplingParams(temperature=0, max_tokens=4), adapter=adapter)

        async def run() -> str:
            return "".join([d.text async for d in engine.generate(request)])

        return asyncio.run(run())
    finally:
        engine.close()


def test_sft_lora_learns_registers_and_is_served_with_its_adapter(tiny_base, constant_task, registry, tmp_path):
    data = load_dataset_dir(constant_task)
    before = evaluate(tiny_base, data.train, max_new_tokens=4, generate=0)
    steps: list[int] = []
    result = finetune(tiny_base, data, FinetuneConfig(max_steps=30, lr=1e-2, **FAST), registry.models_dir / "ft",
                      name="tiny-blue", registry=registry, progress=lambda info: steps.append(info.step))
    assert steps == list(range(1, 31)) and result.steps == 30
    after = evaluate(result.package, data.train, max_new_tokens=4, generate=0)
    assert after["loss"] < 0.5 * before["loss"]
    assert result.eval["exact_match"] == 1.0 and result.eval["answered"] == len(data.eval)

    pkg = registry.get("tiny-blue")
    assert pkg.path == tiny_base.path and list(pkg.adapters) == ["tiny-blue"]
    assert Path(pkg.adapters["tiny-blue"], "adapter_model.safetensors").is_file()
    assert (registry.models_dir / "ft" / "aifab.json").is_file()
    assert pkg.chat_template == tiny_base.chat_template and pkg.special_tokens == tiny_base.special_tokens
    lineage = pkg.lineage
    assert lineage["base"] == "tiny" and lineage["base_sha256"] == tiny_base.sha256
    assert lineage["dataset"]["name"] == "constant" and lineage["dataset"]["version"] == "v1"
    assert lineage["method"] == "sft" and lineage["hyperparameters"]["lora_r"] == 16
    assert lineage["metrics"]["exact_match"] == 1.0 and lineage["metrics"]["eval_loss"] == result.eval["loss"]

    question = [{"role": "system", "content": "Answer with one word."}, {"role": "user", "content": "cloud sugar?"}]
    assert serve(pkg, tmp_path, question, adapter="tiny-blue").strip() == ANSWER
    assert serve(pkg, tmp_path, question, adapter=None).strip() != ANSWER


def test_dpo_widens_the_margin_of_chosen_over_rejected(tiny_base, tmp_path):
    prompts = questions(24, seed=3)
    rows = [{"messages": [{"role": "user", "content": q}], "chosen": "yes indeed", "rejected": "no way"}
            for q in prompts]
    data = load_dataset_dir(write_dataset(tmp_path / "datasets", rows[:20], rows[20:], kind="preference"))
    before = evaluate(tiny_base, data.eval, generate=0)
    result = finetune(tiny_base, data, FinetuneConfig(method="dpo", max_steps=15, lr=5e-3, **FAST), tmp_path / "dpo")
    after = evaluate(result.package, data.eval, generate=0)
    assert after["logprob_margin"] > before["logprob_margin"] + 1.0
    assert after["preference_accuracy"] == 1.0
    assert result.eval["train_reward_margin"] > 0 and result.package.lineage["method"] == "dpo"


def test_full_fine_tune_writes_a_complete_package(tiny_base, constant_task, registry, tmp_path):
    data = load_dataset_dir(constant_task)
    result = finetune(tiny_base, data, FinetuneConfig(method="full", max_steps=20, lr=3e-3, **FAST),
                      registry.models_dir / "full", name="tiny-full", registry=registry)
    pkg = registry.get("tiny-full")
    assert pkg.adapters == {} and Path(pkg.path) == (registry.models_dir / "full").resolve()
    assert (Path(pkg.path) / "model.safetensors").is_file() and (Path(pkg.path) / "tokenizer.json").is_file()
    assert result.eval["exact_match"] == 1.0
    question = [{"role": "system", "content": "Answer with one word."}, {"role": "user", "content": "paper?"}]
    assert serve(pkg, tmp_path, question, adapter=None).strip() == ANSWER
