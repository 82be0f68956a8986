"""The eval harness: question sets in JSONL, retrieval metrics, and answer checks.

A line is ``{"question": ..., "gold": ..., "answer": ...}``. ``gold`` (one or a list) is either the
text of a passage that answers the question, or a source reference ``{"source": "library/os.rst.txt",
"section": "...", "start": 120, "end": 480, "text": "..."}`` with any subset of those keys. A retrieved
passage is relevant to a gold entry when every key given matches: ``source`` equal to the passage's
source or a trailing part of it; ``section`` one of its headings; ``start``/``end`` overlapping its
character range; ``text`` held *strictly*: whole sentences of the gold, each found in the passage as one unbroken run of
words (case and punctuation aside), that together make up at least half of the gold's words (all of a
one-sentence gold). Loose word containment, the earlier rule, counted "African or European swallow? This
text is not in the docs." as found in a passage that merely used half of those words, stop words included.
``answer`` (optional) enables exact match and F1 of answers.
"""

from __future__ import annotations

import json
import math
import re
import string
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aifab.errors import InvalidRequest
from aifab.rag.citations import cited_numbers, strip_markers
from aifab.stores.lexical import STOPWORDS, words

_SENTENCE = re.compile(r"(?<=[.!?])\s+|\n+")
GOLD_SHARE = 0.5  # share of the gold passage's words that its sentences found whole in a passage must make up


@dataclass
class Gold:
    text: str | None = None
    source: str | None = None
    section: str | None = None
    start: int | None = None
    end: int | None = None

    def matches(self, text: str, metadata: dict[str, Any]) -> bool:
        if self.source is not None:
            have = str(metadata.get("source", ""))
            if have != self.source and not have.endswith("/" + self.source.lstrip("/")):
                return False
        if self.section is not None and self.section not in (metadata.get("section") or []):
            return False
        if self.start is not None or self.end is not None:
            lo, hi = metadata.get("start"), metadata.get("end")
            if lo is None or hi is None:
                return False
            if not (lo < (self.end if self.end is not None else math.inf) and hi > (self.start or 0)):
                return False
        return self.text is None or holds_sentences(text, self.text) >= GOLD_SHARE


@dataclass
class QA:
    line: int
    question: str
    gold: list[Gold] = field(default_factory=list)
    answer: str | None = None


def containment(needle: str, haystack: str) -> float:
    """The share of ``needle``'s words (with multiplicity) that ``haystack`` holds."""
    want = Counter(words(needle))
    if not want:
        return 0.0
    have = Counter(words(haystack))
    return sum(min(n, have[w]) for w, n in want.items()) / sum(want.values())


def holds_sentences(passage: str, gold: str) -> float:
    """The share of ``gold``'s words that lie in its sentences found whole (as an unbroken run of words,
    case and punctuation aside) in ``passage``; a sentence cut by a chunk boundary does not count."""
    sentences = [words(s) for s in _SENTENCE.split(gold)]
    total = sum(len(s) for s in sentences)
    if not total:
        return 0.0
    haystack = f" {' '.join(words(passage))} "
    found = sum(len(s) for s in sentences if s and f" {' '.join(s)} " in haystack)
    return found / total


def load_qa(path: Path) -> list[QA]:
    """Parse a JSONL question set; any bad line is an error naming its line number."""
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidRequest(f"cannot read question set {path}: {exc}") from exc
    out = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            if not isinstance(row, dict) or not str(row.get("question", "")).strip():
                raise ValueError("needs a non-empty 'question'")
            out.append(QA(number, str(row["question"]), _golds(row.get("gold")), row.get("answer")))
        except (ValueError, TypeError) as exc:
            raise InvalidRequest(f"{path}:{number}: {exc}") from exc
    if not out:
        raise InvalidRequest(f"{path} holds no questions")
    return out


