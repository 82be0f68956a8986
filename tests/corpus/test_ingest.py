"""The ingest pipeline and sync: hashes, reuse, prune, ACL, versions, bad files (fake embedder, memory store)."""

from __future__ import annotations

import os

import pytest

from aifab.stores.protocol import Filter
from aifab.testing import FakeEmbedder, MemoryStore


def stored(corpus, collection="c"):
    v = corpus.collections.version(collection)
    ids = set()
    for d in corpus.collections.documents(collection):
        chunk_ids = corpus.store.document_chunks(v.namespace, d.document_id)
        assert len(chunk_ids) == d.chunks
        ids |= chunk_ids
    assert corpus.store.count(v.namespace) == len(ids)  # no orphan chunk
    return {r.id: r for r in corpus.store.fetch(v.namespace, sorted(ids), vectors=True)}


def test_first_ingest_indexes_every_file(make_corpus, docs):
    corpus = make_corpus()
    r = corpus.ingest_paths("c", [docs])
    assert (r.documents_added, r.documents_updated, r.documents_unchanged, r.errors) == (5, 0, 0, [])
    chunks = stored(corpus)
    assert r.chunks_embedded == len(chunks) > 5
    rec = next(c for c in chunks.values() if "zebras" in c.text)
    assert rec.metadata["source"] == str(docs / "notes.txt") and rec.metadata["format"] == "txt"
    md = next(c for c in chunks.values() if c.metadata["source"].endswith("doc1.md") and "beta2" in c.text)
    assert md.metadata["section"] == ["Document 1", "Section 2"] and md.metadata["title"] == "Document 1"
    start, end = md.metadata["start"], md.metadata["end"]
    assert end > start and md.metadata["tokens"] <= 48
    info = corpus.collections.get("c")
    assert info.live_version == 1 and info.to_dict()["documents"] == 5
    assert corpus.jobs.get(r.job_id)["status"] == "succeeded"


def test_unchanged_folder_embeds_nothing(make_corpus, docs):
    embedder = FakeEmbedder()
    corpus = make_corpus(embedder)
    corpus.ingest_paths("c", [docs])
    before, calls = stored(corpus), len(embedder.calls)
    r = corpus.ingest_paths("c", [docs])
    assert (r.documents_unchanged, r.documents_added, r.documents_updated, r.chunks_embedded) == (5, 0, 0, 0)
    assert len(embedder.calls) == calls
    assert stored(corpus).keys() == before.keys()


def test_changed_file_reembeds_only_changed_chunks(make_corpus, docs):
    embedder = FakeEmbedder()
    corpus = make_corpus(embedder)
    corpus.ingest_paths("c", [docs])
    before = stored(corpus)
    doc = docs / "doc2.md"
    text = doc.read_text().replace("gamma1", "delta1")  # one paragraph of one section changes
    doc.write_text(text + "\n## Appendix\n\nThe omega module is new. It was added in this release.\n")
    embedded_before = embedder.embedded
    r = corpus.ingest_paths("c", [docs])
    assert (r.documents_updated, r.documents_unchanged) == (1, 4)
    after = stored(corpus)
    doc2 = {i for i, c in after.items() if c.metadata["source"] == str(doc)}
    assert 0 < r.chunks_embedded < len(doc2)
    assert embedder.embedded - embedded_before == r.chunks_embedded
    assert r.chunks_reused == len(doc2) - r.chunks_embedded
    assert not any("gamma1" in c.text for i, c in after.items() if i in doc2)
    assert any("delta1" in c.text for i, c in after.items() if i in doc2)
    assert {i for i in before if before[i].metadata["source"] != str(doc)} <= after.keys()


def test_prune_removes_documents_whose_files_are_gone(make_corpus, docs):
    corpus = make_corpus()
    corpus.ingest_paths("c", [docs])
    (docs / "doc3.md").unlink()
    r = corpus.ingest_paths("c", [docs])
    assert r.documents_deleted == 0 and len(corpus.collections.documents("c")) == 5  # not without --prune
    r = corpus.ingest_paths("c", [docs], prune=True)
    assert (r.documents_deleted, r.documents_unchanged) == (1, 4) and r.chunks_deleted > 0
    assert all(not c.metadata["source"].endswith("doc3.md") for c in stored(corpus).values())
    assert len(corpus.collections.documents("c")) == 4


