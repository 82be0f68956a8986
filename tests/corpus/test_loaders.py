"""The document loaders, on real files made here by real writers (fpdf2, python-docx) or written out."""

from __future__ import annotations

import io
import json
import zipfile

import docx
import pytest
from fpdf import FPDF

from aifab.corpus.loaders import LOADERS, detect_format, load_document
from aifab.corpus.protocol import Document, Loader
from aifab.errors import InvalidDocument

MB = 1024 * 1024


def load(data: bytes | str, source: str, *, max_bytes: int = 10 * MB) -> Document:
    """``load_document``, and the checks every document must pass whatever its format."""
    doc = load_document(data.encode() if isinstance(data, str) else data, source, max_bytes=max_bytes)
    end = 0
    for block in doc.blocks:
        assert doc.text[block.start : block.end] == block.text
        assert block.text.strip() and block.start >= end  # non-empty, in order, not overlapping
        end = block.end
    return doc


def kinds(doc: Document) -> list[tuple[str, str]]:
    return [(block.kind, block.text) for block in doc.blocks]


def rejected(data: bytes | str, source: str, *, max_bytes: int = 10 * MB) -> str:
    with pytest.raises(InvalidDocument) as caught:
        load_document(data.encode() if isinstance(data, str) else data, source, max_bytes=max_bytes)
    return caught.value.message


# --- PDF ------------------------------------------------------------------------------------------------


class _Report(FPDF):
    def header(self) -> None:
        self.set_font("Helvetica", size=9)
        self.cell(0, 6, "ACME Corp internal report", new_x="LMARGIN", new_y="NEXT")

    def footer(self) -> None:
        self.set_y(-15)
        self.set_font("Helvetica", size=9)
        self.cell(0, 6, f"Page {self.page_no()}")


def make_pdf(pages: int = 3, **encryption: str) -> bytes:
    """A report with a running header and footer, a hyphenated line break and two paragraphs a page."""
    pdf = _Report()
    pdf.set_title("Quarterly report")
    if encryption:
        pdf.set_encryption(**encryption)
    for number in range(1, pages + 1):
        pdf.add_page()
        pdf.set_font("Helvetica", "B", size=16)
        pdf.cell(0, 10, f"Chapter {number}", new_x="LMARGIN", new_y="NEXT")
        pdf.set_font("Helvetica", size=12)
        pdf.multi_cell(0, 6, f"Page {number} opens here. The loader reads each page and keeps the infor-\n"
                             "mation together even when the typesetter broke a word across two lines.")
        pdf.ln(6)
        pdf.multi_cell(0, 6, f"A second paragraph on page {number} talks about state-of-the-art methods.")
    return bytes(pdf.output())


def test_pdf_paragraphs_carry_their_page():
    doc = load(make_pdf(), "report.pdf")
    assert doc.format == "pdf" and doc.metadata["pages"] == 3
    for number in (1, 2, 3):
        on_page = [block for block in doc.blocks if block.page == number]
        assert [block.text for block in on_page] == [
            f"Chapter {number}",
            f"Page {number} opens here. The loader reads each page and keeps the information together even "
            "when the typesetter broke a word across two lines.",
            f"A second paragraph on page {number} talks about state-of-the-art methods.",
        ]
    assert {block.kind for block in doc.blocks} == {"paragraph"}


def test_pdf_running_headers_and_footers_are_dropped():
    doc = load(make_pdf(), "report.pdf")
    assert "ACME Corp" not in doc.text and "Page 2\n" not in doc.text + "\n"
    assert doc.title == "Quarterly report"  # no headings in a PDF: its info dictionary


def test_pdf_is_found_by_content_whatever_the_name():
    doc = load(make_pdf(pages=1), "notes.txt")
    assert doc.format == "pdf" and doc.blocks[0].page == 1


def test_truncated_pdf_is_reported_as_corrupt():
    assert rejected(make_pdf()[:700], "report.pdf").startswith("corrupt PDF (")