def _golds(value: Any) -> list[Gold]:
    if value is None:
        return []
    items = value if isinstance(value, list) else [value]
    golds = []
    for item in items:
        if isinstance(item, str):
            golds.append(Gold(text=item))
        elif isinstance(item, dict):
            unknown = set(item) - {"text", "source", "section", "start", "end"}
            if unknown or not item:
                raise ValueError(f"a gold reference takes text, source, section, start, end (got {sorted(item)})")
            golds.append(Gold(**item))
        else:
            raise ValueError("'gold' is a passage text, a source reference object, or a list of them")
    return golds


# --- retrieval ------------------------------------------------------------------------------------


def relevance(golds: Sequence[Gold], ranked: Sequence[tuple[str, dict[str, Any]]]) -> list[int]:
    """For each ranked (text, metadata): the index of the gold entry it is the first hit for, else -1.
    A gold entry counts once, at its best rank (several chunks of one passage are one find)."""
    found: set[int] = set()
    out = []
    for text, metadata in ranked:
        hit = next((i for i, g in enumerate(golds) if i not in found and g.matches(text, metadata)), -1)
        if hit >= 0:
            found.add(hit)
        out.append(hit)
    return out


def retrieval_metrics(judged: Iterable[tuple[int, list[int]]], ks: Sequence[int] = (1, 5, 10)) -> dict[str, float]:
    """recall@k (a gold found in the top k), MRR@10 and nDCG@10 (binary gains, one per gold entry)
    over (number of gold entries, relevance list) pairs."""
    rows = [(n, rel) for n, rel in judged if n > 0]
    if not rows:
        raise InvalidRequest("no question has a gold reference to judge retrieval by")
    out: dict[str, float] = {}
    for k in ks:
        out[f"recall@{k}"] = sum(any(r >= 0 for r in rel[:k]) for _, rel in rows) / len(rows)
    rr, ndcg = [], []
    for n, rel in rows:
        first = next((i for i, r in enumerate(rel[:10]) if r >= 0), None)
        rr.append(0.0 if first is None else 1.0 / (first + 1))
        dcg = sum(1.0 / math.log2(i + 2) for i, r in enumerate(rel[:10]) if r >= 0)
        ideal = sum(1.0 / math.log2(i + 2) for i in range(min(n, 10)))
        ndcg.append(dcg / ideal)
    out["mrr@10"] = sum(rr) / len(rr)
    out["ndcg@10"] = sum(ndcg) / len(ndcg)
    out["questions"] = float(len(rows))
    return out


# --- answers --------------------------------------------------------------------------------------


def normalise_answer(text: str) -> str:
    """SQuAD's normalisation: lower case, no punctuation, no articles, single spaces."""
    text = "".join(ch for ch in text.lower() if ch not in set(string.punctuation))
    return " ".join(w for w in text.split() if w not in {"a", "an", "the"})


def exact_match(prediction: str, gold: str) -> float:
    return float(normalise_answer(prediction) == normalise_answer(gold))


def f1(prediction: str, gold: str) -> float:
    p, g = normalise_answer(prediction).split(), normalise_answer(gold).split()
    common = sum((Counter(p) & Counter(g)).values())
    if not p or not g or not common:
        return float(p == g)
    precision, recall = common / len(p), common / len(g)
    return 2 * precision * recall / (precision + recall)


def _supported(sentence: str, text: str, support: float) -> bool:
    content = " ".join(w for w in words(strip_markers(sentence)) if w not in STOPWORDS and len(w) > 1)
    return bool(content) and containment(content, text) >= support


