from __future__ import annotations

import pytest

from aifab.config import load_settings
from aifab.corpus.service import Corpus
from aifab.registry import Registry
from aifab.state import Database
from aifab.testing import FakeEmbedder, MemoryStore

PARAGRAPH = (
    "The {w} module provides tools for working with {w} data. It is used by many programs and "
    "has a long history in the standard library. Each function documents its arguments and return values."
)


def write_doc(path, title: str, sections: int = 3, words: tuple[str, ...] = ("alpha", "beta", "gamma")) -> None:
    parts = [f"# {title}\n"]
    for i in range(sections):
        parts.append(f"## Section {i}\n")
        for w in words:
            parts.append(PARAGRAPH.format(w=f"{w}{i}") + "\n")
    path.write_text("\n".join(parts))


@pytest.fixture(name="write_doc")
def write_doc_fixture():
    return write_doc


@pytest.fixture
def docs(tmp_path):
    folder = tmp_path / "docs"
    folder.mkdir()
    for i in range(4):
        write_doc(folder / f"doc{i}.md", f"Document {i}")
    (folder / "notes.txt").write_text("A short plain text note.\n\nWith a second paragraph about zebras.")
    return folder


@pytest.fixture
def make_corpus(tmp_path):
    """Corpus over a real state database, an in-memory store and the fake embedder (fast, no model)."""
    made = []

    def make(embedder: FakeEmbedder | None = None, store: MemoryStore | None = None, data: str = "data",
             **corpus_settings) -> Corpus:
        settings = load_settings(data_dir=tmp_path / data, corpus={"chunk_tokens": 48, "chunk_overlap": 8,
                                                                     **corpus_settings})
        db = Database(settings.effective_database_url)
        db.upgrade()
        corpus = Corpus(settings, Registry(db, tmp_path / "models"), store or MemoryStore(),
                        embedder=embedder or FakeEmbedder())
        made.append(db)
        return corpus

    yield make
    for db in made:
        db.close()
