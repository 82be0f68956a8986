"""Entry point of the ``aifab`` command."""

from __future__ import annotations

import sys
from typing import Annotated, Any, NoReturn

import typer
from typer.core import TyperGroup

from aifab import __version__
from aifab.cli import backup, config_cmd, corpus, datasets, evals, keys, models, rag, tools
from aifab.cli.apply import apply
from aifab.cli.common import SETTINGS, click_module, looked_in
from aifab.cli.finetune import finetune
from aifab.cli.init import init
from aifab.cli.process import configure_openmp
from aifab.cli.train import train
from aifab.cli.up import up
from aifab.errors import AifabError, NotFound, out_of_space

PROG = "aifab"


class _Root(TyperGroup):
    """The ``aifab`` group. A "not found" from a command says where it looked: the data directory (or
    database) the command read, so that a wrong working directory or ``--data-dir`` is plain to see."""

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except NotFound as exc:
            settings = ctx.meta.get(SETTINGS)
            if settings is not None:
                exc.message = f"{exc.message}; looked in {looked_in(settings)}"
            raise


app = typer.Typer(
    name=PROG,
    cls=_Root,
    help="aifab: a self-hostable AI factory. Start with `aifab up`.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.command("up")(up)
app.add_typer(models.app, name="models")
app.add_typer(config_cmd.app, name="config")
app.command("ingest")(corpus.ingest)
app.add_typer(corpus.app, name="collections")
app.command("ask")(rag.ask)
rag.app.command("run")(evals.run)
rag.app.command("runs")(evals.runs)
rag.app.command("show")(evals.show)
app.add_typer(rag.app, name="eval")
app.command("train")(train)
app.command("finetune")(finetune)
app.add_typer(keys.app, name="keys")
app.command("usage")(keys.usage)
app.add_typer(datasets.app, name="datasets")
app.add_typer(tools.app, name="tools")
app.command("apply")(apply)
app.command("init")(init)
app.command("backup")(backup.backup)
app.command("restore")(backup.restore)


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"{PROG} {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[bool, typer.Option(
        "--version", help="print the version and exit", is_eager=True, callback=_print_version)] = False,
) -> None:
    """aifab: a self-hostable AI factory. Start with `aifab up`."""


def _usage_error(exc: Any) -> NoReturn:
    """One line, then where to read more: the click convention (exit 2) in aifab's error format."""
    typer.echo(f"{PROG}: error: {exc.format_message()}", err=True)
    ctx = exc.ctx
    if ctx is not None and ctx.command.get_help_option(ctx) is not None:
        typer.echo(f"Try '{ctx.command_path} {ctx.help_option_names[0]}' for help.", err=True)
    sys.exit(exc.exit_code)


def main() -> None:
    """Run the CLI. An aifab error is one line on stderr and exit code 1; a usage error (unknown option or
    command, missing or bad argument) is one line plus a pointer to ``--help``, exit code 2."""
    configure_openmp()
    click = click_module()
    no_args_help = getattr(click.exceptions, "NoArgsIsHelpError", ())  # click >= 8.2
    # typer 0.2x has its own Abort and Exit; with the click package they are click's
    aborts = (typer.Abort, getattr(click.exceptions, "Abort", typer.Abort))
    exits = (typer.Exit, getattr(click.exceptions, "Exit", typer.Exit))
    try:
        code = app(prog_name=PROG, standalone_mode=False)  # a command's typer.Exit(n) comes back as n here
    except AifabError as exc:
        typer.echo(f"{PROG}: error: {exc.message}", err=True)
        sys.exit(1)
    except no_args_help as exc:  # bare `aifab` or `aifab keys`: the help, as --help prints it
        help_text = exc.format_message()  # empty when rich has printed the help already
        if help_text:
            typer.echo(help_text)
        sys.exit(0)
    except click.exceptions.UsageError as exc:
        _usage_error(exc)
    except click.exceptions.ClickException as exc:  # e.g. a file option that cannot be opened
        typer.echo(f"{PROG}: error: {exc.format_message()}", err=True)
        sys.exit(exc.exit_code)
    except aborts:
        typer.echo(f"{PROG}: aborted", err=True)
        sys.exit(130)
    except exits as exc:
        sys.exit(exc.exit_code)
    except Exception as exc:
        full = out_of_space(exc)  # a full disk is the user's to fix, not a bug: one line, not a trace
        if full is None:
            raise
        typer.echo(f"{PROG}: error: {full.message}", err=True)
        sys.exit(1)
    if isinstance(code, int) and code:
        sys.exit(code)


if __name__ == "__main__":
    main()
