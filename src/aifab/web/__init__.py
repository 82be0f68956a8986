"""The web UI: one HTML page and its static files, served by ``aifab up`` at ``/`` and ``/ui/``.

The page talks to the same HTTP API as every other client (with the key the user gives it); nothing here
reads the server's state. Files are read and gzip-compressed once, at the first request, and kept in memory
(about 20 KB compressed). The page loads them from ``/ui/v-<build>/``, where ``<build>`` is a hash of
every file: such a URL never changes content, so it is cached for a year (``immutable``) and a new version
of aifab is fetched at once. The page itself and unversioned ``/ui/<file>`` URLs are revalidated by ETag on
every load. Only the files shipped in ``static/`` are served: a name not in that list is a 404, which
also refuses any path traversal.
"""

from __future__ import annotations

import gzip
import hashlib
import threading
from dataclasses import dataclass
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import Response

from aifab.errors import NotFound

STATIC = Path(__file__).parent / "static"
TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
         ".css": "text/css; charset=utf-8", ".svg": "image/svg+xml", ".png": "image/png"}
YEAR = "public, max-age=31536000, immutable"
REVALIDATE = "no-cache"
BUILD_MARK = "{{build}}"  # index.html names its assets under /ui/v-{{build}}/
# what the page may do: its own scripts and styles only, calls to this origin only (no inline script)
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
       "object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'none'")


@dataclass(frozen=True)
class Asset:
    body: bytes
    gzipped: bytes
    etag: str
    media_type: str


def _asset(body: bytes, suffix: str) -> Asset:
    etag = hashlib.sha256(body).hexdigest()[:20]
    return Asset(body, gzip.compress(body, compresslevel=9, mtime=0), etag, TYPES.get(suffix, "application/octet-stream"))


class Assets:
    """The files of ``root`` (read at the first request) and the page with its build hash filled in."""

    def __init__(self, root: Path = STATIC) -> None:
        self.root = root
        self._files: dict[str, Asset] | None = None
        self._index: Asset | None = None
        self.build = ""
        self._lock = threading.Lock()

    def _load(self) -> dict[str, Asset]:
        with self._lock:
            if self._files is None:
                raw = {p.relative_to(self.root).as_posix(): p.read_bytes()
                       for p in sorted(self.root.rglob("*")) if p.is_file() and p.name != "index.html"}
                digest = hashlib.sha256()
                for name, body in raw.items():
                    digest.update(name.encode() + b"\0" + body + b"\0")
                self.build = digest.hexdigest()[:12]
                page = (self.root / "index.html").read_bytes().replace(BUILD_MARK.encode(), self.build.encode())
                self._index = _asset(page, ".html")
                self._files = {name: _asset(body, Path(name).suffix) for name, body in raw.items()}
            return self._files

    def index(self) -> Asset:
        self._load()
        assert self._index is not None
        return self._index

    def get(self, path: str) -> tuple[Asset, bool]:
        """The asset at ``path`` (``name`` or ``v-<build>/name``) and whether it may be cached for good."""
        files = self._load()
        version, _, name = path.partition("/") if path.startswith("v-") else ("", "", path)
        asset = files.get(name)
        if asset is None:
            raise NotFound(f"the web UI has no file '{path}'")
        return asset, version == f"v-{self.build}"

    def total(self) -> tuple[int, int]:
        """(bytes, gzip-compressed bytes) of everything the page loads: the page and every file."""
        items = [self.index(), *self._load().values()]
        return sum(len(a.body) for a in items), sum(len(a.gzipped) for a in items)


def _accepts_gzip(request: Request) -> bool:
    for part in request.headers.get("accept-encoding", "").split(","):
        coding, _, params = part.strip().partition(";")
        if coding.strip().lower() in ("gzip", "*"):
            return params.replace(" ", "") not in ("q=0", "q=0.0", "q=0.00", "q=0.000")
    return False


def _respond(request: Request, asset: Asset, cache: str, extra: dict[str, str] | None = None) -> Response:
    gz = _accepts_gzip(request)
    etag = f'"{asset.etag}{"-gz" if gz else ""}"'  # each encoding is its own representation
    headers = {"ETag": etag, "Cache-Control": cache, "Vary": "Accept-Encoding",
               "X-Content-Type-Options": "nosniff", **(extra or {})}
    if etag in {t.strip() for t in request.headers.get("if-none-match", "").split(",")}:
        return Response(status_code=304, headers=headers)
    if gz:
        headers["Content-Encoding"] = "gzip"
    return Response(asset.gzipped if gz else asset.body, media_type=asset.media_type, headers=headers)


def install(app: FastAPI, assets: Assets | None = None) -> None:
    """Serve the web UI from ``app``: ``GET /`` (the page) and ``GET /ui/{asset}`` (its files); none of them
    in the OpenAPI schema."""
    files = assets or Assets()

    @app.get("/", include_in_schema=False)
    def page(request: Request) -> Response:
        return _respond(request, files.index(), REVALIDATE, {"Content-Security-Policy": CSP,
                                                              "Referrer-Policy": "no-referrer"})

    @app.get("/ui/{asset:path}", include_in_schema=False)
    def asset(request: Request, asset: str) -> Response:
        found, versioned = files.get(asset)
        return _respond(request, found, YEAR if versioned else REVALIDATE)
