"""What every command shares: settings flags, start-up of the state store, one-line errors."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from aifab.config import Settings, load_settings
from aifab.registry import Registry
from aifab.state import Database

ConfigOpt = Annotated[
    Path | None, typer.Option("--config", "-c", help="TOML config file [default: ./aifab.toml if present]")
]
DataDirOpt = Annotated[Path | None, typer.Option("--data-dir", help="where aifab keeps its state [default: ./.aifab]")]
JsonOpt = Annotated[bool, typer.Option("--json", help="print machine-readable JSON")]


def settings_from(config: Path | None, data_dir: Path | None, **overrides: Any) -> Settings:
    return load_settings(config, data_dir=data_dir, **overrides)


def open_database(settings: Settings) -> Database:
    """Open the state database, migrated to the current schema."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    db = Database(settings.effective_database_url)
    db.upgrade()
    return db


def open_registry(settings: Settings) -> Registry:
    """Open (and migrate) the state database and register the default models if needed."""
    db = open_database(settings)
    registry = Registry(db, settings.data_dir / "models")
    registry.ensure_defaults()
    return registry


def print_json(data: Any) -> None:
    typer.echo(json.dumps(data, indent=2, default=str))
