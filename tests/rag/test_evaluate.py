"""The eval harness: question files, gold matching, retrieval metrics, answer checks."""

from __future__ import annotations

import json
import math

import pytest

from aifab.errors import InvalidRequest
from aifab.rag.evaluate import (
    QA,
    Gold,
    containment,
    evaluate_retrieval,
    exact_match,
    f1,
    judge_answer,
    load_qa,
    relevance,
    retrieval_metrics,
    supported_share,
)


def test_load_qa_reads_text_and_reference_golds(tmp_path):
    path = tmp_path / "qa.jsonl"
    path.write_text("\n".join([
        json.dumps({"question": "Q1?", "gold": "the passage"}),
        "",
        json.dumps({"question": "Q2?", "gold": [{"source": "a.md", "section": "Intro"}, "other"], "answer": "42"}),
    ]))
    qas = load_qa(path)
    assert [q.line for q in qas] == [1, 3]
    assert qas[0].gold == [Gold(text="the passage")]
    assert qas[1].gold == [Gold(source="a.md", section="Intro"), Gold(text="other")] and qas[1].answer == "42"


@pytest.mark.parametrize("line, words", [
    ("{not json", "qa.jsonl:2"),
    (json.dumps({"gold": "x"}), "question"),
    (json.dumps({"question": "q", "gold": {"sourcefile": "x"}}), "gold reference takes"),
    (json.dumps({"question": "q", "gold": 3}), "'gold' is a passage text"),
])
def test_bad_lines_are_named_by_number(tmp_path, line, words):
    path = tmp_path / "qa.jsonl"
    path.write_text(json.dumps({"question": "fine", "gold": "x"}) + "\n" + line + "\n")
    with pytest.raises(InvalidRequest, match=words):
        load_qa(path)


def test_gold_matching_by_source_section_range_and_text():
    meta = {"source": "/docs/lib/os.rst.txt", "section": ["os", "Files"], "start": 100, "end": 200}
    assert Gold(source="os.rst.txt").matches("", meta) and Gold(source="lib/os.rst.txt").matches("", meta)
    assert not Gold(source="s.rst.txt").matches("", meta)  # a trailing path part, not a suffix of a name
    assert Gold(section="Files").matches("", meta) and not Gold(section="Dirs").matches("", meta)
    assert Gold(start=150, end=400).matches("", meta) and not Gold(start=200, end=300).matches("", meta)
    text = "Open a file and return a stream. The stream is buffered."
    assert Gold(text="open a file, and return a stream").matches(text, meta)  # case and punctuation aside
    assert Gold(text="The stream is buffered. It closes itself.").matches(text, meta)  # 4 of 7 words, whole
    assert not Gold(text="open a file and return a corresponding file object").matches(text, meta)
    assert not Gold(text="close the socket when the peer goes away").matches(text, meta)
    assert containment("a a b", "a b") == pytest.approx(2 / 3)


def test_the_swallow_gold_is_not_found_in_a_passage_that_only_shares_its_words():
    """A gold that is in no document must not be found: the loose rule (half of the gold's words, stop
    words counted) found this one at rank 8 of a real run."""
    gold = Gold(text="African or European swallow? This text is not in the docs.")
    passage = ("This module is not in the docs of the standard library: the text of its docstring is "
               "European in origin, or so the African maintainers say.")
    assert containment(gold.text or "", passage) >= 0.5  # what the loose rule went by
    assert not gold.matches(passage, {})
    assert relevance([gold], [("zeta", {})] * 7 + [(passage, {})]) == [-1] * 8
    assert gold.matches("Question: African or European swallow? Nobody knows.", {}) is False  # 4 of 11
    assert gold.matches("Well. This text is not in the docs. African or European swallow?", {})


def test_each_gold_counts_once_at_its_best_rank():
    golds = [Gold(text="alpha beta"), Gold(text="gamma delta")]
    ranked = [("zeta", {}), ("alpha beta", {}), ("alpha beta again", {}), ("gamma delta", {})]
    assert relevance(golds, ranked) == [-1, 0, -1, 1]


