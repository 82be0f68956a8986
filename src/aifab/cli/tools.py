"""``aifab tools``: the configured ``[tools.*]``, what a model is told about each, and a call by hand."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.table import Table

from aifab.cli.common import ConfigOpt, DataDirOpt, JsonOpt, fail, print_json, settings_from
from aifab.config import Settings
from aifab.errors import NotFound
from aifab.tools import Toolbox

app = typer.Typer(help="List, inspect and call the configured tools ([tools.*] in aifab.toml).",
                  no_args_is_help=True)
T = TypeVar("T")


def _with_box(settings: Settings, use: Callable[[Toolbox], Awaitable[T]]) -> T:
    """Open every configured tool, ``use`` them, close them whatever happens."""
    async def run() -> T:
        box = await Toolbox.open(settings)
        try:
            return await use(box)
        except NotFound as exc:  # an unknown tool name: the list of tools says it all, no data directory
            fail(exc.message)
        finally:
            await box.aclose()
    return asyncio.run(run())


def _kind(settings: Settings, tool: str) -> str:
    for name, conf in settings.tools.items():
        if tool == name or tool.startswith(name + "-"):
            return conf.kind
    return "?"


@app.command("list")
def list_tools(config: ConfigOpt = None, data_dir: DataDirOpt = None, as_json: JsonOpt = False) -> None:
    """Each configured tool: its name, kind and the first line of what a model is told it does."""
    settings = settings_from(config, data_dir, read_only=True)

    async def specs(box: Toolbox) -> list[dict[str, Any]]:
        return [{"name": s.name, "kind": _kind(settings, s.name), "description": s.description}
                for s in box.specs()]

    tools = _with_box(settings, specs)
    if as_json:
        print_json(tools)
        return
    if not tools:
        typer.echo("no tools configured: add a [tools.NAME] section to aifab.toml")
        return
    table = Table("name", "kind", "description")
    for t in tools:
        table.add_row(t["name"], t["kind"], t["description"].splitlines()[0])
    Console(width=None if sys.stdout.isatty() else 160).print(table)


@app.command("show")
def show(
    name: Annotated[str, typer.Argument(help="the tool's name, as `aifab tools list` shows it")],
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """A tool's full description and the JSON schema of its arguments, as a model sees them."""
    settings = settings_from(config, data_dir, read_only=True)

    async def spec(box: Toolbox) -> dict[str, Any]:
        s = box.get(name).spec
        return {"name": s.name, "kind": _kind(settings, s.name), "description": s.description,
                "parameters": s.parameters}

    shown = _with_box(settings, spec)
    if as_json:
        print_json(shown)
        return
    typer.echo(f"{shown['name']} ({shown['kind']})\n\n{shown['description']}\n\narguments (JSON schema):")
    typer.echo(json.dumps(shown["parameters"], indent=2))


@app.command("call")
def call(
    name: Annotated[str, typer.Argument(help="the tool's name")],
    args: Annotated[str, typer.Option("--args", "-a", help='its arguments as a JSON object, e.g. \'{"query": "..."}\'')]
    = "{}",
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Call a tool with the checks a model's call gets (schema, safety rules, timeout, result length) and
    print what the model would read. A refused call is one line and exit code 1."""
    try:
        arguments = json.loads(args)
    except json.JSONDecodeError as exc:
        fail(f"--args is not valid JSON: {exc}", code=2)
    settings = settings_from(config, data_dir, read_only=True)

    async def run(box: Toolbox) -> Any:
        return await box.call(name, arguments)

    result = _with_box(settings, run)
    if as_json:
        print_json({"text": result.text, "data": result.data, "truncated": result.truncated, "meta": result.meta})
    else:
        typer.echo(result.text)
