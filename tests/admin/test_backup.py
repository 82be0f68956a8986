"""Backup and restore of a data directory: what comes back is the same factory (collections and their chunks,
keys that still authenticate, models, datasets, audit history, uploads); a corrupt, partial or newer backup,
and a target that is not empty, are refused with nothing half-restored; the CLI's lines and exit codes."""

from __future__ import annotations

import hashlib
import io
import json
import re
import sqlite3
import tarfile
import threading
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from aifab.admin.backup import make_backup
from aifab.admin.restore import restore_backup
from aifab.config import Settings, load_settings
from aifab.corpus.service import Corpus
from aifab.corpus.uploads import save_upload
from aifab.errors import ConfigError, Conflict, InvalidRequest, NotFound
from aifab.finetune.datasets import DatasetStore
from aifab.gateway.keys import KeyStore
from aifab.rag.retrieval import Retriever
from aifab.registry import ModelPackage, Registry
from aifab.state import Database
from aifab.state.db import schema_revisions
from aifab.state.tables import ApiKeyRow, AuditRow
from aifab.stores.embedded import EmbeddedStore
from aifab.testing import FakeEmbedder
from aifab.testing.cli import run_aifab

QUESTION = "Which cities does the Danube flow through?"
DOCS = {
    "rivers.md": "# Rivers\n\nThe Danube flows through Vienna and Budapest. It is the second longest river in "
                 "Europe.\n\nThe Rhine flows through Basel and Cologne.\n",
    "alps.md": "# Alps\n\nThe Alps stretch across eight countries. Mont Blanc is the highest peak.\n",
}


class Factory:
    """A data directory's state opened in this process, as a server holds it."""

    def __init__(self, data: Path, *, revision: str = "head") -> None:
        self.settings: Settings = load_settings(data_dir=data, corpus={"chunk_tokens": 48, "chunk_overlap": 8})
        self.db = Database(self.settings.effective_database_url)
        self.db.upgrade(revision)
        self.registry = Registry(self.db, data / "models")
        self.store = EmbeddedStore(data / "vectors")
        self.embedder = FakeEmbedder()
        self.corpus = Corpus(self.settings, self.registry, self.store, embedder=self.embedder)

    def close(self) -> None:
        self.store.close()
        self.db.close()


@contextmanager
def opened(data: Path, **kw: Any):
    f = Factory(data, **kw)
    try:
        yield f
    finally:
        f.close()


def build(f: Factory, tmp: Path) -> str:
    """Two collections (files and an upload), keys (one revoked), audit rows, a dataset, a model whose files
    are in the data directory and one registered by reference. Returns the secret of the key 'app'."""
    docs = tmp / "docs"
    docs.mkdir()
    for name, text in DOCS.items():
        (docs / name).write_text(text)
    f.corpus.ingest_paths("handbook", [docs])
    upload = save_upload(f.corpus.uploads_dir, "faq", "danube.md", b"# FAQ\n\nThe Danube ends in the Black Sea.\n")
    f.corpus.ingest("faq", [upload])
    keys = KeyStore(f.db)
    keys.create("ops", admin=True)
    secret = keys.create("app", collections=["handbook"], rpm=60)[1]
    keys.create("old")
    keys.revoke("old")
    with f.db.session() as s:
        for i in range(3):
            s.add(AuditRow(id=f"chatcmpl-{i}", ts=datetime(2026, 11, 1, 12, i, tzinfo=UTC), key_name="app",
                           endpoint="chat.completions", model="echo", status=200, latency_ms=12.5, verdicts=[]))
    DatasetStore(f.db, f.settings.data_dir / "datasets").save(
        "support", kind="sft", counts={}, source={"kind": "test"}, min_examples=2,
        examples=[{"messages": [{"role": "user", "content": f"q{i}"}, {"role": "assistant", "content": f"a{i}"}]}
                  for i in range(12)])
    weights = f.settings.data_dir / "models" / "mine" / "mine.gguf"
    weights.parent.mkdir(parents=True)
    weights.write_bytes(b"GGUF" + bytes(range(256)) * 8)
    f.registry.add(ModelPackage(name="mine", kind="chat", format="gguf", path=str(weights),
                                sha256=hashlib.sha256(weights.read_bytes()).hexdigest(), lineage={"base": "x"}))
    f.registry.add(ModelPackage(name="far", kind="chat", format="gguf", path=str(tmp / "far.gguf"), sha256="b" * 64))
    return secret


