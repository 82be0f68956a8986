"""What every command shares: settings flags, start-up of the state store, one-line errors."""

from __future__ import annotations

import importlib
import json
import os
import secrets
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from pydantic_core import PydanticSerializationError, to_jsonable_python
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from aifab.config import Settings, load_settings
from aifab.errors import Conflict
from aifab.registry import Registry
from aifab.state import Database
from aifab.stores.factory import open_store
from aifab.stores.protocol import VectorStore

ConfigOpt = Annotated[
    Path | None, typer.Option("--config", "-c", help="TOML config file [default: ./aifab.toml if present]")
]
DataDirOpt = Annotated[Path | None, typer.Option("--data-dir", help="where aifab keeps its state [default: ./.aifab]")]
JsonOpt = Annotated[bool, typer.Option("--json", help="print machine-readable JSON")]
SERVER_FILE = "server.json"  # in the data directory while `aifab up` runs on it: its address and pid
TOKEN_FILE = "server.token"  # beside it, readable by its owner only: the secret that makes a local CLI admin
SETTINGS = "aifab.settings"  # in the click context's meta: the command's settings, for its error messages


def click_module() -> Any:
    """The click that the installed typer runs on: typer 0.2x carries its own copy (``typer._click``),
    whose exceptions and context are not the ``click`` package's; older typer uses the package."""
    try:
        return importlib.import_module("typer._click")
    except ImportError:
        return importlib.import_module("click")


def settings_from(config: Path | None, data_dir: Path | None, *, read_only: bool = False,
                  **overrides: Any) -> Settings:
    """The command's settings. It notes where the state lives, so that a "not found" names the place it
    looked in. ``read_only``: a command that only reads never creates the data directory; where it does
    not exist yet, the command reads an empty one (a throw-away directory) instead."""
    settings = load_settings(config, data_dir=data_dir, **overrides)
    ctx = importlib.import_module(f"{click_module().__name__}.globals").get_current_context(silent=True)
    if ctx is None:  # not inside a command
        return settings
    ctx.meta[SETTINGS] = settings
    if read_only and not settings.data_dir.exists():
        empty = ctx.with_resource(tempfile.TemporaryDirectory(prefix="aifab-empty-"))
        settings = settings.model_copy(update={"data_dir": Path(empty)})
    return settings


def looked_in(settings: Settings) -> str:
    """Where a command looked for a collection, model, key or dataset: "./.aifab", the database URL
    (without its password) when the state is there, and whether the data directory exists at all."""
    if settings.database_url:
        try:
            return f"the database {make_url(settings.database_url).render_as_string(hide_password=True)}"
        except ArgumentError:  # not a URL at all: opening it says so; its text may hold a password
            return "the configured database_url"
    shown = shown_path(settings.data_dir)
    return shown if settings.data_dir.exists() else f"{shown}, which does not exist"


def shown_path(path: Path) -> str:
    """A path as the user would type it: ``./.aifab`` rather than ``.aifab``."""
    return str(path) if path.is_absolute() or path.parts[:1] == ("..",) else f"./{path}"


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


def open_store_of(settings: Settings) -> VectorStore:
    """The configured vector store. The embedded one belongs to one process at a time: when another holds
    it, the error names that process (the running server's address) and says to stop it."""
    try:
        return open_store(settings)
    except Conflict as exc:
        server = running_server(settings.data_dir)
        if server is None:
            raise Conflict(f"{exc.message}: stop the other aifab process that uses this data directory") from None
        raise Conflict(
            f"the data directory {shown_path(settings.data_dir)} is in use by `aifab up` at {server['url']} (pid "
            f"{server['pid']}): stop that server first (Ctrl-C where it runs, or kill {server['pid']})"
        ) from None


@contextmanager
def announce_server(data_dir: Path, url: str) -> Iterator[str]:
    """While the block runs, ``<data_dir>/server.json`` says which server uses the data directory, and
    ``<data_dir>/server.token`` (mode 0600, as Jupyter's and Docker's) holds a fresh secret that the server
    admits as an admin: the local CLI's way in. Yields the secret."""
    token = secrets.token_urlsafe(32)
    token_path = data_dir / TOKEN_FILE
    token_path.unlink(missing_ok=True)  # a stale one (a crashed server): a new file, so its mode is ours
    fd = os.open(token_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(token)
    path = data_dir / SERVER_FILE
    path.write_text(json.dumps({"url": url, "pid": os.getpid()}))
    try:
        yield token
    finally:
        path.unlink(missing_ok=True)
        token_path.unlink(missing_ok=True)


def running_server(data_dir: Path) -> dict[str, Any] | None:
    """The server that announced itself in ``data_dir``, if its process is still alive."""
    try:
        server = json.loads((data_dir / SERVER_FILE).read_text())
        pid = int(server["pid"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    try:
        os.kill(pid, 0)  # signal 0: only whether the process exists
    except PermissionError:
        pass  # it does, under another user
    except OSError:
        return None  # killed without a chance to clean up
    return {"url": server.get("url"), "pid": pid}


def fail(message: str, code: int = 1) -> NoReturn:
    """End the command with one line on stderr: ``aifab: error: ...``."""
    typer.echo(f"aifab: error: {message}", err=True)
    raise typer.Exit(code)


def warn(message: str) -> None:
    typer.echo(f"aifab: warning: {message}", err=True)


def print_json(data: Any) -> None:
    """JSON as the admin API writes it (pydantic's encoding: times in ISO 8601, UTC as ``Z``), so a command
    prints the same through a running server as offline."""
    typer.echo(json.dumps(data, indent=2, default=_jsonable))


def _jsonable(value: Any) -> Any:
    try:
        return to_jsonable_python(value)
    except PydanticSerializationError:
        return str(value)
