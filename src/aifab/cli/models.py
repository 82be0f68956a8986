"""``aifab models``: the model registry."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote

import typer
from rich.console import Console
from rich.table import Table

from aifab.admin.state import lineage_of
from aifab.cli import rollouts
from aifab.cli.common import (
    ConfigOpt,
    DataDirOpt,
    JsonOpt,
    open_database,
    open_registry,
    print_json,
    settings_from,
)
from aifab.cli.datasets import lineage_lines
from aifab.cli.remote import server_for
from aifab.errors import InvalidRequest
from aifab.registry import Registry

app = typer.Typer(help="List, inspect, import and remove model packages; promote and roll back versions.",
                  no_args_is_help=True)
app.command("promote")(rollouts.promote)
app.command("rollback")(rollouts.rollback)
app.command("rollouts")(rollouts.rollouts)


@app.command("list")
def list_models(config: ConfigOpt = None, data_dir: DataDirOpt = None, as_json: JsonOpt = False) -> None:
    """List registered models."""
    settings = settings_from(config, data_dir, read_only=True)
    server = server_for(settings)
    if server is not None:
        packages = [_offline(p) for p in server.call("GET", "/v1/admin/models")["data"]]
    else:
        packages = [p.to_dict() for p in open_registry(settings).list()]
    if as_json:
        print_json(packages)
        return
    table = Table("name", "kind", "format", "context", "license", "sha256")
    for p in packages:
        table.add_row(p["name"], p["kind"], p["format"], str(p["context_length"]), p["license"] or "-", p["sha256"][:12])
    Console(width=None if sys.stdout.isatty() else 160).print(table)


@app.command("show")
def show(name: str, config: ConfigOpt = None, data_dir: DataDirOpt = None, as_json: JsonOpt = False) -> None:
    """Show one model package: files, template, special tokens, defaults, lineage."""
    settings = settings_from(config, data_dir, read_only=True)
    server = server_for(settings)
    if server is not None:
        data = _offline(server.call("GET", f"/v1/admin/models/{quote(name, safe='')}"))
    else:
        data = open_registry(settings).get(name).to_dict()
    if as_json:
        print_json(data)
        return
    for key, value in data.items():
        if key == "chat_template" and value:
            value = f"<{len(value)} characters>"
        typer.echo(f"{key:22} {value}")


def _offline(package: dict[str, Any]) -> dict[str, Any]:
    """A package as the admin API gives it, less what only a server knows (whether it is loaded)."""
    return {k: v for k, v in package.items() if k != "loaded"}


@app.command("import")
def import_model(
    path: Annotated[Path, typer.Argument(help="a .gguf file or a model directory (safetensors + tokenizer)")],
    name: Annotated[str, typer.Option("--name", "-n", help="registry name")],
    no_copy: Annotated[bool, typer.Option("--no-copy", help="register in place instead of copying")] = False,
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Import a model package into the registry (copied under the data directory)."""
    pkg = open_registry(settings_from(config, data_dir)).import_path(path, name, copy=not no_copy)
    if as_json:
        print_json(pkg.to_dict())
    else:
        typer.echo(f"imported {pkg.name} ({pkg.kind}, {pkg.format}, sha256 {pkg.sha256[:12]})")


@app.command("convert")
def convert(
    name: Annotated[str, typer.Argument(help="a registered GGUF model")],
    new_name: Annotated[str, typer.Option("--name", "-n", help="registry name of the safetensors copy")],
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Convert a GGUF model to a safetensors package (torch engine, fine-tuning), keeping its chat template."""
    typer.echo(f"converting {name} to safetensors (dequantising to float32)...", err=True)
    pkg = open_registry(settings_from(config, data_dir)).convert(name, new_name)
    if as_json:
        print_json(pkg.to_dict())
    else:
        typer.echo(f"converted {name} -> {pkg.name} ({pkg.path})")


@app.command("remove")
def remove(name: str, config: ConfigOpt = None, data_dir: DataDirOpt = None, as_json: JsonOpt = False) -> None:
    """Remove a model from the registry (and its copied files)."""
    open_registry(settings_from(config, data_dir)).remove(name)
    if as_json:
        print_json({"removed": name})
    else:
        typer.echo(f"removed {name}")


@app.command("lineage")
def lineage(
    name: Annotated[str | None, typer.Argument(help="a registered model")] = None,
    response: Annotated[str | None, typer.Option(
        "--response", help="a logged response id: which model answered it, and that model's lineage")] = None,
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Where a model came from: base, dataset version, the logged interactions behind it (or, with
    --response, which model answered a logged response)."""
    if (name is None) == (response is None):
        raise InvalidRequest("give a model NAME or --response RESPONSE_ID, not both or neither")
    settings = settings_from(config, data_dir, read_only=True)
    server = server_for(settings)
    if server is not None:
        path = (f"/v1/admin/responses/{quote(response, safe='')}/lineage" if response is not None
                else f"/v1/admin/models/{quote(name or '', safe='')}/lineage")
        data = server.call("GET", path)
    else:
        db = open_database(settings)  # read-only: no registering of the default models on the way
        data = lineage_of(Registry(db, settings.data_dir / "models"), settings.data_dir, model=name, response=response)
    if as_json:
        print_json(data)
        return
    for line in lineage_lines(data):
        typer.echo(line)