def state_of(f: Factory) -> dict[str, Any]:
    """Everything a user would notice, with paths under the data directory made relative to it."""
    data = f.settings.data_dir

    def rel(path: str) -> str:
        p = Path(path)
        return p.relative_to(data).as_posix() if data in p.parents else path

    collections = {}
    for info in f.corpus.collections.list():
        versions = [(v.version, v.namespace, f.store.count(v.namespace)) for v in info.versions]
        docs = sorted((d.document_id, d.source, d.chunks, d.content_hash) for d in f.corpus.collections.documents(info.name))
        live = f.corpus.collections.version(info.name).namespace
        hits = Retriever(f.store, lambda q: f.embedder.embed([q])[0]).search(live, QUESTION, f.settings.rag, top_k=3)
        collections[info.name] = {"live": info.live_version, "versions": versions, "documents": docs,
                                  "retrieved": [(p.id, round(p.score, 6), p.text) for p in hits]}
    with f.db.session() as s:
        keys = [(k.name, k.prefix, k.secret_hash, k.collections, k.rpm, k.admin, k.revoked_at is not None)
                for k in s.scalars(select(ApiKeyRow).order_by(ApiKeyRow.name))]
        audit = [(a.id, a.ts.replace(tzinfo=None), a.key_name, a.model, a.status)
                 for a in s.scalars(select(AuditRow).order_by(AuditRow.id))]
    models = [(p.name, rel(p.path), p.sha256, p.lineage) for p in f.registry.list()]
    datasets = DatasetStore(f.db, data / "datasets")
    return {"collections": collections, "keys": keys, "audit": audit, "models": models,
            "datasets": [(v.ref, v.sha256, rel(str(v.path)), list(v.examples("train"))) for v in datasets.list()],
            "uploads": sorted(p.relative_to(data).as_posix() for p in (data / "uploads").rglob("*") if p.is_file())}


@pytest.fixture
def original(tmp_path):
    """A built data directory, held open (as a server holds it), with its state and the key 'app''s secret."""
    with opened(tmp_path / "data") as f:
        secret = build(f, tmp_path)
        yield f, state_of(f), secret


@pytest.mark.parametrize("name", ["backup.tar.gz", "backup.tar", "backup-dir"])
def test_a_restored_data_directory_is_the_same_factory(original, tmp_path, name):
    f, before, secret = original
    left_out = ["uploads/faq/.danube.md.x1.partial", "datasets/support/.tmp-1/train.jsonl", "runs/r1/ckpt.pt",
                "server.token"]  # writes in progress, training runs, the running server's own
    for rel in left_out:
        (f.settings.data_dir / rel).parent.mkdir(parents=True, exist_ok=True)
        (f.settings.data_dir / rel).write_text("x")
    made = make_backup(f.settings, f.store, tmp_path / name)
    assert made["counts"] == {"collections": 2, "keys": 3, "models": 2, "datasets": 1, "audit_rows": 3,
                              "chunks": sum(n for c in before["collections"].values() for _, _, n in c["versions"])}
    assert made["schema_revision"] == schema_revisions()[-1] and made["models_outside"] == ["far"]

    done = restore_backup(tmp_path / name, tmp_path / "restored")
    assert done["data_dir"] == str(tmp_path / "restored") and done["migrated_from"] is None
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []  # no work folder left
    assert not [rel for rel in left_out if (tmp_path / "restored" / rel).exists()]
    with opened(tmp_path / "restored") as copy:
        after = state_of(copy)
        assert after == before
        assert all(c["retrieved"] for c in after["collections"].values())
        app = KeyStore(copy.db).authenticate(secret)
        assert app is not None and app.name == "app" and app.collections == ("handbook",)
        mine = copy.registry.get("mine")
        assert Path(mine.path).read_bytes().startswith(b"GGUF")  # the package's files, at their new place
        assert copy.store.index_info(before["collections"]["handbook"]["versions"][0][1])["source"] == "loaded"


