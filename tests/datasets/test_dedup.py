"""Near-duplicate removal finds exactly the pairs a brute-force Jaccard comparison finds."""

from __future__ import annotations

import random

from aifab.finetune.datasets.dedup import dedupe, jaccard, shingles


def brute_force(texts: list[str], threshold: float) -> list[str]:
    kept: list[tuple[str, frozenset[str]]] = []
    seen: set[str] = set()
    for t in texts:
        key = " ".join(t.casefold().split())
        if key in seen:
            continue
        seen.add(key)
        mine = shingles(key)
        if not any(jaccard(mine, theirs) >= threshold for _, theirs in kept):
            kept.append((t, mine))
    return [t for t, _ in kept]


def test_prefix_filtering_matches_brute_force():
    rng = random.Random(7)
    vocab = [f"w{i}" for i in range(40)]
    bases = [[rng.choice(vocab) for _ in range(rng.randint(20, 60))] for _ in range(30)]
    texts = []
    for _ in range(300):
        words = list(rng.choice(bases))
        for _ in range(rng.choice([0, 0, 1, 1, 2, 5])):  # a few edits: some pairs just above 0.9, some below
            words[rng.randrange(len(words))] = rng.choice(vocab)
        texts.append(" ".join(words).upper() if rng.random() < 0.1 else " ".join(words))
    result = dedupe(texts, lambda t: t)
    expected = brute_force(texts, 0.9)
    assert result.kept == expected
    assert result.exact + result.near + len(result.kept) == len(texts) and result.near > 0 and result.exact > 0


def test_boundary_and_short_texts():
    base = " ".join(f"t{i}" for i in range(30))  # 28 shingles; one changed word in the middle changes 3
    near = base.replace("t15", "x")
    assert jaccard(shingles(base), shingles(near)) == 25 / 31
    assert len(dedupe([base, near], lambda t: t).kept) == 2  # 0.81: kept apart
    long = " ".join(f"t{i}" for i in range(60))
    assert dedupe([long, long.replace("t30", "x")], lambda t: t).near == 1  # 55/61 = 0.90
    assert dedupe(["Hi!", "hi", "Hello"], lambda t: t).kept == ["Hi!", "Hello"]  # punctuation aside, the same words
