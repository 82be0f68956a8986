"""Test helpers for aifab and its users: fakes (``fakes.py``), conformance suites, small models.

Imported by tests only, never by aifab itself.
"""

from aifab.testing.conformance import EngineConformance
from aifab.testing.fakes import FakeEngine, FakeRuntime

__all__ = ["EngineConformance", "FakeEngine", "FakeRuntime"]
