from __future__ import annotations

import os

import pytest

# Tests never reach a model hub; the packaged models are local.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


@pytest.fixture(autouse=True)
def _isolated_cwd(tmp_path, monkeypatch):
    """Every test runs in its own directory: no stray aifab.toml or .aifab is picked up or left."""
    monkeypatch.chdir(tmp_path)
    for key in list(os.environ):
        if key.startswith("AIFAB_"):
            monkeypatch.delenv(key)


@pytest.fixture(scope="session")
def postgres_server():
    """A real PostgreSQL for the session: ``AIFAB_TEST_DATABASE_URL`` or a private cluster."""
    from aifab.testing.postgres import PrivatePostgres, find_bindir

    bindir = find_bindir()
    if bindir is None:
        pytest.skip("PostgreSQL is not installed (.ci/run installs it)")
    server = PrivatePostgres(bindir)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def postgres_url(postgres_server):
    """A fresh, empty database on the session's PostgreSQL."""
    return postgres_server.new_database()


@pytest.fixture
def state_db(tmp_path):
    """A migrated SQLite state database in the test's directory."""
    from aifab.state import Database

    database = Database(f"sqlite:///{tmp_path / 'aifab.db'}")
    database.upgrade()
    yield database
    database.close()
