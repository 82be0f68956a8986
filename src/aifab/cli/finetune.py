"""``aifab finetune``: a registered chat model + a dataset -> a fine-tuned, evaluated, registered model."""

from __future__ import annotations

import math
import sys
from typing import Annotated, Any

import typer

from aifab.cli.common import ConfigOpt, DataDirOpt, JsonOpt, open_registry, print_json, settings_from
from aifab.finetune.config import LLAMA_TARGETS, FinetuneConfig

DEFAULT_BASE = "smollm2-135m-instruct"
HP = "Hyper-parameters"
D = FinetuneConfig()  # the flags' defaults are the config's


def _progress_bar(enabled: bool) -> Any:
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    return Progress(TextColumn("[bold]train"), BarColumn(), MofNCompleteColumn(),
                    TextColumn("loss {task.fields[loss]}"), TextColumn("{task.fields[rate]} tok/s"),
                    TimeRemainingColumn(), console=Console(stderr=True), disable=not enabled, transient=True)


def summary_line(result: Any) -> str:
    ev = result.eval
    parts = [f"{result.name}: {result.method}, {result.steps} steps, {result.tokens_per_s:,.0f} tokens/s",
             f"train loss {result.train_loss:.4f}"]
    if not math.isnan(ev.get("loss", math.nan)):
        parts.append(f"eval loss {ev['loss']:.4f}")
    if "exact_match" in ev:
        parts.append(f"eval accuracy {ev['exact_match']:.3f} ({ev['answered']} answered)")
    if "preference_accuracy" in ev:
        parts.append(f"eval preference accuracy {ev['preference_accuracy']:.3f}")
    if result.gate:
        parts.append("gate passed" if result.gate["passed"] else f"gate NOT passed ({result.gate['reason']})")
    return ", ".join(parts)


def finetune(
    dataset: Annotated[str, typer.Option("--dataset", "-d", show_default=False,
                                         help="a dataset directory, a .jsonl file, or a name under <data-dir>/datasets "
                                              "(NAME for its latest version, NAME@vN)")],
    base: Annotated[str, typer.Option("--base", "-b", help="the registered model to fine-tune")] = DEFAULT_BASE,
    name: Annotated[str | None, typer.Option("--name", "-n", show_default=False,
                                             help="registry name of the result [default: BASE-DATASET-METHOD]")] = None,
    method: Annotated[str, typer.Option("--method", help="sft (LoRA), dpo (LoRA, preference data) or full")] = D.method,
    lora_r: Annotated[int, typer.Option("--lora-r", rich_help_panel=HP)] = D.lora_r,
    lora_alpha: Annotated[int, typer.Option("--lora-alpha", rich_help_panel=HP)] = D.lora_alpha,
    lora_dropout: Annotated[float, typer.Option("--lora-dropout", rich_help_panel=HP)] = D.lora_dropout,
    target_modules: Annotated[str | None, typer.Option(
        "--target-modules", rich_help_panel=HP, show_default=False,
        help="comma-separated LoRA targets [default: every attention and MLP projection]")] = None,
    epochs: Annotated[int, typer.Option("--epochs", rich_help_panel=HP)] = D.epochs,
    max_steps: Annotated[int, typer.Option("--max-steps", rich_help_panel=HP, help="> 0: stop after N steps")] = D.max_steps,
    lr: Annotated[float | None, typer.Option("--lr", rich_help_panel=HP, show_default=False,
                                             help="peak learning rate [default: sft 2e-4, dpo 5e-5, full 2e-5]")] = None,
    batch_size: Annotated[int, typer.Option("--batch-size", rich_help_panel=HP, help="examples per step")] = D.batch_size,
    batch_tokens: Annotated[int, typer.Option("--batch-tokens", rich_help_panel=HP,
                                              help="tokens per forward pass (bounds memory)")] = D.batch_tokens,
    max_length: Annotated[int, typer.Option("--max-length", rich_help_panel=HP, help="tokens per example")] = D.max_length,
    beta: Annotated[float, typer.Option("--beta", rich_help_panel=HP, help="DPO beta")] = D.beta,
    seed: Annotated[int, typer.Option("--seed", rich_help_panel=HP)] = D.seed,
    checkpoint_every: Annotated[int, typer.Option("--checkpoint-every", help="steps between checkpoints")] = D.checkpoint_every,
    eval_generate: Annotated[int, typer.Option("--eval-generate",
                                               help="eval examples answered by generation for accuracy")] = D.eval_generate,
    threads: Annotated[int, typer.Option("--threads", help="0: OMP_NUM_THREADS, else every core")] = D.threads,
    gate_margin: Annotated[float, typer.Option(
        "--gate-margin", help="the evaluation gate: the result must beat the base on the eval split by this")] = 0.0,
    no_gate: Annotated[bool, typer.Option("--no-gate", help="skip the gate (and the base's evaluation)")] = False,
    resume: Annotated[bool, typer.Option("--resume/--no-resume",
                                         help="continue an interrupted run of the same name")] = True,
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Fine-tune a chat model on a dataset (LoRA SFT, DPO or full) and register the result.

    A GGUF base (the default model) is converted to safetensors once. The run checkpoints every
    --checkpoint-every steps: the same command continues it after Ctrl-C or kill -9."""
    from transformers.utils import logging as hf_logging

    from aifab.finetune.data import load_dataset_dir, resolve_dataset
    from aifab.finetune.run import finetune as run_finetune

    cfg = FinetuneConfig(
        method=method, lora_r=lora_r, lora_alpha=lora_alpha, lora_dropout=lora_dropout,  # type: ignore[arg-type]
        target_modules=[t.strip() for t in target_modules.split(",") if t.strip()] if target_modules else LLAMA_TARGETS,
        epochs=epochs, max_steps=max_steps, lr=lr, batch_size=batch_size, batch_tokens=batch_tokens,
        max_length=max_length, beta=beta, seed=seed, checkpoint_every=checkpoint_every, threads=threads,
        eval_generate=eval_generate, gate_margin=None if no_gate else gate_margin,
    )
    hf_logging.disable_progress_bar()  # our own bar and lines say what happens
    settings = settings_from(config, data_dir)
    data = load_dataset_dir(resolve_dataset(dataset, settings.data_dir))
    registry = open_registry(settings)
    package = registry.get(base)
    name = name or f"{base}-{data.name}-{method}"
    show = sys.stderr.isatty() and not as_json
    with _progress_bar(show) as bar:
        task = bar.add_task("train", total=None, loss="-", rate="-")

        def progress(info: Any) -> None:
            bar.update(task, completed=info.step, total=info.steps, loss=f"{info.loss:.4f}",
                       rate=f"{info.tokens_per_s:,.0f}")

        def report(message: str) -> None:
            if show:
                bar.console.print(message, markup=False, highlight=False)
            else:
                typer.echo(message, err=True)

        result = run_finetune(package, data, cfg, registry.models_dir / name, name=name, registry=registry,
                              resume=resume, progress=progress, report=report)
    if as_json:
        print_json(result.to_dict())
    elif result.interrupted:
        typer.echo(f"{name}: interrupted at step {result.steps}; run the same command to resume")
    else:
        typer.echo(summary_line(result))
    if result.interrupted:
        raise typer.Exit(130)

