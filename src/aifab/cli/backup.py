"""``aifab backup`` and ``aifab restore``: a data directory as one consistent file, and back (``aifab.admin.backup``)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import httpx
import typer

from aifab.admin.backup import make_backup, sqlite_path
from aifab.admin.restore import restore_backup
from aifab.cli.common import (
    ConfigOpt,
    DataDirOpt,
    JsonOpt,
    open_store_of,
    print_json,
    settings_from,
    shown_path,
    warn,
)
from aifab.cli.remote import server_for
from aifab.errors import ConfigError, NotFound


def backup(
    path: Annotated[Path, typer.Argument(
        help="where to write it: a new .tar file (.tar.gz: a little smaller, much slower), or a new directory "
        "(any other name)")],
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Back up the data directory: the state database, the collections' vectors, models, datasets and uploads,
    with a manifest of sha256 sums. Beside a running server it is made by that server, which keeps answering."""
    settings = settings_from(config, data_dir)
    if not settings.data_dir.is_dir():
        raise NotFound("no data directory to back up")
    target = path.expanduser().resolve()
    server = server_for(settings)
    if server is not None:
        # no read timeout: a data directory with large model packages takes as long as copying them takes
        made = server.call("POST", "/v1/admin/backup", json={"path": str(target)},
                           timeout=httpx.Timeout(30.0, read=None))
    else:
        sqlite_path(settings)  # PostgreSQL state: say so before opening anything
        store = open_store_of(settings)
        try:
            made = make_backup(settings, store, target)
        finally:
            store.close()
    if made["models_outside"]:
        warn(f"not in the backup: the files of {', '.join(made['models_outside'])}, registered from outside the "
             "data directory (the backup keeps their registration)")
    if as_json:
        print_json(made)
        return
    typer.echo(f"backed up {shown_path(settings.data_dir)} to {made['path']} ({_size(made['bytes'])}): "
               f"{_counts(made['counts'])}")


def restore(
    path: Annotated[Path, typer.Argument(help="a backup made by `aifab backup`: a .tar.gz or .tar file, or a directory")],
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Restore a backup into a new (absent or empty) data directory, after checking every file against the
    backup's manifest; the database is migrated when the backup is older than this aifab."""
    settings = settings_from(config, data_dir)
    if settings.database_url:
        raise ConfigError("aifab restore writes the state into the data directory: unset database_url "
                          "(state in PostgreSQL is restored with pg_restore)")
    done = restore_backup(path.expanduser(), settings.data_dir)
    if as_json:
        print_json(done)
        return
    migrated = f"; schema migrated from revision {done['migrated_from']}" if done["migrated_from"] else ""
    typer.echo(f"restored {path} (made {done['created']} by aifab {done['aifab_version']}) into "
               f"{shown_path(settings.data_dir)}: {_counts(done['counts'])}{migrated}")


def _counts(counts: dict[str, Any]) -> str:
    return ", ".join(f"{counts[k]} {label}" for k, label in (
        ("collections", "collections"), ("chunks", "chunks"), ("keys", "keys"), ("models", "models"),
        ("datasets", "dataset versions"), ("audit_rows", "audit rows")))


def _size(n: int) -> str:
    if n < 1000:
        return f"{n} B"
    size, unit = float(n) / 1000, "KB"
    for bigger in ("MB", "GB"):
        if size < 1000:
            break
        size, unit = size / 1000, bigger
    return f"{size:.1f} {unit}"
