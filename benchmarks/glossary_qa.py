"""The RAG development eval set: the Python 3.11 glossary turned into questions with gold passages.

The corpus is the Python 3.11 documentation's reST sources from Debian ``python3.11-doc`` (see
``corpora.py``); its ``glossary.rst.txt`` maps terms to definitions. Each definition becomes one question
about its (first) term, phrased by one of three templates chosen by position, with the definition
(reST roles reduced to their text, its first 60 words) as the gold passage, located in
``glossary.rst.txt``, and the definition's first sentence as the reference answer (for answer F1):

    {"question": "What is an abstract base class?", "gold": {"source": "glossary.rst.txt",
     "text": "Abstract base classes complement duck-typing by providing ..."}, "term": "abstract base class",
     "answer": "Abstract base classes complement duck-typing by providing a way to define interfaces ..."}

The whole documentation is the haystack: a passage elsewhere that mentions the term is not gold. Stdlib
only; deterministic (same package, same file):

    python benchmarks/glossary_qa.py [--out benchmarks/.cache/python-glossary-qa.jsonl]
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from corpora import DEFAULT_CACHE, python_docs  # noqa: E402

DEFAULT_OUT = DEFAULT_CACHE / "python-glossary-qa.jsonl"
GOLD_WORDS = 60
TEMPLATES = ("What is {article}{term}?", "What does the term '{term}' mean in Python?", "Explain {term} in Python.")
_ROLE = re.compile(r":[\w:+-]+:`([^`<]*?)\s*(?:<[^`>]*>)?`")  # :term:`text <target>` -> text
_LITERAL = re.compile(r"``([^`]+)``")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9(])")  # "e.g. a list" does not end a sentence


def plain(text: str) -> str:
    text = _ROLE.sub(lambda m: m.group(1).lstrip("~!"), text)
    text = _LITERAL.sub(r"\1", text)
    return re.sub(r"\s+", " ", text).strip()


def entries(glossary: str) -> list[tuple[list[str], str]]:
    """(terms, definition) for each entry of the ``.. glossary::`` block, reST reduced to plain text."""
    out: list[tuple[list[str], list[str]]] = []
    in_block = False
    for line in glossary.splitlines():
        if line.startswith(".. glossary::"):
            in_block = True
        elif not in_block:
            continue
        elif re.match(r"^   \S", line):  # a term; several in a row share one definition
            if not out or out[-1][1]:
                out.append(([], []))
            out[-1][0].append(plain(line))
        elif re.match(r"^ {6}", line) and out:
            out[-1][1].append(line.strip())
        elif line.strip() and not line.startswith(" "):
            break
    return [(terms, plain(" ".join(lines))) for terms, lines in out if lines]


def questions(glossary: str) -> list[dict]:
    rows = []
    for i, (terms, definition) in enumerate(entries(glossary)):
        term = terms[0]
        article = ("an " if term[0].lower() in "aeiou" else "a ") if term[0].isalpha() else ""
        question = TEMPLATES[i % len(TEMPLATES)].format(term=term, article=article)
        gold = " ".join(definition.split()[:GOLD_WORDS])
        answer = _SENTENCE_END.split(definition, maxsplit=1)[0]
        rows.append({"question": question, "gold": {"source": "glossary.rst.txt", "text": gold}, "term": term,
                     "answer": answer})
    return rows


def build(out: Path = DEFAULT_OUT) -> Path:
    glossary = (python_docs() / "glossary.rst.txt").read_text(encoding="utf-8")
    rows = questions(glossary)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    tmp.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    tmp.replace(out)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = ap.parse_args()
    path = build(args.out)
    print(f"{sum(1 for _ in path.open())} questions -> {path}")


if __name__ == "__main__":
    main()
