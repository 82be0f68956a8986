"""Citations that are always there: attribution of unmarked answer sentences after generation (#17)."""

from __future__ import annotations

from aifab.rag.attribution import Attributor, sentence_spans
from aifab.rag.citations import StreamCiter, citations
from aifab.rag.protocol import Passage
from aifab.testing import FakeEmbedder

PASSAGES = [
    Passage("a", "d1", "The Danube flows through Vienna and Budapest. It ends in the Black Sea.", 0.0, 0.9,
            {"source": "rivers.md", "start": 10, "end": 80}),
    Passage("b", "d2", "Cats sleep sixteen hours a day. They purr when content.", 0.0, 0.5, {"source": "cats.md"}),
    Passage("c", "d3", "The Rhine reaches the North Sea at Rotterdam, a large port.", 0.0, 0.4, {"source": "rhine.md"}),
]


def attributor() -> Attributor:
    return Attributor(FakeEmbedder(dimensions=256).embed)


def test_a_sentence_copied_from_a_passage_cites_it_and_an_unrelated_one_cites_nothing():
    found = attributor().attribute(
        ["The Danube flows through Vienna and Budapest.", "Quantum chromodynamics binds quarks with gluons.",
         "Cats sleep sixteen hours a day.", "Yes."],
        PASSAGES,
    )
    assert found == [[0], [], [1], []]


def test_citations_say_how_they_were_found():
    answer = "The Danube flows through Vienna and Budapest. The Rhine reaches the North Sea at Rotterdam [3]. " \
             "Quantum chromodynamics binds quarks with gluons."
    out = citations(PASSAGES, answer, attributor())
    by_index = {c["index"]: c for c in out}
    assert (by_index[1]["cited"], by_index[1]["found"]) == (True, "attributed")
    assert (by_index[3]["cited"], by_index[3]["found"]) == (True, "marker")
    assert (by_index[2]["cited"], by_index[2]["found"]) == (False, None)
    (start, end), = by_index[1]["answer_spans"]
    assert answer[start:end] == "The Danube flows through Vienna and Budapest."
    (start, end), = by_index[3]["answer_spans"]
    assert answer[start:end].endswith("[3].")
    assert by_index[1]["source"] == "rivers.md" and by_index[1]["start"] == 10


def test_without_an_attributor_only_markers_cite():
    out = citations(PASSAGES, "The Danube flows through Vienna and Budapest. See [2] and [7].")
    assert [(c["cited"], c["found"]) for c in out] == [(False, None), (True, "marker"), (False, None)]


def test_sentence_spans():
    text = "First one. Second, with 3.5 numbers!  \nA line without a stop\n\nLast?"
    assert [text[a:b] for a, b in sentence_spans(text)] == [
        "First one.", "Second, with 3.5 numbers!", "A line without a stop", "Last?"]


def test_a_stream_cited_sentence_by_sentence_agrees_with_the_whole_answer():
    answer = "The Danube flows through Vienna and Budapest. The Rhine reaches the North Sea at Rotterdam [3]. " \
             "Quantum chromodynamics binds quarks with gluons."
    citer = StreamCiter(PASSAGES, attributor())
    found, completed_at = [], []
    for i, ch in enumerate(answer):  # a character a delta
        for span in citer.feed(ch):
            completed_at.append(i)
            found.append(citer.cite(span))
    for span in citer.finish():
        found.append(citer.cite(span))
    assert found[0] == {"answer_span": [0, 45], "sources": [1], "found": "attributed"}
    assert found[1]["sources"] == [3] and found[1]["found"] == "marker" and found[2] is None
    assert completed_at[0] < answer.index("Rhine")  # cited once the next sentence began, not at the end
    whole = {c["index"]: c for c in citations(PASSAGES, answer, attributor())}
    for event in filter(None, found):
        for n in event["sources"]:
            assert tuple(event["answer_span"]) in whole[n]["answer_spans"]
    # the stream's own list at the end is the whole answer's, without embedding anything again
    embed = citer.attributor.embed
    citer.attributor.embed = lambda texts: (_ for _ in ()).throw(AssertionError("embedded again"))
    try:
        assert citer.citations() == list(whole.values())
    finally:
        citer.attributor.embed = embed
