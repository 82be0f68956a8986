"""``aifab ingest`` and ``aifab collections``: the RAG corpus."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import fields
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from aifab.admin.state import collection_detail
from aifab.cli.common import (
    ConfigOpt,
    DataDirOpt,
    JsonOpt,
    open_registry,
    open_store_of,
    print_json,
    settings_from,
    warn,
)
from aifab.cli.remote import Server, server_for
from aifab.config import Settings
from aifab.corpus.ingest import IngestReport
from aifab.corpus.service import Corpus
from aifab.corpus.sources import discover
from aifab.errors import InvalidRequest

app = typer.Typer(help="List, inspect, version and delete document collections.", no_args_is_help=True)
CollectionArg = Annotated[str, typer.Argument(help="collection name")]


@contextmanager
def open_corpus(settings: Settings) -> Iterator[Corpus]:
    """The corpus over the configured store; the store is closed however the command ends."""
    registry = open_registry(settings)
    store = open_store_of(settings)
    try:
        yield Corpus(settings, registry, store)
    finally:
        store.close()


def _console() -> Console:
    return Console(width=None if sys.stdout.isatty() else 160)


def ingest(
    paths: Annotated[list[Path], typer.Argument(help="files or folders (walked recursively; hidden files skipped)")],
    collection: Annotated[str, typer.Option("--collection", "-C", help="collection to ingest into (created if new)")],
    acl: Annotated[
        list[str] | None, typer.Option("--acl", help="ACL tag stored on every chunk; repeat for several")
    ] = None,
    prune: Annotated[bool, typer.Option("--prune", help="remove documents whose files under PATHS are gone")] = False,
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Ingest documents: load, chunk, embed and index them; unchanged files cost nothing the second time.

    Exit code 0 when every file went in or was skipped for having no text to index (see `skipped`), 2 when
    some failed (the others went in; see `errors`), 1 when nothing could start (a path that does not exist)."""
    missing = [str(p) for p in paths if not p.exists()]
    if missing:
        raise InvalidRequest(f"no such file or folder: {', '.join(missing)}", param="paths")
    if not prune and not discover(paths)[0]:  # with --prune, an emptied folder still removes its documents
        warn(f"no files to ingest in {', '.join(map(str, paths))} (hidden files are skipped); nothing was created")
        return
    show_bar = not as_json and sys.stderr.isatty()
    settings = settings_from(config, data_dir)
    server = server_for(settings)
    with Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        TimeRemainingColumn(), TextColumn("{task.fields[file]}", style="dim"),
        console=Console(stderr=True), disable=not show_bar, transient=True,
    ) as bar:
        task = bar.add_task("loading model", total=None, file="")
        if server is not None:
            report = _ingest_through(server, collection, paths, acl or [], prune,
                                     lambda job: bar.update(task, description=f"ingest {collection} v{job['version']}",
                                                            total=job["files_total"], completed=job["files_done"]))
        else:
            def progress(report: IngestReport, source: str) -> None:
                bar.update(task, description=f"ingest {collection} v{report.version}", total=report.files_total,
                           completed=report.files_done, file=Path(source).name[-40:])

            with open_corpus(settings) as corpus:
                report = corpus.ingest_paths(collection, paths, acl=acl or (), prune=prune, on_progress=progress)
    if as_json:
        print_json(report.to_dict())
    else:
        _print_report(report)
    if report.errors:
        raise typer.Exit(2)


def _ingest_through(server: Server, collection: str, paths: list[Path], acl: list[str], prune: bool,
                    on_progress: Callable[[dict[str, Any]], None]) -> IngestReport:
    """Ingest by the server that holds the data directory (the same files: it runs on this machine); the
    report is the one the ingest would have printed here."""
    summary = server.ingest({"collection": collection, "paths": [str(p.resolve()) for p in paths], "acl": acl,
                             "prune": prune}, on_progress)
    known = {f.name for f in fields(IngestReport)}
    return IngestReport(**{k: v for k, v in summary.items() if k in known})


def _print_report(r: IngestReport) -> None:
    console = _console()
    if r.new_version and r.version > 1:
        console.print(
            f"[yellow]the pipeline changed: built version {r.version} beside the live one; "
            f"`aifab collections promote {r.collection} {r.version}` switches retrieval to it[/yellow]"
        )
    table = Table(title=f"{r.collection} v{r.version} ({r.seconds:.1f} s)", show_header=False)
    for label, value in [
        ("documents added", r.documents_added), ("documents updated", r.documents_updated),
        ("documents unchanged", r.documents_unchanged), ("documents deleted", r.documents_deleted),
        ("chunks embedded", r.chunks_embedded), ("chunks reused", r.chunks_reused),
        ("chunks deleted", r.chunks_deleted), ("files skipped", len(r.skipped)), ("errors", len(r.errors)),
    ]:
        table.add_row(label, str(value))
    console.print(table)
    for rows, title in ((r.skipped, "skipped: nothing to index"), (r.errors, "not ingested")):
        if rows:
            files = Table("file", "reason", title=title)
            for e in rows:
                files.add_row(e["path"], e["reason"])
            console.print(files)