def test_a_backup_taken_while_the_store_is_written_is_one_instant(original, tmp_path):
    """An ingest that runs during the pause waits for it: the copy has the collection as it was, whole."""
    f, before, _ = original
    extra = tmp_path / "more"
    extra.mkdir()
    (extra / "late.md").write_text("# Late\n\nWritten while the backup ran.\n")
    ingest = threading.Thread(target=f.corpus.ingest_paths, args=("handbook", [extra]))
    real_copy = f.store.snapshot

    def snapshot(dest: Path, *, paused: Any = None) -> dict[str, int]:
        def pause() -> None:
            paused()
            ingest.start()  # its upsert now waits for the store's writer lock
        return real_copy(dest, paused=pause)

    f.store.snapshot = snapshot  # type: ignore[method-assign]
    make_backup(f.settings, f.store, tmp_path / "b.tar.gz")
    ingest.join()
    restore_backup(tmp_path / "b.tar.gz", tmp_path / "restored")
    with opened(tmp_path / "restored") as copy:
        assert state_of(copy)["collections"] == before["collections"]
    assert len(f.corpus.collections.documents("handbook")) == len(DOCS) + 1  # the ingest went on after it


def _dir_backup(f: Factory, tmp_path: Path) -> Path:
    path = tmp_path / "bk"
    make_backup(f.settings, f.store, path)
    return path


def _rehash(backup: Path, name: str) -> None:
    manifest = json.loads((backup / "manifest.json").read_text())
    manifest["files"][name]["sha256"] = hashlib.sha256((backup / name).read_bytes()).hexdigest()
    (backup / "manifest.json").write_text(json.dumps(manifest))


def test_corrupt_partial_or_foreign_backups_are_refused_and_nothing_is_restored(original, tmp_path):
    f, _, _ = original
    backup = _dir_backup(f, tmp_path)
    target = tmp_path / "restored"

    def refused(source: Path, message: str) -> None:
        with pytest.raises(InvalidRequest) as exc:
            restore_backup(source, target)
        assert message in exc.value.message, exc.value.message
        assert not target.exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".")]

    weights = backup / "models" / "mine" / "mine.gguf"
    good = weights.read_bytes()
    weights.write_bytes(good[:-1] + b"\x00")
    refused(backup, "corrupt: models/mine/mine.gguf does not match its sha256")
    weights.unlink()
    refused(backup, "incomplete: models/mine/mine.gguf is missing")
    weights.write_bytes(good)
    (backup / "stray.txt").write_text("x")
    refused(backup, "a file its manifest does not list: stray.txt")
    (backup / "stray.txt").unlink()

    with tarfile.open(tmp_path / "whole.tar.gz", "w:gz") as tar:
        tar.add(backup, arcname=".")
    cut = tmp_path / "cut.tar.gz"
    cut.write_bytes((tmp_path / "whole.tar.gz").read_bytes()[:-2000])
    refused(cut, "is not a readable backup archive")
    (tmp_path / "notes.tar.gz").write_bytes(b"not gzip")
    refused(tmp_path / "notes.tar.gz", "is not a readable backup archive")
    (tmp_path / "empty").mkdir()
    refused(tmp_path / "empty", "not an aifab backup: it has no manifest.json")
    for name, kind in (("../escape.txt", tarfile.REGTYPE), ("link", tarfile.SYMTYPE)):
        with tarfile.open(tmp_path / "hostile.tar.gz", "w:gz") as tar:
            tar.add(backup / "manifest.json", arcname="manifest.json")
            member = tarfile.TarInfo(name)
            member.type, member.linkname = kind, "/etc/passwd"
            tar.addfile(member, io.BytesIO(b""))
        refused(tmp_path / "hostile.tar.gz", f"the archive holds {name!r}, which a backup never does")
        assert not (tmp_path / "escape.txt").exists()

    with sqlite3.connect(backup / "aifab.db") as db:
        db.execute("UPDATE alembic_version SET version_num = '0099'")
    db.close()
    _rehash(backup, "aifab.db")
    refused(backup, "schema revision '0099' is newer than this aifab's")


def test_only_an_empty_or_new_directory_is_restored_into(original, tmp_path):
    f, _, _ = original
    backup = _dir_backup(f, tmp_path)
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "keep.txt").write_text("mine")
    with pytest.raises(Conflict, match="is not empty: restore into a new or empty directory"):
        restore_backup(backup, tmp_path / "busy")
    assert [p.name for p in (tmp_path / "busy").iterdir()] == ["keep.txt"]
    (tmp_path / "empty").mkdir()
    assert restore_backup(backup, tmp_path / "empty")["counts"]["collections"] == 2
    with pytest.raises(Conflict, match="exists already"):
        make_backup(f.settings, f.store, backup)
    with pytest.raises(InvalidRequest, match="inside the data directory"):
        make_backup(f.settings, f.store, f.settings.data_dir / "b.tar.gz")


