from __future__ import annotations

import pytest

from aifab.finetune.datasets import DatasetStore
from aifab.state import Database
from aifab.testing.interactions import InteractionLog


@pytest.fixture
def data_dir(tmp_path):
    path = tmp_path / "d"
    path.mkdir()
    return path


@pytest.fixture
def db(data_dir):
    database = Database(f"sqlite:///{data_dir.resolve() / 'aifab.db'}")
    database.upgrade()
    yield database
    database.close()


@pytest.fixture
def store(db, data_dir):
    return DatasetStore(db, data_dir / "datasets")


@pytest.fixture
def log(db):
    return InteractionLog(db)
