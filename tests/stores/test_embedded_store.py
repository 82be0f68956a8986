from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest

from aifab.errors import Conflict
from aifab.stores.embedded import EmbeddedStore
from aifab.stores.embedded.locks import ReadWriteLock
from aifab.stores.protocol import ChunkRecord, Filter
from aifab.testing import MemoryStore, StoreConformance
from aifab.testing.stores import clustered, records

NS = "docs@v1"
DIM = 24


class TestEmbeddedStore(StoreConformance):
    @pytest.fixture
    def open_store(self, tmp_path):
        return lambda: EmbeddedStore(tmp_path / "store")


class TestEmbeddedStoreGraphOnly(StoreConformance):
    """The same suite with the exact-scan shortcut off, so that every query walks the HNSW graph."""

    @pytest.fixture
    def open_store(self, tmp_path):
        return lambda: graph_only(tmp_path / "store")


def graph_only(path: Path, **kw: int) -> EmbeddedStore:
    s = EmbeddedStore(path, hnsw_m=kw.get("m", 16), hnsw_ef_construction=64, hnsw_ef_search=64)
    s.exact_max_rows = 0
    return s


@contextmanager
def graph_and_reference(path: Path, recs: list[ChunkRecord]) -> Iterator[tuple[EmbeddedStore, MemoryStore]]:
    """A graph-path store (exact scans only under 100 rows) and the reference, both holding ``recs``."""
    s = graph_only(path)
    s.exact_max_rows = 100
    reference = MemoryStore()
    try:
        for store in (s, reference):
            store.create_namespace(NS, DIM)
            store.upsert(NS, recs)
        yield s, reference
    finally:
        s.close()


def ann_files(path: Path) -> list[Path]:
    return sorted(path.glob("ns*.ann"))


def top_ids(store, vec: np.ndarray, k: int, f: Filter | None = None) -> list[str]:
    return [h.id for h in store.query(NS, vec, k, f)]


def assert_matches_reference(store, reference: MemoryStore, queries: np.ndarray, k: int = 10,
                             f: Filter | None = None, min_recall: float = 0.9) -> None:
    """Same visible set as an exact reference, and ANN recall against it."""
    assert store.count(NS) == reference.count(NS)
    found = total = 0
    for q in queries:
        got, want = top_ids(store, q, k, f), top_ids(reference, q, k, f)
        assert len(got) == len(want)
        found += len(set(got) & set(want))
        total += len(want)
    assert found / max(total, 1) >= min_recall


# -- durability: a killed process, the graph file missing, corrupt or stale ---------------------------

WRITER = textwrap.dedent("""
    import os, signal, sys
    import numpy as np
    from aifab.stores.embedded import EmbeddedStore
    from aifab.testing.stores import clustered, records
    path, start, n, delete = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    s = EmbeddedStore(path, hnsw_m=16, hnsw_ef_construction=64)
    s.create_namespace("docs@v1", 24)
    vecs = clustered(np.random.default_rng(start), n, 24)
    for at in range(0, n, 100):
        s.upsert("docs@v1", records(vecs[at:at + 100], prefix=f"k{start + at}_"))
    s.delete("docs@v1", [f"c{i}" for i in range(delete)])
    print("written", flush=True)
    os.kill(os.getpid(), signal.SIGKILL)  # no close(), no save: only what upsert made durable
""")


