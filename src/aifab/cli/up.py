"""``aifab up``: the main job — the server with the default models, on embedded defaults."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated

import typer

from aifab.cli.common import ConfigOpt, DataDirOpt, open_registry, settings_from
from aifab.config import Settings
from aifab.corpus.service import Corpus
from aifab.engines import load_engine
from aifab.engines.protocol import Engine
from aifab.gateway.factory import build_gateway, check_bind
from aifab.gateway.keys import KeyStore
from aifab.registry import Registry
from aifab.serve import ModelPool, create_app
from aifab.stores.factory import open_store


def load_pool(settings: Settings, registry: Registry) -> ModelPool:
    """Load every model the settings name, each with the engine its package calls for."""
    names = [settings.models.chat, settings.models.embedding, *settings.models.extra]
    engines: dict[str, Engine] = {}
    try:
        for name in dict.fromkeys(n for n in names if n):
            pkg = registry.get(name)
            typer.echo(f"loading {name} ({pkg.format}, {pkg.engine} engine)...", err=True)
            engines[name] = load_engine(pkg, settings)
    except BaseException:
        for engine in engines.values():
            engine.close()
        raise
    return ModelPool(engines)


def up(
    host: Annotated[str | None, typer.Option(help="address to bind [default: 127.0.0.1]")] = None,
    port: Annotated[int | None, typer.Option(help="port [default: 8000]")] = None,
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
) -> None:
    """Start the OpenAI-compatible server with the configured models loaded."""
    import uvicorn

    settings = settings_from(config, data_dir, serve={"host": host, "port": port})
    logging.basicConfig(level=settings.serve.log_level.upper(), format="%(levelname)s %(name)s: %(message)s")
    registry = open_registry(settings)
    check_bind(settings, KeyStore(registry.db))  # before minutes of model loading
    pool = load_pool(settings, registry)
    store = open_store(settings)
    try:
        corpus = Corpus(settings, registry, store)
        inner = create_app(pool, max_body_bytes=settings.serve.max_body_bytes, corpus=corpus)
        app = build_gateway(inner, settings, registry.db, inner.state.metrics.registry)
        s = settings.serve
        names = ", ".join([name for name, _ in pool.items()] + app.router.public_names())
        typer.echo(f"aifab listening on http://{s.host}:{s.port}/v1  (models: {names}; data: {Path(settings.data_dir).resolve()})")
        uvicorn.run(app, host=s.host, port=s.port, log_level=s.log_level, access_log=False, timeout_graceful_shutdown=5,
                    loop="uvloop", http="httptools")
    finally:
        store.close()
        pool.close()
