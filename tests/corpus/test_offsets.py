"""Chunk offsets point into the file: for text formats ``raw[start:end]`` is the cited place (#17)."""

from __future__ import annotations

import io
import json
import re

import docx
import pytest
from fpdf import FPDF

from aifab.corpus.chunking import StructuredChunker
from aifab.corpus.loaders import load_document
from aifab.corpus.loaders.decode import decode_text
from aifab.corpus.sourcemap import align
from aifab.testing import FakeEmbedder

MD = (
    "# Staff handbook\r\n\r\nWork starts at nine. Lunch is a break of\r\nforty-five minutes.\r\n\r\n"
    "## Holidays\r\n\r\nEvery employee gets **twenty-five** days of paid leave, booked in the\r\n"
    "[leave planner](https://example.com/leave) at least two weeks ahead.\r\n\r\n"
    "- Public holidays are *extra*.\r\n- Unused days expire in `March`.\r\n"
)
RST = """\
.. _glossary:

********
Glossary
********

.. glossary::

   abstract base class
      Abstract base classes complement :term:`duck-typing` by
      providing a way to define interfaces when other techniques like
      :func:`hasattr` would be clumsy or subtly wrong (for example with
      :ref:`magic methods <special-lookup>`).

   argument
      A value passed to a :term:`function` (or :term:`method`) when calling the
      function.  There are two kinds of argument:

      * :dfn:`keyword argument`: an argument preceded by an identifier (e.g.
        ``name=``) in a function call.

.. note::

   The ``*`` in a signature marks the end of positional parameters.
"""
TXT = "Plain notes.\n\nThe first\nparagraph is wrapped\nover three lines.\n\n\n   Indented second paragraph.  \n"
CSV = "name,city,age\nAda Lovelace,London,36\n\"Grace, Hopper\",New York,85\n"
JSON = json.dumps({"title": "Config", "items": [{"key": "threads", "value": 2}, {"key": "port", "value": 8080}]},
                  indent=2)
JSONL = '{"q": "What is RAG?", "a": "Retrieval augmented generation."}\n{"q": "Why?", "a": "Grounding."}\n'

_WORD = re.compile(r"\w+")


def chunks_of(data: str, source: str, chunk_tokens: int = 24):
    doc = load_document(data.encode(), source, max_bytes=1 << 20)
    chunker = StructuredChunker.for_embedder(FakeEmbedder(), chunk_tokens=chunk_tokens, overlap_tokens=4)
    return doc, chunker.chunk(doc)


@pytest.mark.parametrize(("data", "source"), [(MD, "guide.md"), (RST, "glossary.rst"), (TXT, "notes.txt"),
                                              (CSV, "people.csv"), (JSON, "config.json"), (JSONL, "qa.jsonl")])
def test_every_text_format_cites_the_place_in_the_file(data: str, source: str) -> None:
    raw = decode_text(data.encode()).text
    doc, chunks = chunks_of(data, source)
    assert doc.offsets == "file" and len(chunks) >= 1
    for c in chunks:
        start, end = doc.file_span(c.start, c.end)
        cited = raw[start:end]
        words, cited_words = _WORD.findall(c.text.casefold()), _WORD.findall(cited.casefold())
        # the cited place begins with the passage's first word and ends with its last ...
        assert cited_words[0] == words[0] and cited_words[-1] == words[-1], (c.text, cited)
        # ... and holds all its words in order (markup between them is the file's own); a CSV header or
        # a JSON key the loader repeats on every record is in the file once
        repeated = {w for w in words if words.count(w) > cited_words.count(w)}
        it = iter(cited_words)
        assert all(w in it for w in words if w not in repeated), (c.text, cited)
        assert repeated <= {"name", "city", "age", "items", "key", "value", "0", "1"}


def test_markdown_heading_offset_is_the_heading_not_the_paragraph_before() -> None:
    doc, chunks = chunks_of(MD, "guide.md", chunk_tokens=16)
    raw = decode_text(MD.encode()).text
    holidays = next(c for c in chunks if c.text.startswith("Holidays"))
    start, _ = doc.file_span(holidays.start, holidays.end)
    assert raw[start:].startswith("Holidays\r\n\r\nEvery employee")


