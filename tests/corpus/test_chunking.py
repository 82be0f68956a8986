"""StructuredChunker with the real MiniLM tokenizer (no model load) on hand-built documents."""

from __future__ import annotations

import pytest
from tokenizers import Tokenizer

from aifab.corpus.chunking import StructuredChunker
from aifab.corpus.embedders import token_counter
from aifab.corpus.protocol import Chunk, Chunker, Document
from aifab.errors import ConfigError
from aifab.registry.defaults import DEFAULTS, locate
from aifab.testing.documents import DocumentBuilder

WORDS = ("retrieval index vector chunk token embedding model corpus section heading paragraph query answer "
         "citation offset page store batch loader source document").split()


def sentence(i: int, n: int = 12) -> str:
    words = [WORDS[(i * 7 + k * 3) % len(WORDS)] for k in range(n)]
    return f"{words[0].capitalize()} {' '.join(words[1:])} s{i}."


def prose(first: int, sentences: int) -> str:
    return " ".join(sentence(i) for i in range(first, first + sentences))


SMALL_CODE = "def add(a, b):\n    # the sum\n    return a + b\n\nprint(add(1, 2))"
BIG_CODE = "\n".join(f"    value_{i} = compute(value_{i - 1}, factor={i})  # step {i}" for i in range(1, 120))
TABLE = "| name | size |\n|---|---|\n" + "\n".join(f"| item{i} | {i * 10} |" for i in range(12))


@pytest.fixture(scope="module")
def count_tokens():
    path = locate(next(d for d in DEFAULTS if d.name == "all-minilm-l6-v2"))
    return token_counter(Tokenizer.from_file(str(path / "tokenizer.json")))


@pytest.fixture(scope="module")
def doc() -> Document:
    """Headings of three levels, long and short prose, code that fits and code that does not (inside
    fences a loader kept), a table, a list, and blocks on three pages."""
    return (
        DocumentBuilder()
        .paragraph("Preamble before any heading. " + prose(0, 3), page=1)
        .heading("Guide", 1, page=1)
        .paragraph(prose(10, 4), page=1)
        .heading("Install", 2, page=1)
        .paragraph(prose(20, 40), page=1)  # several chunks long
        .raw("\n\n```python").code(SMALL_CODE, page=2).raw("```")
        .heading("Details", 3, page=2)
        .paragraph(prose(100, 5), page=2)
        .raw("\n\n```").code(BIG_CODE, page=2).raw("```")
        .table(TABLE, page=3)
        .heading("Usage", 2, page=3)
        .items("- first item. " + prose(200, 2) + "\n- second item\n- third item", page=3)
        .paragraph(prose(300, 25), page=3)
        .heading("Reference", 1, page=3)
        .heading("API", 2, page=3)
        .paragraph(prose(400, 3), page=3)
        .build()
    )


SETTINGS = [(256, 32), (64, 0), (64, 16), (32, 8)]


@pytest.fixture(scope="module", params=SETTINGS, ids=[f"{n}-{o}" for n, o in SETTINGS])
def chunked(request, doc, count_tokens) -> tuple[StructuredChunker, list[Chunk]]:
    size, overlap = request.param
    chunker = StructuredChunker(count_tokens, chunk_tokens=size, overlap_tokens=overlap)
    return chunker, chunker.chunk(doc)


def blocks_of(doc: Document, kind: str):
    return [b for b in doc.blocks if b.kind == kind]


def test_implements_the_protocol(count_tokens):
    assert isinstance(StructuredChunker(count_tokens), Chunker)


def test_every_chunk_fits_by_exact_count_and_is_a_span_of_the_text(doc, chunked, count_tokens):
    chunker, chunks = chunked
    assert len(chunks) > 3
    assert count_tokens([c.text for c in chunks]) == [c.tokens for c in chunks]
    assert all(c.tokens <= chunker.chunk_tokens for c in chunks)
    assert all(doc.text[c.start : c.end] == c.text for c in chunks)
    assert all(c.text == c.text.rstrip() and not c.text.startswith("\n") for c in chunks)  # code keeps indents


