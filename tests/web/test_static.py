"""The web UI's files as the serving app hands them out: the page, cached and compressed assets, and
nothing outside ``static/``."""

from __future__ import annotations

import gzip
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from aifab.serve import ModelPool, create_app
from aifab.testing import FakeEngine, FakeRuntime
from aifab.web import STATIC

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def client():
    """Synchronous (a thread of its own for the app): the browser tests' session keeps an event loop running."""
    engine = FakeEngine(runtime=FakeRuntime("hi"))
    with TestClient(create_app(ModelPool({"fake": engine}))) as c:
        yield c
    engine.close()


def test_the_page_is_html_naming_its_assets_by_build(client):
    r = client.get("/", headers={"accept-encoding": "identity"})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    assert r.headers["cache-control"] == "no-cache" and r.headers["etag"]
    assert "script-src 'self'" in r.headers["content-security-policy"]
    assets = re.findall(r'/ui/(v-[0-9a-f]{12})/([\w.]+)', r.text)
    assert {name for _, name in assets} >= {"app.js", "app.css"} and len({v for v, _ in assets}) == 1
    assert "{{build}}" not in r.text


def test_versioned_assets_are_cached_for_good_and_gzipped(client):
    page = (client.get("/")).text
    version = re.search(r"/ui/(v-[0-9a-f]{12})/app\.js", page).group(1)
    r = client.get(f"/ui/{version}/app.js", headers={"accept-encoding": "gzip"})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/javascript")
    assert r.headers["content-encoding"] == "gzip" and "immutable" in r.headers["cache-control"]
    assert r.headers["vary"] == "Accept-Encoding"
    raw = (STATIC / "app.js").read_bytes()
    assert r.content == raw  # httpx undid the gzip
    assert int(r.headers["content-length"]) < len(raw) and len(gzip.compress(raw)) >= int(r.headers["content-length"]) - 32


def test_an_unversioned_or_stale_asset_is_revalidated_by_etag(client):
    r = client.get("/ui/app.css", headers={"accept-encoding": "identity"})
    assert r.status_code == 200 and r.headers["cache-control"] == "no-cache" and "content-encoding" not in r.headers
    assert r.content == (STATIC / "app.css").read_bytes()
    again = client.get("/ui/app.css", headers={"accept-encoding": "identity", "if-none-match": r.headers["etag"]})
    assert again.status_code == 304 and not again.content
    zipped = client.get("/ui/app.css", headers={"accept-encoding": "gzip", "if-none-match": r.headers["etag"]})
    assert zipped.status_code == 200 and zipped.headers["etag"] != r.headers["etag"]  # another representation
    stale = client.get("/ui/v-000000000000/app.css")
    assert stale.status_code == 200 and stale.headers["cache-control"] == "no-cache"


def test_gzip_refused_by_q0_is_not_sent(client):
    r = client.get("/ui/app.js", headers={"accept-encoding": "gzip;q=0, identity"})
    assert "content-encoding" not in r.headers


def test_an_unknown_asset_is_a_404_envelope(client):
    r = client.get("/ui/nope.js")
    assert r.status_code == 404
    assert r.json()["error"]["code"] == "not_found" and "nope.js" in r.json()["error"]["message"]


@pytest.mark.parametrize("path", ["/ui/..%2f__init__.py", "/ui/%2e%2e/__init__.py", "/ui/v-x/../../__init__.py",
                                  "/ui/static/app.js", "/ui//etc/passwd", "/ui/index.html"])
def test_nothing_outside_the_static_files_is_served(client, path):
    r = client.get(path)
    assert r.status_code == 404 and "error" in r.json()


def test_the_ui_is_not_in_the_openapi_schema(client):
    paths = (client.get("/openapi.json")).json()["paths"]
    assert not [p for p in paths if p == "/" or p.startswith("/ui")]


def test_the_wheel_ships_every_static_file(tmp_path):
    """Built from a copy of the project: an in-tree build would leave build/ and *.egg-info behind."""
    tree = tmp_path / "project"
    shutil.copytree(ROOT / "src", tree / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, tree / name)
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                        "-w", str(tmp_path / "dist"), str(tree)], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    wheel = next((tmp_path / "dist").glob("aifab-*.whl"))
    shipped = set(zipfile.ZipFile(wheel).namelist())
    expected = {f"aifab/web/static/{p.relative_to(STATIC).as_posix()}" for p in STATIC.rglob("*") if p.is_file()}
    assert expected and expected <= shipped, sorted(expected - shipped)
    assert "aifab/web/__init__.py" in shipped
