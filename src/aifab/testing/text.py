"""A small, deterministic text corpus for training tests (no download, no package data needed).

Sentences are drawn from a fixed vocabulary with a seeded RNG, so the text has the statistics a
character or BPE model can learn in a few dozen steps (frequent words, punctuation, line structure).
"""

from __future__ import annotations

import random
from pathlib import Path

WORDS = (
    "the king queen lord lady speak night day love heart sword crown fair sweet gentle noble good "
    "shall will would must come go stay hear see know tell give take make thou thee thy my your our "
    "and but or if when then now here there what why how not no yes o alas farewell friend enemy"
).split()
NAMES = ("HAMLET", "OPHELIA", "ROMEO", "JULIET", "PORTIA", "LEAR")


def text_document(rng: random.Random, lines: int) -> str:
    """One play-like document: speaker names followed by verse lines."""
    out = []
    for _ in range(lines // 4):
        out.append(rng.choice(NAMES))
        for _ in range(3):
            words = [rng.choice(WORDS) for _ in range(rng.randint(4, 9))]
            out.append(" ".join(words).capitalize() + rng.choice((",", ".", ";", "!", "?")))
        out.append("")
    return "\n".join(out)


def write_text_corpus(directory: Path, *, files: int = 12, lines: int = 80, seed: int = 0) -> Path:
    """``files`` Markdown documents under ``directory`` (in two sub-folders); returns ``directory``."""
    rng = random.Random(seed)
    for i in range(files):
        path = Path(directory) / ("comedies" if i % 2 else "tragedies") / f"play-{i:02d}.md"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"# Play {i}\n\n" + text_document(rng, lines) + "\n", encoding="utf-8")
    return Path(directory)
