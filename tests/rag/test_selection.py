"""Context selection: the best sentences within a token budget, with exact offsets (#17)."""

from __future__ import annotations

import re

from aifab.config import RetrievalSettings
from aifab.rag.protocol import Passage
from aifab.rag.selection import GAP, embedded_similarity, select_context, stored_similarity
from aifab.testing import FakeEmbedder

DOCS = {
    "rivers.md": "# Rivers\n\nThe Danube is long. It flows through Vienna and\nBudapest. Boats carry grain on it. "
                 "Its delta is in Romania. Storks nest there in spring. Fishermen sell carp at the market. "
                 "The water is brown after rain.\n\n## Rhine\n\nThe Rhine rises in the Swiss Alps. It reaches "
                 "the North Sea at Rotterdam.\n",
    "cats.md": "# Cats\n\nCats sleep sixteen hours a day. They purr when content. Kittens play at dusk.\n",
}
_WORD = re.compile(r"\w+")


def words(text: str) -> list[str]:
    return _WORD.findall(text.casefold())


def count(text: str) -> int:
    return len(text.split())


def test_selection_keeps_the_best_sentences_and_their_exact_places(corpus_tools, tmp_path):
    make_corpus, ingest = corpus_tools
    corpus = make_corpus(tmp_path)
    ingest(corpus, tmp_path / "docs", docs=DOCS)
    from aifab.rag import Rag

    rag = Rag(corpus.settings, corpus)
    passages = rag.retrieve("kb", "delta in Romania", settings=RetrievalSettings(reranker="none"))
    picked = select_context("delta in Romania", passages, similarity=embedded_similarity(FakeEmbedder().embed),
                            count_tokens=count, budget=18)
    assert sum(count(p.text) for p in picked) <= 18
    danube = next(p for p in picked if "delta" in p.text)
    # the best sentence with one neighbour each side, in their order
    assert danube.text == "Boats carry grain on it. Its delta is in Romania. Storks nest there in spring."
    assert "Cats" not in " ".join(p.text for p in picked)  # nothing of it was picked: left out
    for p in picked:
        raw = DOCS[p.metadata["source"].rsplit("/", 1)[-1]]
        parts = p.text.split(GAP)
        assert len(parts) == len(p.metadata["spans"])
        for part, (start, end) in zip(parts, p.metadata["spans"], strict=True):
            assert words(raw[start:end]) == words(part)  # the file's own text, line breaks and all
        assert (p.metadata["start"], p.metadata["end"]) == (p.metadata["spans"][0][0], p.metadata["spans"][-1][1])
        assert p.place()["spans"] == p.metadata["spans"]


def test_runs_that_are_not_adjacent_are_joined_with_a_gap():
    text = "Alpha one here. Beta two here. Gamma three here. Delta four here. Epsilon five here."
    sentences, at = [], 0
    for s in text.split(". "):
        s = s.rstrip(".") + "."
        start = text.index(s, at)
        sentences.append([start, start + len(s), 100 + start, 100 + start + len(s)])
        at = start + len(s)
    p = Passage("p", "d", text, 1.0, 0.5, {"source": "x.txt", "start": 100, "end": 100 + len(text),
                                            "sentences": sentences})
    (out,) = select_context("alpha epsilon", [p], similarity=embedded_similarity(FakeEmbedder().embed), count_tokens=count, budget=8,
                            neighbours=0)
    assert out.text == "Alpha one here." + GAP + "Epsilon five here."
    assert out.metadata["spans"] == [[100, 115], [100 + text.index("Epsilon"), 100 + len(text)]]


def test_a_budget_the_passages_fit_in_changes_nothing():
    p = Passage("p", "d", "Short text. Two sentences.", 1.0, 0.5, {"source": "x.txt"})
    assert select_context("q", [p], similarity=embedded_similarity(FakeEmbedder().embed), count_tokens=count, budget=100) == [p]
    assert select_context("q", [p], similarity=embedded_similarity(FakeEmbedder().embed), count_tokens=count, budget=0) == [p]
    (cut,) = select_context("short text", [p], similarity=embedded_similarity(FakeEmbedder().embed), count_tokens=count, budget=3,
                            neighbours=0)
    assert cut.text == "Short text." and cut.metadata["spans_in"] == "passage"  # no stored places: its own text


async def test_the_model_is_given_the_selected_sentences_and_citations_keep_their_places(corpus_tools, tmp_path):
    from aifab.rag import Rag
    from aifab.testing import FakeEngine

    make_corpus, ingest = corpus_tools
    corpus = make_corpus(tmp_path)
    ingest(corpus, tmp_path / "docs", docs=DOCS)
    rag = Rag(corpus.settings, corpus)
    engine = FakeEngine(context_length=8192)
    try:
        small = RetrievalSettings(reranker="none", context_tokens=60, min_score=-1)  # tokens are bytes here
        whole = RetrievalSettings(reranker="none", context_tokens=0, min_score=-1)
        question = [{"role": "user", "content": "delta in Romania"}]
        cut = await rag.prepare(rag.app_for_collection("kb", retrieval=small), question, engine, max_tokens=16)
        full = await rag.prepare(rag.app_for_collection("kb", retrieval=whole), question, engine, max_tokens=16)
    finally:
        engine.close()
    assert "Its delta is in Romania." in cut.prompt and "Fishermen sell carp" not in cut.prompt
    assert "Fishermen sell carp" in full.prompt and cut.prompt_tokens < full.prompt_tokens
    cites = rag.cite(cut, "Its delta is in Romania.")
    (cite,) = [c for c in cites if c["cited"]]
    (start, end), = cite["spans"]
    assert DOCS["rivers.md"][start:end] == "Its delta is in Romania"


def test_stored_token_vectors_score_each_sentence_without_encoding_it():
    from aifab.stores.tokens import pack

    fake = FakeEmbedder()
    text = DOCS["rivers.md"]
    rows = fake.token_vectors([text])[0]
    cut = len(fake.token_spans([text])[0]) - 6  # as if the embedder had stopped before the last sentence
    p = Passage("c1", "d1", text, 1.0, 0.5, {"source": "rivers.md"}, stored=pack(rows[:cut]))
    sentences = [(0, m.start(), m.end()) for m in re.finditer(r"[^.\n]+\.", text)]
    score = stored_similarity(fake.token_vectors, fake.token_spans)("delta in Romania", [p], sentences)
    texts = [text[a:b].strip() for _, a, b in sentences]
    assert texts[int(score.argmax())] == "Its delta is in Romania."
    assert score[texts.index("Storks nest there in spring.")] < score.max()
    assert texts[-1] == "It reaches the North Sea at Rotterdam." and score[-1] == 0  # past the stored rows
    fake.calls.clear()
    picked = select_context("delta in Romania", [p], similarity=stored_similarity(fake.token_vectors, fake.token_spans),
                            count_tokens=count, budget=18)
    assert "Its delta is in Romania." in picked[0].text and fake.calls == []  # nothing embedded
