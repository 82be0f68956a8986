"""Suite files written into a temporary folder, with the question set they name."""

from __future__ import annotations

import json

import pytest

QUESTIONS = [
    {"question": "Where does the Danube flow?", "gold": {"source": "rivers.md", "section": "Danube"}},
    {"question": "How long do cats sleep?", "gold": {"source": "cats.md"}},
]


@pytest.fixture
def write_suite(tmp_path):
    """write_suite(toml) -> the suite's path; evals/questions.jsonl is next to it."""
    (tmp_path / "evals").mkdir(exist_ok=True)
    (tmp_path / "evals" / "questions.jsonl").write_text("\n".join(json.dumps(q) for q in QUESTIONS) + "\n")

    def write(text: str, name: str = "suite.toml"):
        path = tmp_path / name
        path.write_text(text)
        return path

    return write