def test_prune_only_touches_the_given_roots(make_corpus, docs, tmp_path, write_doc):
    other = tmp_path / "other"
    other.mkdir()
    write_doc(other / "x.md", "Other")
    corpus = make_corpus()
    corpus.ingest_paths("c", [docs, other])
    r = corpus.ingest_paths("c", [docs], prune=True)
    assert r.documents_deleted == 0 and len(corpus.collections.documents("c")) == 6


def test_acl_change_updates_tags_without_embedding(make_corpus, docs):
    embedder = FakeEmbedder()
    corpus = make_corpus(embedder)
    corpus.ingest_paths("c", [docs / "notes.txt"])
    calls = len(embedder.calls)
    r = corpus.ingest_paths("c", [docs / "notes.txt"], acl=["hr", "eng"])
    assert (r.documents_updated, r.chunks_embedded) == (1, 0) and len(embedder.calls) == calls
    v = corpus.collections.version("c")
    vec = embedder.embed(["zebras"])[0]
    assert all(h.record.acl == ("eng", "hr") for h in corpus.store.query(v.namespace, vec, 10))
    assert corpus.store.query(v.namespace, vec, 10, Filter(acl=frozenset({"sales"}))) == []
    assert corpus.store.query(v.namespace, vec, 10, Filter(acl=frozenset({"hr"})))


