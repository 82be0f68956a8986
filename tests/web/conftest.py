"""One real ``aifab up`` (the default models, a RAG app over a small collection, a second registered chat
model for rollouts) and one Chromium, shared by the browser tests of this folder."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from aifab.registry.defaults import DEFAULTS, locate
from aifab.testing.requirements import require
from aifab.testing.server import RemoteAifabServer

DOCS = {
    "tides.md": "# Tides\n\nTides are caused by the gravitational pull of the Moon and the Sun on the oceans. "
                "Most coasts see two high tides a day.\n",
    "bread.md": "# Baking bread\n\nKnead the dough for ten minutes, let it rise for an hour, then bake it at "
                "220 degrees for thirty minutes until the crust is brown.\n",
}
CANARY = "smollm2-canary"  # the default chat model's weights registered under a second name: a rollout candidate
CHROMIUM = os.environ.get("AIFAB_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"


def aifab(data: Path, *args: str) -> None:
    r = subprocess.run([sys.executable, "-m", "aifab.cli.main", *args, "--data-dir", str(data)],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]


def require_browser() -> None:
    require("playwright", available=importlib.util.find_spec("playwright") is not None,
            install="pip install playwright (the browser itself comes from the system: apt-get install chromium)")
    require("chromium", available=Path(CHROMIUM).is_file(), install="apt-get install chromium")


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    """Per module: Playwright's sync API keeps an event loop running in this thread while it is open, which
    async tests elsewhere in the run cannot share."""
    require_browser()
    from playwright.sync_api import expect, sync_playwright

    expect.set_options(timeout=60_000)  # answers from a real model on a busy two-core machine
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield browser
        browser.close()


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RemoteAifabServer]:
    require_browser()  # first: without a browser there is no point starting a server
    root = tmp_path_factory.mktemp("web")
    weights = locate(DEFAULTS[0])
    assert weights is not None, "the default chat model's package is not installed"
    aifab(root / "data", "models", "import", str(weights), "--name", CANARY, "--no-copy")
    cfg = root / "aifab.toml"
    cfg.write_text('[apps.helpdesk]\ncollection = "kb"\ntemperature = 0\nmax_tokens = 48\n')
    with RemoteAifabServer(root / "data", args=["--config", str(cfg)]) as srv:
        files = [("file", (name, text.encode(), "text/markdown")) for name, text in DOCS.items()]
        r = httpx.post(f"{srv.url}/v1/collections/kb/documents?wait=true", files=files, timeout=300)
        assert r.status_code == 200 and r.json()["status"] == "succeeded", r.text
        yield srv


@pytest.fixture
def canary() -> str:
    return CANARY


@pytest.fixture
def page(chromium: Any, server: RemoteAifabServer) -> Iterator[Any]:
    """A fresh tab (its own storage) at 1280×800 on the server."""
    context = chromium.new_context(base_url=server.url, viewport={"width": 1280, "height": 800})
    context.set_default_timeout(60_000)  # answers from a real model on a busy two-core machine
    tab = context.new_page()
    yield tab
    context.close()
