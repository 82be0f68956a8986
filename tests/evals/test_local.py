"""The in-process harnesses: the suite's checks measured by the same code as `aifab eval retrieval|answers`,
over a real corpus (fake embedder, in-memory store)."""

from __future__ import annotations

import pytest

from aifab.evals import load_suite, run_suite
from aifab.evals.local import LocalHarnesses
from aifab.registry import ModelPackage
from aifab.testing import FakeEngine

SUITE = """
name = "local"
[[retrieval]]
collection = "kb"
qa = "evals/questions.jsonl"
mode = "lexical"
thresholds = { "recall@5" = 1.0 }
[[retrieval]]
name = "missing"
collection = "nope"
qa = "evals/questions.jsonl"
[[answers]]
collection = "kb"
qa = "evals/questions.jsonl"
limit = 1
thresholds = { abstained = 0.0 }
"""


def test_checks_run_through_the_rag_harnesses_and_record_what_they_read(rag, write_suite, monkeypatch):
    chat = rag.settings.models.chat
    rag.corpus.registry.add(ModelPackage(name=chat, kind="chat", format="gguf", path="/nonexistent.gguf",
                                         sha256="f" * 64))
    engines = []

    def fake_engine(package, settings):
        engines.append(FakeEngine(package.name, context_length=4096))
        return engines[-1]

    monkeypatch.setattr("aifab.rag.harness.load_engine", fake_engine)  # no chat model weights in a unit test
    suite, sha = load_suite(write_suite(SUITE))
    progress = []
    harnesses = LocalHarnesses(rag.settings, rag=lambda: rag, registry=lambda: rag.corpus.registry)
    result = run_suite(suite, sha, harnesses, on_progress=lambda *a: progress.append(a))

    assert result.metrics["retrieval:kb"]["recall@5"] == 1.0 and result.metrics["retrieval:kb"]["questions"] == 2
    inputs = result.hashes["inputs"]["retrieval:kb"]
    assert inputs["collection"]["name"] == "kb" and inputs["collection"]["version"] == 1
    assert inputs["collection"]["documents"] == 2 and inputs["settings"]["mode"] == "lexical"
    assert [(r.metric, r.verdict) for r in result.verdicts if r.check == "missing"] == [("run", "error")]
    answers = result.metrics["answers:kb"]
    assert answers["questions"] == 1 and answers["abstained"] == 0.0
    assert result.hashes["inputs"]["answers:kb"]["model"] == {"name": chat, "sha256": "f" * 64}
    assert len(engines) == 1 and ("retrieval:kb", 2, 2) in progress and ("answers:kb", 1, 1) in progress
    assert not result.passed and [r.check for r in result.failures] == ["missing"]


@pytest.mark.parametrize("registered, message", [(False, "is not in the registry"), (True, "no dataset 'nope'")])
def test_a_task_check_names_a_missing_model_or_dataset(rag, write_suite, registered, message):
    if registered:
        rag.corpus.registry.add(ModelPackage(name="m", kind="chat", format="gguf", path="/nonexistent.gguf"))
    suite, sha = load_suite(write_suite('name = "t"\n[[task]]\nmodel = "m"\ndataset = "nope"\n'))
    harnesses = LocalHarnesses(rag.settings, rag=lambda: rag, registry=lambda: rag.corpus.registry)
    [row] = run_suite(suite, sha, harnesses).verdicts
    assert row.verdict == "error" and message in row.message
