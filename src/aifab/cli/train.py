"""``aifab train``: a language model from text files to a served model package.

Every key of ``train.toml`` is also a flag (``n_layer`` -> ``--n-layer``); the flags are generated from
the config dataclasses (``aifab.training.config``), so ``--help`` always lists them all, grouped by
section, with their defaults.
"""

from __future__ import annotations

import inspect
import os
import sys
import tomllib
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

from aifab.cli.common import ConfigOpt, DataDirOpt, JsonOpt, open_registry, print_json, settings_from, warn
from aifab.training.config import SECTIONS, Option, load_spec, options

SETTINGS_OPTS = {"aifab_config", "data_dir", "as_json", "config", "train_config", "paths"}


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
    aifab_config, train_config = _config_files(kwargs["config"], kwargs["train_config"], kwargs["aifab_config"])
    spec = load_spec(train_config, overrides)
    settings = settings_from(aifab_config, kwargs["data_dir"])
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


def _config_files(config: Path | None, train_config: Path | None,
                  aifab_config: Path | None) -> tuple[Path | None, Path | None]:
    """(the aifab config, the training config). ``-c`` meant the training config until this release:
    a training config given with it still works, with a warning, for one release."""
    if aifab_config is not None:
        warn("--aifab-config is deprecated: use --config (-c), as in every aifab command")
        config = config or aifab_config
    if config is not None and train_config is None and _is_train_config(config):
        warn(f"-c/--config {config} names a training config: that is deprecated, and in the next release -c will "
             f"mean the aifab config, as in every aifab command; use --train-config {config}")
        return None, config
    return config, train_config


def _is_train_config(path: Path) -> bool:
    """Whether ``path`` holds training sections only ([data] [model] ...), which no aifab.toml has."""
    try:
        tables = tomllib.loads(path.read_text())
    except (OSError, ValueError):
        return False  # the settings loader reports what is wrong with it
    return bool(tables) and set(tables) <= set(SECTIONS)


_params = [
    inspect.Parameter("paths", inspect.Parameter.KEYWORD_ONLY, default=None, annotation=Annotated[
        list[str] | None, typer.Argument(help="text files or folders (added to [data] sources)", show_default=False)]),
    inspect.Parameter("train_config", inspect.Parameter.KEYWORD_ONLY, default=None, annotation=Annotated[
        Path | None, typer.Option("--train-config", show_default=False,  # \[ : a section, not rich markup
                                  help="train.toml, with sections \\[data] \\[tokenizer] \\[model] \\[train] \\[run]")]),
    inspect.Parameter("config", inspect.Parameter.KEYWORD_ONLY, default=None, annotation=ConfigOpt),
    inspect.Parameter("aifab_config", inspect.Parameter.KEYWORD_ONLY, default=None, annotation=Annotated[
        Path | None, typer.Option("--aifab-config", hidden=True, help="deprecated: --config")]),
    inspect.Parameter("data_dir", inspect.Parameter.KEYWORD_ONLY, default=None, annotation=DataDirOpt),
    inspect.Parameter("as_json", inspect.Parameter.KEYWORD_ONLY, default=False, annotation=JsonOpt),
    *(_flag(o) for o in options()),
]
train.__signature__ = inspect.Signature(_params)  # type: ignore[attr-defined]
train.__annotations__ = {p.name: p.annotation for p in _params}