def test_pdf_with_a_password_is_refused_without_one():
    data = make_pdf(pages=1, owner_password="owner", user_password="secret")
    assert rejected(data, "locked.pdf").startswith("encrypted PDF")


def test_pdf_restricted_by_an_owner_password_only_is_read():
    doc = load(make_pdf(pages=1, owner_password="owner"), "restricted.pdf")
    assert "information together" in doc.text


def test_pdf_without_text_is_reported_as_scanned():
    pdf = FPDF()
    pdf.add_page()
    pdf.rect(20, 20, 100, 150, style="F")  # a "scan": marks on the page, no text
    assert rejected(bytes(pdf.output()), "scan.pdf") == "no extractable text (scanned PDF?)"


# --- DOCX -----------------------------------------------------------------------------------------------


def make_docx() -> bytes:
    document = docx.Document()
    document.add_heading("Onboarding guide", level=1)
    document.add_paragraph("Welcome to the team. This guide explains the first week.")
    document.add_heading("Accounts", level=2)
    document.add_paragraph("Request a laptop", style="List Bullet")
    document.add_paragraph("Install the VPN client", style="List Bullet 2")
    document.add_paragraph("Meet your mentor", style="List Number")
    document.add_paragraph("Read the handbook", style="List Number")
    table = document.add_table(rows=3, cols=2)
    for row, cells in enumerate([("System", "Owner"), ("Email", "IT desk"), ("Payroll", "HR")]):
        for column, text in enumerate(cells):
            table.cell(row, column).text = text
    document.add_heading("Security", level=3)
    document.add_paragraph("Lock your screen when you leave your desk.")
    return _saved(document)


def _saved(document: docx.document.Document) -> bytes:
    buffer = io.BytesIO()
    document.save(buffer)
    return buffer.getvalue()


def test_docx_headings_lists_and_tables():
    doc = load(make_docx(), "guide.docx")
    assert doc.format == "docx" and doc.title == "Onboarding guide"
    assert [(b.text, b.level) for b in doc.blocks if b.kind == "heading"] == [
        ("Onboarding guide", 1), ("Accounts", 2), ("Security", 3)
    ]
    assert kinds(doc)[1:] == [
        ("paragraph", "Welcome to the team. This guide explains the first week."),
        ("heading", "Accounts"),
        ("list", "- Request a laptop"),
        ("list", "  - Install the VPN client"),
        ("list", "1. Meet your mentor"),
        ("list", "2. Read the handbook"),
        ("table", "System | Owner\nEmail | IT desk\nPayroll | HR"),
        ("heading", "Security"),
        ("paragraph", "Lock your screen when you leave your desk."),
    ]
    assert "- Request a laptop\n  - Install the VPN client\n1. Meet" in doc.text  # a list reads as one


def test_docx_without_headings_takes_its_title_from_core_properties():
    document = docx.Document()
    document.core_properties.title = "Core title"
    document.add_paragraph("Only a paragraph.")
    assert load(_saved(document), "memo.docx").title == "Core title"


def test_truncated_docx_is_reported_as_corrupt():
    assert rejected(make_docx()[:2000], "guide.docx").startswith("corrupt DOCX (")


def test_other_zip_archives_are_binary():
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("xl/workbook.xml", "<workbook/>")
    assert rejected(buffer.getvalue(), "sheet.docx") == "binary file (Excel workbook)"


# --- HTML -----------------------------------------------------------------------------------------------