def run_and_kill(path: Path, start: int, n: int, delete: int = 0) -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    proc = subprocess.run([sys.executable, "-c", WRITER, str(path), str(start), str(n), str(delete)],
                          capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    assert "written" in proc.stdout


def test_kill_9_after_upsert_keeps_every_record(tmp_path):
    path = tmp_path / "store"
    run_and_kill(path, start=0, n=500)
    assert ann_files(path) == []  # the graph was never saved: everything comes from SQLite
    with graph_only(path) as s:
        assert s.count(NS) == 500
        assert s.index_info(NS)["source"] == "rebuilt" and s.index_info(NS)["size"] == 500
        vecs = clustered(np.random.default_rng(0), 500, DIM)
        assert [top_ids(s, vecs[i], 1)[0] for i in (0, 137, 499)] == ["k0_0", "k100_37", "k400_99"]
        assert {h.id for h in s.lexical(NS, "number 37", 5)} == {f"k{at}_37" for at in range(0, 500, 100)}


def test_stale_graph_is_caught_up_from_the_change_log(tmp_path):
    path = tmp_path / "store"
    base = clustered(np.random.default_rng(1), 300, DIM)
    with graph_only(path) as s:
        s.create_namespace(NS, DIM)
        s.upsert(NS, records(base))
    saved = ann_files(path)[0].read_bytes()
    # A later process adds 400 records, deletes 50 old ones and is killed before saving the graph.
    run_and_kill(path, start=5, n=400, delete=50)
    assert ann_files(path)[0].read_bytes() == saved
    with graph_only(path) as s:
        info = s.index_info(NS)
        assert info["source"] == "loaded"
        assert (info["replayed_adds"], info["replayed_removals"]) == (400, 50)
        assert s.count(NS) == 650
        assert all(not h.id.startswith("c") or int(h.id[1:]) >= 50 for h in s.query(NS, base[0], 650))
        assert len(s.query(NS, base[0], 1000)) == 650
        reference = MemoryStore()
        reference.create_namespace(NS, DIM)
        reference.upsert(NS, s.fetch(NS, [f"c{i}" for i in range(300)] + [f"k{5 + i // 100 * 100}_{i % 100}" for i in range(400)], vectors=True))
        assert reference.count(NS) == 650
        assert_matches_reference(s, reference, clustered(np.random.default_rng(9), 30, DIM))


@pytest.mark.parametrize("damage", ["missing", "truncated", "flipped", "garbage", "empty"])
def test_missing_or_corrupt_graph_is_rebuilt(tmp_path, damage):
    path = tmp_path / "store"
    vecs = clustered(np.random.default_rng(2), 400, DIM)
    with graph_only(path) as s:
        s.create_namespace(NS, DIM)
        s.upsert(NS, records(vecs))
        s.delete(NS, ["c1", "c2"])
        before = [top_ids(s, v, 5) for v in vecs[:20]]
    (f,) = ann_files(path)
    data = bytearray(f.read_bytes())
    if damage == "missing":
        f.unlink()
    elif damage == "truncated":
        f.write_bytes(data[: len(data) // 2])
    elif damage == "flipped":
        data[len(data) * 2 // 3] ^= 0x40  # inside the vectors: only the checksum notices
        f.write_bytes(data)
    elif damage == "garbage":
        f.write_bytes(os.urandom(len(data)))
    else:
        f.write_bytes(b"")
    with graph_only(path) as s:
        info = s.index_info(NS)
        assert info["source"] == "rebuilt" and info["size"] == 398 and info["dead"] == 0
        assert [top_ids(s, v, 5) for v in vecs[:20]] == before
    with graph_only(path) as s:  # the rebuilt graph was saved: the next open loads it
        assert s.index_info(NS)["source"] == "loaded"


def test_other_graph_parameters_rebuild(tmp_path):
    path = tmp_path / "store"
    with graph_only(path) as s:
        s.create_namespace(NS, DIM)
        s.upsert(NS, records(clustered(np.random.default_rng(3), 50, DIM)))
    with graph_only(path, m=8) as s:
        assert s.index_info(NS)["source"] == "rebuilt" and "m" in s.index_info(NS)["reason"]


def test_many_deletes_rebuild_the_graph(tmp_path):
    vecs = clustered(np.random.default_rng(4), 1000, DIM)
    with graph_only(tmp_path / "store") as s:
        s.create_namespace(NS, DIM)
        s.upsert(NS, records(vecs))
        s.delete(NS, [f"c{i}" for i in range(0, 200)])
        assert s.index_info(NS)["dead"] == 200 and "rebuilds" not in s.index_info(NS)
        s.delete(NS, [f"c{i}" for i in range(200, 300)])  # 300 of 1000 dead: past the rebuild line
        info = s.index_info(NS)
        assert info["rebuilds"] == 1 and info["dead"] == 0 and info["size"] == 700
        for i in (0, 250, 300, 999):
            hit = s.query(NS, vecs[i], 1)[0]
            assert (hit.id == f"c{i}") == (i >= 300)
        assert len(s.query(NS, vecs[0], 2000)) == 700


def test_replacing_records_leaves_one_version_each(tmp_path):
    rng = np.random.default_rng(5)
    with graph_only(tmp_path / "store") as s:
        s.create_namespace(NS, DIM)
        for _ in range(3):
            s.upsert(NS, records(clustered(rng, 200, DIM)))
        assert s.count(NS) == 200
        hits = s.query(NS, clustered(rng, 1, DIM)[0], 500)
        assert sorted(h.id for h in hits) == sorted(f"c{i}" for i in range(200))


# -- filters ---------------------------------------------------------------------------------------


def test_filters_on_the_graph_path_match_exact_search(tmp_path):
    """Filters big enough to take the graph (with a bitmap, or post-filtering ``where``)."""
    rng = np.random.default_rng(6)
    vecs = clustered(rng, 3000, DIM)
    recs = records(vecs, acl=lambda i: ("eng",) if i % 3 == 0 else ("hr",) if i % 3 == 1 else ())
    with graph_and_reference(tmp_path / "store", recs) as (s, reference):
        queries = clustered(np.random.default_rng(60), 20, DIM)
        for f in (Filter(acl=frozenset({"eng"})), Filter(where={"page": 2}),
                  Filter(acl=frozenset({"hr"}), where={"page": [1, 3]}), Filter(acl=frozenset()),
                  Filter(where={"document_id": ["d3", "d10"]})):
            assert_matches_reference(s, reference, queries, f=f)


def test_small_acl_sets_with_and_without_where_match_exact_search(tmp_path):
    """No public rows and a rare tag: the ACL side is small (sparse positions), `where` is not."""
    vecs = clustered(np.random.default_rng(11), 3000, DIM)
    recs = records(vecs, acl=lambda i: ("rare",) if i % 100 == 5 else ("eng",))
    with graph_and_reference(tmp_path / "store", recs) as (s, reference):
        s.delete(NS, ["c105"])
        reference.delete(NS, ["c105"])
        queries = clustered(np.random.default_rng(61), 10, DIM)
        for f in (Filter(acl=frozenset({"rare"})), Filter(acl=frozenset({"rare", "nobody"}), where={"page": [1, 3]}),
                  Filter(acl=frozenset({"rare"}), where={"document_id": ["d1", "d51"]})):  # c205 alone
            assert_matches_reference(s, reference, queries, f=f, min_recall=1.0)


# -- concurrency and ownership ---------------------------------------------------------------------


def test_queries_never_see_half_an_upsert(tmp_path):
    """Readers run while a writer keeps replacing every record: each query sees all of them, once."""
    n = 300
    rng = np.random.default_rng(7)
    s = graph_only(tmp_path / "store")
    s.create_namespace(NS, DIM)
    s.upsert(NS, records(clustered(rng, n, DIM)))
    stop, errors = threading.Event(), []
    everyone = sorted(f"c{i}" for i in range(n))  # "c0" sorts first

    def reader() -> None:
        q = clustered(np.random.default_rng(8), 1, DIM)[0]
        while not stop.is_set():
            ids = sorted(h.id for h in s.query(NS, q, n + 10))
            if ids not in (everyone, everyone[1:]):  # c0 is briefly deleted between two writes
                errors.append(f"{len(ids)} hits, {len(set(ids))} distinct")
                return
            s.lexical(NS, "chunk", 5)

    threads = [threading.Thread(target=reader) for _ in range(3)]
    try:
        for t in threads:
            t.start()
        for _ in range(8):
            s.upsert(NS, records(clustered(rng, n, DIM)))
            s.delete(NS, ["c0"])
            s.upsert(NS, records(clustered(rng, 1, DIM)))
    finally:
        stop.set()
        for t in threads:
            t.join()
        s.close()
    assert errors == []


def test_one_process_per_directory(tmp_path):
    s = EmbeddedStore(tmp_path / "store")
    try:
        with pytest.raises(Conflict):
            EmbeddedStore(tmp_path / "store")
    finally:
        s.close()
    EmbeddedStore(tmp_path / "store").close()  # released on close


def test_bad_input_writes_nothing(tmp_path):
    with EmbeddedStore(tmp_path / "store") as s:
        s.create_namespace(NS, DIM)
        good = records(clustered(np.random.default_rng(9), 3, DIM))
        bad = ChunkRecord("nan", "d", "t", vector=np.full(DIM, np.nan, np.float32))
        with pytest.raises(Exception, match="finite"):
            s.upsert(NS, [*good, bad])
        with pytest.raises(Exception, match="JSON"):
            s.upsert(NS, [ChunkRecord("x", "d", "t", vector=good[0].vector, metadata={"when": object()})])
        assert s.count(NS) == 0


def test_read_write_lock_lets_waiting_readers_in_between_writes():
    """A writer that takes the lock chunk after chunk (a big upsert) must not starve queries."""
    lock = ReadWriteLock()
    writes_done, read_at = [0], []

    def writer() -> None:
        for _ in range(200):
            with lock.write():
                time.sleep(0.001)
            writes_done[0] += 1

    def reader() -> None:
        with lock.read():
            read_at.append(writes_done[0])

    w = threading.Thread(target=writer)
    w.start()
    while writes_done[0] < 5:
        time.sleep(0.001)
    r = threading.Thread(target=reader)
    r.start()
    r.join()
    w.join()
    assert read_at and read_at[0] < 150


def test_stray_index_files_are_removed(tmp_path):
    path = tmp_path / "store"
    with EmbeddedStore(path) as s:
        s.create_namespace(NS, DIM)
        s.create_namespace("gone@v1", DIM)
        s.upsert("gone@v1", records(clustered(np.random.default_rng(10), 5, DIM)))
    (path / "ns1.ann.tmp").write_bytes(b"half a save")
    with EmbeddedStore(path) as s:
        s.drop_namespace("gone@v1")
    (path / "ns2.ann").write_bytes(b"left by a crash between the drop and the unlink")
    with EmbeddedStore(path) as s:
        assert s.namespaces() == {NS: DIM}
    assert [f.name for f in ann_files(path)] == ["ns1.ann"] and not (path / "ns1.ann.tmp").exists()


def test_a_namespace_made_before_reranker_data_gets_the_column_on_open(tmp_path, monkeypatch):
    from aifab.stores.embedded import sql

    with monkeypatch.context() as m:  # the schema as it was
        m.setattr(sql, "NAMESPACE_SCHEMA", sql.NAMESPACE_SCHEMA.replace(
            "unit length\n    rerank BLOB                          -- a reranker's data (aifab.stores.tokens), or NULL", "").replace(
            "vector BLOB NOT NULL,", "vector BLOB NOT NULL"))
        m.setattr(sql, "add_rerank_column", lambda conn, t: None)
        assert "rerank" not in sql.NAMESPACE_SCHEMA
        store = EmbeddedStore(tmp_path / "store")
        store.create_namespace(NS, DIM)
        with pytest.raises(Exception, match="rerank"):
            store.fetch(NS, ["c0"], rerank=True)
        store.close()
    store = EmbeddedStore(tmp_path / "store")
    try:
        recs = records(clustered(np.random.default_rng(0), 2, DIM))
        recs[0].rerank = b"tokens"
        store.upsert(NS, recs)
        assert {r.id: r.rerank for r in store.fetch(NS, ["c0", "c1"], rerank=True)} == {"c0": b"tokens", "c1": None}
    finally:
        store.close()


def test_a_snapshot_is_one_instant_of_the_store_while_writes_and_queries_go_on(tmp_path):
    """Snapshots taken while a writer adds batches of 50: each copy holds whole batches only, as many as the
    store held at the instant the caller's ``paused`` step ran, and opens with its graph as saved (nothing
    replayed or rebuilt). A query inside the pause is answered: only writers wait."""
    rng = np.random.default_rng(11)
    s = graph_only(tmp_path / "store")
    s.create_namespace(NS, DIM)
    s.upsert(NS, records(clustered(rng, 50, DIM), prefix="b0_"))
    stop = threading.Event()

    def writer() -> None:
        for b in range(1, 60):
            if stop.is_set():
                return
            s.upsert(NS, records(clustered(rng, 50, DIM), prefix=f"b{b}_"))

    thread = threading.Thread(target=writer)
    thread.start()
    seen: list[int] = []
    try:
        for i in range(3):
            def paused() -> None:
                seen.append(s.count(NS))
                q = threading.Thread(target=lambda: seen.append(len(s.query(NS, clustered(rng, 1, DIM)[0], 5))))
                q.start()
                q.join(timeout=60)
                assert not q.is_alive(), "a query waited for the snapshot"
            assert s.snapshot(tmp_path / f"copy{i}", paused=paused) == {NS: seen[-2]}
    finally:
        stop.set()
        thread.join()
    final = s.count(NS)
    s.close()
    for i in range(3):
        count = seen[2 * i]
        assert count % 50 == 0 and seen[2 * i + 1] == 5
        with graph_only(tmp_path / f"copy{i}") as copy:
            info = copy.index_info(NS)
            assert (info["source"], info["replayed_adds"], info["replayed_removals"]) == ("loaded", 0, 0)
            assert copy.count(NS) == count == info["visible"]
            assert len(copy.query(NS, clustered(rng, 1, DIM)[0], count + 10)) == count
            assert len(copy.fetch(NS, [f"b{b}_{j}" for b in range(count // 50) for j in range(50)])) == count
    assert seen[0] <= seen[2] <= seen[4] <= final
