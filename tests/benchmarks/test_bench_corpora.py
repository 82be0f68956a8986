"""benchmarks/corpora.py on a small .deb built here: no apt, no network."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

CORPORA = Path(__file__).resolve().parents[2] / "benchmarks" / "corpora.py"


@pytest.fixture(scope="module")
def corpora():
    spec = importlib.util.spec_from_file_location("bench_corpora", CORPORA)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_corpora"] = module
    spec.loader.exec_module(module)
    return module


def _fake_deb(corpora, dest: Path) -> Path:
    """A python3.11-doc_*.deb holding three sources in the real package's layout."""
    if shutil.which("dpkg-deb") is None:
        pytest.skip("dpkg-deb not available")
    pkg = dest / "pkg"
    src = pkg / corpora.PYTHON_DOCS_SOURCES
    (src / "library").mkdir(parents=True)
    (src / "about.rst.txt").write_text("About\n=====\n\nText.\n")
    (src / "library" / "os.rst.txt").write_text("os\n==\n\n" + "Paragraph. " * 100)
    (src / "library" / "sys.rst.txt").write_text("sys\n===\n")
    (src.parent / "index.html").write_text("<html></html>")
    (pkg / "DEBIAN").mkdir()
    (pkg / "DEBIAN" / "control").write_text(
        "Package: python3.11-doc\nVersion: 0.0-test\nArchitecture: all\n"
        "Maintainer: test <t@example.invalid>\nDescription: test\n"
    )
    deb = dest / "python3.11-doc_0.0-test_all.deb"
    subprocess.run(["dpkg-deb", "--build", "-Zgzip", str(pkg), str(deb)], check=True, capture_output=True)
    return deb


def test_python_docs_unpacks_a_cached_deb_once(corpora, tmp_path):
    cache = tmp_path / "cache"
    cache.mkdir()
    _fake_deb(corpora, tmp_path).rename(cache / "python3.11-doc_0.0-test_all.deb")

    root = corpora.python_docs(cache)
    assert root == cache / "python3.11-doc" / corpora.PYTHON_DOCS_SOURCES
    assert (cache / "python3.11-doc" / ".complete").is_file()
    files = corpora.list_files(root)
    assert [f.relative_to(root).as_posix() for f in files.files] == [
        "about.rst.txt", "library/os.rst.txt", "library/sys.rst.txt"
    ]
    assert files.total_bytes == sum(f.stat().st_size for f in files.files)
    assert files.summary()["files"] == 3

    # Idempotent: a second call neither needs the .deb nor unpacks again.
    (cache / "python3.11-doc_0.0-test_all.deb").unlink()
    marker = (cache / "python3.11-doc" / ".complete").stat().st_mtime_ns
    assert corpora.python_docs(cache) == root
    assert (cache / "python3.11-doc" / ".complete").stat().st_mtime_ns == marker
    assert not list(cache.glob(".python3.11-doc-*"))  # no temporary directory left behind

    assert len(corpora.list_files(root, subset="library").files) == 2
    assert [f.name for f in corpora.list_files(root, first=1).files] == ["about.rst.txt"]


def test_python_docs_redoes_an_incomplete_extraction(corpora, tmp_path):
    cache = tmp_path / "cache"
    cache.mkdir()
    _fake_deb(corpora, tmp_path).rename(cache / "python3.11-doc_0.0-test_all.deb")
    (cache / "python3.11-doc" / "half").mkdir(parents=True)  # no .complete marker
    root = corpora.python_docs(cache)
    assert len(corpora.list_files(root).files) == 3
    assert not (cache / "python3.11-doc" / "half").exists()


def test_python_docs_says_why_when_it_cannot_fetch(corpora, tmp_path, monkeypatch):
    monkeypatch.setattr(corpora, "PYTHON_DOCS_PACKAGE", "aifab-no-such-package-for-tests")
    with pytest.raises(corpora.CorpusUnavailable, match="aifab-no-such-package-for-tests"):
        corpora.python_docs(tmp_path / "cache")
