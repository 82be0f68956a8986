"""``kind = "web"``: one tool, named after its ``[tools.NAME]`` entry, that fetches a URL through the SSRF
guard (:mod:`aifab.tools.ssrf`) and returns what a model can read: an HTML page's main text (trafilatura
drops navigation, footers and boilerplate, keeping headings, lists and tables as Markdown), plain text and
JSON as they are. Other content (images, PDFs, archives) is refused before its body is downloaded."""

from __future__ import annotations

import asyncio
from typing import Any

from aifab.config import WebToolSettings
from aifab.tools.box import connector
from aifab.tools.protocol import Tool, ToolRefused, ToolResult, ToolSpec
from aifab.tools.ssrf import Fetched, GuardedHttp

HTML = ("text/html", "application/xhtml+xml")


def readable(content_type: str) -> bool:
    """HTML, any other ``text/*``, JSON (``application/json``, ``...+json``) or unlabelled content."""
    return (not content_type or content_type.startswith("text/") or content_type in HTML
            or content_type == "application/json" or content_type.endswith("+json"))


def main_text(html: str, url: str) -> str:
    """The page's main content as Markdown; the whole page's text when no main content stands out
    (a short page, a list of links)."""
    import trafilatura  # here: importing it takes a third of a second, paid only by a process that fetches HTML

    text = trafilatura.extract(html, url=url, output_format="markdown", include_comments=False,
                               include_tables=True, include_links=False)
    return text or trafilatura.html2txt(html) or ""


class WebTool:
    """Arguments ``{"url": ...}``; ``meta`` is the final URL (after redirects), status and content type."""

    def __init__(self, name: str, settings: WebToolSettings, http: GuardedHttp | None = None) -> None:
        sites = f" Only these sites: {', '.join(settings.allow_hosts)}." if settings.allow_hosts else ""
        self._spec = ToolSpec(name, settings.description or (
            "Fetches a web page (an http or https URL) and returns its main text; JSON and plain text as they "
            "are. Private, internal and cloud-metadata addresses are refused." + sites), {
            "type": "object",
            "properties": {"url": {"type": "string", "description": "the page's absolute http(s) URL"}},
            "required": ["url"], "additionalProperties": False})
        self.http = http or GuardedHttp(
            allow_networks=settings.allow_networks, allow_hosts=settings.allow_hosts,
            max_bytes=settings.max_bytes, max_redirects=settings.max_redirects, timeout_s=settings.timeout_s)

    @property
    def spec(self) -> ToolSpec:
        return self._spec

    async def call(self, arguments: dict[str, Any]) -> ToolResult:
        url = arguments["url"]

        def accept(content_type: str) -> None:
            if not readable(content_type):
                raise ToolRefused(f"{url}: the answer is {content_type}; the web tool reads HTML, text and "
                                  "JSON only")

        page = await self.http.fetch(url, accept=accept)
        if b"\0" in page.body:  # unlabelled binary content
            raise ToolRefused(f"{url}: the answer is binary; the web tool reads HTML, text and JSON only")
        text = await asyncio.to_thread(main_text, page.text(), page.url) if page.content_type in HTML \
            else page.text()
        return ToolResult(text.strip() or f"(the page at {page.url} has no text)", meta=_meta(page))

    async def aclose(self) -> None:
        await self.http.aclose()


def _meta(page: Fetched) -> dict[str, Any]:
    return {"url": page.url, "status": page.status, "content_type": page.content_type}


@connector("web")
async def open_web(name: str, settings: WebToolSettings) -> list[Tool]:
    return [WebTool(name, settings)]
