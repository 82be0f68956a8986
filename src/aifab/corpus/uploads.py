"""Documents uploaded over HTTP: kept under ``<data_dir>/uploads/<collection>/`` so that a later version of
the collection (a new pipeline) can be rebuilt from them, like files on disk."""

from __future__ import annotations

from pathlib import Path

from aifab.corpus.sources import Source, document_id
from aifab.errors import InvalidDocument
from aifab.state.files import write_atomic

MAX_NAME = 255


def check_name(name: str | None) -> str:
    """A plain file name, or ``InvalidDocument``: no folders, no traversal, nothing hidden."""
    if not name or not name.strip():
        raise InvalidDocument("the upload has no file name")
    if "/" in name or "\\" in name or "\0" in name or name in (".", "..") or ".." in Path(name).parts:
        raise InvalidDocument(f"unsafe file name {name!r}: uploads must be plain file names, without folders")
    if name.startswith("."):
        raise InvalidDocument(f"unsafe file name {name!r}: hidden file names are not accepted")
    if len(name.encode()) > MAX_NAME:
        raise InvalidDocument(f"file name longer than {MAX_NAME} bytes")
    return name


def upload_source(uploads: Path, collection: str, name: str) -> Source:
    return Source(document_id=document_id("upload", f"{collection}/{name}"), source=f"upload:{name}",
                  path=uploads / collection / name)


def save_upload(uploads: Path, collection: str, name: str | None, data: bytes) -> Source:
    """Write atomically (temp file + rename): a crash never leaves half a document to ingest."""
    src = upload_source(uploads, collection, check_name(name))
    write_atomic(src.path, data)
    return src
