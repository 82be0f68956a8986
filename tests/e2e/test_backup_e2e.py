"""``aifab backup`` beside a running ``aifab up``: the server makes the backup while clients keep querying (not
one query fails), and ``aifab up`` on the restored copy serves the same collections, keys and answers."""

from __future__ import annotations

import json
import threading

import httpx
import pytest

from aifab.testing.cli import run_aifab
from aifab.testing.server import RemoteAifabServer

pytestmark = [pytest.mark.integration, pytest.mark.slow]

QUERIES = ["Which cities does the Danube flow through?", "highest peak of the Alps", "Rhine Basel Cologne",
           "longest river in Europe"]
CLIENTS = 4


def _aifab(data, *args: str):
    r = run_aifab(*args, "--data-dir", str(data), timeout=300)
    assert r.returncode == 0, r.stderr
    return r


def _retrieve(http: httpx.Client, url: str, secret: str, query: str) -> httpx.Response:
    return http.post(f"{url}/v1/retrieve", json={"collection": "handbook", "query": query, "top_k": 3},
                     headers={"authorization": f"Bearer {secret}"})


def _ids(r: httpx.Response) -> list[str]:
    assert r.status_code == 200, r.text
    return [p["id"] for p in r.json()["data"]]


def test_a_backup_through_the_server_fails_no_query_and_its_restore_serves_the_same(tmp_path):
    data, docs = tmp_path / "data", tmp_path / "docs"
    docs.mkdir()
    for i in range(12):
        (docs / f"note{i}.md").write_text(f"# Note {i}\n\nThe Danube flows through Vienna and Budapest ({i}). The "
                                          f"Rhine flows through Basel and Cologne. Mont Blanc is the highest peak "
                                          f"of the Alps.\n\nSection {i} is about rivers and mountains.\n")
    with RemoteAifabServer(data) as server:
        _aifab(data, "ingest", str(docs), "--collection", "handbook", "--json")
        secret = json.loads(_aifab(data, "keys", "create", "--name", "reader", "--json").stdout)["key"]
        with httpx.Client(timeout=60) as http:
            answers = {q: _ids(_retrieve(http, server.url, secret, q)) for q in QUERIES}
        collections = _aifab(data, "collections", "list", "--json").stdout
        keys = _aifab(data, "keys", "list", "--all", "--json").stdout

        stop, failures, done = threading.Event(), [], [0] * CLIENTS
        started = [threading.Event() for _ in range(CLIENTS)]

        def client(n: int) -> None:
            with httpx.Client(timeout=60) as http:
                while not stop.is_set():
                    query = QUERIES[(n + done[n]) % len(QUERIES)]
                    try:
                        r = _retrieve(http, server.url, secret, query)
                        if r.status_code != 200 or _ids(r) != answers[query]:
                            failures.append(f"{r.status_code}: {r.text[:200]}")
                    except httpx.HTTPError as exc:
                        failures.append(repr(exc))
                    done[n] += 1
                    started[n].set()

        threads = [threading.Thread(target=client, args=(n,)) for n in range(CLIENTS)]
        for t in threads:
            t.start()
        try:
            assert all(e.wait(120) for e in started)  # every client is querying before the backup starts
            before = sum(done)
            made = json.loads(_aifab(data, "backup", str(tmp_path / "b.tar.gz"), "--json").stdout)
            during = sum(done) - before
        finally:
            stop.set()
            for t in threads:
                t.join()
        assert failures == [] and during > 0
        assert made["path"] == str(tmp_path / "b.tar.gz") and made["counts"]["collections"] == 1
        assert made["counts"]["keys"] == 1 and made["counts"]["chunks"] >= 12

    restored = tmp_path / "restored"
    r = run_aifab("restore", str(tmp_path / "b.tar.gz"), "--data-dir", str(restored))
    assert r.returncode == 0 and "1 collections" in r.stdout, r.stderr
    with RemoteAifabServer(restored) as server:
        with httpx.Client(timeout=60) as http:
            assert {q: _ids(_retrieve(http, server.url, secret, q)) for q in QUERIES} == answers
            assert http.get(f"{server.url}/v1/models").status_code == 401  # the keys came back: one is needed
        assert _aifab(restored, "collections", "list", "--json").stdout == collections
        assert _aifab(restored, "keys", "list", "--all", "--json").stdout == keys
