"""The web tool against a real loopback server (allowed with allow_networks): main text, content types,
what the guard refuses by default, and the tool built from config."""

from __future__ import annotations

import json

import pytest
from aiohttp import web

from aifab.config import WebToolSettings, load_settings
from aifab.testing.loopback import serve
from aifab.testing.tools import ToolConformance
from aifab.tools import Toolbox, ToolRefused
from aifab.tools.connectors.web import WebTool

PARAGRAPH = ("The Danube flows through ten countries, more than any other river in the world, from the Black "
             "Forest to the Black Sea.")
ARTICLE = f"""<!doctype html><html><head><title>Rivers</title></head><body>
<nav><a href="/">Home</a> <a href="/shop">Shop the river collection</a></nav>
<article><h1>Rivers of Europe</h1><p>{PARAGRAPH}</p><p>{PARAGRAPH.replace("Danube", "Rhine")}</p>
<ul><li>Danube: 2850 km</li><li>Rhine: 1230 km</li></ul></article>
<footer>Copyright 2024 River Facts Inc. All rights reserved. Cookie settings.</footer></body></html>"""


def site() -> web.Application:
    async def article(request: web.Request) -> web.Response:
        return web.Response(text=ARTICLE, content_type="text/html")

    async def moved(request: web.Request) -> web.Response:
        raise web.HTTPMovedPermanently("/article")

    async def plain(request: web.Request) -> web.Response:
        return web.Response(body="Grüße aus Köln".encode("latin-1"), content_type="text/plain",
                            charset="iso-8859-1")

    async def data(request: web.Request) -> web.Response:
        return web.json_response({"river": "Danube", "km": 2850})

    async def image(request: web.Request) -> web.Response:
        return web.Response(body=b"\x89PNG\r\n\x1a\n" + b"\0" * 5000, content_type="image/png")

    async def mislabelled(request: web.Request) -> web.Response:
        return web.Response(body=b"\x7fELF\0\0\0", content_type="text/plain")

    app = web.Application()
    for handler in (article, moved, plain, data, image, mislabelled):
        app.router.add_get(f"/{handler.__name__}", handler)
    return app


def _settings(**extra) -> WebToolSettings:
    return WebToolSettings(kind="web", allow_networks=["127.0.0.1/32"], **extra)


class TestWebTool(ToolConformance):
    bad_arguments = {"link": "http://example.com/"}

    @pytest.fixture
    async def tool(self):
        async with serve(site()) as base:
            self.good_arguments = {"url": f"{base}/article"}
            tool = WebTool("web", _settings())
            yield tool
            await tool.aclose()


@pytest.fixture
async def base():
    async with serve(site()) as url:
        yield url


@pytest.fixture
async def box():
    box = Toolbox([WebTool("web", _settings())])
    yield box
    await box.aclose()


async def test_a_page_gives_its_main_text_without_the_navigation_and_footer(base, box):
    result = await box.call("web", {"url": f"{base}/moved"})
    assert PARAGRAPH in result.text and "Rhine: 1230 km" in result.text
    assert "Shop the river collection" not in result.text and "Cookie settings" not in result.text
    assert result.meta == {"url": f"{base}/article", "status": 200, "content_type": "text/html"}


async def test_text_and_json_come_back_as_they_are(base, box):
    plain = await box.call("web", {"url": f"{base}/plain"})
    assert plain.text == "Grüße aus Köln"  # decoded with the charset the server named
    data = await box.call("web", {"url": f"{base}/data"})
    assert json.loads(data.text) == {"river": "Danube", "km": 2850}
    assert data.meta["content_type"] == "application/json"


@pytest.mark.parametrize("path, what", [("image", "image/png"), ("mislabelled", "binary")])
async def test_other_content_is_refused_with_what_it_is(base, box, path, what):
    with pytest.raises(ToolRefused, match=f"the answer is {what}; the web tool reads HTML, text and JSON"):
        await box.call("web", {"url": f"{base}/{path}"})


async def test_by_default_the_loopback_server_is_refused(base):
    box = await Toolbox.open(load_settings(tools={"web": {"kind": "web"}}))
    assert [s.name for s in box.specs()] == ["web"]
    with pytest.raises(ToolRefused, match="127.0.0.1 is a loopback address"):
        await box.call("web", {"url": f"{base}/article"})
    await box.aclose()


async def test_allow_hosts_is_told_to_the_model_and_enforced(base):
    tool = WebTool("web", _settings(allow_hosts=["docs.example.org"]))
    assert "Only these sites: docs.example.org" in tool.spec.description
    with pytest.raises(ToolRefused, match="127.0.0.1 is not in allow_hosts"):
        await tool.call({"url": f"{base}/article"})
    await tool.aclose()
