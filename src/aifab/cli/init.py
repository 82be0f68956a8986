"""``aifab init DIR``: a new application repository, ready to apply, gate and serve offline."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from aifab.cli.common import shown_path
from aifab.cli.scaffold import files
from aifab.errors import Conflict


def init(
    directory: Annotated[Path, typer.Argument(help="where to create the application (new, or empty)")],
    force: Annotated[bool, typer.Option("--force", help="write into a directory that has files already "
                                                         "(never overwrites one)")] = False,
) -> None:
    """Create an application repository: aifab.toml with a collection and a RAG app, sample documents, an eval
    suite, a README and CI workflows (GitHub Actions, GitLab CI) that run `aifab apply` and the gate."""
    scaffold = files(directory.resolve().name)
    if directory.exists() and any(directory.iterdir()) and not force:
        raise Conflict(f"{shown_path(directory)} is not empty: pick a new directory, or --force to add the files "
                       "that are not there yet")
    taken = [p for p in scaffold if (directory / p).exists()]
    if taken:
        raise Conflict(f"{shown_path(directory)} has {', '.join(taken)} already: nothing was written")
    for path, text in scaffold.items():
        target = directory / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
    typer.echo(f"created {shown_path(directory)} ({len(scaffold)} files). Next:")
    typer.echo(f"  cd {shown_path(directory)}")
    typer.echo("  aifab apply                              # ingest docs/ into the handbook collection")
    typer.echo("  aifab eval run evals/suite.toml --gate   # the quality gate")
    typer.echo("  aifab up                                 # serve the helpdesk app")
