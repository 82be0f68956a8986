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
