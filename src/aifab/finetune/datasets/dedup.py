"""Exact and near-duplicate removal for fine-tuning examples, without dependencies.

Exact: the same text once case is folded and whitespace collapsed. Near: word 3-shingle sets with a Jaccard
similarity of at least ``threshold`` (0.9). Near pairs are found exactly, not estimated as with MinHash:
prefix filtering (Chaudhuri et al. 2006, "A primitive operator for similarity joins") sorts each set's
shingles by global rarity, and two sets with Jaccard >= t must share a shingle among the first
``|x| - ceil(t·|x|) + 1`` of either; only those candidates, of compatible sizes, are compared in full. Rare
shingles make the candidate lists short, so the cost stays close to linear in the text.

Limits: the first of a group is kept, in the order given (callers sort by content hash, so the choice is
stable); near duplicates are judged on the whole conversation, so two long, nearly identical prompts
with different short answers count as near duplicates.
"""

from __future__ import annotations

import math
import re
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

T = TypeVar("T")
THRESHOLD = 0.9
SHINGLE = 3
_WORD = re.compile(r"\w+")
_SPACE = re.compile(r"\s+")


@dataclass(frozen=True)
class Deduped(Generic[T]):
    kept: list[T]
    exact: int  # dropped as exact duplicates
    near: int  # dropped as near duplicates


def normalise(text: str) -> str:
    """Case folded, whitespace collapsed: what "exactly the same" means here."""
    return _SPACE.sub(" ", text.casefold()).strip()


def example_text(example: dict[str, Any]) -> str:
    """The text an example is compared by: each message as ``role: content``, then chosen and rejected."""
    parts = [f"{m.get('role')}: {m.get('content')}" for m in example.get("messages", [])]
    parts += [f"{field}: {example[field]}" for field in ("chosen", "rejected") if field in example]
    return "\n".join(parts)


def shingles(text: str, size: int = SHINGLE) -> frozenset[str]:
    words = _WORD.findall(text.casefold())
    if len(words) < size:
        return frozenset([" ".join(words)]) if words else frozenset()
    return frozenset(" ".join(words[i:i + size]) for i in range(len(words) - size + 1))


def jaccard(a: frozenset[str], b: frozenset[str]) -> float:
    if not a and not b:
        return 1.0
    common = len(a & b)
    return common / (len(a) + len(b) - common)


def dedupe(items: Sequence[T], text: Callable[[T], str], *, threshold: float = THRESHOLD) -> Deduped[T]:
    """Keep the first of every group of exact or near duplicates, in the order given."""
    seen: set[str] = set()
    unique: list[tuple[T, frozenset[str]]] = []
    for item in items:
        key = normalise(text(item))
        if key not in seen:
            seen.add(key)
            unique.append((item, shingles(key)))
    kept = _drop_near(unique, threshold)
    return Deduped(kept, exact=len(items) - len(unique), near=len(unique) - len(kept))


def _drop_near(items: list[tuple[T, frozenset[str]]], threshold: float) -> list[T]:
    frequency = Counter(s for _, sets in items for s in sets)
    # one global order, rarest first (ties by the shingle itself): the prefix bound needs the same order for all
    rank = {s: i for i, s in enumerate(sorted(frequency, key=lambda s: (frequency[s], s)))}
    index: defaultdict[int, list[int]] = defaultdict(list)  # prefix shingle rank -> kept positions
    kept: list[tuple[T, frozenset[str]]] = []
    for item, sets in items:
        ordered = sorted(rank[s] for s in sets)
        prefix = ordered[:_prefix(len(ordered), threshold)]
        if sets and _has_near(sets, prefix, index, kept, threshold):
            continue
        for r in prefix:
            index[r].append(len(kept))
        kept.append((item, sets))
    return [item for item, _ in kept]


def _has_near(sets: frozenset[str], prefix: list[int], index: dict[int, list[int]],
              kept: list[tuple[Any, frozenset[str]]], threshold: float) -> bool:
    low, high = threshold * len(sets) - 1e-9, len(sets) / threshold + 1e-9  # sizes a match can have
    checked: set[int] = set()
    for r in prefix:
        for pos in index.get(r, ()):
            if pos in checked:
                continue
            checked.add(pos)
            other = kept[pos][1]
            if low <= len(other) <= high and jaccard(sets, other) >= threshold:
                return True
    return False


def _prefix(size: int, threshold: float) -> int:
    # the epsilon keeps 0.9 * 10 = 9.000000000000002 from rounding up to 10 and shortening the prefix
    return size - math.ceil(threshold * size - 1e-9) + 1
