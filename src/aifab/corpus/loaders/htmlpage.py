"""HTML → blocks, with the page's boilerplate (navigation, headers, footers, sidebars, scripts, forms,
cookie banners, Sphinx's sidebar and related links) removed first.

The content root is ``<main>``, else ``[role=main]``, else the page's only ``<article>``, else Sphinx's
``div.body``, else ``<body>``. Inside it: ``h1``–``h6`` are headings, ``pre`` is code, tables are table
blocks, ``li`` are list items (nested), ``dt``/``dd`` are a term and its prose, and the text of every
other element is gathered into paragraphs at the block-level boundaries a browser would draw. Sphinx's
admonition titles lead their first paragraph ("Note: ..."), as in the reStructuredText loader.

A ``<header>`` inside ``<article>`` or ``<main>`` is kept (it holds the article's title); elsewhere it is
the site header and is dropped. Class and id names are matched as whole words ("sidebar", "navbar"),
except cookie/consent/GDPR banners, which are matched anywhere in the name.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from aifab.corpus.loaders.build import DocumentBuilder
from aifab.corpus.loaders.markup import Prose
from aifab.corpus.loaders.text import TextLoader
from aifab.errors import InvalidDocument

if TYPE_CHECKING:  # imported when an HTML page is loaded: lxml takes a noticeable time to import
    from lxml import etree
    from lxml.html import HtmlElement

_DROPPED_TAGS = frozenset(
    {"script", "style", "noscript", "template", "nav", "aside", "form", "button", "select", "textarea",
     "input", "label", "iframe", "svg", "canvas", "object", "embed", "footer", "dialog", "map", "audio",
     "video", "head", "link", "meta"}
)
_DROPPED_ROLES = frozenset({"navigation", "banner", "contentinfo", "complementary", "search", "dialog", "menu", "menubar"})
_DROPPED_NAMES = frozenset(
    {"sphinxsidebar", "sphinxsidebarwrapper", "related", "headerlink", "footer", "navbar", "nav", "navigation",
     "breadcrumb", "breadcrumbs", "sidebar", "skip-link", "skiplink", "menu", "share", "social", "advert",
     "ads", "newsletter", "popup", "modal", "rst-footer-buttons", "wy-nav-side", "wy-nav-top", "rst-versions",
     "viewcode-link", "copybutton", "toc", "site-header", "site-footer", "searchbox", "clearer"}
)
_BANNER = re.compile(r"cookie|consent|gdpr", re.IGNORECASE)
_BLOCK_TAGS = frozenset(
    {"address", "article", "blockquote", "body", "center", "dd", "details", "div", "dl", "dt", "fieldset",
     "figcaption", "figure", "h1", "h2", "h3", "h4", "h5", "h6", "header", "hgroup", "hr", "html", "li",
     "main", "menu", "dir", "ol", "ul", "p", "pre", "section", "summary", "table", "caption", "legend"}
)
_LIST_TAGS = frozenset({"ul", "ol", "menu", "dir"})
_XML_DECLARATION = re.compile(r"^\s*<\?xml[^>]*\?>")
# Stands for <br> until the source's own (insignificant) whitespace has been collapsed.
_BREAK = "\ue000"


class HtmlLoader(TextLoader):
    formats: tuple[str, ...] = ("html",)
    maps_to_file = False  # a page's words sit among tags and scripts: offsets index the extracted text

    def parse(self, text: str, builder: DocumentBuilder) -> None:
        import lxml.html
        from lxml import etree

        try:
            root = lxml.html.document_fromstring(_XML_DECLARATION.sub("", text, count=1))
        except (etree.ParserError, ValueError) as error:
            raise InvalidDocument(f"unreadable HTML ({error})") from None
        builder.title = root.findtext(".//title")
        _remove_boilerplate(root)
        for br in root.iter("br"):
            br.tail = _BREAK + (br.tail or "")
        _Walker(builder).container(_content_root(root), Prose(builder))


def _remove_boilerplate(root: HtmlElement) -> None:
    doomed = [element for element in root.iter() if _is_boilerplate(element)]
    for element in doomed:
        if element.getparent() is not None:
            element.drop_tree()  # keeps the text that follows the element


def _is_boilerplate(element: etree._Element) -> bool:
    if not isinstance(element.tag, str):
        return False  # comments and processing instructions: text_content() never includes them
    tag = element.tag.lower()
    if tag == "aside" and "footnote" in element.get("class", ""):
        return False  # docutils ≥ 0.18 writes footnotes as <aside>
    if tag in _DROPPED_TAGS:
        return True
    if tag == "header":
        return not any(ancestor.tag in ("article", "main") for ancestor in element.iterancestors())
    attributes = element.attrib
    if "hidden" in attributes or attributes.get("aria-hidden") == "true" or attributes.get("role") in _DROPPED_ROLES:
        return True
    names = f"{attributes.get('class', '')} {attributes.get('id', '')}"
    return bool(names.strip()) and (_BANNER.search(names) is not None or not _DROPPED_NAMES.isdisjoint(names.lower().split()))


def _content_root(root: HtmlElement) -> HtmlElement:
    for query in ("//main", "//*[@role='main']"):
        found = root.xpath(query)
        if found:
            return found[0]
    articles = root.xpath("//article")
    if len(articles) == 1:
        return articles[0]
    sphinx = root.xpath("//div[contains(concat(' ', normalize-space(@class), ' '), ' body ')]")
    if sphinx:
        return sphinx[0]
    body = root.find("body")
    return body if body is not None else root


class _Walker:
    def __init__(self, builder: DocumentBuilder) -> None:
        self.builder = builder

    def container(self, element: etree._Element, prose: Prose) -> None:
        """Inline content is gathered into a paragraph until the next block-level child."""
        pending = [element.text or ""]
        for child in element:
            tag = child.tag.lower() if isinstance(child.tag, str) else ""
            if tag in _BLOCK_TAGS:
                self._flush(pending, prose)
                if "admonition-title" in child.get("class", ""):
                    prose = prose.led(f"{_text(child)}:")  # Sphinx's "Note", as the rst loader writes it
                else:
                    self.block(child, tag, prose)
                pending = [child.tail or ""]
            else:
                pending.append(child.text_content() if tag else "")  # an inline element
                pending.append(child.tail or "")
        self._flush(pending, prose)

    def block(self, element: etree._Element, tag: str, prose: Prose) -> None:
        if tag[0] == "h" and tag[1:].isdigit():
            self.builder.heading(_text(element), int(tag[1:]))
        elif tag == "pre":
            prose.before_block()
            self.builder.code(element.text_content().replace(_BREAK, "\n"))
        elif tag == "table":
            prose.before_block()
            self._table(element, prose)
        elif tag in _LIST_TAGS:
            for number, item in enumerate((child for child in element if child.tag == "li"), start=1):
                self.container(item, prose.item(f"{number}." if tag == "ol" else "-"))
        elif tag == "dt":
            prose.paragraph(_text(element))
        elif tag != "hr":
            self.container(element, prose)

    def _table(self, table: etree._Element, prose: Prose) -> None:
        caption = table.find("caption")
        if caption is not None:
            prose.paragraph(_text(caption))
        rows = []
        for row in table.iter("tr"):
            if next(row.iterancestors("table")) is table:
                rows.append([_text(cell) for cell in row if cell.tag in ("td", "th")])
        self.builder.table(rows)

    @staticmethod
    def _flush(pending: list[str], prose: Prose) -> None:
        text = " ".join("".join(pending).split()).replace(_BREAK, "\n")
        if text.strip():
            prose.paragraph(text)


def _text(element: etree._Element) -> str:
    """An element's text on one line, source whitespace and <br> alike becoming single spaces."""
    return " ".join(element.text_content().replace(_BREAK, " ").split())
