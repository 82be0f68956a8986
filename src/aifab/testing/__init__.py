"""Test helpers for aifab and its users: fakes, conformance suites, small models.

Imported by tests only, never by aifab itself.
"""

from aifab.testing.conformance import EngineConformance
from aifab.testing.embedders import FakeEmbedder
from aifab.testing.evals import FakeHarnesses
from aifab.testing.fakes import FakeEngine, FakeRuntime
from aifab.testing.faults import DiskFull, FillingStore
from aifab.testing.memory_store import MemoryStorage, MemoryStore
from aifab.testing.rerankers import RerankerConformance
from aifab.testing.stores import StoreConformance
from aifab.testing.upstream import FakeUpstream, UpstreamOptions

__all__ = [
    "DiskFull",
    "EngineConformance",
    "FakeEmbedder",
    "FakeEngine",
    "FakeHarnesses",
    "FakeRuntime",
    "FakeUpstream",
    "FillingStore",
    "MemoryStorage",
    "MemoryStore",
    "RerankerConformance",
    "StoreConformance",
    "UpstreamOptions",
]
