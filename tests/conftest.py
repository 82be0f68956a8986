from __future__ import annotations

import os

import pytest

from aifab.testing.requirements import require

# Tests never reach a model hub; the packaged models are local.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


@pytest.fixture(autouse=True)
def _isolated_cwd(tmp_path, monkeypatch):
    """Every test runs in its own directory: no stray aifab.toml or .aifab is picked up or left. The
    ``AIFAB_TEST_*`` variables stay: they configure the test run, not the aifab under test."""
    monkeypatch.chdir(tmp_path)
    for key in list(os.environ):
        if key.startswith("AIFAB_") and not key.startswith("AIFAB_TEST_"):
            monkeypatch.delenv(key)


@pytest.fixture(scope="session")
def postgres_server():
    """A real PostgreSQL for the session: ``AIFAB_TEST_DATABASE_URL`` or a private cluster."""
    from aifab.testing.postgres import PrivatePostgres, find_bindir

    bindir = find_bindir()
    require("PostgreSQL", available=bindir is not None, install="sudo apt-get install postgresql")
    assert bindir is not None
    server = PrivatePostgres(bindir)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def postgres_url(postgres_server):
    """A fresh, empty database on the session's PostgreSQL."""
    return postgres_server.new_database()


@pytest.fixture(scope="session")
def pgvector(postgres_server):
    """The session's PostgreSQL, with the pgvector extension installed (or the test is skipped)."""
    require("pgvector", available=postgres_server.has_extension("vector"), install="sudo .ci/install-pgvector.sh")
    return postgres_server


@pytest.fixture
def pgvector_url(pgvector):
    """A fresh, empty database on a PostgreSQL with pgvector."""
    return pgvector.new_database()


@pytest.fixture
def state_db(tmp_path):
    """A migrated SQLite state database in the test's directory."""
    from aifab.state import Database

    database = Database(f"sqlite:///{tmp_path / 'aifab.db'}")
    database.upgrade()
    yield database
    database.close()
