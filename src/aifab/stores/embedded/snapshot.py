"""Saving and loading an :class:`AnnIndex` as one file, atomically.

Layout: ``MAGIC``, an 8-byte header length, a JSON header (identity, parameters, watermark, array
shapes), the arrays (record keys, visibility, public flags, ACL postings), the faiss index, and a
trailer (CRC-32 of everything after the magic, then ``END``). A file is written to a temporary
name, fsynced and renamed over the old one, so a crash leaves either the old file or the new one.
Any mismatch (truncated, bit rot, another store, other dimensions or graph parameters) makes
:func:`load` return ``None`` with the reason, and the store rebuilds from SQLite.
"""

from __future__ import annotations

import json
import os
import struct
import zlib
from pathlib import Path
from typing import Any, BinaryIO

import faiss as _faiss
import numpy as np

from aifab.stores.embedded.ann import AnnIndex, Growable

faiss: Any = _faiss  # see ann.py

MAGIC = b"AIFAB-ANN\x00\x02\n"
END = b"AIFAB-END\n"
_IO_CHUNK = 1 << 22


class _CrcFile:
    """Reads or writes a file while keeping a running CRC-32."""

    def __init__(self, f: BinaryIO) -> None:
        self.f, self.crc = f, 0

    def write(self, data: bytes | memoryview) -> int:
        self.crc = zlib.crc32(data, self.crc)
        return self.f.write(data)

    def read(self, n: int) -> bytes:
        data = self.f.read(n)
        if len(data) != n:
            raise EOFError("truncated")
        self.crc = zlib.crc32(data, self.crc)
        return data

    def read_array(self, dtype: Any, count: int) -> np.ndarray:
        out = np.empty(count, dtype=dtype)
        view = out.data.cast("B")
        for at in range(0, len(view), _IO_CHUNK):
            part = self.read(min(_IO_CHUNK, len(view) - at))
            view[at : at + len(part)] = part
        return out


def save(ann: AnnIndex, path: Path, identity: dict[str, Any]) -> None:
    """Write ``ann`` (fully published: no add in progress) to ``path`` atomically."""
    tags = sorted(ann.tags)
    postings = [ann.tags[t].view for t in tags]
    header = {
        **identity,
        "dims": ann.dims, "m": ann.m, "ef_construction": ann.ef_construction,
        "watermark": ann.watermark, "size": ann.size, "published": ann.published,
        "public_size": len(ann.public_positions), "tags": tags, "posting_sizes": [len(p) for p in postings],
    }
    raw = json.dumps(header).encode()
    tmp = path.with_name(path.name + ".tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(MAGIC)
            out = _CrcFile(f)
            out.write(struct.pack("<Q", len(raw)))
            out.write(raw)
            for arr in (ann.keys.view, ann.visible.view, ann.public.view, ann.public_positions.view, *postings):
                out.write(np.ascontiguousarray(arr).data.cast("B"))
            faiss.write_index(ann.index, faiss.PyCallbackIOWriter(out.write))
            f.write(struct.pack("<I", out.crc) + END)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:  # a full disk (often seen only at fsync) must not leave a stray .tmp behind
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def load(path: Path, identity: dict[str, Any], *, m: int, ef_construction: int,
         ) -> tuple[AnnIndex | None, str]:
    """The index saved at ``path``, or ``(None, why not)``."""
    if not path.is_file():
        return None, "no index file"
    try:
        with open(path, "rb") as f:
            if f.read(len(MAGIC)) != MAGIC:
                return None, "not an index file"
            src = _CrcFile(f)
            (length,) = struct.unpack("<Q", src.read(8))
            if length > 1 << 30:
                return None, "corrupt header"
            header = json.loads(src.read(length))
            mismatch = [k for k, v in {**identity, "m": m, "ef_construction": ef_construction}.items()
                        if header.get(k) != v]
            if mismatch:
                return None, "saved for other " + ", ".join(mismatch)
            size = int(header["size"])
            keys = src.read_array(np.int64, size)
            visible = src.read_array(np.bool_, size)
            public = src.read_array(np.bool_, size)
            public_positions = src.read_array(np.int32, int(header["public_size"]))
            postings = [src.read_array(np.int32, n) for n in header["posting_sizes"]]
            index = faiss.read_index(faiss.PyCallbackIOReader(src.read, _IO_CHUNK))
            trailer = f.read(4 + len(END))
            if len(trailer) != 4 + len(END) or trailer[4:] != END or struct.unpack("<I", trailer[:4])[0] != src.crc:
                return None, "checksum mismatch"
    except (OSError, EOFError, ValueError, KeyError, TypeError, RuntimeError, struct.error) as exc:
        # RuntimeError: faiss refusing a malformed index; ValueError includes JSON errors.
        return None, f"unreadable ({type(exc).__name__}: {exc})"
    if index.ntotal != size or index.d != header["dims"]:
        return None, "index and arrays disagree"
    ann = AnnIndex(int(header["dims"]), m=m, ef_construction=ef_construction, index=index)
    ann.keys, ann.visible, ann.public = Growable(np.int64, keys), Growable(np.bool_, visible), Growable(np.bool_, public)
    ann.public_positions = Growable(np.int32, public_positions)
    ann.tags = {t: Growable(np.int32, p) for t, p in zip(header["tags"], postings, strict=True)}
    ann.watermark, ann.published = int(header["watermark"]), int(header["published"])
    ann.visible_count = int(np.count_nonzero(visible))
    return ann, "loaded"


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