def supported_share(answer: str, cited_texts: dict[int, str], support: float = 0.5) -> float:
    """The share of the answer's sentences whose content words are at least ``support`` found in the
    text of the sources they cite (their own ``[n]`` markers, else those of the whole answer).
    A sentence that cites nothing is unsupported. A lexical proxy for entailment: cheap, model-free."""
    sentences = [s for s in _SENTENCE.split(answer) if words(s)]
    if not sentences:
        return 0.0
    everywhere = [n for n in cited_numbers(answer) if n in cited_texts]
    supported = 0
    for sentence in sentences:
        numbers = [n for n in cited_numbers(sentence) if n in cited_texts] or everywhere
        if numbers and _supported(sentence, " ".join(cited_texts[n] for n in numbers), support):
            supported += 1
    return supported / len(sentences)


def grounded_share(answer: str, sources: Sequence[str], support: float = 0.5) -> float:
    """The share of the answer's sentences supported (as in ``supported_share``) by any one source given to
    the model, whatever the answer cites: does the answer rest on its context at all."""
    sentences = [s for s in _SENTENCE.split(answer) if words(s)]
    if not sentences:
        return 0.0
    return sum(any(_supported(s, text, support) for text in sources) for s in sentences) / len(sentences)


# --- runs -----------------------------------------------------------------------------------------

Ranked = list[tuple[str, dict[str, Any]]]  # (text, metadata) best first


def evaluate_retrieval(
    search: Callable[[str], Ranked], qas: Sequence[QA], *, on_progress: Callable[[int], None] | None = None,
) -> tuple[dict[str, float], list[dict[str, Any]]]:
    """Metrics of ``search`` (question -> ranked passages, at least 10 deep) over ``qas``, and one row per
    question (its first relevant rank, or None) for inspecting misses."""
    judged, rows = [], []
    for i, qa in enumerate(qas):
        ranked = search(qa.question)
        rel = relevance(qa.gold, ranked)
        judged.append((len(qa.gold), rel))
        first = next((r + 1 for r, g in enumerate(rel) if g >= 0), None)
        rows.append({"line": qa.line, "question": qa.question, "first_relevant_rank": first,
                     "top": [m.get("source") for _, m in ranked[:3]]})
        if on_progress:
            on_progress(i + 1)
    return retrieval_metrics(judged), rows


def judge_answer(qa: QA, answer: str, citations: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """One answer's checks: does it cite a gold source, EM/F1 against the gold answer, supported share.

    ``supported`` reads only the model's own ``[n]`` markers (citations ``found`` by ``marker``), never the
    attributed ones: attribution picks sources by similarity to the sentence, so judging a sentence by the
    source attribution chose for it would grade attribution by its own signal. ``grounded`` reads every
    source given, whatever is cited. ``cites_gold`` counts both kinds of citation; ``attributed`` says
    whether the answer had any attributed one."""
    cited = [c for c in citations if c["cited"]]
    marked = {c["index"]: c["text"] for c in cited if c.get("found", "marker") == "marker"}
    row: dict[str, Any] = {
        "line": qa.line,
        "question": qa.question,
        "answer": answer,
        "cited": [c["index"] for c in cited],
        "supported": supported_share(answer, marked),
        "grounded": grounded_share(answer, [c["text"] for c in citations]),
        "attributed": any(c.get("found") == "attributed" for c in cited),
        "abstained": not citations,
    }
    if qa.gold:
        row["cites_gold"] = any(g.matches(c["text"], c) for c in cited for g in qa.gold)
        row["gold_in_sources"] = any(g.matches(c["text"], c) for c in citations for g in qa.gold)
    if qa.answer is not None:
        bare = strip_markers(answer)  # citation markers are not part of the answer
        row["exact_match"] = exact_match(bare, qa.answer)
        row["f1"] = f1(bare, qa.answer)
    return row


def summarise_answers(rows: Sequence[dict[str, Any]]) -> dict[str, float]:
    out: dict[str, float] = {"questions": float(len(rows))}
    for key in ("cites_gold", "gold_in_sources", "exact_match", "f1", "supported", "grounded", "attributed",
                "abstained"):
        values = [float(r[key]) for r in rows if key in r]
        if values:
            out[key] = sum(values) / len(values)
    return out
