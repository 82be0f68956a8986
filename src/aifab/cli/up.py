"""``aifab up``: the main job — the server with the default models, on embedded defaults."""

from __future__ import annotations

import asyncio
import gc
import logging
from dataclasses import replace
from pathlib import Path
from typing import Annotated

import typer

from aifab.cli.common import ConfigOpt, DataDirOpt, open_registry, settings_from
from aifab.config import Settings
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
from aifab.stores.factory import open_store


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


def up(
    host: Annotated[str | None, typer.Option(help="address to bind [default: 127.0.0.1]")] = None,
    port: Annotated[int | None, typer.Option(help="port [default: 8000]")] = None,
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
) -> None:
    """Start the OpenAI-compatible server with the configured models loaded."""
    import uvicorn

    from aifab.serve.server import server_options

    settings = settings_from(config, data_dir, serve={"host": host, "port": port})
    logging.basicConfig(level=settings.serve.log_level.upper(), format="%(levelname)s %(name)s: %(message)s")
    registry = open_registry(settings)
    check_bind(settings, KeyStore(registry.db))  # before minutes of model loading
    pool = load_pool(settings, registry)
    store = open_store(settings)
    try:
        corpus = Corpus(settings, registry, store)
        finetune = FinetuneService(registry.db, settings.data_dir, config=config)
        inner = create_app(pool, max_body_bytes=settings.serve.max_body_bytes, corpus=corpus, finetune=finetune)
        app = build_gateway(inner, settings, registry.db, inner.state.metrics.registry)
        s = settings.serve
        names = ", ".join([name for name, _ in pool.items()] + app.router.public_names())
        typer.echo(f"aifab listening on http://{s.host}:{s.port}/v1  (models: {names}; data: {Path(settings.data_dir).resolve()})")
        gc.collect()
        gc.freeze()  # the start-up heap (models, libraries) is never scanned again: no long GC pauses later
        uvicorn.run(ReadDeadline(app, seconds=s.body_timeout_s), host=s.host, port=s.port, log_level=s.log_level,
                    access_log=False, timeout_graceful_shutdown=5, loop="uvloop", **server_options(s))
    finally:
        store.close()
        pool.close()