def test_bad_files_are_reported_and_the_rest_goes_in(make_corpus, docs):
    (docs / "empty.txt").write_bytes(b"")
    (docs / "image.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 8)
    (docs / "big.txt").write_text("word " * 5000)
    (docs / "broken.pdf").write_bytes(b"%PDF-1.4\n1 0 obj << /Type /Catalog >>\n")
    os.symlink(docs / "missing-target.txt", docs / "dangling.txt")
    corpus = make_corpus(max_file_bytes=20_000)
    r = corpus.ingest_paths("c", [docs, docs / "no-such-dir"])
    reasons = {os.path.basename(e["path"]): e["reason"] for e in r.errors}
    assert set(reasons) == {"image.png", "big.txt", "broken.pdf", "dangling.txt", "no-such-dir"}
    assert "binary" in reasons["image.png"]
    assert "over the limit" in reasons["big.txt"] and "link" in reasons["dangling.txt"]
    assert [(os.path.basename(s["path"]), s["reason"]) for s in r.skipped] == [("empty.txt", "empty file")]
    assert r.documents_added == 5 and r.status == "partial"
    assert corpus.jobs.get(r.job_id)["status"] == "partial"


def test_a_file_with_nothing_to_index_is_skipped_not_failed(make_corpus, docs):
    (docs / "contents.md").write_text("# Contents\n\n## Installing\n\n## Using\n\n### Options\n")  # headings only
    (docs / "blank.txt").write_text("  \n\n")
    r = make_corpus().ingest_paths("c", [docs])
    skipped = {os.path.basename(s["path"]): s["reason"] for s in r.skipped}
    assert skipped == {"contents.md": "no text to index after loading (only headings)", "blank.txt": "empty file"}
    assert r.errors == [] and r.status == "succeeded" and r.documents_added == 5
    assert r.to_dict()["skipped"] == r.skipped


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their permissions")
def test_unreadable_file_is_reported(make_corpus, docs):
    (docs / "secret.txt").write_text("secret")
    (docs / "secret.txt").chmod(0)
    r = make_corpus().ingest_paths("c", [docs])
    assert [e["reason"] for e in r.errors] == ["cannot read the file: permission denied"]


def test_pipeline_change_builds_a_new_version_and_promote_switches(make_corpus, docs):
    store = MemoryStore()
    corpus = make_corpus(store=store)
    corpus.ingest_paths("c", [docs])
    v1 = stored(corpus)
    corpus2 = make_corpus(store=store, chunk_tokens=96)  # a different chunker: a new pipeline
    r = corpus2.ingest_paths("c", [docs])
    assert (r.version, r.new_version, r.documents_added) == (2, True, 5)
    info = corpus2.collections.get("c")
    assert info.live_version == 1 and [v.version for v in info.versions] == [1, 2]
    assert stored(corpus2).keys() == v1.keys()  # retrieval still reads version 1
    corpus2.collections.promote("c", 2)
    v2 = stored(corpus2)
    assert len(v2) < len(v1)  # bigger chunks, fewer of them
    corpus2.collections.promote("c", 1)  # rollback
    assert stored(corpus2).keys() == v1.keys()
    r = corpus.ingest_paths("c", [docs])  # the first pipeline again: back into version 1, nothing to do
    assert (r.version, r.documents_unchanged) == (1, 5)


def test_delete_document_and_collection(make_corpus, docs):
    corpus = make_corpus()
    corpus.ingest_paths("c", [docs])
    doc = corpus.collections.documents("c")[0]
    assert corpus.collections.delete_document("c", doc.document_id) == doc.chunks > 0
    assert len(corpus.collections.documents("c")) == 4
    stored(corpus)
    corpus.collections.delete("c")
    assert corpus.collections.list() == [] and corpus.store.namespaces() == {}


def test_invalid_collection_name(make_corpus, docs):
    from aifab.errors import InvalidRequest

    with pytest.raises(InvalidRequest, match="invalid collection name"):
        make_corpus().ingest_paths("../etc", [docs])


def test_crash_between_store_and_row_is_repaired(make_corpus, docs, monkeypatch):
    """Chunks written but the document row not: the next run finds them by id, embeds nothing twice, and
    ends with exactly the chunks of an uninterrupted run."""
    embedder = FakeEmbedder()
    corpus = make_corpus(embedder)
    ingestor = corpus.ingestor()
    commits = []

    def dying_commit(version, p, tags):
        commits.append(p.source.source)
        if len(commits) == 3:
            corpus.store.upsert(version.namespace, p.records)
            raise KeyboardInterrupt  # dies after the chunks of the third document, before its row
        type(ingestor)._commit(ingestor, version, p, tags)

    monkeypatch.setattr(ingestor, "_commit", dying_commit)
    with pytest.raises(KeyboardInterrupt):
        corpus.ingest_paths("c", [docs])
    monkeypatch.undo()
    assert len(corpus.collections.documents("c")) == 2
    embedded = embedder.embedded
    r = corpus.ingest_paths("c", [docs])
    assert (r.documents_unchanged, r.documents_added) == (2, 3)
    third = next(d for d in corpus.collections.documents("c") if d.source == commits[2])
    assert r.chunks_reused == third.chunks and embedder.embedded - embedded == r.chunks_embedded
    clean = make_corpus(data="clean")
    clean.ingest_paths("c", [docs])
    got, want = stored(corpus), stored(clean)
    assert got.keys() == want.keys()
    assert all(got[i].text == want[i].text and got[i].metadata == want[i].metadata for i in got)


@pytest.mark.integration
def test_sync_on_pgvector(make_corpus, docs, pgvector_url):
    """The same pipeline over PostgreSQL + pgvector: first ingest, unchanged re-ingest, change, prune."""
    from aifab.stores.pgvector import PgVectorStore

    store = PgVectorStore(pgvector_url)
    try:
        corpus = make_corpus(store=store)
        first = corpus.ingest_paths("c", [docs])
        assert (first.documents_added, first.errors) == (5, [])
        assert corpus.ingest_paths("c", [docs]).chunks_embedded == 0
        (docs / "notes.txt").write_text("A short plain text note.\n\nNow about giraffes instead.")
        (docs / "doc0.md").unlink()
        r = corpus.ingest_paths("c", [docs], prune=True)
        assert (r.documents_updated, r.documents_deleted, r.documents_unchanged) == (1, 1, 3)
        chunks = stored(corpus)
        assert any("giraffes" in c.text for c in chunks.values())
        v = corpus.collections.version("c")
        assert [h.record.metadata["source"] for h in store.lexical(v.namespace, "giraffes", 1)] == [
            str(docs / "notes.txt")]
    finally:
        store.close()
