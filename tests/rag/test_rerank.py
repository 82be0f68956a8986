"""Rerankers: the conformance suite for each, stored token vectors against re-encoding, and the stored
vectors' life with their chunks (#17)."""

from __future__ import annotations

import sqlite3

import numpy as np
import pytest

from aifab.config import RetrievalSettings, load_settings
from aifab.corpus.service import Corpus
from aifab.errors import ConfigError
from aifab.rag import Rag
from aifab.rag.protocol import Passage
from aifab.rag.rerank import EncodingMaxSimReranker, StoredMaxSimReranker, make_reranker, maxsim
from aifab.registry import Registry
from aifab.state import Database
from aifab.stores.embedded import EmbeddedStore
from aifab.stores.tokens import pack, unpack
from aifab.testing import FakeEmbedder, RerankerConformance


class TestStoredMaxSim(RerankerConformance):
    @pytest.fixture
    def reranker(self):
        return StoredMaxSimReranker(FakeEmbedder())

    @pytest.fixture
    def make_passages(self):
        embedder = FakeEmbedder()

        def make(texts):
            return [Passage(f"p{i}", f"d{i}", t, 0.0, 0.0, stored=pack(embedder.token_vectors([t])[0]))
                    for i, t in enumerate(texts)]

        return make


class TestEncodingMaxSim(RerankerConformance):
    @pytest.fixture
    def reranker(self):
        return EncodingMaxSimReranker(FakeEmbedder())


def _unit_rows(rng: np.random.Generator, n: int, dims: int = 384) -> np.ndarray:
    v = rng.standard_normal((n, dims)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def test_int8_token_vectors_score_as_the_float_ones():
    rng = np.random.default_rng(0)
    query = _unit_rows(rng, 12)
    docs = [_unit_rows(rng, n) for n in (200, 37, 256, 1, 90)]
    docs[2][:12] = 0.6 * query + 0.8 * _unit_rows(rng, 12)  # one passage that matches the query
    exact = maxsim(query, docs)
    stored = maxsim(query, [unpack(pack(d)) for d in docs])
    assert np.max(np.abs(np.subtract(exact, stored))) < 2e-3
    assert np.argsort(exact).tolist() == np.argsort(stored).tolist()
    assert len(pack(docs[0])) == 4 + 200 * (384 + 2)


def test_maxsim_scores_each_passage_by_its_own_tokens():
    q = np.eye(3, dtype=np.float32)[:2]  # two query tokens: e0, e1
    docs = [np.eye(3, dtype=np.float32)[[0]], np.eye(3, dtype=np.float32)[[0, 1]], np.empty((0, 3), np.float32)]
    assert maxsim(q, docs) == [0.5, 1.0, 0.0]


def test_passages_without_stored_vectors_are_an_error_that_names_the_fix():
    reranker = StoredMaxSimReranker(FakeEmbedder())
    with pytest.raises(ConfigError, match="aifab ingest.*promote"):
        reranker.rerank("q", [Passage("p0", "d0", "text", 0.0, 0.0)])
    with pytest.raises(ConfigError, match="unknown reranker 'colbert'"):
        make_reranker("colbert", FakeEmbedder())


def _rows(store_path, namespace_id: int) -> tuple[int, int]:
    """(chunk rows, rows without token vectors) of one namespace, read from the store's own tables."""
    db = sqlite3.connect(store_path / "store.db")
    try:
        t = f"ns{namespace_id}_rec"
        return db.execute(f"SELECT count(*), count(*) - count(rerank) FROM {t}").fetchone()
    finally:
        db.close()


def _namespace_ids(store_path) -> dict[str, int]:
    db = sqlite3.connect(store_path / "store.db")
    try:
        return dict(db.execute("SELECT name, id FROM namespaces").fetchall())
    finally:
        db.close()


def test_stored_vectors_live_and_die_with_their_chunks(tmp_path, write_docs):
    folder = write_docs(tmp_path / "docs")
    store_path = tmp_path / "store"
    db = Database(load_settings(data_dir=tmp_path / "data").effective_database_url)
    db.upgrade()
    store = EmbeddedStore(store_path)
    embedder = FakeEmbedder()

    def corpus(chunk_tokens: int) -> Corpus:
        settings = load_settings(data_dir=tmp_path / "data", corpus={"chunk_tokens": chunk_tokens, "chunk_overlap": 0})
        return Corpus(settings, Registry(db, tmp_path / "models"), store, embedder=embedder)

    try:
        first = corpus(40)
        first.ingest_paths("kb", [folder])
        ns = _namespace_ids(store_path)
        total, without = _rows(store_path, ns["kb@v1"])
        assert total > 3 and without == 0
        (folder / "rivers.md").write_text("# Rivers\n\nThe Elbe flows through Dresden and Hamburg.\n")
        first.ingest_paths("kb", [folder], acl=["staff"])  # one file changed, every ACL changed
        assert _rows(store_path, ns["kb@v1"])[1] == 0
        rag = Rag(first.settings, first)
        top = rag.retrieve("kb", "Elbe Dresden", settings=RetrievalSettings(reranker="maxsim"), top_k=1)
        assert "Elbe" in top[0].text

        second = corpus(24)  # another pipeline: a new version beside the live one
        report = second.ingest_paths("kb", [folder])
        assert report.new_version
        ns = _namespace_ids(store_path)
        assert _rows(store_path, ns["kb@v2"])[1] == 0
        second.collections.promote("kb", 2)
        second.collections.promote("kb", 1)  # and back: v1's vectors are all still there
        assert _rows(store_path, ns["kb@v1"])[1] == 0

        doc = next(d for d in second.collections.documents("kb") if d.source.endswith("cats.md"))
        before = _rows(store_path, ns["kb@v1"])[0]
        removed = second.collections.delete_document("kb", doc.document_id)
        assert removed > 0 and _rows(store_path, ns["kb@v1"]) == (before - removed, 0)

        second.collections.delete("kb")
        assert not set(_namespace_ids(store_path)) & {"kb@v1", "kb@v2"}
    finally:
        store.close()
        db.close()


@pytest.fixture
def write_docs():
    def write(folder):
        folder.mkdir(parents=True)
        (folder / "rivers.md").write_text("# Rivers\n\nThe Danube flows through Vienna.\n\n## Rhine\n\n"
                                          "The Rhine reaches the North Sea at Rotterdam, a large port.\n")
        (folder / "cats.md").write_text("# Cats\n\nCats sleep sixteen hours a day and purr when content.\n")
        (folder / "code.md").write_text("# Lists\n\n" + "A list comprehension builds a list in one line. " * 8)
        return folder

    return write
