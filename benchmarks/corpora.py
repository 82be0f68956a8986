"""Benchmark corpora, fetched once into ``benchmarks/.cache/`` (git-ignored) and reused.

``python_docs()`` is the reStructuredText source of the Python 3.11 documentation as Debian ships it in
``python3.11-doc`` (``usr/share/doc/python3.11/html/_sources/**/*.rst.txt``: 497 files, 11.0 MB for
3.11.2-6+deb12u9). It is fetched with ``apt-get download`` (any Debian/Ubuntu machine with apt can,
no root needed for the download itself) and unpacked with ``dpkg -x``; nothing is installed.

Stdlib only, so every virtualenv (aifab's, the LlamaIndex baseline's) can import it or run it:

    python benchmarks/corpora.py                       # fetch if missing; print root, files, MB
    python benchmarks/corpora.py --subset library      # only library/ (317 files, 6.3 MB)
    python benchmarks/corpora.py --first 50 --write-list /tmp/files.txt   # a file list for --files-from
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

DEFAULT_CACHE = Path(__file__).resolve().parent / ".cache"  # == benchmarks/.cache from the repo root

PYTHON_DOCS_PACKAGE = "python3.11-doc"
PYTHON_DOCS_SOURCES = Path("usr/share/doc/python3.11/html/_sources")
PYTHON_DOCS_PATTERN = "*.rst.txt"


class CorpusUnavailable(RuntimeError):
    """The corpus is not in the cache and could not be fetched."""


def python_docs(cache: Path = DEFAULT_CACHE) -> Path:
    """The directory of the Python 3.11 docs' reST sources (``**/*.rst.txt``), fetched when missing.

    Idempotent: a complete extraction (marked by ``.complete``) is reused as is; a ``.deb`` already in
    ``cache`` is used without asking apt. Extraction goes to a temporary directory renamed into place,
    so an interrupted run never leaves a half corpus that looks whole.
    """
    cache = Path(cache)
    root = cache / PYTHON_DOCS_PACKAGE
    sources = root / PYTHON_DOCS_SOURCES
    if (root / ".complete").is_file() and sources.is_dir():
        return sources

    cache.mkdir(parents=True, exist_ok=True)
    deb = _find_deb(cache) or _apt_download(cache)
    if shutil.which("dpkg") is None:
        raise CorpusUnavailable(f"dpkg not found: cannot unpack {deb}")
    tmp = Path(tempfile.mkdtemp(prefix=f".{PYTHON_DOCS_PACKAGE}-", dir=cache))
    try:
        proc = subprocess.run(["dpkg", "-x", str(deb), str(tmp)], capture_output=True, text=True)
        if proc.returncode != 0:
            raise CorpusUnavailable(f"dpkg -x {deb} failed ({proc.returncode}): {proc.stderr.strip()}")
        if not (tmp / PYTHON_DOCS_SOURCES).is_dir():
            raise CorpusUnavailable(f"{deb} has no {PYTHON_DOCS_SOURCES}/: the package layout changed")
        (tmp / ".complete").write_text(deb.name + "\n")
        if root.exists():
            shutil.rmtree(root)  # an incomplete earlier extraction
        tmp.rename(root)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return sources


def _find_deb(cache: Path) -> Path | None:
    debs = sorted(cache.glob(f"{PYTHON_DOCS_PACKAGE}_*.deb"))
    return debs[-1] if debs else None


def _apt_download(cache: Path) -> Path:
    if shutil.which("apt-get") is None:
        raise CorpusUnavailable(
            f"apt-get not found: put a {PYTHON_DOCS_PACKAGE}_*.deb into {cache} by hand and run again"
        )
    # apt-get download writes into the current directory. As root it warns that the _apt user cannot
    # write there and downloads unsandboxed instead: harmless (the warning goes to the captured stderr).
    proc = subprocess.run(
        ["apt-get", "download", "-q", PYTHON_DOCS_PACKAGE], cwd=cache, capture_output=True, text=True
    )
    deb = _find_deb(cache)
    if proc.returncode != 0 or deb is None:
        hint = ""
        if "Unable to locate package" in proc.stderr or "has no installation candidate" in proc.stderr:
            hint = " (the package lists may be empty or stale: run `apt-get update` first)"
        raise CorpusUnavailable(
            f"`apt-get download {PYTHON_DOCS_PACKAGE}` failed (exit {proc.returncode}){hint}:\n"
            f"{(proc.stderr or proc.stdout).strip()}\n"
            f"Alternatively put a {PYTHON_DOCS_PACKAGE}_*.deb into {cache} by hand."
        )
    return deb


@dataclass(frozen=True)
class CorpusFiles:
    root: Path
    files: list[Path]  # sorted, absolute

    @property
    def total_bytes(self) -> int:
        return sum(f.stat().st_size for f in self.files)

    def summary(self) -> dict[str, object]:
        size = self.total_bytes
        return {"root": str(self.root), "files": len(self.files), "bytes": size, "mb": round(size / 1e6, 2)}


def list_files(
    root: Path, pattern: str = PYTHON_DOCS_PATTERN, subset: str | None = None, first: int | None = None
) -> CorpusFiles:
    """Regular files under ``root`` (or ``root/subset``) matching ``pattern``, recursively, in sorted order
    (so ``first`` N is the same N files on every machine)."""
    root = Path(root).resolve()
    base = root / subset if subset else root
    if not base.is_dir():
        raise FileNotFoundError(f"no such corpus directory: {base}")
    files = sorted(p for p in base.rglob(pattern) if p.is_file() and not p.is_symlink())
    if first is not None:
        files = files[:first]
    return CorpusFiles(root=base, files=files)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    ap.add_argument("--subset", help="a sub-directory of the corpus, e.g. library")
    ap.add_argument("--first", type=int, help="only the first N files in sorted order")
    ap.add_argument("--write-list", type=Path, help="write the absolute paths, one a line, to this file")
    args = ap.parse_args(argv)
    try:
        root = python_docs(args.cache)
    except CorpusUnavailable as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    corpus = list_files(root, subset=args.subset, first=args.first)
    if args.write_list:
        args.write_list.write_text("".join(f"{f}\n" for f in corpus.files))
    print(json.dumps(corpus.summary()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
