"""Hybrid retrieval: fusion arithmetic, modes, filters, MMR, and the service's checks."""

from __future__ import annotations

import numpy as np
import pytest

from aifab.config import RetrievalSettings
from aifab.errors import Conflict, InvalidRequest, NotFound
from aifab.rag.protocol import Passage
from aifab.rag.retrieval import fuse, mmr
from aifab.stores.protocol import ChunkRecord, Hit


def _hits(*ids: str) -> list[Hit]:
    return [Hit(i, 1.0, ChunkRecord(i, "doc", f"text {i}")) for i in ids]


def test_rrf_scores_are_weighted_reciprocal_ranks():
    fused = fuse({"dense": _hits("a", "b", "c"), "lexical": _hits("c", "a")}, {"dense": 1.0, "lexical": 2.0}, 60)
    scores = {p.id: p.score for p in fused}
    assert scores["a"] == pytest.approx(1 / 61 + 2 / 62)
    assert scores["c"] == pytest.approx(1 / 63 + 2 / 61)
    assert scores["b"] == pytest.approx(1 / 62)
    assert [p.id for p in fused] == ["c", "a", "b"]
    assert fused[0].ranks == {"dense": 3, "lexical": 1}


def test_rrf_ties_are_broken_by_best_rank_then_id():
    fused = fuse({"dense": _hits("x", "y"), "lexical": _hits("y", "x")}, {"dense": 1, "lexical": 1}, 60)
    assert [p.id for p in fused] == ["x", "y"]  # equal scores, equal best ranks: by id


def test_mmr_skips_a_near_duplicate():
    def passage(pid: str, vec: list[float], sim: float) -> Passage:
        v = np.asarray(vec, dtype=np.float32)
        return Passage(pid, pid, pid, 0.0, sim, vector=v / np.linalg.norm(v))

    a, a2, b = passage("a", [1, 0, 0], 0.9), passage("a2", [1, 0.01, 0], 0.89), passage("b", [0, 1, 0], 0.6)
    assert [p.id for p in mmr([a, a2, b], 0.5, 3)][:2] == ["a", "b"]
    assert [p.id for p in mmr([a, a2, b], 1.0, 3)][:2] == ["a", "a2"]  # lambda 1 = relevance only


def test_hybrid_finds_by_words_and_reports_similarity(rag):
    passages = rag.retrieve("kb", "Which river flows through Vienna?", top_k=3)
    top = passages[0]
    assert "Danube flows through Vienna" in top.text
    assert set(top.ranks) == {"dense", "lexical"}
    assert top.metadata["source"].endswith("rivers.md") and top.metadata["section"][-1] == "Danube"
    assert [p.score for p in passages] == sorted((p.score for p in passages), reverse=True)
    query = rag.corpus.embedder().embed(["Which river flows through Vienna?"])[0]
    stored = rag.corpus.store.fetch(rag.corpus.collections.version("kb").namespace, [top.id], vectors=True)[0]
    assert top.similarity == pytest.approx(float(query @ stored.vector))


@pytest.mark.parametrize("mode", ["dense", "lexical"])
def test_single_modes_use_one_search(rag, mode):
    settings = RetrievalSettings(mode=mode)
    passages = rag.retrieve("kb", "Rhine North Sea Rotterdam", settings=settings, top_k=2)
    assert "Rhine" in passages[0].text
    assert all(set(p.ranks) == {mode} for p in passages)


def test_where_filter_limits_documents(rag, tmp_path):
    only_cats = {"document_id": [d.document_id for d in rag.corpus.collections.documents("kb") if d.source.endswith("cats.md")]}
    passages = rag.retrieve("kb", "Danube Vienna", where=only_cats, top_k=5)
    assert passages and all(p.source.endswith("cats.md") for p in passages)


def test_acl_hides_chunks_of_other_tenants(tmp_path, corpus_tools):
    make_corpus, ingest = corpus_tools
    corpus = make_corpus(tmp_path)
    ingest(corpus, tmp_path / "a", docs={"secret.md": "# Plan\n\nThe launch code word is marmalade.\n"}, acl=["team-a"])
    ingest(corpus, tmp_path / "b", docs={"public.md": "# Menu\n\nMarmalade on toast every morning.\n"})
    from aifab.rag import Rag

    rag = Rag(corpus.settings, corpus)
    seen = {p.source.rsplit("/", 1)[-1] for p in rag.retrieve("kb", "marmalade code word", acl=frozenset({"team-b"}))}
    assert seen == {"public.md"}
    seen = {p.source.rsplit("/", 1)[-1] for p in rag.retrieve("kb", "marmalade code word", acl=frozenset({"team-a"}))}
    assert seen == {"public.md", "secret.md"}


def test_bad_queries_and_collections(rag):
    with pytest.raises(InvalidRequest, match="empty"):
        rag.retrieve("kb", "   ")
    with pytest.raises(NotFound):
        rag.retrieve("nope", "anything")


def test_a_collection_embedded_by_another_model_is_refused(rag):
    rag.corpus._embedder.name = "another-model@123"
    with pytest.raises(Conflict, match="re-ingest"):
        rag.retrieve("kb", "Danube")


def test_maxsim_reranks_by_token_matches(rag):
    on = rag.retrieve("kb", "Rhine Rotterdam", settings=RetrievalSettings(reranker="maxsim"), top_k=3)
    off = rag.retrieve("kb", "Rhine Rotterdam", settings=RetrievalSettings(reranker="none"), top_k=3)
    assert "Rhine" in on[0].text and {p.id for p in on} <= {p.id for p in rag.retrieve("kb", "Rhine Rotterdam", top_k=20)}
    assert [p.score for p in on] == sorted((p.score for p in on), reverse=True)
    assert 0 < on[0].score <= 1.0 and on[0].score != off[0].score  # MaxSim scores, not fused RRF scores


def test_without_token_vectors_retrieval_goes_on_unreranked(rag, caplog):
    class PooledOnly:  # an embedding endpoint: pooled vectors, no token vectors
        name, dimensions = rag.corpus.embedder().name, rag.corpus.embedder().dimensions
        embed = rag.corpus.embedder().embed
        count_tokens = rag.corpus.embedder().count_tokens

    rag.corpus._embedder = PooledOnly()
    passages = rag.retrieve("kb", "Danube Vienna", settings=RetrievalSettings(reranker="maxsim"), top_k=2)
    assert "Danube" in passages[0].text and passages[0].ranks
    assert "without reranking" in caplog.text


@pytest.mark.parametrize("question, expected", [
    ("Where does it reach the sea?", "Tell me about the Rhine Where does it reach the sea?"),
    ("Tell me more", "Tell me about the Rhine Tell me more"),
    ("What do cats eat?", "What do cats eat?"),  # stands on its own
])
async def test_follow_ups_are_searched_with_the_previous_question(rag, question, expected):
    app = rag.app_for_collection("kb")
    history = [{"role": "user", "content": "Tell me about the Rhine"}, {"role": "assistant", "content": "A river."}]
    assert await rag.standalone_query(app, question, history, engine=None) == expected
    assert await rag.standalone_query(app, question, [], engine=None) == question
    none = rag.app_for_collection("kb", rewrite="none")
    assert await rag.standalone_query(none, question, history, engine=None) == question
