"""Entry point of the ``aifab`` command."""

from __future__ import annotations

import sys

import typer

from aifab import __version__
from aifab.cli import config_cmd, corpus, datasets, keys, models, rag
from aifab.cli.finetune import finetune
from aifab.cli.process import configure_openmp
from aifab.cli.train import train
from aifab.cli.up import up
from aifab.errors import AifabError, out_of_space

app = typer.Typer(
    name="aifab",
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
app.add_typer(rag.app, name="eval")
app.command("train")(train)
app.command("finetune")(finetune)
app.add_typer(keys.app, name="keys")
app.command("usage")(keys.usage)
app.add_typer(datasets.app, name="datasets")


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", help="print the version and exit", is_eager=True),
) -> None:
    if version:
        typer.echo(f"aifab {__version__}")
        raise typer.Exit()


def main() -> None:
    """Run the CLI; an aifab error is one line on stderr and exit code 1."""
    configure_openmp()
    try:
        code = app(standalone_mode=False)  # a command's typer.Exit(n) comes back as n here
    except AifabError as exc:
        typer.echo(f"aifab: error: {exc.message}", err=True)
        sys.exit(1)
    except typer.Abort:
        typer.echo("aifab: aborted", err=True)
        sys.exit(130)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except Exception as exc:  # click usage errors and the like
        import click

        if isinstance(exc, click.ClickException):
            exc.show()
            sys.exit(exc.exit_code)
        full = out_of_space(exc)  # a full disk is the user's to fix, not a bug: one line, not a trace
        if full is not None:
            typer.echo(f"aifab: error: {full.message}", err=True)
            sys.exit(1)
        raise
    if isinstance(code, int) and code:
        sys.exit(code)


if __name__ == "__main__":
    main()