def test_retrieval_metrics_by_hand():
    # q1: gold at rank 2; q2: gold at rank 1 and a second gold at rank 3; q3: nothing found
    m = retrieval_metrics([(1, [-1, 0, -1]), (2, [0, -1, 1]), (1, [-1, -1, -1])])
    assert m["recall@1"] == pytest.approx(1 / 3) and m["recall@5"] == pytest.approx(2 / 3)
    assert m["mrr@10"] == pytest.approx((1 / 2 + 1 + 0) / 3)
    ndcg_q1 = 1 / math.log2(3)
    ndcg_q2 = (1 + 1 / math.log2(4)) / (1 + 1 / math.log2(3))
    assert m["ndcg@10"] == pytest.approx((ndcg_q1 + ndcg_q2 + 0) / 3)
    with pytest.raises(InvalidRequest, match="no question has a gold"):
        retrieval_metrics([(0, [])])


def test_evaluate_retrieval_runs_any_search():
    qas = [QA(1, "where is alpha", [Gold(text="alpha here")]), QA(2, "where is beta", [Gold(text="beta here")])]
    corpus = {"where is alpha": [("alpha here", {"source": "a"})], "where is beta": [("nothing", {}), ("beta here", {})]}
    metrics, rows = evaluate_retrieval(lambda q: corpus[q], qas)
    assert metrics["recall@1"] == 0.5 and metrics["recall@5"] == 1.0
    assert [r["first_relevant_rank"] for r in rows] == [1, 2]


def test_answer_checks():
    assert exact_match("The Danube.", "danube") == 1.0 and f1("the river Danube", "Danube river") == 1.0
    assert f1("Rhine", "Danube") == 0.0
    sources = {1: "The Danube flows through Vienna into the Black Sea.", 2: "Cats purr."}
    answer = "The Danube flows through Vienna [1]. It reaches the Black Sea. Dogs bark loudly [2]."
    # sentence 1 supported by [1]; sentence 2 has no marker, so the answer's citations [1][2] count: supported;
    # sentence 3 cites [2], which says nothing of dogs
    assert supported_share(answer, sources) == pytest.approx(2 / 3)
    assert supported_share("No citations here.", sources) == 0.0
    cites = [{"index": 1, "cited": True, "text": sources[1], "source": "/d/rivers.md", "section": [], "start": 0, "end": 9},
             {"index": 2, "cited": False, "text": sources[2], "source": "/d/cats.md", "section": [], "start": 0, "end": 9}]
    row = judge_answer(QA(1, "q", [Gold(source="cats.md")], "Danube"), "The Danube [1].", cites)
    assert row["cites_gold"] is False and row["gold_in_sources"] is True and row["exact_match"] == 1.0


def test_supported_reads_markers_only_and_grounded_reads_every_source():
    """An attributed citation counts for citing gold, but never for ``supported``: attribution found it by
    similarity to the very sentence ``supported`` would judge."""
    text = "The Danube flows through Vienna into the Black Sea."
    cite = {"index": 1, "cited": True, "found": "attributed", "text": text, "source": "/d/rivers.md",
            "section": [], "start": 0, "end": 9}
    row = judge_answer(QA(1, "q", [Gold(source="rivers.md")]), "The Danube flows through Vienna.", [cite])
    assert row["cites_gold"] is True and row["attributed"] is True
    assert row["supported"] == 0.0 and row["grounded"] == 1.0
    row = judge_answer(QA(1, "q", [Gold(source="rivers.md")]), "The Danube flows through Vienna [1].",
                       [{**cite, "found": "marker"}])
    assert row["supported"] == 1.0 and row["attributed"] is False
    row = judge_answer(QA(1, "q"), "Cats purr loudly at night.", [{**cite, "cited": False, "found": None}])
    assert row["grounded"] == 0.0
