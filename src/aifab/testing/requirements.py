"""System components that some tests need (PostgreSQL, pgvector, Ray, a browser), and what happens when
one is missing.

``make test`` must pass on a machine that lacks them: such a test is skipped with one line that says how
to install the component. CI installs them all and sets ``AIFAB_TEST_REQUIRE=all``, which turns each of
those skips into a failure, so a broken install is never a silent skip. ``AIFAB_TEST_REQUIRE`` may also
name components (``pgvector,ray``): only those must be there.
"""

from __future__ import annotations

import importlib.util
import os

import pytest

REQUIRE_ENV = "AIFAB_TEST_REQUIRE"


def is_required(component: str) -> bool:
    """Whether ``AIFAB_TEST_REQUIRE`` says ``component`` must be installed (``all`` or its name)."""
    named = {v.strip().lower() for v in os.environ.get(REQUIRE_ENV, "").split(",") if v.strip()}
    return "all" in named or component.lower() in named


def require(component: str, *, available: bool, install: str) -> None:
    """Skip the calling test when ``component`` is not ``available``, saying how to ``install`` it; fail
    it instead when ``AIFAB_TEST_REQUIRE`` requires it. Call it from a fixture: at a module's top a failure
    is a collection error, which stops the whole run."""
    if available:
        return
    message = f"{component} is not installed: {install}"
    if is_required(component):
        pytest.fail(f"{message} ({REQUIRE_ENV}={os.environ[REQUIRE_ENV]} requires it)", pytrace=False)
    pytest.skip(message, allow_module_level=True)


def require_module(module: str, *, install: str) -> None:
    """:func:`require` for a Python package that only some tests need (``ray``): importable or not."""
    require(module, available=importlib.util.find_spec(module) is not None, install=install)