def test_rst_markup_stays_in_the_file_but_the_span_covers_it() -> None:
    doc, _ = chunks_of(RST, "glossary.rst", chunk_tokens=400)
    at = doc.text.index("Abstract base classes complement duck-typing")
    end = doc.text.index("magic methods") + len("magic methods")
    start, stop = doc.file_span(at, end)
    assert RST[start:stop] == (
        "Abstract base classes complement :term:`duck-typing` by\n      providing a way to define interfaces "
        "when other techniques like\n      :func:`hasattr` would be clumsy or subtly wrong (for example with\n"
        "      :ref:`magic methods")


def _pdf() -> bytes:
    pdf = FPDF()
    for number in (1, 2):
        pdf.add_page()
        pdf.set_font("Helvetica", size=12)
        pdf.multi_cell(0, 6, f"Page {number} says something about invoices and the way they are paid.")
    return bytes(pdf.output())


def _docx() -> bytes:
    document = docx.Document()
    document.add_heading("Onboarding guide", level=1)
    document.add_paragraph("Welcome to the team. This guide explains the first week.")
    out = io.BytesIO()
    document.save(out)
    return out.getvalue()


HTML = "<html><body><h1>Title</h1><p>First <b>bold</b> paragraph.</p><p>Second one.</p></body></html>"


@pytest.mark.parametrize(("data", "source"), [(HTML.encode(), "page.html"), (b"pdf", "report.pdf"),
                                              (b"docx", "guide.docx")])
def test_extracted_formats_offsets_index_the_extracted_text(data: bytes, source: str) -> None:
    data = {"report.pdf": _pdf, "guide.docx": _docx}.get(source, lambda: data)()
    doc = load_document(data, source, max_bytes=1 << 20)
    chunks = StructuredChunker.for_embedder(FakeEmbedder(), chunk_tokens=24, overlap_tokens=4).chunk(doc)
    assert doc.offsets == "extracted" and chunks
    if source == "report.pdf":
        assert all(c.page in (1, 2) for c in chunks) and chunks[0].page == 1
    for c in chunks:
        assert doc.file_span(c.start, c.end) == (c.start, c.end)
        assert doc.text[c.start : c.end] == c.text


def test_alignment_skips_long_regions_and_generated_words() -> None:
    raw = "intro words here\n" + ".. toctree::\n" + "   skipped entry\n" * 50 + "the body text after it"
    text = "intro words here\n\nGENERATED the body text after it"
    m = align(text, raw)
    s, e = m.span(text.index("the body"), len(text))
    assert raw[s:e] == "the body text after it"
    s, e = m.span(text.index("GENERATED"), text.index("GENERATED") + len("GENERATED"))
    assert s <= e and raw[s:e].strip().startswith(".. toctree")  # no word of its own: the gap it sits in


def test_ingested_chunks_carry_file_offsets(make_corpus, tmp_path) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "guide.md").write_bytes(MD.encode())
    corpus = make_corpus()
    corpus.ingest_paths("c", [folder])
    v = corpus.collections.version("c")
    (doc,) = corpus.collections.documents("c")
    records = corpus.store.fetch(v.namespace, sorted(corpus.store.document_chunks(v.namespace, doc.document_id)))
    assert records
    for r in records:
        m = r.metadata
        assert m["offsets"] == "file"
        assert MD[m["start"] : m["end"]].split()[0].strip("#*[") == r.text.split()[0]
        assert m["text_start"] < m["text_end"]


def test_each_sentence_of_a_chunk_knows_its_place_in_the_file() -> None:
    from aifab.corpus.ingest import sentence_places

    raw = decode_text(MD.encode()).text
    doc, chunks = chunks_of(MD, "guide.md", chunk_tokens=400)
    chunk = next(c for c in chunks if "Work starts" in c.text)  # a heading starts a chunk
    places = sentence_places(doc, chunk)
    texts = [chunk.text[a:b] for a, b, _, _ in places]
    assert "Work starts at nine." in texts and "Lunch is a break of forty-five minutes." in texts
    for (_, _, start, end), text in zip(places, texts, strict=True):
        assert _WORD.findall(raw[start:end].casefold())[0] == _WORD.findall(text.casefold())[0]
    lunch = places[texts.index("Lunch is a break of forty-five minutes.")]
    assert raw[lunch[2] : lunch[3]] == "Lunch is a break of\r\nforty-five minutes"