@app.command("list")
def list_collections(config: ConfigOpt = None, data_dir: DataDirOpt = None, as_json: JsonOpt = False) -> None:
    """List collections with their live version and size."""
    settings = settings_from(config, data_dir, read_only=True)
    server = server_for(settings)
    if server is not None:
        infos = [_unwrapped(c) for c in server.call("GET", "/v1/collections")["data"]]
    else:
        with open_corpus(settings) as corpus:
            infos = [i.to_dict() for i in corpus.collections.list()]
    if as_json:
        print_json(infos)
        return
    table = Table("name", "live version", "versions", "documents", "chunks")
    for d in infos:
        table.add_row(d["name"], str(d["live_version"] or "-"), str(len(d["versions"])), str(d["documents"]),
                      str(d["chunks"]))
    _console().print(table)


def _unwrapped(api_object: dict[str, Any]) -> dict[str, Any]:
    """An API object without its ``object`` and ``id`` members: what the CLI prints offline."""
    return {k: v for k, v in api_object.items() if k not in ("object", "id")}


def _detail(settings: Settings, name: str) -> dict[str, Any]:
    server = server_for(settings)
    if server is not None:
        return server.call("GET", f"/v1/admin/collections/{quote(name, safe='')}")
    with open_corpus(settings) as corpus:
        return collection_detail(corpus, name)


@app.command("show")
def show(name: CollectionArg, config: ConfigOpt = None, data_dir: DataDirOpt = None, as_json: JsonOpt = False) -> None:
    """Show one collection: versions, documents, last ingest jobs."""
    detail = _detail(settings_from(config, data_dir, read_only=True), name)
    if as_json:
        print_json(detail)
        return
    _print_versions(name, detail["versions"])
    table = Table("document", "format", "chunks", "acl", "source", title="documents (live version)")
    for d in detail["documents_list"]:
        table.add_row(d["id"][:12], d["format"], str(d["chunks"]), ",".join(d["acl"]) or "-", d["source"])
    _console().print(table)


def _print_versions(name: str, versions: list[dict[str, Any]]) -> None:
    table = Table("version", "live", "documents", "chunks", "embedder", "chunking", "created", title=name)
    for v in versions:
        chunker = v["pipeline"].get("chunker", {})
        created = v["created_at"]
        table.add_row(str(v["version"]), "yes" if v["live"] else "", str(v["documents"]), str(v["chunks"]),
                      str(v["pipeline"].get("embedder")),
                      f"{chunker.get('chunk_tokens')}/{chunker.get('overlap_tokens')} tokens",
                      (created.isoformat(" ") if isinstance(created, datetime) else str(created).replace("T", " "))[:19])
    _console().print(table)


@app.command("versions")
def versions(name: CollectionArg, config: ConfigOpt = None, data_dir: DataDirOpt = None, as_json: JsonOpt = False) -> None:
    """List a collection's versions (one per pipeline: chunking settings and embedding model)."""
    detail = _detail(settings_from(config, data_dir, read_only=True), name)
    if as_json:
        print_json(detail["versions"])
    else:
        _print_versions(name, detail["versions"])


@app.command("promote")
def promote(
    name: CollectionArg,
    version: Annotated[int, typer.Argument(help="the version retrieval should read from now on")],
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Make VERSION the live version (atomic; the previous one stays for rollback)."""
    settings = settings_from(config, data_dir)
    server = server_for(settings)
    if server is not None:
        info = server.call("POST", f"/v1/collections/{quote(name, safe='')}/promote", params={"version": version})
        v = next(v for v in info["versions"] if v["version"] == version)
    else:
        with open_corpus(settings) as corpus:
            v = corpus.collections.promote(name, version).to_dict()
    if as_json:
        print_json(v)
    else:
        typer.echo(f"{name}: version {v['version']} is live ({v['documents']} documents, {v['chunks']} chunks)")


@app.command("delete")
def delete(name: CollectionArg, config: ConfigOpt = None, data_dir: DataDirOpt = None, as_json: JsonOpt = False) -> None:
    """Delete a collection, all its versions and their chunks."""
    settings = settings_from(config, data_dir)
    server = server_for(settings)
    if server is not None:
        server.call("DELETE", f"/v1/collections/{quote(name, safe='')}")
    else:
        with open_corpus(settings) as corpus:
            corpus.collections.delete(name)
    if as_json:
        print_json({"name": name, "deleted": True})
    else:
        typer.echo(f"deleted collection {name}")
