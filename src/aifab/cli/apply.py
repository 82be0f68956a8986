"""``aifab apply``: make the state what the config file declares (``[collections.*]``, ``[keys.*]``), through
the running server's admin API when one holds the data directory."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote

import typer

from aifab.admin.apply import Target, execute, plan
from aifab.admin.local import LocalTarget
from aifab.cli.common import DataDirOpt, open_registry, open_store_of, settings_from
from aifab.cli.remote import Server, server_for
from aifab.config import DEFAULT_CONFIG_FILE
from aifab.corpus.service import Corpus
from aifab.errors import ConfigError
from aifab.gateway.keys import KeyStore


class RemoteTarget:
    """A running server's admin API as ``apply``'s target."""

    def __init__(self, server: Server) -> None:
        self.server = server

    def keys(self) -> list[dict[str, Any]]:
        return self.server.call("GET", "/v1/admin/keys")["data"]

    def create_key(self, body: dict[str, Any]) -> dict[str, Any]:
        return self.server.call("POST", "/v1/admin/keys", json=body)

    def update_key(self, name: str, body: dict[str, Any]) -> dict[str, Any]:
        return self.server.call("PATCH", f"/v1/admin/keys/{quote(name, safe='')}", json=body)

    def revoke_key(self, name: str) -> None:
        self.server.call("DELETE", f"/v1/admin/keys/{quote(name, safe='')}")

    def collections(self) -> list[dict[str, Any]]:
        return self.server.call("GET", "/v1/collections")["data"]

    def documents(self, name: str) -> list[dict[str, Any]]:
        return self.server.call("GET", f"/v1/admin/collections/{quote(name, safe='')}")["documents_list"]

    def ingest(self, name: str, paths: list[str], acl: list[str], prune: bool,
               chunking: tuple[int, int]) -> dict[str, Any]:
        return self.server.ingest({"collection": name, "paths": paths, "acl": acl, "prune": prune,
                                   "chunk_tokens": chunking[0], "chunk_overlap": chunking[1]})

    def promote(self, name: str, version: int) -> None:
        self.server.call("POST", f"/v1/collections/{quote(name, safe='')}/promote", params={"version": version})

    def delete_collection(self, name: str) -> None:
        self.server.call("DELETE", f"/v1/collections/{quote(name, safe='')}")

    def reload(self, dry_run: bool) -> dict[str, Any] | None:
        return self.server.call("POST", "/v1/admin/reload", params={"dry_run": dry_run})


def apply(
    config: Annotated[Path | None, typer.Argument(help="the config file [default: ./aifab.toml]")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="print the plan and change nothing")] = False,
    prune: Annotated[bool, typer.Option(
        "--prune", help="remove collections and revoke keys the file does not declare")] = False,
    data_dir: DataDirOpt = None,
) -> None:
    """Make the state what the config file declares: its [collections.*] ingested from their sources (with their
    own chunking), its [keys.*] with their scopes and limits (secrets from secret_env or secret_file). Prints
    the plan first; a second apply changes nothing. A running server also serves the file's apps and routes
    from then on (other sections need a restart, which the plan says)."""
    path = config or Path(DEFAULT_CONFIG_FILE)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    settings = settings_from(path, data_dir)
    with _target(settings) as target:
        todo = plan(settings, path.resolve().parent, target, prune=prune)
        for line in todo.render():
            typer.echo(line)
        if dry_run or not todo.changes:
            return
        execute(todo, target, typer.echo)
    typer.echo("Apply complete.")


@contextmanager
def _target(settings: Any) -> Iterator[Target]:
    server = server_for(settings)
    if server is not None:
        yield RemoteTarget(server)
        return
    registry = open_registry(settings)
    store = open_store_of(settings)
    keys = KeyStore(registry.db)
    try:
        yield LocalTarget(Corpus(settings, registry, store), keys)
    finally:
        keys.close()
        store.close()