PAGE = """<!DOCTYPE html>
<html><head><title>Deploying aifab | Example Docs</title>
<style>body { color: red }</style><script>trackVisitor("secret-tracker");</script></head>
<body>
<header class="site"><a href="/">Example Docs home</a></header>
<nav><ul><li><a href="/a">Navigation link one</a></li><li>Navigation link two</li></ul></nav>
<div id="cookie-consent">We use cookies to improve your experience. <button>Accept all</button></div>
<div class="page">
<aside class="sidebar"><h3>Related articles</h3><p>Sidebar promotion text</p></aside>
<article>
  <header><h1>Deploying aifab</h1></header>
  <p>Deploy the server on one machine first.
     Scale out later.</p>
  <h2>Install</h2>
  <pre><code>pip install aifab
if ready:
    aifab up --port 8000</code></pre>
  <ul><li>Python 3.11<ul><li>with venv</li></ul></li><li>2 GB of memory</li></ul>
  <table><tr><th>Setting</th><th>Default</th></tr><tr><td>port</td><td>8000</td></tr></table>
  <form><label>Subscribe to our newsletter</label><input name="email"></form>
  <h3>Check</h3>Loose text in the article<br>with a line break.
</article>
</div>
<footer>Copyright 2024 Example Corp. All rights reserved.</footer>
</body></html>"""


def test_html_boilerplate_is_removed():
    doc = load(PAGE, "deploy.html")
    for boilerplate in ("secret-tracker", "color: red", "Example Docs home", "Navigation link", "cookies",
                        "Accept all", "Related articles", "Sidebar promotion", "newsletter", "Copyright"):
        assert boilerplate not in doc.text


def test_html_structure():
    doc = load(PAGE, "deploy.html")
    assert doc.format == "html" and doc.title == "Deploying aifab"
    assert [(b.text, b.level) for b in doc.blocks if b.kind == "heading"] == [
        ("Deploying aifab", 1), ("Install", 2), ("Check", 3)
    ]
    assert kinds(doc) == [
        ("heading", "Deploying aifab"),
        ("paragraph", "Deploy the server on one machine first. Scale out later."),
        ("heading", "Install"),
        ("code", "pip install aifab\nif ready:\n    aifab up --port 8000"),
        ("list", "- Python 3.11"),
        ("list", "  - with venv"),
        ("list", "- 2 GB of memory"),
        ("table", "Setting | Default\nport | 8000"),
        ("heading", "Check"),
        ("paragraph", "Loose text in the article with a line break."),
    ]


def test_html_title_without_headings_comes_from_the_title_element():
    assert load("<html><head><title>Plain page</title></head><body><p>Text.</p></body></html>", "p.html").title == "Plain page"


def test_sphinx_html_keeps_the_body_only():
    page = """<!DOCTYPE html><html><head><title>os — Miscellaneous</title></head><body>
    <div class="related" role="navigation"><h3>Navigation</h3><ul><li>modules |</li></ul></div>
    <div class="document"><div class="documentwrapper"><div class="bodywrapper"><div class="body" role="main">
    <section id="os"><h1>os — Miscellaneous interfaces<a class="headerlink" href="#os">¶</a></h1>
    <p>This module provides a portable way of using operating system dependent functionality.</p>
    <div class="admonition note"><p class="admonition-title">Note</p><p>All functions raise OSError.</p></div>
    <dl class="py function"><dt class="sig"><span>os.</span><span>getcwd</span>()<a class="headerlink">¶</a></dt>
    <dd><p>Return a string representing the current working directory.</p></dd></dl>
    </section></div></div></div>
    <div class="sphinxsidebar" role="navigation"><h3>Previous topic</h3><p>Quick search</p></div></div>
    <div class="footer">© Copyright 2001-2023, Python Software Foundation.</div></body></html>"""
    doc = load(page, "os.html")
    assert kinds(doc) == [
        ("heading", "os — Miscellaneous interfaces"),
        ("paragraph", "This module provides a portable way of using operating system dependent functionality."),
        ("paragraph", "Note: All functions raise OSError."),
        ("paragraph", "os.getcwd()"),
        ("paragraph", "Return a string representing the current working directory."),
    ]


# --- Markdown -------------------------------------------------------------------------------------------

README = """---
title: Front matter title
tags: [docs]
---

# Quick start

aifab serves **local** models behind an [OpenAI-compatible API](https://example.com/api).
Install it with `pip` and run
the server.

Configuration
-------------

```python
def main():
    app = build()

    # the blank line above stays inside the block
    app.run(port=8000)
```

- first item
- second item
  wrapped onto two lines
  1. nested step

| Option | Default |
|--------|---------|
| `port` | 8000    |

> A quoted *note*.

    $ indented code
      stays as written

<!-- an HTML comment -->
The end.
"""


