from __future__ import annotations

import pytest

from aifab.testing import MemoryStorage, MemoryStore, StoreConformance


class TestMemoryStore(StoreConformance):
    @pytest.fixture
    def open_store(self):
        storage = MemoryStorage()
        return lambda: MemoryStore(storage)
