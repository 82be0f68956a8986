from __future__ import annotations

import pytest

from aifab.testing.text import write_text_corpus
from aifab.training.config import load_spec

TINY = {"n_layer": 2, "n_head": 2, "n_embd": 32, "block_size": 32, "batch_size": 8, "steps": 30, "warmup": 5,
        "eval_every": 10, "eval_batches": 4, "log_every": 5, "checkpoint_every": 10, "sample_tokens": 0,
        "tokenizer": "char", "package": "none"}


@pytest.fixture
def corpus(tmp_path):
    return write_text_corpus(tmp_path / "corpus")


@pytest.fixture
def tiny_spec(corpus):
    def make(**overrides):
        return load_spec(None, {"sources": [str(corpus)], **TINY, **overrides})

    return make