def test_markdown_blocks():
    doc = load(README, "README.md")
    assert doc.format == "md" and doc.title == "Quick start"
    assert kinds(doc) == [
        ("heading", "Quick start"),
        ("paragraph", "aifab serves local models behind an OpenAI-compatible API. Install it with pip and run the server."),
        ("heading", "Configuration"),
        ("code", "def main():\n    app = build()\n\n    # the blank line above stays inside the block\n    app.run(port=8000)"),
        ("list", "- first item"),
        ("list", "- second item wrapped onto two lines"),
        ("list", "  1. nested step"),
        ("table", "Option | Default\nport | 8000"),
        ("paragraph", "A quoted note."),
        ("code", "$ indented code\n  stays as written"),
        ("paragraph", "The end."),
    ]
    assert [b.level for b in doc.blocks if b.kind == "heading"] == [1, 2]
    assert "front matter" not in doc.text.lower() and "example.com" not in doc.text


# --- reStructuredText -----------------------------------------------------------------------------------

RST = """:mod:`json` --- JSON encoder and decoder
========================================

.. module:: json
   :synopsis: Encode and decode the JSON format.

.. index:: single: JSON

**Source code:** :source:`Lib/json/__init__.py`

--------------

`JSON (JavaScript Object Notation) <https://json.org>`_ is a lightweight data
interchange format, used with :func:`dumps` and :meth:`~json.JSONDecoder.decode`
(see RFC_ 7159 [#]_).

.. warning::

   Be cautious when parsing JSON data from untrusted sources.

.. This comment is dropped, with
   its second line.

Encoding basic Python object hierarchies::

    >>> import json
    >>> json.dumps(['foo', {'bar': ('baz', None, 1.0, 2)}])
    '["foo", {"bar": ["baz", null, 1.0, 2]}]'

Basic Usage
-----------

.. function:: dumps(obj, *, skipkeys=False, \\
                indent=None)

   Serialize *obj* to a JSON formatted :class:`str` using this
   :ref:`conversion table <py-to-json-table>`.

   .. versionchanged:: 3.6
      *skipkeys* is now keyword-only.

   .. code-block:: python

      import json

      print(json.dumps({"a": 1}, indent=4))

Command line
^^^^^^^^^^^^

* ``--sort-keys`` sorts the output.
* ``--indent`` sets the indentation.

=========  ==============
Python     JSON
=========  ==============
dict       object
list       array
=========  ==============

.. toctree::
   :maxdepth: 2

   json.tool
"""


def test_rst_like_the_python_docs():
    doc = load(RST, "library/json.rst.txt")
    assert doc.format == "rst" and doc.title == "json --- JSON encoder and decoder"
    assert kinds(doc) == [
        ("heading", "json --- JSON encoder and decoder"),
        ("paragraph", "Source code: Lib/json/__init__.py"),
        ("paragraph", "JSON (JavaScript Object Notation) is a lightweight data interchange format, used with "
                      "dumps() and decode() (see RFC 7159)."),
        ("paragraph", "Warning: Be cautious when parsing JSON data from untrusted sources."),
        ("paragraph", "Encoding basic Python object hierarchies:"),
        ("code", ">>> import json\n>>> json.dumps(['foo', {'bar': ('baz', None, 1.0, 2)}])\n"
                 "'[\"foo\", {\"bar\": [\"baz\", null, 1.0, 2]}]'"),
        ("heading", "Basic Usage"),
        ("paragraph", "dumps(obj, *, skipkeys=False, indent=None)"),
        ("paragraph", "Serialize obj to a JSON formatted str using this conversion table."),
        ("paragraph", "Changed in version 3.6: skipkeys is now keyword-only."),
        ("code", 'import json\n\nprint(json.dumps({"a": 1}, indent=4))'),
        ("heading", "Command line"),
        ("list", "- --sort-keys sorts the output."),
        ("list", "- --indent sets the indentation."),
        ("table", "Python | JSON\ndict | object\nlist | array"),
    ]
    assert [b.level for b in doc.blocks if b.kind == "heading"] == [1, 2, 3]  # by first appearance


