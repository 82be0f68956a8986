"""The state store migrates and serves the registry on SQLite and on a real PostgreSQL."""

from __future__ import annotations

import pytest
from sqlalchemy import inspect

from aifab.registry import ModelPackage, Registry
from aifab.state import Database


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.integration)])
def database(request, tmp_path):
    url = f"sqlite:///{tmp_path / 'aifab.db'}" if request.param == "sqlite" else request.getfixturevalue("postgres_url")
    db = Database(url)
    yield db
    db.close()


def test_migrations_create_the_schema_and_are_idempotent(database):
    database.upgrade()
    database.upgrade()
    tables = set(inspect(database.engine).get_table_names())
    assert {"models", "alembic_version"} <= tables


def test_registry_round_trip(database, tmp_path):
    database.upgrade()
    reg = Registry(database, tmp_path / "models")
    pkg = ModelPackage(name="m1", kind="chat", format="gguf", path="/x.gguf", chat_template="{{ messages }}",
                       special_tokens={"eos": "</s>"}, lineage={"eval": {"acc": 0.5}})
    reg.add(pkg)
    assert reg.get("m1") == pkg
    assert [p.name for p in reg.list()] == ["m1"]
    reg.remove("m1")
    assert reg.list() == []


def test_bad_url_is_a_config_error():
    from aifab.errors import ConfigError

    with pytest.raises(ConfigError, match="cannot open database"):
        Database("nosuchdialect://x")
