"""Suite files written into a temporary folder, with the question set they name."""

from __future__ import annotations

import json

import pytest

QUESTIONS = [
    {"question": "Where does the Danube flow?", "gold": {"source": "rivers.md", "section": "Danube"}},
    {"question": "How long do cats sleep?", "gold": {"source": "cats.md"}},
]


@pytest.fixture
def write_suite(tmp_path):
    """write_suite(toml) -> the suite's path; evals/questions.jsonl is next to it."""
    (tmp_path / "evals").mkdir(exist_ok=True)
    (tmp_path / "evals" / "questions.jsonl").write_text("\n".join(json.dumps(q) for q in QUESTIONS) + "\n")

    def write(text: str, name: str = "suite.toml"):
        path = tmp_path / name
        path.write_text(text)
        return path

    return write


@pytest.fixture
def rag(tmp_path):
    """A Rag over a small real corpus ('kb': rivers.md, cats.md): fake embedder, in-memory store."""
    from aifab.config import load_settings
    from aifab.corpus.service import Corpus
    from aifab.rag import Rag
    from aifab.registry import Registry
    from aifab.state import Database
    from aifab.testing import FakeEmbedder, MemoryStore

    settings = load_settings(data_dir=tmp_path / "data", corpus={"chunk_tokens": 40, "chunk_overlap": 0})
    db = Database(settings.effective_database_url)
    db.upgrade()
    corpus = Corpus(settings, Registry(db, tmp_path / "models"), MemoryStore(), embedder=FakeEmbedder())
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "rivers.md").write_text("# Rivers\n\n## Danube\n\nThe Danube flows through Vienna and Budapest into "
                                    "the Black Sea.\n\n## Rhine\n\nThe Rhine reaches the North Sea.\n")
    (docs / "cats.md").write_text("# Cats\n\nCats sleep sixteen hours a day and purr when content.\n")
    assert not corpus.ingest_paths("kb", [docs]).errors
    yield Rag(settings, corpus)
    db.close()