def test_rst_overlined_titles_are_a_level_of_their_own():
    text = "=======\n Title\n=======\n\nSection\n=======\n\nText.\n\nNext\n====\n"
    doc = load(text, "doc.rst")
    assert [(b.text, b.level) for b in doc.blocks if b.kind == "heading"] == [("Title", 1), ("Section", 2), ("Next", 2)]


# --- CSV, JSON, JSON Lines ------------------------------------------------------------------------------


def test_csv_rows_name_their_columns():
    doc = load('name,city,notes\nAda,London,"wrote the first program, 1843"\nAlan,,\n', "people.csv")
    assert doc.format == "csv" and doc.metadata["rows"] == 2
    assert kinds(doc) == [
        ("table", "name: Ada; city: London; notes: wrote the first program, 1843"),
        ("table", "name: Alan"),
    ]


def test_csv_is_found_by_its_shape():
    data = "id;product;price\n1;apple;0.5\n2;pear;0.7\n3;plum;0.2\n"
    assert detect_format(data.encode(), "export") == "csv"
    assert load(data, "export").blocks[0].text == "id: 1; product: apple; price: 0.5"


def test_json_is_flattened_per_top_level_element():
    data = json.dumps({"service": {"name": "aifab", "ports": [8000, 8001]}, "debug": False, "owner": None})
    doc = load(data, "config.json")
    assert doc.format == "json"
    assert kinds(doc) == [
        ("table", "service.name: aifab\nservice.ports[0]: 8000\nservice.ports[1]: 8001"),
        ("table", "debug: false"),
        ("table", "owner: null"),
    ]


def test_json_lines_give_one_block_per_record():
    data = '{"q": "What is RAG?", "tags": ["rag"]}\n\n{"q": "Où est la gare ?"}\n'
    doc = load(data, "faq.jsonl")
    assert doc.format == "jsonl" and doc.metadata["records"] == 2
    assert kinds(doc) == [("table", "q: What is RAG?\ntags[0]: rag"), ("table", "q: Où est la gare ?")]


def test_broken_json_names_the_place():
    assert rejected('{"a": 1,\n "b": }', "data.json").startswith("invalid JSON at line 2 column")
    assert rejected('{"a": 1}\n{"a": \n', "data.jsonl").startswith("line 2 is not valid JSON")


# --- Plain text and encodings ---------------------------------------------------------------------------


def test_plain_text_paragraphs():
    doc = load("First paragraph, soft\nwrapped with an infor-\nmation break.\n\n\nSecond one.\n", "notes.txt")
    assert doc.format == "txt" and doc.title == "notes"
    assert kinds(doc) == [
        ("paragraph", "First paragraph, soft wrapped with an information break."),
        ("paragraph", "Second one."),
    ]


@pytest.mark.parametrize(
    ("encoding", "name"),
    [("utf-16", "utf-16"), ("utf-8-sig", "utf-8-sig"), ("cp1252", "cp1252"), ("utf-8", "utf-8")],
)
def test_text_encodings(encoding, name):
    text = "Crème brûlée – “naïve” café façade.\r\n\r\nZweiter Absatz: Grüße aus Köln."
    doc = load(text.encode(encoding), "menu.txt")
    assert kinds(doc) == [
        ("paragraph", "Crème brûlée – “naïve” café façade."),
        ("paragraph", "Zweiter Absatz: Grüße aus Köln."),
    ]
    assert doc.metadata["encoding"] == name


def test_html_declared_charset_is_believed():
    page = '<html><head><meta charset="windows-1251"><title>Новости</title></head><body><p>Привет, мир!</p></body></html>'
    doc = load(page.encode("cp1251"), "news.html")
    assert doc.title == "Новости" and doc.text == "Привет, мир!" and doc.metadata["encoding"] == "cp1251"


