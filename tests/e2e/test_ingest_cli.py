"""``aifab ingest`` / ``aifab collections`` as a user runs them: real subprocesses, the real embedding model,
the embedded store on disk. Includes the kill -9 test: an interrupted ingest, run again, ends identical to
an uninterrupted one."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time

import numpy as np
import pytest

pytestmark = [pytest.mark.slow, pytest.mark.integration]

TOPICS = ["lists", "dictionaries", "sets", "tuples", "strings", "files", "classes", "modules", "threads", "sockets"]


def aifab(*args: str, env: dict[str, str] | None = None, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "aifab.cli.main", *args], capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, **(env or {})})


def make_docs(folder, n: int) -> None:
    folder.mkdir()
    for i in range(n):
        topic = TOPICS[i % len(TOPICS)]
        body = [f"# Working with {topic} ({i})\n"]
        for s in range(3):
            body.append(f"## Part {s}\n")
            body.append(
                f"This part explains how {topic} behave in case {i}.{s}. The interpreter creates {topic} on demand, "
                f"and the standard library offers helpers for them. Example {i * 10 + s} shows the details.\n"
            )
            body.append(f"```python\nvalue_{i}_{s} = make_{topic}({i}, {s})\nprint(value_{i}_{s})\n```\n")
        (folder / f"{topic}-{i:03}.md").write_text("\n".join(body))


def snapshot(data_dir):
    """Document rows and every stored chunk (id → text, metadata, vector) of collection 'docs'."""
    from aifab.stores.embedded import EmbeddedStore

    with sqlite3.connect(data_dir / "aifab.db") as db:
        rows = sorted(db.execute("SELECT source, content_hash, chunks, version FROM documents").fetchall())
    store = EmbeddedStore(data_dir / "vectors")
    try:
        (ns,) = store.namespaces()
        ids = set()
        for doc_id, in sqlite3.connect(data_dir / "aifab.db").execute("SELECT document_id FROM documents"):
            ids |= store.document_chunks(ns, doc_id)
        assert store.count(ns) == len(ids), "orphan chunks in the store"
        chunks = {r.id: r for r in store.fetch(ns, sorted(ids), vectors=True)}
    finally:
        store.close()
    return rows, chunks


def test_ingest_sync_and_collections_commands(tmp_path):
    docs, data = tmp_path / "docs", str(tmp_path / "data")
    make_docs(docs, 6)
    r = aifab("ingest", str(docs), "--collection", "docs", "--data-dir", data, "--json")
    assert r.returncode == 0, r.stderr
    first = json.loads(r.stdout)
    assert first["documents_added"] == 6 and first["chunks_embedded"] >= 6 and first["errors"] == []
    for key in ("documents_updated", "documents_unchanged", "documents_deleted"):
        assert first[key] == 0

    (docs / "contents.md").write_text("# Contents\n\n## Lists\n\n## Sets\n")  # a table of contents: nothing to index
    (docs / "lists-000.md").unlink()
    r = aifab("ingest", str(docs), "--collection", "docs", "--data-dir", data, "--json", "--prune")
    assert r.returncode == 0, r.stderr  # skipped is not failed
    again = json.loads(r.stdout)
    assert (again["documents_unchanged"], again["documents_deleted"], again["chunks_embedded"]) == (5, 1, 0)
    assert again["errors"] == [] and [s["reason"] for s in again["skipped"]] == [
        "no text to index after loading (only headings)"]

    r = aifab("ingest", str(docs), "--collection", "docs", "--data-dir", data)  # the human summary
    assert r.returncode == 0 and "documents unchanged" in r.stdout and "skipped: nothing to index" in r.stdout
    assert "not ingested" not in r.stdout and r.stderr == ""

    (docs / "image.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 8)  # a real error
    r = aifab("ingest", str(docs), "--collection", "docs", "--data-dir", data)
    assert r.returncode == 2 and "not ingested" in r.stdout and "binary" in r.stdout
    (docs / "image.png").unlink()

    listed = json.loads(aifab("collections", "list", "--data-dir", data, "--json").stdout)
    assert [(c["name"], c["live_version"], c["documents"]) for c in listed] == [("docs", 1, 5)]
    shown = json.loads(aifab("collections", "show", "docs", "--data-dir", data, "--json").stdout)
    assert len(shown["documents_list"]) == 5 and shown["chunks"] == sum(d["chunks"] for d in shown["documents_list"])

    r = aifab("ingest", str(docs), "--collection", "docs", "--data-dir", data, "--json",
              env={"AIFAB_CORPUS__CHUNK_TOKENS": "128"})
    assert json.loads(r.stdout)["version"] == 2
    versions = json.loads(aifab("collections", "versions", "docs", "--data-dir", data, "--json").stdout)
    assert [(v["version"], v["live"]) for v in versions] == [(1, True), (2, False)]
    r = aifab("collections", "promote", "docs", "2", "--data-dir", data)
    assert r.returncode == 0 and "version 2 is live" in r.stdout
    r = aifab("collections", "promote", "docs", "7", "--data-dir", data)
    assert r.returncode == 1 and r.stderr.startswith("aifab: error:") and "no version 7" in r.stderr
    assert aifab("collections", "delete", "docs", "--data-dir", data).returncode == 0
    assert json.loads(aifab("collections", "list", "--data-dir", data, "--json").stdout) == []


def test_kill_9_then_rerun_equals_an_uninterrupted_ingest(tmp_path):
    docs = tmp_path / "docs"
    make_docs(docs, 40)
    env = {"AIFAB_CORPUS__EMBED_BATCH": "4"}  # small batches: documents are committed one after another
    killed = tmp_path / "killed"
    cmd = [sys.executable, "-m", "aifab.cli.main", "ingest", str(docs), "--collection", "docs",
           "--data-dir", str(killed), "--json"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env={**os.environ, **env})
    deadline, done = time.monotonic() + 300, 0
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            with sqlite3.connect(killed / "aifab.db", timeout=1) as db:
                done = db.execute("SELECT count(*) FROM documents").fetchone()[0]
        except sqlite3.OperationalError:
            done = 0  # not created yet
        if done >= 8:
            break
        time.sleep(0.05)
    assert proc.poll() is None, f"ingest ended before it could be killed: {proc.stderr.read()!r}"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert 8 <= done < 40

    r = aifab(*cmd[3:], env=env)
    assert r.returncode == 0, r.stderr
    resumed = json.loads(r.stdout)
    assert resumed["documents_unchanged"] >= 8 and resumed["errors"] == []
    r = aifab("ingest", str(docs), "--collection", "docs", "--data-dir", str(tmp_path / "clean"), "--json", env=env)
    assert r.returncode == 0, r.stderr

    rows, chunks = snapshot(killed)
    clean_rows, clean_chunks = snapshot(tmp_path / "clean")
    assert rows == clean_rows and len(rows) == 40
    assert chunks.keys() == clean_chunks.keys()
    for cid, rec in chunks.items():
        other = clean_chunks[cid]
        assert (rec.text, rec.metadata, rec.acl) == (other.text, other.metadata, other.acl)
        assert np.allclose(rec.vector, other.vector, atol=1e-4)
