"""The ``VectorStore`` conformance suite. A backend proves itself by subclassing
:class:`StoreConformance` and providing ``open_store``, a fixture that returns a callable opening the
*same* storage each time it is called (so that persistence can be checked)::

    class TestMyStore(StoreConformance):
        @pytest.fixture
        def open_store(self, tmp_path):
            return lambda: MyStore(tmp_path / "store")

The semantics are the ones documented in ``aifab.stores.protocol``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np
import pytest

from aifab.errors import Conflict, InvalidRequest, NotFound
from aifab.stores.protocol import ChunkRecord, Filter, VectorStore

DIM = 16
NS = "docs@v1"


def unit(rng: np.random.Generator, n: int, dim: int = DIM) -> np.ndarray:
    v = rng.standard_normal((n, dim)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def clustered(rng: np.random.Generator, n: int, dim: int, clusters: int = 50) -> np.ndarray:
    """Vectors around a few centres, like real embeddings (uniform random vectors are unrealistically hard)."""
    centres = unit(rng, clusters, dim)
    v = centres[rng.integers(0, clusters, n)] + 0.35 * rng.standard_normal((n, dim)).astype(np.float32) / np.sqrt(dim)
    return (v / np.linalg.norm(v, axis=1, keepdims=True)).astype(np.float32)


def records(vectors: np.ndarray, *, prefix: str = "c", doc: Callable[[int], str] = lambda i: f"d{i // 4}",
            acl: Callable[[int], tuple[str, ...]] = lambda i: (), text: Callable[[int], str] | None = None,
            ) -> list[ChunkRecord]:
    return [
        ChunkRecord(
            id=f"{prefix}{i}", document_id=doc(i), vector=vec,
            text=text(i) if text else f"chunk number {i} about topic{i % 7}",
            metadata={"source": f"/docs/{doc(i)}.md", "page": i % 3 + 1, "section": ["Intro", f"Part {i % 5}"]},
            acl=acl(i),
        )
        for i, vec in enumerate(vectors)
    ]


class StoreConformance:
    """Behaviour every ``VectorStore`` backend must show."""

    @pytest.fixture
    def open_store(self) -> Callable[[], VectorStore]:  # pragma: no cover - provided by subclasses
        raise NotImplementedError

    @pytest.fixture
    def store(self, open_store: Callable[[], VectorStore]) -> Iterator[VectorStore]:
        s = open_store()
        s.create_namespace(NS, DIM)
        yield s
        s.close()

    @pytest.fixture
    def rng(self) -> np.random.Generator:
        return np.random.default_rng(7)

    # -- namespaces -----------------------------------------------------------------------------------

    def test_namespaces_create_idempotent_conflict_drop(self, store: VectorStore) -> None:
        store.create_namespace(NS, DIM)  # again: no-op
        store.create_namespace("other@v2", 8)
        assert store.namespaces() == {NS: DIM, "other@v2": 8}
        with pytest.raises(Conflict):
            store.create_namespace(NS, DIM + 1)
        store.drop_namespace("other@v2")
        store.drop_namespace("other@v2")  # again: no-op
        assert store.namespaces() == {NS: DIM}

    def test_unknown_namespace_is_not_found(self, store: VectorStore, rng: np.random.Generator) -> None:
        with pytest.raises(NotFound):
            store.upsert("missing@v1", records(unit(rng, 1)))
        with pytest.raises(NotFound):
            store.query("missing@v1", unit(rng, 1)[0], 3)

    def test_namespaces_are_isolated(self, store: VectorStore, rng: np.random.Generator) -> None:
        store.create_namespace("b@v1", DIM)
        store.upsert(NS, records(unit(rng, 5)))
        assert store.count("b@v1") == 0
        assert store.query("b@v1", unit(rng, 1)[0], 3) == []
        assert store.lexical("b@v1", "chunk", 3) == []
        store.drop_namespace("b@v1")
        assert store.count(NS) == 5

    # -- writes ---------------------------------------------------------------------------------------

    def test_upsert_is_idempotent_and_replaces(self, store: VectorStore, rng: np.random.Generator) -> None:
        recs = records(unit(rng, 10))
        store.upsert(NS, recs)
        store.upsert(NS, recs)
        assert store.count(NS) == 10
        changed = ChunkRecord(id="c3", document_id="d0", text="a completely new text about zebras",
                              vector=recs[3].vector, metadata={"page": 9}, acl=("team",))
        store.upsert(NS, [changed])
        assert store.count(NS) == 10
        (got,) = store.fetch(NS, ["c3"])
        assert (got.text, got.metadata, got.acl) == (changed.text, {"page": 9}, ("team",))
        assert [h.id for h in store.lexical(NS, "zebras", 5)] == ["c3"]
        assert all(h.id != "c3" for h in store.lexical(NS, "topic3", 10))

    def test_wrong_dimensions_or_missing_vector_is_rejected(self, store: VectorStore, rng: np.random.Generator) -> None:
        with pytest.raises(InvalidRequest):
            store.upsert(NS, records(unit(rng, 1, DIM + 2)))
        with pytest.raises(InvalidRequest):
            store.upsert(NS, [ChunkRecord(id="x", document_id="d", text="t")])
        assert store.count(NS) == 0

    def test_fetch_roundtrips_everything(self, store: VectorStore, rng: np.random.Generator) -> None:
        recs = records(unit(rng, 3), acl=lambda i: ("a", "b") if i == 1 else ())
        recs[2].metadata["title"] = "Ünïcödé — “quotes” 日本語"
        store.upsert(NS, recs)
        got = {r.id: r for r in store.fetch(NS, ["c0", "c1", "c2", "nope"], vectors=True)}
        assert set(got) == {"c0", "c1", "c2"}
        for r in recs:
            g = got[r.id]
            assert (g.document_id, g.text, g.metadata, sorted(g.acl)) == (r.document_id, r.text, r.metadata, sorted(r.acl))
            assert g.vector is not None and r.vector is not None and np.allclose(g.vector, r.vector, atol=1e-3)
        assert all(r.vector is None for r in store.fetch(NS, ["c0"]))

    def test_reranker_data_is_kept_replaced_and_deleted_with_its_record(
        self, store: VectorStore, rng: np.random.Generator
    ) -> None:
        recs = records(unit(rng, 3))
        recs[0].rerank, recs[1].rerank = b"\x00\x01token vectors\xff", bytes(range(256)) * 40
        store.upsert(NS, recs)
        got = {r.id: r.rerank for r in store.fetch(NS, ["c0", "c1", "c2"], rerank=True)}
        assert got == {"c0": recs[0].rerank, "c1": recs[1].rerank, "c2": None}
        assert all(r.rerank is None for r in store.fetch(NS, ["c0", "c1"]))  # only when asked
        recs[0].rerank = b"new"
        store.upsert(NS, [recs[0]])
        assert [r.rerank for r in store.fetch(NS, ["c0"], rerank=True)] == [b"new"]
        store.delete(NS, ["c1"])
        assert store.fetch(NS, ["c1"], rerank=True) == []

    def test_delete_and_document_chunks(self, store: VectorStore, rng: np.random.Generator) -> None:
        store.upsert(NS, records(unit(rng, 8)))  # d0: c0..c3, d1: c4..c7
        assert store.document_chunks(NS, "d1") == {"c4", "c5", "c6", "c7"}
        assert store.delete(NS, ["c4", "c5", "unknown"]) == 2
        assert store.document_chunks(NS, "d1") == {"c6", "c7"}
        assert store.count(NS) == 6
        assert store.fetch(NS, ["c4"]) == []
        hits = store.query(NS, unit(rng, 1)[0], 8)
        assert {h.id for h in hits} == {"c0", "c1", "c2", "c3", "c6", "c7"}
        assert all(h.id not in {"c4", "c5"} for h in store.lexical(NS, "chunk number", 10))

    def test_writes_survive_reopen(self, open_store: Callable[[], VectorStore], rng: np.random.Generator) -> None:
        s = open_store()
        s.create_namespace(NS, DIM)
        vecs = unit(rng, 20)
        s.upsert(NS, records(vecs))
        s.delete(NS, ["c0"])
        s.close()
        s = open_store()
        try:
            assert s.namespaces() == {NS: DIM}
            assert s.count(NS) == 19
            assert s.query(NS, vecs[5], 1)[0].id == "c5"
            assert [h.id for h in s.lexical(NS, "number 7", 1)] == ["c7"]
        finally:
            s.close()

    # -- dense search ---------------------------------------------------------------------------------

    def test_query_finds_itself_sorted_and_bounded(self, store: VectorStore, rng: np.random.Generator) -> None:
        vecs = unit(rng, 50)
        store.upsert(NS, records(vecs))
        hits = store.query(NS, vecs[17], 5)
        assert len(hits) == 5 and hits[0].id == "c17"
        assert hits[0].score == pytest.approx(1.0, abs=1e-3)
        assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
        assert hits[0].record.text == "chunk number 17 about topic3" and hits[0].record.metadata["page"] == 3
        assert len(store.query(NS, vecs[0], 500)) == 50

    def test_recall_against_exact_search(self, store: VectorStore, rng: np.random.Generator) -> None:
        dim, n = 32, 3000
        store.create_namespace("recall@v1", dim)
        vecs = clustered(rng, n, dim)
        for at in range(0, n, 500):
            store.upsert("recall@v1", records(vecs[at : at + 500], prefix=f"r{at}_"))
        ids = [f"r{at}_{i}" for at in range(0, n, 500) for i in range(500)]
        queries = clustered(np.random.default_rng(99), 40, dim)
        exact = np.argsort(-(queries @ vecs.T), axis=1)[:, :10]
        found = 0
        for q, truth in zip(queries, exact, strict=True):
            got = {h.id for h in store.query("recall@v1", q, 10)}
            found += len(got & {ids[i] for i in truth})
        assert found / (10 * len(queries)) >= 0.9

    def test_acl_filter_semantics(self, store: VectorStore, rng: np.random.Generator) -> None:
        acl = {0: (), 1: ("eng",), 2: ("eng", "hr"), 3: ("hr",)}
        vecs = unit(rng, 4)
        store.upsert(NS, records(vecs, acl=lambda i: acl[i]))

        def visible(f: Filter | None) -> set[str]:
            return {h.id for h in store.query(NS, vecs[0], 10, f)}

        assert visible(None) == {"c0", "c1", "c2", "c3"}
        assert visible(Filter(acl=frozenset())) == {"c0"}
        assert visible(Filter(acl=frozenset({"eng"}))) == {"c0", "c1", "c2"}
        assert visible(Filter(acl=frozenset({"hr", "legal"}))) == {"c0", "c2", "c3"}
        assert {h.id for h in store.lexical(NS, "chunk", 10, Filter(acl=frozenset({"hr"})))} == {"c0", "c2", "c3"}

    def test_where_filter(self, store: VectorStore, rng: np.random.Generator) -> None:
        vecs = unit(rng, 12)
        store.upsert(NS, records(vecs))
        q = vecs[0]
        assert {h.id for h in store.query(NS, q, 20, Filter(where={"document_id": "d1"}))} == {"c4", "c5", "c6", "c7"}
        assert {h.id for h in store.query(NS, q, 20, Filter(where={"document_id": ["d0", "d2"]}))} == {
            "c0", "c1", "c2", "c3", "c8", "c9", "c10", "c11"}
        assert {h.id for h in store.query(NS, q, 20, Filter(where={"page": 2}))} == {"c1", "c4", "c7", "c10"}
        assert {h.id for h in store.query(NS, q, 20, Filter(where={"source": "/docs/d2.md", "page": [1, 3]}))} == {
            "c8", "c9", "c11"}
        assert {h.id for h in store.lexical(NS, "chunk", 20, Filter(where={"document_id": "d2"}))} == {
            "c8", "c9", "c10", "c11"}

    def test_selective_filter_still_fills_k(self, store: VectorStore, rng: np.random.Generator) -> None:
        """An ANN index that post-filters a fixed candidate list returns too few hits for rare tags."""
        dim, n = 32, 4000
        store.create_namespace("sel@v1", dim)
        vecs = clustered(rng, n, dim)
        rare = set(range(0, n, 200))  # 20 chunks
        store.upsert("sel@v1", records(vecs, acl=lambda i: ("rare",) if i in rare else ("common",)))
        hits = store.query("sel@v1", vecs[1], 10, Filter(acl=frozenset({"rare"})))
        assert len(hits) == 10
        assert {h.id for h in hits} <= {f"c{i}" for i in rare}
        exact = sorted(rare, key=lambda i: -float(vecs[i] @ vecs[1]))[:10]
        assert len({h.id for h in hits} & {f"c{i}" for i in exact}) >= 9

    # -- lexical search -------------------------------------------------------------------------------

    def test_lexical_ranks_rare_terms(self, store: VectorStore, rng: np.random.Generator) -> None:
        texts = {
            0: "The asyncio event loop runs coroutines and callbacks.",
            1: "A dictionary maps hashable keys to values.",
            2: "Generators yield values lazily; a generator expression is compact.",
            3: "The global interpreter lock (GIL) serialises bytecode execution.",
        }
        store.upsert(NS, records(unit(rng, 4), text=lambda i: texts[i]))
        assert store.lexical(NS, "interpreter lock", 2)[0].id == "c3"
        assert store.lexical(NS, "what does a generator yield?", 1)[0].id == "c2"
        hits = store.lexical(NS, "values", 5)
        assert {h.id for h in hits} == {"c1", "c2"}
        assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
        assert store.lexical(NS, "kubernetes", 5) == []

    def test_lexical_tolerates_query_syntax(self, store: VectorStore, rng: np.random.Generator) -> None:
        store.upsert(NS, records(unit(rng, 4)))
        for query in ['"unbalanced', "a AND OR NOT (", "col:umn* ^ -x", "", "   ", "'; DROP TABLE x; --"]:
            store.lexical(NS, query, 3)  # no exception: user text is never query syntax
        assert store.lexical(NS, "topic2 OR", 5)[0].id == "c2"