def test_utf8_read_once_as_cp1252_is_repaired():
    garbled = "Crème brûlée".encode().decode("cp1252")  # "CrÃ¨me brÃ»lÃ©e", saved again as UTF-8
    assert load(garbled, "menu.txt").text == "Crème brûlée"


# --- Sniffing and refusals ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "source", "format"),
    [
        (RST, "library/json.rst.txt", "rst"),
        ("Title\n=====\n\n.. note:: Text.\n", "notes.txt", "rst"),
        ("# Heading\n\nText with a [link](x.html).\n", "notes.txt", "md"),
        ("<!doctype html><p>Hi</p>", "page.txt", "html"),
        ("  <html><body><p>Hi</p></body></html>", "page", "html"),
        ('{"a": 1}', "data", "json"),
        ('{"a": 1}\n{"a": 2}\n', "data.txt", "jsonl"),
        ("Just a sentence.\n", "plain.md", "md"),
        ("Just a sentence, with a comma.\n", "report.pdf", "txt"),  # a .pdf that is text
        ("Dear Ada,\nThanks for the notes, they helped.\nBest, Alan\n", "letter", "txt"),  # commas, not a table
    ],
)
def test_format_is_sniffed_from_content(data, source, format):
    assert detect_format(data.encode(), source) == format


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "empty file"),
        (b" \n\t\r\n  ", "empty file"),
        ("\ufeff  \n".encode("utf-16"), "empty file"),
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "binary file (PNG image)"),
        (b"\x7fELF\x02\x01\x01\x00" + bytes(64), "binary file (ELF executable)"),
        (b"text then \x00\x01\x02\x03 binary", "binary file (contains NUL bytes)"),
    ],
)
def test_unloadable_files_say_why(data, reason):
    assert rejected(data, "upload.txt") == reason


def test_file_over_the_limit_says_both_sizes():
    assert rejected(b"x" * (3 * MB), "big.txt", max_bytes=2 * MB) == "file is 3 MB, over the limit of 2 MB"
    assert rejected(b"x" * 2048, "small.txt", max_bytes=1024) == "file is 2 KB, over the limit of 1 KB"


def test_title_falls_back_to_the_file_name():
    assert load("No headings here.", "docs/library/os.rst.txt").title == "os"
    assert load("a,b\n1,2\n", "exports/2024 sales.csv").title == "2024 sales"


@pytest.mark.parametrize(
    ("text", "source"),
    [("> " * 3000 + "quoted", "deep.md"), ("".join(" " * depth + "quote\n\n" for depth in range(300)), "deep.rst")],
)
def test_absurd_nesting_is_refused_not_crashed(text, source):
    assert rejected(text, source) == "nested too deeply to read"


@pytest.mark.parametrize("source", ["report.pdf", "guide.docx", "page.html", "README.md", "json.rst", "data.json"])
def test_damaged_files_load_or_say_why(source):
    """Truncated or overwritten anywhere, a file either loads or raises InvalidDocument, nothing else."""
    original = {
        "report.pdf": make_pdf(), "guide.docx": make_docx(), "page.html": PAGE.encode(), "README.md": README.encode(),
        "json.rst": RST.encode(), "data.json": b'{"a": [1, {"b": "two"}], "c": null}',
    }[source]
    for cut in range(1, 20):
        position = len(original) * cut // 20
        for damaged in (original[:position], original[:position] + b"\xff\x00garbage" + original[position + 12 :]):
            try:
                load(damaged, source)
            except InvalidDocument as error:
                assert error.message and "\n" not in error.message


def test_every_loader_is_a_loader_that_works_on_its_own():
    assert set(LOADERS) == {"txt", "md", "rst", "html", "pdf", "docx", "csv", "json", "jsonl"}
    for name, loader in LOADERS.items():
        assert isinstance(loader, Loader) and name in loader.formats
    assert LOADERS["md"].load(b"# Title\n\nBody.", "x.md").title == "Title"
    assert LOADERS["pdf"].load(make_pdf(pages=1), "x.pdf").blocks[0].page == 1
