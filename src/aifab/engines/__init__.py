"""Model runtimes behind the ``Engine`` protocol (``protocol.py``), found by name (``registry.py``)."""

from aifab.engines.protocol import Delta, Embeddings, Engine, EngineHealth, GenerationRequest, SamplingParams

__all__ = ["Delta", "Embeddings", "Engine", "EngineHealth", "GenerationRequest", "SamplingParams", "load_engine"]


def load_engine(package, settings):  # type: ignore[no-untyped-def]
    """Load ``package`` with the engine its format calls for."""
    from aifab.engines.registry import engine_class

    return engine_class(package.engine)(package, settings)