def test_every_visible_character_of_the_content_is_in_a_chunk(doc, chunked):
    _, chunks = chunked
    covered = bytearray(len(doc.text))
    for c in chunks:
        covered[c.start : c.end] = b"\1" * (c.end - c.start)
    for b in doc.blocks:
        if b.kind != "heading":
            missing = [i for i in range(b.start, b.end) if not covered[i] and not doc.text[i].isspace()]
            assert not missing, f"{b.kind} block loses {doc.text[missing[0]:missing[0] + 20]!r}"


def test_no_chunk_spans_a_heading_and_sections_follow_the_headings(doc, chunked):
    _, chunks = chunked
    for h in blocks_of(doc, "heading"):
        for c in chunks:
            if c.start < h.start < c.end:  # only a run of headings may come before it, at the top
                before = [b for b in doc.blocks if c.start <= b.start < h.start]
                assert all(b.kind == "heading" for b in before), f"content before heading {h.text!r}"
    where = {
        "Preamble": (),
        sentence(10): ("Guide",),
        sentence(25): ("Guide", "Install"),
        "def add": ("Guide", "Install"),
        sentence(101): ("Guide", "Install", "Details"),
        "| item3 |": ("Guide", "Install", "Details"),
        "second item": ("Guide", "Usage"),  # level 2 closes the level-3 "Details"
        sentence(401): ("Reference", "API"),
    }
    for marker, section in where.items():
        holding = [c.section for c in chunks if marker in c.text]
        assert holding and all(s == section for s in holding), marker


def test_a_section_opens_with_its_heading_text(doc, count_tokens):
    chunks = StructuredChunker(count_tokens, chunk_tokens=128).chunk(doc)
    install = next(c for c in chunks if c.section == ("Guide", "Install"))
    assert install.text.startswith("Install")
    api = next(c for c in chunks if c.section == ("Reference", "API"))
    assert api.text.startswith("Reference") and "API" in api.text  # the heading run right above
    assert not any(c.text.startswith("Install") for c in chunks if c is not install)


def test_code_that_fits_stays_whole_and_big_code_is_cut_at_lines(doc, count_tokens):
    chunks = StructuredChunker(count_tokens, chunk_tokens=128, overlap_tokens=0).chunk(doc)
    small = blocks_of(doc, "code")[0]
    assert any(c.start <= small.start and small.end <= c.end for c in chunks)
    table = blocks_of(doc, "table")[0]
    assert any(c.start <= table.start and table.end <= c.end for c in chunks)
    big = blocks_of(doc, "code")[1]
    inside = [c for c in chunks if big.start < c.end and c.start < big.end]
    assert len(inside) > 3
    line_starts = {big.start} | {i + 1 for i in range(big.start, big.end) if doc.text[i] == "\n"}
    for c in inside:
        assert c.start in line_starts or c.start < big.start
        assert c.end == big.end or doc.text[c.end] == "\n" or c.end > big.end


def test_long_prose_is_cut_at_sentences(doc, count_tokens):
    chunks = StructuredChunker(count_tokens, chunk_tokens=100, overlap_tokens=0).chunk(doc)
    long = blocks_of(doc, "paragraph")[2]
    inside = [c for c in chunks if long.start <= c.start and c.end <= long.end]
    assert len(inside) >= 4
    assert all(c.text.endswith(".") and c.text[0].isupper() for c in inside)


def test_overlap_repeats_the_end_of_the_previous_chunk_within_a_section(doc, count_tokens):
    chunks = StructuredChunker(count_tokens, chunk_tokens=100, overlap_tokens=24).chunk(doc)
    pairs = list(zip(chunks, chunks[1:], strict=False))
    same = [(a, b) for a, b in pairs if a.section == b.section]
    overlapping = [(a, b) for a, b in same if b.start < a.end]
    assert len(overlapping) >= len(same) * 3 // 4 > 0
    for a, b in overlapping:
        repeated = doc.text[b.start : a.end]
        assert a.start < b.start and b.end > a.end  # a real step forward
        assert doc.text[b.start - 1].isspace()  # starts on a word
        assert count_tokens([repeated])[0] - 2 <= 24 + 4  # about the overlap (estimated, small margin)
    for a, b in pairs:
        if a.section != b.section:
            assert b.start >= a.end  # never across a heading


def test_no_overlap_when_disabled(chunked):
    chunker, chunks = chunked
    if chunker.overlap_tokens == 0:
        assert all(b.start >= a.end for a, b in zip(chunks, chunks[1:], strict=False))


