"""``aifab up``: the main job — the server with the default models, on embedded defaults."""

from __future__ import annotations

import asyncio
import errno
import gc
import logging
import signal
import socket
import threading
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from aifab.cli.common import (
    ConfigOpt,
    DataDirOpt,
    announce_server,
    fail,
    open_registry,
    open_store_of,
    settings_from,
)
from aifab.cli.process import quiet_libraries
from aifab.config import Settings, load_settings
from aifab.corpus.service import Corpus
from aifab.engines import load_engine
from aifab.engines.adapters import AdapterView, adapter_of
from aifab.engines.protocol import Engine
from aifab.finetune.service import FinetuneService
from aifab.gateway.factory import build_gateway, check_bind
from aifab.gateway.keys import KeyStore
from aifab.registry import Registry
from aifab.serve import ModelPool, create_app
from aifab.serve.middleware import ReadDeadline
from aifab.serve.pool import Loader
from aifab.stores.protocol import VectorStore

if TYPE_CHECKING:
    import uvicorn

STARTUP_FAILURE = 3  # uvicorn's exit code when the server cannot start (a port in use among them)


def load_pool(settings: Settings, registry: Registry) -> ModelPool:
    """Load every model the settings name, each with the engine its package calls for; the pool can load
    more while the server runs (a fine-tuned adapter shares its base's engine)."""
    names = [settings.models.chat, settings.models.embedding, *settings.models.extra]
    pool = ModelPool({}, loader=model_loader(settings, registry))
    try:
        for name in dict.fromkeys(n for n in names if n):
            pkg = registry.get(name)
            typer.echo(f"loading {name} ({pkg.format}, {pkg.engine} engine)...", err=True)
            asyncio.run(pool.load(name))
    except BaseException:
        pool.close()
        raise
    return pool


def model_loader(settings: Settings, registry: Registry) -> Loader:
    def load(name: str, pool: ModelPool) -> Engine:
        pkg = registry.get(name)
        adapter = adapter_of(pkg)
        if adapter is None:
            return load_engine(pkg, settings)
        base = next((e for e in pool.engines() if e.package.format == "safetensors" and e.package.path == pkg.path
                     and not isinstance(e, AdapterView)), None)
        if base is None:  # the base is not served by itself: hold it for its adapters
            base = load_engine(replace(pkg, name=f"{pkg.name} (base)", adapters={}), settings)
            pool.keep(base)
        asyncio.run(base.load_adapter(*adapter))
        return AdapterView(pkg, base, adapter[0])

    return load


def bind(host: str, port: int) -> socket.socket:
    """The server's socket, bound before the models load (seconds to minutes) so that a port in use is a
    one-line error at once. It only listens once the server runs: until then a client is refused, never
    left waiting on a server that is still loading."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    family, _, _, _, address = infos[0]
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn: restart at once after a stop
    try:
        sock.bind(address)
    except OSError:
        sock.close()
        raise
    return sock


def serve(config: uvicorn.Config, sock: socket.socket, on_started: Callable[[uvicorn.Server], None]) -> bool:
    """Run uvicorn on ``sock`` until it stops; ``on_started`` runs once the socket accepts connections
    (so a client that reads the banner and connects at once is served). Returns whether it started."""
    import uvicorn

    class Server(uvicorn.Server):
        async def startup(self, sockets: Any = None) -> None:
            await super().startup(sockets=sockets)
            if self.started:
                on_started(self)

    server = Server(config)
    # uvicorn raises the signal that stopped it again once it is down. SIGTERM's default would end the
    # process on the spot; as SystemExit it lets the caller clean up (stores closed, server.json removed).
    main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _exit_on_signal) if main_thread else None
    try:
        server.run(sockets=[sock])
    finally:
        if main_thread:
            signal.signal(signal.SIGTERM, previous or signal.SIG_DFL)
    return server.started


def _exit_on_signal(signum: int, _frame: Any) -> None:
    raise SystemExit(128 + signum)  # the exit code of a process ended by that signal


def up(
    host: Annotated[str | None, typer.Option(help="address to bind [default: 127.0.0.1]")] = None,
    port: Annotated[int | None, typer.Option(help="port [default: 8000]")] = None,
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
) -> None:
    """Start the OpenAI-compatible server with the configured models loaded."""
    settings = settings_from(config, data_dir, serve={"host": host, "port": port})
    s = settings.serve
    logging.basicConfig(level=s.log_level.upper(), format="%(levelname)s %(name)s: %(message)s")
    quiet_libraries(s.log_level)
    registry = open_registry(settings)
    check_bind(settings, KeyStore(registry.db))  # before minutes of model loading
    try:
        sock = bind(s.host, s.port)
    except OSError as exc:
        hint = (" (is another server running there? pick a free port with --port)"
                if exc.errno == errno.EADDRINUSE else "")
        fail(f"cannot listen on {s.host}:{s.port}: {exc.strerror or exc}{hint}", STARTUP_FAILURE)
    url = f"http://{s.host}:{s.port}"
    with sock:
        store = open_store_of(settings)  # the embedded store is this process's from here, before the models load
        try:
            with announce_server(settings.data_dir, url) as token:
                _run(settings, registry, store, sock, url, config, token)
        finally:
            store.close()


def _run(settings: Settings, registry: Registry, store: VectorStore, sock: socket.socket, url: str,
         config: Path | None, token: str) -> None:
    import uvicorn

    from aifab.serve.server import server_options

    if settings.tools:
        asyncio.run(_check_tools(settings))  # a tool that cannot start: one line, before any model loads
    pool = load_pool(settings, registry)
    try:
        corpus = Corpus(settings, registry, store, engines=pool.engines)  # one MiniLM for both
        finetune = FinetuneService(registry.db, settings.data_dir, config=config)
        inner = create_app(pool, max_body_bytes=settings.serve.max_body_bytes, corpus=corpus, finetune=finetune)
        # the config file read again (POST /v1/admin/reload), with what this start overrode kept
        inner.state.load_settings = lambda: load_settings(config, data_dir=settings.data_dir,
                                                          serve={"host": settings.serve.host, "port": settings.serve.port})
        for line in inner.state.rag.unready_apps():
            typer.echo(f"warning: {line}", err=True)
        app = build_gateway(inner, settings, registry.db, inner.state.metrics.registry, local_token=token)
        names = ", ".join([name for name, _ in pool.items()] + app.router.public_names())
        banner = (f"aifab listening on {url}/v1  (models: {names}; data: {Path(settings.data_dir).resolve()}); "
                  f"web UI: {url}/")
        gc.collect()
        gc.freeze()  # the start-up heap (models, libraries) is never scanned again: no long GC pauses later
        s = settings.serve
        server_config = uvicorn.Config(ReadDeadline(app, seconds=s.body_timeout_s), host=s.host, port=s.port,
                                       log_level=s.log_level, access_log=False, timeout_graceful_shutdown=5,
                                       loop="uvloop", **server_options(s))
        if not serve(server_config, sock, lambda _server: typer.echo(banner)):
            raise typer.Exit(STARTUP_FAILURE)
    finally:
        pool.close()


async def _check_tools(settings: Settings) -> None:
    """Open and close every ``[tools.*]`` entry once: a missing database or an MCP server that does not start
    is a one-line error here, rather than a traceback from the server's start-up (which opens them again, in
    its own event loop)."""
    from aifab.tools import Toolbox

    await (await Toolbox.open(settings)).aclose()
