"""Suite files: the documented format parses; every mistake is one line naming the file and the field."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from aifab.errors import InvalidRequest
from aifab.evals import load_suite

EXAMPLE = """
name = "helpdesk"
[[retrieval]]
collection = "handbook"
qa = "evals/questions.jsonl"
mode = "hybrid"
[retrieval.thresholds]
"recall@5" = 0.6
[retrieval.regression]
"recall@5" = 0.02
[[answers]]
app = "helpdesk"
qa = "evals/questions.jsonl"
limit = 20
[answers.thresholds]
cites_gold = 0.5
[[task]]
model = "smollm2-135m-instruct"
dataset = "support@v1"
thresholds = { loss = 2.5 }
"""


def test_the_documented_example_parses(write_suite, tmp_path):
    path = write_suite(EXAMPLE)
    suite, sha = load_suite(path)
    assert sha == hashlib.sha256(path.read_bytes()).hexdigest()
    assert [c.id for c in suite.checks] == ["retrieval:handbook", "answers:helpdesk",
                                            "task:smollm2-135m-instruct@support@v1"]
    retrieval, answers, task = suite.checks
    assert retrieval.thresholds == {"recall@5": 0.6} and retrieval.regression == {"recall@5": 0.02}
    assert answers.limit == 20 and task.thresholds == {"loss": 2.5}
    assert suite.files() == {"evals/questions.jsonl": tmp_path / "evals" / "questions.jsonl"}
    assert suite.to_dict()["retrieval"][0]["qa"] == "evals/questions.jsonl"  # kept as written


def test_a_named_check_is_known_by_its_name(write_suite):
    suite, _ = load_suite(write_suite(EXAMPLE.replace('collection = "handbook"', 'collection = "handbook"\nname = "hr"')))
    assert suite.checks[0].id == "hr"


@pytest.mark.parametrize("edit, message", [
    (lambda t: t.replace('name = "helpdesk"', 'nme = "helpdesk"'), "unknown key nme: did you mean 'name'?"),
    (lambda t: t.replace('collection = "handbook"', 'colection = "handbook"'),
     "unknown key retrieval.0.colection: did you mean 'collection'?"),
    (lambda t: t.replace('"recall@5" = 0.6', '"recall@50" = 0.6'),
     "invalid key retrieval.0.thresholds: unknown metric 'recall@50' for a retrieval check (known: recall@1,"),
    (lambda t: t.replace('"recall@5" = 0.02', '"recall@5" = -0.02'),
     "invalid key retrieval.0.regression: an allowed worsening is 0 or more (recall@5 = -0.02)"),
    (lambda t: t.replace('app = "helpdesk"', 'app = "helpdesk"\ncollection = "handbook"'),
     "invalid key answers.0: an answers check names either app or collection"),
    (lambda t: t.replace("limit = 20", "limit = 0"), "invalid key answers.0.limit: Input should be greater than"),
    (lambda t: t.replace('mode = "hybrid"', 'mode = "fuzzy"'), "invalid key retrieval.0.mode: Input should be"),
    (lambda t: t.replace('name = "helpdesk"', 'name = "help desk"'), "invalid key name: String should match"),
    (lambda t: t + '[[task]]\nmodel = "smollm2-135m-instruct"\ndataset = "support@v1"\n',
     "two checks have the id 'task:smollm2-135m-instruct@support@v1': give one a distinct name"),
    (lambda t: 'name = "empty"\n', "a suite lists at least one check"),
    (lambda t: t.replace('qa = "evals/questions.jsonl"\nmode', 'qa = "evals/nope.jsonl"\nmode'),
     "retrieval.0.qa: no such file"),
    (lambda t: t.replace("[[task]]", "[[task]"), "not valid TOML"),
])
def test_mistakes_are_one_line_naming_file_and_field(write_suite, edit, message):
    path = write_suite(edit(EXAMPLE))
    with pytest.raises(InvalidRequest) as info:
        load_suite(path)
    text = info.value.message
    assert text.startswith(f"{path}: ") and message in text and "\n" not in text


def test_a_missing_suite_file_is_named(tmp_path):
    with pytest.raises(InvalidRequest, match="cannot read eval suite .*nope.toml"):
        load_suite(Path(tmp_path / "nope.toml"))
