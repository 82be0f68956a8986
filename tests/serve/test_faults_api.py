"""The server under faults: a disk that fills up mid-upload, a server killed with jobs in flight, junk and
server paths in fine-tuning files. Nothing wedges: each fault is a clear error, and the next request works."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime

import httpx
import pytest

from aifab.config import load_settings
from aifab.corpus.jobs import Jobs
from aifab.corpus.service import Corpus
from aifab.corpus.uploads import save_upload
from aifab.finetune.service import FinetuneService
from aifab.gateway.front import Gateway
from aifab.gateway.keys import KeyStore
from aifab.registry import Registry
from aifab.serve import ModelPool, create_app
from aifab.state import Database
from aifab.testing import DiskFull, FakeEmbedder, FakeEngine, FillingStore, MemoryStore

MD = "# Guide {i}\n\n## Install\n\nRun installer number {i} and follow the prompts.\n"
SFT = b"\n".join(json.dumps({"messages": [{"role": "user", "content": f"q{i}"},
                                          {"role": "assistant", "content": f"a{i}"}]}).encode() for i in range(3))


@pytest.fixture
def settings(tmp_path):
    return load_settings(data_dir=tmp_path / "data", corpus={"chunk_tokens": 48, "chunk_overlap": 8,
                                                             "max_file_bytes": 10_000})


@pytest.fixture
def db(settings):
    database = Database(settings.effective_database_url)
    database.upgrade()
    yield database
    database.close()


@pytest.fixture
async def full(settings, db, tmp_path):
    """A server whose disk can fill up: the state database, fsync and the vector store fail together."""
    with DiskFull(db) as disk:
        store = FillingStore(MemoryStore(), disk)
        corpus = Corpus(settings, Registry(db, tmp_path / "models"), store, embedder=FakeEmbedder())  # type: ignore[arg-type]
        engine = FakeEngine()
        app = create_app(ModelPool({"fake": engine}), corpus=corpus, finetune=FinetuneService(db, settings.data_dir))
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as c:
            yield c, disk, store
        app.state.ingest_worker.shutdown(wait=True)
        engine.close()


def files(n: int = 3) -> list:
    return [("file", (f"doc{i}.md", MD.format(i=i).encode(), "text/markdown")) for i in range(n)]


async def test_a_disk_full_mid_upload_is_507_and_the_next_upload_works(full, settings, db):
    api, disk, store = full
    store.arm()  # the disk fills up as the first vectors are written
    r = await api.post("/v1/collections/kb/documents?wait=true", files=files())
    assert r.status_code == 507, r.text
    assert r.json()["error"]["code"] == "insufficient_storage" and "disk space" in r.json()["error"]["message"]
    (job,) = (await api.get("/v1/collections/kb/jobs")).json()["data"]
    assert job["status"] == "failed" and "out of disk space" in job["summary"]["error"]
    uploads = settings.data_dir / "uploads" / "kb"
    assert list(uploads.iterdir()) == []  # no temp file, and no upload that no document came from

    disk.free()
    r = await api.post("/v1/collections/kb/documents?wait=true", files=files())
    assert r.status_code == 200 and r.json()["status"] == "succeeded", r.text
    assert len((await api.get("/v1/collections/kb/documents")).json()["data"]) == 3
    assert Jobs(db).get(job["id"])["status"] == "failed"  # written to the database once there was space


async def test_creating_a_collection_or_a_file_on_a_full_disk_is_507(full, settings):
    api, disk, _ = full
    disk.fill()
    r = await api.post("/v1/collections", json={"name": "kb"})
    assert r.status_code == 507 and r.json()["error"]["code"] == "insufficient_storage", r.text
    r = await api.post("/v1/files", files={"file": ("train.jsonl", SFT)}, data={"purpose": "fine-tune"})
    assert r.status_code == 507 and r.json()["error"]["code"] == "insufficient_storage", r.text
    assert list((settings.data_dir / "files").iterdir()) == []  # no half-written file
    r = await api.post("/v1/collections/kb/documents", files=files(1))
    assert r.status_code == 507, r.text

    disk.free()
    assert (await api.post("/v1/collections", json={"name": "kb"})).status_code == 201
    r = await api.post("/v1/files", files={"file": ("train.jsonl", SFT)}, data={"purpose": "fine-tune"})
    assert r.status_code == 200, r.text


async def test_jobs_of_a_dead_server_are_resumed_or_cleaned_up_at_start(settings, db, tmp_path):
    registry, store, embedder = Registry(db, tmp_path / "models"), MemoryStore(), FakeEmbedder()
    dead = Corpus(settings, registry, store, embedder=embedder)
    dead.jobs.host = "a-host-that-is-gone"  # on another host, with a lease that ran out long ago
    dead.jobs.clock = lambda: datetime(2026, 1, 1, tzinfo=UTC)
    upload = dead.jobs.queue("kb", request={"kind": "upload", "files": ["guide.md"], "acl": ["eng"], "errors": []})
    save_upload(dead.uploads_dir, "kb", "guide.md", MD.format(i=1).encode())  # saved; the server died here
    cli = dead.jobs.start("notes")

    corpus = Corpus(settings, registry, store, embedder=embedder)  # the server starts again
    engine = FakeEngine()
    app = create_app(ModelPool({"fake": engine}), corpus=corpus)
    try:
        async with app.router.lifespan_context(app), httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app), base_url="http://test") as api:
            await asyncio.wrap_future(app.state.ingest_worker.submit(lambda: None))  # the worker has caught up
            old = (await api.get(f"/v1/ingest/jobs/{upload}")).json()
            assert old["status"] == "interrupted" and old["recovery"]["action"] == "resumed", old
            new = (await api.get(f"/v1/ingest/jobs/{old['recovery']['job']}")).json()
            assert new["status"] == "succeeded" and new["summary"]["documents_added"] == 1, new
            (doc,) = (await api.get("/v1/collections/kb/documents")).json()["data"]
            assert doc["source"] == "upload:guide.md" and doc["acl"] == ["eng"]
            gone = (await api.get(f"/v1/ingest/jobs/{cli}")).json()
            assert gone["status"] == "interrupted" and gone["recovery"]["action"] == "cleaned_up", gone
    finally:
        engine.close()


@pytest.fixture
async def tenant(settings, db):
    keys = KeyStore(db)
    secrets = {"user": keys.create("user")[1], "admin": keys.create("admin", admin=True)[1]}
    engine = FakeEngine()
    app = Gateway(create_app(ModelPool({"fake": engine}), finetune=FinetuneService(db, settings.data_dir)),
                  settings, keys=keys)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as c:
        yield c, lambda who: {"Authorization": f"Bearer {secrets[who]}"}
    engine.close()
    keys.close()


async def test_junk_is_refused_at_upload_and_errors_show_a_key_no_server_path(tenant, settings):
    api, as_ = tenant
    junk = b"\x00\xff junk that is not JSON\n" * 1000
    r = await api.post("/v1/files", files={"file": ("x.jsonl", junk)}, data={"purpose": "fine-tune"},
                       headers=as_("user"))
    assert r.status_code == 400 and "line 1" in r.json()["error"]["message"], r.text

    r = await api.post("/v1/files", files={"file": ("train.jsonl", SFT)}, data={"purpose": "fine-tune"},
                       headers=as_("user"))
    file_id = r.json()["id"]
    job = {"model": "base", "training_file": file_id, "method": {"type": "dpo"}}  # an sft file for a dpo job
    root = str(settings.data_dir)
    r = await api.post("/v1/fine_tuning/jobs", json=job, headers=as_("user"))
    assert r.status_code == 400 and "malformed" in r.json()["error"]["message"], r.text
    assert root not in r.text and "/files/" not in r.text
    r = await api.post("/v1/fine_tuning/jobs", json=job, headers=as_("admin"))
    assert r.status_code == 400 and root in r.json()["error"]["message"]  # the operator sees where