def test_page_is_the_page_of_the_block_a_chunk_starts_in(doc, chunked):
    _, chunks = chunked
    for c in chunks:
        block = next(b for b in doc.blocks if b.start <= c.start < b.end)
        assert c.page == block.page
    assert {c.page for c in chunks} == {1, 2, 3}


def test_an_unpunctuated_run_and_a_giant_word_are_cut_at_token_boundaries(count_tokens):
    run = " ".join(WORDS[i % len(WORDS)] for i in range(1500))
    blob = "ab,cd-" * 400  # one "word" of about 2000 tokens
    doc = DocumentBuilder().paragraph(run).paragraph(f"Before {blob} after.").build()
    chunker = StructuredChunker(count_tokens, chunk_tokens=64, overlap_tokens=8)
    chunks = chunker.chunk(doc)
    assert all(c.tokens <= 64 for c in chunks) and count_tokens([c.text for c in chunks]) == [c.tokens for c in chunks]
    covered = "".join(doc.text[c.start : c.end] for c in chunks)
    assert covered.count("ab,cd-") >= 400 and "after." in covered
    assert sum(c.tokens for c in chunks[:5]) / 5 > 48  # runs are packed, not one word per chunk


def test_a_counter_that_is_not_additive_is_still_respected(doc, count_tokens):
    """Estimates from the pieces' counts are exact for WordPiece; with a tokenizer where joining costs
    extra the exact check of every chunk must catch and re-cut."""

    def newline_costs_three(texts):
        return [n + 3 * t.count("\n") for n, t in zip(count_tokens(texts), texts, strict=True)]

    chunker = StructuredChunker(newline_costs_three, chunk_tokens=64, overlap_tokens=16)
    chunks = chunker.chunk(doc)
    assert newline_costs_three([c.text for c in chunks]) == [c.tokens for c in chunks]
    assert all(c.tokens <= 64 for c in chunks)


def test_counts_in_a_few_batch_calls(doc, count_tokens):
    calls = []

    def counting(texts):
        calls.append(len(texts))
        return count_tokens(texts)

    StructuredChunker(counting, chunk_tokens=128).chunk(doc)
    assert len(calls) <= 3, calls  # pieces, (finer pieces,) chunks


def test_deterministic_and_empty(doc, count_tokens):
    chunker = StructuredChunker(count_tokens, chunk_tokens=64)
    assert chunker.chunk(doc) == chunker.chunk(doc)
    assert chunker.chunk(DocumentBuilder().build()) == []
    blank = Document("b.txt", "txt", "b", "  \n\n ", [])
    assert chunker.chunk(blank) == []
    headings_only = DocumentBuilder().heading("Title").heading("Sub", 2).build()
    assert chunker.chunk(headings_only) == []


def test_a_document_without_blocks_is_chunked_as_prose(count_tokens):
    text = "\n" + prose(0, 30) + "\n\n" + prose(50, 2) + "\n"
    chunks = StructuredChunker(count_tokens, chunk_tokens=64, overlap_tokens=0).chunk(Document("a.txt", "txt", "a", text, []))
    assert len(chunks) > 3 and chunks[0].start == 1 and chunks[-1].end == len(text) - 1
    assert all(c.section == () and c.page is None for c in chunks)


def test_fingerprint_names_everything_that_changes_the_chunks(count_tokens):
    base = StructuredChunker(count_tokens, tokenizer_name="minilm")
    prints = [
        base.fingerprint(),
        StructuredChunker(count_tokens, chunk_tokens=128, tokenizer_name="minilm").fingerprint(),
        StructuredChunker(count_tokens, overlap_tokens=0, tokenizer_name="minilm").fingerprint(),
        StructuredChunker(count_tokens, tokenizer_name="other").fingerprint(),
    ]
    assert len({tuple(sorted(p.items())) for p in prints}) == 4
    assert base.fingerprint() == StructuredChunker(count_tokens, tokenizer_name="minilm").fingerprint()
    assert {"class", "version"} <= set(base.fingerprint())


def test_bad_sizes_are_config_errors(count_tokens):
    with pytest.raises(ConfigError):
        StructuredChunker(count_tokens, chunk_tokens=4)
    with pytest.raises(ConfigError):
        StructuredChunker(count_tokens, chunk_tokens=64, overlap_tokens=64)