def test_a_backup_of_an_older_aifab_is_migrated_on_restore(tmp_path):
    older = schema_revisions()[-2]
    with opened(tmp_path / "data", revision=older) as f:
        f.corpus.ingest("faq", [save_upload(f.corpus.uploads_dir, "faq", "a.md", b"# A\n\nSome text here.\n")])
        with f.db.session() as s:
            s.add(AuditRow(id="r1", ts=datetime.now(UTC), endpoint="chat.completions", model="m", status=200,
                           latency_ms=1.0, verdicts=[]))
        make_backup(f.settings, f.store, tmp_path / "old.tar.gz")
    done = restore_backup(tmp_path / "old.tar.gz", tmp_path / "restored")
    assert (done["schema_revision"], done["migrated_from"]) == (older, older)
    with sqlite3.connect(tmp_path / "restored" / "aifab.db") as db:
        assert db.execute("SELECT version_num FROM alembic_version").fetchone()[0] == schema_revisions()[-1]
        assert db.execute("SELECT count(*) FROM audit_log").fetchone()[0] == 1
    db.close()


def test_state_in_postgresql_or_no_state_at_all_is_refused(tmp_path):
    settings = load_settings(data_dir=tmp_path, database_url="postgresql://u@localhost/aifab")
    with pytest.raises(ConfigError, match="pg_dump"):
        make_backup(settings, None, tmp_path / "b.tar.gz")  # type: ignore[arg-type]
    with pytest.raises(NotFound, match="no state database at .*: nothing to back up"):
        make_backup(load_settings(data_dir=tmp_path), None, tmp_path / "b.tar.gz")  # type: ignore[arg-type]
    assert not (tmp_path / "b.tar.gz").exists()


# --- the CLI -----------------------------------------------------------------------------------------------

def test_cli_backup_and_restore(original, tmp_path):
    f, before, _ = original
    f.close()  # the CLI opens the data directory itself: no server holds it
    data = f.settings.data_dir
    r = run_aifab("backup", str(tmp_path / "b.tar.gz"), "--data-dir", str(data))
    assert r.returncode == 0, r.stderr
    chunks = sum(n for c in before["collections"].values() for _, _, n in c["versions"])
    assert re.fullmatch(rf"backed up {re.escape(str(data))} to {re.escape(str(tmp_path / 'b.tar.gz'))} "
                        rf"\(\d+\.\d KB\): 2 collections, {chunks} chunks, 3 keys, 2 models, 1 dataset versions, "
                        r"3 audit rows\n", r.stdout), r.stdout
    assert r.stderr == ("aifab: warning: not in the backup: the files of far, registered from outside the data "
                        "directory (the backup keeps their registration)\n")

    r = run_aifab("restore", str(tmp_path / "b.tar.gz"), "--data-dir", str(tmp_path / "new"))
    assert r.returncode == 0 and r.stdout.startswith(f"restored {tmp_path / 'b.tar.gz'} (made ") and (
        f"into {tmp_path / 'new'}: 2 collections," in r.stdout), r.stderr
    with opened(tmp_path / "new") as copy:
        assert state_of(copy) == before

    for args, message in [
        (("restore", str(tmp_path / "b.tar.gz"), "--data-dir", str(tmp_path / "new")), "is not empty"),
        (("backup", str(tmp_path / "b.tar.gz"), "--data-dir", str(data)), "exists already"),
        (("restore", str(tmp_path / "nope.tar.gz"), "--data-dir", str(tmp_path / "x")), "no backup at"),
    ]:
        r = run_aifab(*args)
        assert (r.returncode, r.stdout, r.stderr.count("\n")) == (1, "", 1), (args, r.stderr)
        assert r.stderr.startswith("aifab: error: ") and message in r.stderr
    r = run_aifab("backup", str(tmp_path / "pg.tar.gz"), "--data-dir", str(data),
                  env={"AIFAB_DATABASE_URL": "postgresql://u@localhost/aifab"})
    assert (r.returncode, r.stderr.count("\n")) == (1, 1) and "pg_dump" in r.stderr
