"""``PgVectorStore`` on a real PostgreSQL with pgvector: the conformance suite plus what only a server
backend can get wrong (several clients, hostile names, a restarting server, a missing extension).

Skipped when PostgreSQL or pgvector is not installed, with the command that installs it; CI sets
``AIFAB_TEST_REQUIRE=all``, which makes their absence a failure (``aifab.testing.requirements``).
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading

import numpy as np
import psycopg
import pytest

from aifab.errors import ConfigError, InvalidRequest, NotFound
from aifab.stores.protocol import ChunkRecord, Filter
from aifab.testing import StoreConformance
from aifab.testing.stores import DIM, NS, clustered, records, unit

pytestmark = pytest.mark.integration


def libpq(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://")


@pytest.fixture
def pgvector_store(pgvector):
    from aifab.stores.pgvector import PgVectorStore

    return PgVectorStore


class TestPgVectorStore(StoreConformance):
    @pytest.fixture
    def open_store(self, postgres_url, pgvector_store):
        return lambda: pgvector_store(postgres_url)


@pytest.fixture
def store(postgres_url, pgvector_store):
    s = pgvector_store(postgres_url)
    s.create_namespace(NS, DIM)
    yield s
    s.close()


def test_two_processes_see_each_others_writes(postgres_url, pgvector_store, store) -> None:
    vecs = unit(np.random.default_rng(1), 6)
    other = pgvector_store(postgres_url)
    try:
        other.upsert(NS, records(vecs[:3]))
        assert store.count(NS) == 3
        child = textwrap.dedent(f"""
            import numpy as np
            from aifab.stores.pgvector import PgVectorStore
            from aifab.testing.stores import NS, records
            s = PgVectorStore({postgres_url!r})
            vecs = np.frombuffer(bytes.fromhex({vecs.tobytes().hex()!r}), dtype=np.float32).reshape(6, -1)
            s.upsert(NS, records(vecs[3:], prefix="p"))
            print(sorted(h.id for h in s.query(NS, vecs[0], 10)))
            s.close()
        """)
        out = subprocess.run([sys.executable, "-c", child], capture_output=True, text=True, timeout=60, check=True)
        assert out.stdout.split("\n")[0] == str(sorted(["c0", "c1", "c2", "p0", "p1", "p2"]))
        assert {h.id for h in other.query(NS, vecs[4], 6)} == {"c0", "c1", "c2", "p0", "p1", "p2"}
        assert other.delete(NS, ["p0"]) == 1
        assert store.fetch(NS, ["p0", "p1"]) and [r.id for r in store.fetch(NS, ["p0", "p1"])] == ["p1"]
        other.drop_namespace(NS)
        other.create_namespace(NS, 8)  # same name, new table and dimensions: nothing stale in `store`
        store.upsert(NS, records(unit(np.random.default_rng(1), 2, 8)))
        assert other.count(NS) == 2 and store.namespaces() == {NS: 8}
        other.drop_namespace(NS)
        with pytest.raises(NotFound):
            store.count(NS)
    finally:
        other.close()


def test_concurrent_threads_share_one_store(store) -> None:
    rng = np.random.default_rng(2)
    batches = [unit(rng, 50) for _ in range(8)]
    errors: list[BaseException] = []

    def work(i: int) -> None:
        try:
            store.upsert(NS, records(batches[i], prefix=f"t{i}_"))
            assert store.query(NS, batches[i][7], 1)[0].id == f"t{i}_7"
        except BaseException as exc:  # reported below, with the thread's traceback
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert store.count(NS) == 400


def test_sql_injection_attempts_are_plain_data(store, postgres_url) -> None:
    evil = "x'); DROP TABLE aifab_vector_namespaces; --"
    with pytest.raises(InvalidRequest):
        store.create_namespace(evil, DIM)
    with pytest.raises(InvalidRequest):
        store.create_namespace('a"b', DIM)
    with pytest.raises(NotFound):
        store.count(evil)
    with pytest.raises(NotFound):
        store.query(evil, np.ones(DIM), 3)
    store.drop_namespace(evil)  # absent: a no-op
    odd = "a-b.c@d_e"  # every character the namespace pattern allows
    store.create_namespace(odd, 4)
    assert store.namespaces() == {NS: DIM, odd: 4}

    vecs = unit(np.random.default_rng(3), 3)
    recs = [
        ChunkRecord(id=evil, document_id="d'--", text="robert'); DROP TABLE students; -- :* & | !", vector=vecs[0],
                    metadata={"k'ey": "v'); --", "page') OR TRUE --": 1}, acl=("t'ag", "{a,b}")),
        ChunkRecord(id="plain", document_id="d", text="nothing to see", vector=vecs[1], metadata={"page": 1}),
        ChunkRecord(id="tagged", document_id="d", text="secret", vector=vecs[2], acl=("secret",)),
    ]
    store.upsert(NS, recs)
    (got,) = store.fetch(NS, [evil])
    assert (got.id, got.document_id, got.text, got.metadata, got.acl) == (
        evil, recs[0].document_id, recs[0].text, recs[0].metadata, recs[0].acl)
    assert store.document_chunks(NS, "d'--") == {evil}
    assert {h.id for h in store.query(NS, vecs[0], 5, Filter(where={"page') OR TRUE --": 1}))} == {evil}
    assert {h.id for h in store.query(NS, vecs[0], 5, Filter(where={"page": "1' OR '1'='1"}))} == set()
    assert {h.id for h in store.query(NS, vecs[0], 5, Filter(acl=frozenset({"{a,b}"})))} == {evil, "plain"}
    assert {h.id for h in store.query(NS, vecs[0], 5, Filter(acl=frozenset({"a", "b"})))} == {"plain"}
    assert [h.id for h in store.lexical(NS, "robert'); DROP TABLE x; -- :* & | !", 5)] == [evil]
    assert store.delete(NS, ["x' OR '1'='1", "' OR 1=1 --"]) == 0
    assert store.count(NS) == 3 and store.namespaces() == {NS: DIM, odd: 4}
    with psycopg.connect(libpq(postgres_url)) as conn:  # the catalogue still holds exactly the two namespaces
        assert conn.execute("SELECT count(*) FROM aifab_vector_namespaces").fetchone() == (2,)


def test_bad_vectors_and_unstorable_text_are_rejected_whole(store) -> None:
    good = unit(np.random.default_rng(4), 2)
    bad = [np.zeros(DIM, np.float32), np.full(DIM, np.nan, np.float32)]
    for vector in bad:
        with pytest.raises(InvalidRequest):
            store.upsert(NS, records(np.stack([good[0], vector])))
    with pytest.raises(InvalidRequest):  # PostgreSQL text cannot hold NUL
        store.upsert(NS, [ChunkRecord(id="n", document_id="d", text="a\x00b", vector=good[0])])
    with pytest.raises(InvalidRequest):
        store.upsert(NS, [ChunkRecord(id="n", document_id="d", text="t", vector=good[0], metadata={"x": object()})])
    with pytest.raises(InvalidRequest):
        store.query(NS, np.ones(DIM + 1), 3)
    assert store.count(NS) == 0


def test_filled_k_without_iterative_scan(store) -> None:
    """pgvector before 0.8 has no iterative scan: the exact fallback must still fill k."""
    rng = np.random.default_rng(5)
    vecs = clustered(rng, 1000, DIM)
    rare = set(range(0, 1000, 50))
    store.upsert(NS, records(vecs, acl=lambda i: ("rare",) if i in rare else ("common",)))
    store.iterative_scan = False
    hits = store.query(NS, vecs[1], 10, Filter(acl=frozenset({"rare"})))
    exact = sorted(rare, key=lambda i: -float(vecs[i] @ vecs[1]))[:10]
    assert [h.id for h in hits] == [f"c{i}" for i in exact]
    assert len(store.query(NS, vecs[1], 1001)) == 1000  # k above pgvector's ef_search ceiling: exact


def test_bulk_load_rebuilds_the_index(store, postgres_url) -> None:
    rng = np.random.default_rng(8)
    vecs = clustered(rng, 2000, DIM)

    def hnsw_indexes() -> list[str]:
        with psycopg.connect(libpq(postgres_url)) as conn:
            return [r[0] for r in conn.execute("SELECT indexdef FROM pg_indexes WHERE indexdef LIKE '%USING hnsw%'")]

    assert len(hnsw_indexes()) == 1
    with store.bulk_load(NS):
        assert hnsw_indexes() == []
        store.upsert(NS, records(vecs))
        assert store.query(NS, vecs[9], 1)[0].id == "c9"  # exact meanwhile
    (index,) = hnsw_indexes()
    assert "m='32'" in index and "ef_construction='128'" in index
    queries = clustered(np.random.default_rng(9), 20, DIM)
    exact = np.argsort(-(queries @ vecs.T), axis=1)[:, :10]
    found = sum(len({h.id for h in store.query(NS, q, 10)} & {f"c{i}" for i in t}) for q, t in zip(queries, exact, strict=True))
    assert found / 200 >= 0.9
    with pytest.raises(RuntimeError), store.bulk_load(NS):
        raise RuntimeError("the load failed half-way")
    assert len(hnsw_indexes()) == 1  # rebuilt anyway


def test_data_and_store_survive_a_server_restart(pgvector_store) -> None:
    from aifab.testing.postgres import PrivatePostgres, find_bindir

    bindir = find_bindir()
    assert bindir is not None  # the module-level fixtures already skipped without PostgreSQL
    server = PrivatePostgres(bindir)
    try:
        url = server.start()
        s = pgvector_store(url)
        s.create_namespace(NS, DIM)
        vecs = unit(np.random.default_rng(6), 20)
        s.upsert(NS, records(vecs))
        server._run("pg_ctl", "-D", str(server.data), "-l", str(server.root / "log"), "-m", "fast", "-w", "restart")
        assert s.count(NS) == 20  # the pooled connection died with the server: the store reconnects
        assert s.query(NS, vecs[3], 1)[0].id == "c3"
        s.close()
        s = pgvector_store(url)
        assert [h.id for h in s.lexical(NS, "number 11", 1)] == ["c11"]
        s.close()
    finally:
        server.stop()


def test_missing_rights_for_the_extension_is_a_clear_error(postgres_url, pgvector_store) -> None:
    with psycopg.connect(libpq(postgres_url), autocommit=True) as conn:
        conn.execute("DROP ROLE IF EXISTS aifab_plain")
        conn.execute("CREATE ROLE aifab_plain LOGIN")
    plain = postgres_url.replace("//aifab@", "//aifab_plain@")
    with pytest.raises(ConfigError, match="CREATE EXTENSION vector"):
        pgvector_store(plain)
