"""``/v1/collections``: the corpus over HTTP (fake embedder, in-memory store, real loaders and chunker)."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from aifab.config import load_settings
from aifab.corpus.service import Corpus
from aifab.registry import Registry
from aifab.serve import ModelPool, create_app
from aifab.state import Database
from aifab.testing import FakeEmbedder, FakeEngine, MemoryStore

MD = b"# Guide\n\n## Install\n\nRun the installer and follow the prompts.\n\n## Use\n\nCall the API with your key.\n"


@pytest.fixture
async def api(tmp_path):
    settings = load_settings(data_dir=tmp_path / "data", corpus={"chunk_tokens": 48, "chunk_overlap": 8,
                                                                 "max_file_bytes": 10_000})
    db = Database(settings.effective_database_url)
    db.upgrade()
    corpus = Corpus(settings, Registry(db, tmp_path / "models"), MemoryStore(), embedder=FakeEmbedder())
    engine = FakeEngine()
    app = create_app(ModelPool({"fake": engine}), max_body_bytes=4096, corpus=corpus)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as c:
        c.corpus = corpus  # type: ignore[attr-defined]
        yield c
    app.state.ingest_worker.shutdown(wait=True)
    engine.close()
    db.close()


async def test_create_list_get_delete_collection(api):
    r = await api.post("/v1/collections", json={"name": "kb"})
    assert r.status_code == 201 and r.json()["id"] == "kb" and r.json()["live_version"] is None
    assert (await api.post("/v1/collections", json={"name": "kb"})).status_code == 409
    bad = await api.post("/v1/collections", json={"name": "../x"})
    assert bad.status_code == 400 and "invalid collection name" in bad.json()["error"]["message"]
    assert [c["id"] for c in (await api.get("/v1/collections")).json()["data"]] == ["kb"]
    assert (await api.delete("/v1/collections/kb")).json()["deleted"] is True
    missing = await api.get("/v1/collections/kb")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"


async def test_upload_wait_then_delete_document(api):
    files = [("file", ("guide.md", MD, "text/markdown")), ("file", ("notes.txt", b"Plain notes about zebras.", "text/plain"))]
    r = await api.post("/v1/collections/kb/documents?wait=true", files=files, data={"acl": ["eng"]})
    job = r.json()
    assert r.status_code == 200 and job["status"] == "succeeded", job
    assert job["summary"]["documents_added"] == 2 and job["summary"]["chunks_embedded"] >= 2
    docs = (await api.get("/v1/collections/kb/documents")).json()["data"]
    assert sorted(d["source"] for d in docs) == ["upload:guide.md", "upload:notes.txt"]
    assert all(d["acl"] == ["eng"] for d in docs)
    guide = next(d for d in docs if d["source"] == "upload:guide.md")
    r = await api.delete(f"/v1/collections/kb/documents/{guide['id']}")
    assert r.json() == {"object": "document", "id": guide["id"], "deleted": True, "chunks_deleted": guide["chunks"]}
    assert len((await api.get("/v1/collections/kb/documents")).json()["data"]) == 1
    assert not (api.corpus.uploads_dir / "kb" / "guide.md").exists()
    assert (await api.delete(f"/v1/collections/kb/documents/{guide['id']}")).status_code == 404


async def test_upload_reports_bad_files_and_ingests_the_rest(api):
    files = [
        ("file", ("../../etc/passwd", b"root:x:0:0", "text/plain")),
        ("file", ("empty.txt", b"", "text/plain")),
        ("file", ("blob.bin", b"\x00\x01\x02" * 100, "application/octet-stream")),
        ("file", ("big.txt", b"word " * 3000, "text/plain")),
        ("file", ("good.md", MD, "text/markdown")),
    ]
    job = (await api.post("/v1/collections/kb/documents?wait=true", files=files)).json()
    reasons = {e["path"]: e["reason"] for e in job["summary"]["errors"]}
    assert set(reasons) == {"../../etc/passwd", "upload:blob.bin", "upload:big.txt"}
    assert job["summary"]["skipped"] == [{"path": "upload:empty.txt", "reason": "empty file"}]  # not an error
    assert "unsafe file name" in reasons["../../etc/passwd"]
    assert job["status"] == "partial" and job["summary"]["documents_added"] == 1
    assert not list(api.corpus.uploads_dir.parent.rglob("passwd"))


async def test_background_job_progress(api):
    r = await api.post("/v1/collections/kb/documents", files=[("file", ("guide.md", MD, "text/markdown"))])
    assert r.status_code == 202 and r.json()["object"] == "ingest.job"
    job_id = r.json()["id"]
    for _ in range(100):
        job = (await api.get(f"/v1/ingest/jobs/{job_id}")).json()
        if job["status"] not in ("queued", "running"):
            break
        await asyncio.sleep(0.05)
    assert job["status"] == "succeeded" and job["files_done"] == job["files_total"] == 1
    assert [j["id"] for j in (await api.get("/v1/collections/kb/jobs")).json()["data"]] == [job_id]
    assert (await api.get("/v1/ingest/jobs/nope")).status_code == 404


async def test_upload_without_file_and_too_large(api):
    r = await api.post("/v1/collections/kb/documents", data={"acl": "x"})
    assert r.status_code == 400 and r.json()["error"]["param"]
    big = b"x" * 50_000  # over 4 x max_file_bytes: refused before it is read
    r = await api.post("/v1/collections/kb/documents", files=[("file", ("a.txt", big, "text/plain"))])
    assert r.status_code == 413 and r.json()["error"]["code"] == "payload_too_large"
