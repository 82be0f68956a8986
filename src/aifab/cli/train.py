"""``aifab train``: a language model from text files to a served model package.

Every key of ``train.toml`` is also a flag (``n_layer`` -> ``--n-layer``); the flags are generated from
the config dataclasses (``aifab.training.config``), so ``--help`` always lists them all, grouped by
section, with their defaults.
"""

from __future__ import annotations

import inspect
import os
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from aifab.cli.common import DataDirOpt, JsonOpt, open_registry, print_json, settings_from
from aifab.training.config import Option, load_spec, options

SETTINGS_OPTS = {"aifab_config", "data_dir", "as_json", "config", "paths"}


def _flag(opt: Option) -> inspect.Parameter:
    flag = "--" + opt.name.replace("_", "-")
    default = opt.default if opt.default != "\n" else "\\n"
    helptext = f"{opt.help} (default: {default!r})" if opt.default not in ("", []) else opt.help
    if opt.choices:
        helptext += f" (one of: {', '.join(opt.choices)})"
    typ: Any = opt.type
    if opt.type is bool:
        decl = typer.Option(f"{flag}/--no-{flag[2:]}", help=helptext, rich_help_panel=opt.section,
                            show_default=False)
    elif opt.name == "sources":
        typ, decl = list[str], typer.Option("--source", help=helptext + "; repeat the flag for several",
                                            rich_help_panel=opt.section, show_default=False)
    else:
        decl = typer.Option(flag, help=helptext, rich_help_panel=opt.section, show_default=False)
    return inspect.Parameter(opt.name, inspect.Parameter.KEYWORD_ONLY, default=None,
                             annotation=Annotated[typ | None, decl])


def train(**kwargs: Any) -> None:
    """Train a language model from scratch: data -> tokenizer -> shards -> training -> model package.

    Each stage is resumable: the same command again skips finished stages and continues training
    from the last checkpoint (also after kill -9). Ctrl-C saves a checkpoint before exiting."""
    from aifab.training.pipeline import Pipeline

    paths = kwargs.pop("paths") or []
    overrides = {k: v for k, v in kwargs.items() if k not in SETTINGS_OPTS}
    if paths:
        overrides["sources"] = [*paths, *(overrides.get("sources") or [])]
    spec = load_spec(kwargs["config"], overrides)
    settings = settings_from(kwargs["aifab_config"], kwargs["data_dir"])
    # under torchrun only rank 0 packages (and touches the state database)
    packaging = (spec.run.package or spec.run.name) != "none" and os.environ.get("RANK", "0") == "0"
    registry = open_registry(settings) if packaging else None
    err = Console(stderr=True)
    show = sys.stderr.isatty() and not kwargs["as_json"]
    with Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  TimeRemainingColumn(), console=err, disable=not show, transient=True) as bar:
        tasks: dict[str, Any] = {}

        def progress(task: str, done: int, total: int) -> None:
            if task not in tasks:
                tasks[task] = bar.add_task(task, total=total)
            bar.update(tasks[task], completed=done, total=total)

        def report(message: str) -> None:
            if kwargs["as_json"]:
                typer.echo(message, err=True)
            else:
                bar.console.print(message, markup=False, highlight=False)

        summary = Pipeline(spec, data_dir=settings.data_dir, settings=settings, registry=registry,
                           report=report, progress=progress).run()
    outcome = summary["outcome"]
    if os.environ.get("RANK", "0") != "0":
        pass  # rank 0 speaks for the run
    elif kwargs["as_json"]:
        print_json(summary)
    else:
        typer.echo(f"run: {summary['run_dir']}  steps {outcome['step']}  best val loss "
                   f"{outcome['best_val_loss']:.4f} at step {outcome['best_step']}")
    if outcome["interrupted"]:
        raise typer.Exit(130)


_params = [
    inspect.Parameter("paths", inspect.Parameter.KEYWORD_ONLY, default=None, annotation=Annotated[
        list[str] | None, typer.Argument(help="text files or folders (added to [data] sources)", show_default=False)]),
    inspect.Parameter("config", inspect.Parameter.KEYWORD_ONLY, default=None, annotation=Annotated[
        Path | None, typer.Option("--config", "-c", help="train.toml: [data] [tokenizer] [model] [train] [run]")]),
    inspect.Parameter("aifab_config", inspect.Parameter.KEYWORD_ONLY, default=None, annotation=Annotated[
        Path | None, typer.Option("--aifab-config", help="aifab settings file [default: ./aifab.toml if present]")]),
    inspect.Parameter("data_dir", inspect.Parameter.KEYWORD_ONLY, default=None, annotation=DataDirOpt),
    inspect.Parameter("as_json", inspect.Parameter.KEYWORD_ONLY, default=False, annotation=JsonOpt),
    *(_flag(o) for o in options()),
]
train.__signature__ = inspect.Signature(_params)  # type: ignore[attr-defined]
train.__annotations__ = {p.name: p.annotation for p in _params}
