"""Build the configured ``VectorStore`` (called once, by the face that starts the process)."""

from __future__ import annotations

from aifab.config import Settings
from aifab.errors import ConfigError
from aifab.stores.protocol import VectorStore


def open_store(settings: Settings) -> VectorStore:
    cfg = settings.stores
    params = {"hnsw_m": cfg.hnsw_m, "hnsw_ef_construction": cfg.hnsw_ef_construction,
              "hnsw_ef_search": cfg.hnsw_ef_search}
    if cfg.backend == "embedded":
        from aifab.stores.embedded import EmbeddedStore

        return EmbeddedStore(settings.data_dir / "vectors", **params)
    url = cfg.url or settings.database_url
    if not url or not url.startswith("postgresql"):
        raise ConfigError("stores.backend = 'pgvector' needs a PostgreSQL URL in stores.url or database_url")
    from aifab.stores.pgvector import PgVectorStore

    return PgVectorStore(url, **params)
