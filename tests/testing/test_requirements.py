"""A missing system component skips its tests with the way to install it, unless the run requires it."""

from __future__ import annotations

import pytest

from aifab.testing.requirements import REQUIRE_ENV, require, require_module


def test_a_missing_component_is_a_skip_that_says_how_to_install_it(monkeypatch):
    monkeypatch.delenv(REQUIRE_ENV, raising=False)
    with pytest.raises(pytest.skip.Exception, match=r"^pgvector is not installed: sudo \.ci/install-pgvector\.sh$"):
        require("pgvector", available=False, install="sudo .ci/install-pgvector.sh")


@pytest.mark.parametrize("value", ["all", "ray,pgvector", " PGVECTOR "])
def test_a_required_component_that_is_missing_is_a_failure(monkeypatch, value):
    monkeypatch.setenv(REQUIRE_ENV, value)
    with pytest.raises(pytest.fail.Exception, match="pgvector is not installed: sudo .ci/install-pgvector.sh"):
        require("pgvector", available=False, install="sudo .ci/install-pgvector.sh")


def test_only_the_named_components_are_required(monkeypatch):
    monkeypatch.setenv(REQUIRE_ENV, "ray")
    with pytest.raises(pytest.skip.Exception):
        require("pgvector", available=False, install="x")


def test_an_installed_component_neither_skips_nor_fails(monkeypatch):
    monkeypatch.setenv(REQUIRE_ENV, "all")
    require("pgvector", available=True, install="x")
    require_module("json", install="x")


def test_a_missing_python_module(monkeypatch):
    monkeypatch.delenv(REQUIRE_ENV, raising=False)
    with pytest.raises(pytest.skip.Exception, match="no_such_module_xyz is not installed: pip install it"):
        require_module("no_such_module_xyz", install="pip install it")

