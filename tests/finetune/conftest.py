from __future__ import annotations

from pathlib import Path

import pytest
from finetune_helpers import ANSWER, chat, questions, write_dataset


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-layer random Llama with SmolLM2's tokenizer and chat template."""
    from aifab.testing.models import make_tiny_llama

    return make_tiny_llama(tmp_path_factory.mktemp("tiny-llama"))


@pytest.fixture(scope="session")
def tiny_base(tiny_dir: Path):
    from aifab.registry.inspect import inspect_path

    return inspect_path(tiny_dir, "tiny")


@pytest.fixture
def registry(tmp_path: Path):
    from aifab.registry import Registry
    from aifab.state import Database

    db = Database(f"sqlite:///{tmp_path / 'state.db'}")
    db.upgrade()
    return Registry(db, tmp_path / "models")


@pytest.fixture
def constant_task(tmp_path: Path) -> Path:
    """A dataset a tiny model learns in a few steps: every answer is the same word."""
    qs = questions(60)
    return write_dataset(tmp_path / "datasets", [chat(q, ANSWER) for q in qs[:48]],
                         [chat(q, ANSWER) for q in qs[48:]], name="constant")
