"""``aifab config``: the effective configuration."""

from __future__ import annotations

import typer

from aifab.cli.common import ConfigOpt, DataDirOpt, JsonOpt, print_json, settings_from

app = typer.Typer(help="Inspect the configuration.", no_args_is_help=True)


@app.command("show")
def show(config: ConfigOpt = None, data_dir: DataDirOpt = None, as_json: JsonOpt = False) -> None:
    """Print the effective config (defaults < aifab.toml < AIFAB_* env < flags)."""
    settings = settings_from(config, data_dir)
    data = settings.model_dump(mode="json")
    data["effective_database_url"] = settings.effective_database_url
    if as_json:
        print_json(data)
        return
    _print_toml(data)


def _print_toml(data: dict, prefix: str = "") -> None:  # type: ignore[type-arg]
    import json

    tables = {k: v for k, v in data.items() if isinstance(v, dict)}
    for key, value in data.items():
        if key not in tables and value is not None:
            typer.echo(f"{key} = {json.dumps(value)}")
    for key, value in tables.items():
        typer.echo(f"\n[{prefix}{key}]")
        _print_toml(value, prefix=f"{prefix}{key}.")
