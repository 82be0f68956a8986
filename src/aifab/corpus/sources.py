"""Where documents come from: files on disk (walked from the paths given to ``aifab ingest``) and uploads
(saved under the data directory by the HTTP API). Each source has a stable ``document_id``."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from aifab.errors import InvalidDocument


@dataclass(frozen=True)
class Source:
    document_id: str
    source: str  # shown to users and cited: the absolute path, or the upload's name
    path: Path  # where the bytes are read from

    def read(self, max_bytes: int) -> bytes:
        """The bytes, or ``InvalidDocument`` with a reason (too big, unreadable, vanished)."""
        try:
            size = self.path.stat().st_size
            if size > max_bytes:
                raise InvalidDocument(
                    f"file is {size / 2**20:.1f} MB, over the limit of {max_bytes / 2**20:.1f} MB "
                    "(corpus.max_file_bytes)"
                )
            with open(self.path, "rb") as f:
                return f.read(max_bytes + 1)
        except PermissionError:
            raise InvalidDocument("cannot read the file: permission denied") from None
        except FileNotFoundError:
            what = "a broken symbolic link" if self.path.is_symlink() else "the file disappeared during ingest"
            raise InvalidDocument(f"cannot read the file: {what}") from None
        except IsADirectoryError:
            raise InvalidDocument("is a directory") from None
        except OSError as exc:
            raise InvalidDocument(f"cannot read the file: {exc.strerror or exc}") from None


def document_id(kind: str, key: str) -> str:
    return hashlib.sha256(f"{kind}:{key}".encode()).hexdigest()[:32]


def file_source(path: Path) -> Source:
    path = path.absolute()
    return Source(document_id=document_id("file", str(path)), source=str(path), path=path)


def discover(paths: Iterable[Path]) -> tuple[list[Source], list[dict[str, str]]]:
    """Files under ``paths`` (recursively, hidden files and folders skipped, sorted), and a
    ``{path, reason}`` error for each path that does not exist."""
    found: dict[str, Source] = {}
    errors: list[dict[str, str]] = []
    for root in paths:
        root = Path(root)
        if not root.exists():
            errors.append({"path": str(root), "reason": "no such file or directory"})
        elif root.is_file():
            src = file_source(root)
            found[src.source] = src
        else:
            for dirpath, dirnames, filenames in os.walk(root):
                dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
                for name in filenames:
                    if not name.startswith("."):
                        src = file_source(Path(dirpath) / name)
                        found[src.source] = src
    return [found[k] for k in sorted(found)], errors


def under(source: str, roots: Iterable[Path]) -> bool:
    """Whether a file source lies under one of ``roots`` (for ``--prune``)."""
    path = Path(source)
    for root in roots:
        root = Path(root).absolute()
        if path == root or root in path.parents:
            return True
    return False
