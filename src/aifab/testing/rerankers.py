"""``RerankerConformance``: what every ``Reranker`` must do, as a test class to subclass.

    class TestMyReranker(RerankerConformance):
        @pytest.fixture
        def reranker(self):
            return MyReranker(...)

        @pytest.fixture
        def make_passages(self):   # optional: attach what your reranker reads (e.g. ``Passage.stored``)
            return lambda texts: [Passage(f"p{i}", "d", t, 0.0, 0.0) for i, t in enumerate(texts)]
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence

import pytest

from aifab.rag.protocol import Passage, Reranker

MakePassages = Callable[[Sequence[str]], list[Passage]]
TEXTS = [
    "The Danube flows through Vienna and Budapest into the Black Sea.",
    "Cats sleep sixteen hours a day and purr when content.",
    "The Rhine rises in the Swiss Alps and reaches the North Sea at Rotterdam.",
    "A list comprehension builds a list from an iterable in one expression.",
    "Rotterdam is a port city; ships from the Rhine unload there.",
]


class RerankerConformance:
    @pytest.fixture
    def reranker(self) -> Reranker:
        raise NotImplementedError("subclasses provide the reranker under test")

    @pytest.fixture
    def make_passages(self) -> MakePassages:
        return lambda texts: [Passage(f"p{i}", f"d{i}", t, 0.0, 0.0) for i, t in enumerate(texts)]

    def test_it_is_a_reranker_with_a_name(self, reranker: Reranker) -> None:
        assert isinstance(reranker, Reranker) and reranker.name and isinstance(reranker.uses_stored, bool)

    def test_nothing_in_nothing_out(self, reranker: Reranker) -> None:
        assert reranker.rerank("anything", []) == []

    def test_same_passages_sorted_by_their_new_score(self, reranker: Reranker, make_passages: MakePassages) -> None:
        passages = make_passages(TEXTS)
        for p in passages:
            p.score = -1.0
        out = reranker.rerank("Where does the Rhine reach the sea?", passages)
        assert sorted(p.id for p in out) == sorted(p.id for p in passages)  # none dropped, added or doubled
        scores = [p.score for p in out]
        assert all(math.isfinite(s) for s in scores) and scores == sorted(scores, reverse=True)
        assert scores != [-1.0] * len(scores)  # it scored them

    def test_a_passage_saying_what_was_asked_wins(self, reranker: Reranker, make_passages: MakePassages) -> None:
        out = reranker.rerank("Cats sleep sixteen hours a day and purr when content", make_passages(TEXTS))
        assert out[0].id == "p1"

    def test_order_does_not_depend_on_the_order_given(self, reranker: Reranker, make_passages: MakePassages) -> None:
        query = "Rhine Rotterdam port"
        first = [p.id for p in reranker.rerank(query, make_passages(TEXTS))]
        shuffled = make_passages(TEXTS)
        random.Random(3).shuffle(shuffled)
        assert [p.id for p in reranker.rerank(query, shuffled)] == first
        twins = make_passages([TEXTS[0], TEXTS[0], TEXTS[1]])  # equal scores: ties go to the id
        assert [p.id for p in reranker.rerank(query, list(reversed(twins)))][:2] == ["p0", "p1"]
