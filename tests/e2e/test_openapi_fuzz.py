"""Schemathesis over the whole ``/openapi.json`` of the full stack (gateway, serving app, corpus, RAG app,
fine-tuning API), with the names that exist filled in (the served models, a collection with a document,
an uploaded file, a fine-tuning job) so that requests reach the handlers and not only the 404s:
valid and invalid input alike, no answer may be a server error."""

from __future__ import annotations

import zlib
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error

from aifab.config import load_settings
from aifab.corpus.service import Corpus
from aifab.finetune.service import FinetuneService
from aifab.gateway.factory import build_gateway
from aifab.registry import Registry
from aifab.serve import ModelPool, create_app
from aifab.state import Database
from aifab.testing import FakeEmbedder, FakeEngine, FakeRuntime, MemoryStore
from aifab.testing.server import ThreadedServer

pytestmark = pytest.mark.slow
EXAMPLES = 12  # per operation and mode: the whole API in a few minutes on 2 cores
MODELS = ("chat", "public", "docs")  # a model, a route to it, a RAG app over "kb"
SFT = b"".join(b'{"messages": [{"role": "user", "content": "Hi %d"}, {"role": "assistant", "content": "Hello %d!"}]}\n'
              % (i, i) for i in range(12))


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Any:
    tmp = tmp_path_factory.mktemp("fuzz")
    s = load_settings(data_dir=tmp / "data", serve={"max_body_bytes": 65536},
                      corpus={"chunk_tokens": 48, "chunk_overlap": 8, "max_file_bytes": 10_000},
                      apps={"docs": {"collection": "kb", "model": "chat"}},
                      gateway={"routes": {"public": {"upstreams": [{"model": "chat"}]}}})
    db = Database(s.effective_database_url)
    db.upgrade()
    corpus = Corpus(s, Registry(db, tmp / "models"), MemoryStore(), embedder=FakeEmbedder())
    (tmp / "docs").mkdir()
    (tmp / "docs" / "guide.md").write_text("# Guide\n\nRun the installer and follow the prompts.\n")
    assert not corpus.ingest_paths("kb", [tmp / "docs"]).errors
    finetune = FinetuneService(db, tmp / "data")
    file_id = finetune.add_file("train.jsonl", SFT, "fine-tune", None)["id"]
    job_id = finetune.create_job({"model": "chat", "training_file": file_id}, None)["id"]
    engine = FakeEngine("chat", FakeRuntime("Hello there, friend."), context_length=4096)
    inner = create_app(ModelPool({"chat": engine}), max_body_bytes=65536, corpus=corpus, finetune=finetune)
    server = ThreadedServer(build_gateway(inner, s, db))  # one event loop and one lifespan for the whole run
    schema = schemathesis.openapi.from_url(f"{server.url}/openapi.json")
    known = {"file_id": file_id, "fine_tuning_job": job_id, "name": "kb", "collection": "kb",
             "training_file": file_id, "document_id": corpus.collections.documents("kb")[0].document_id}
    yield schema, known
    server.stop()
    engine.close()
    db.close()


def _realistic(case: Any, known: dict[str, str]) -> None:
    """Most cases (three in four, chosen from the case itself, so a run repeats) get names that exist."""
    if zlib.crc32(repr((case.path, case.path_parameters, case.body)).encode()) % 4 == 0:
        return
    params = case.path_parameters or {}
    if "name" in params:
        params["name"] = "chat" if case.path.startswith("/v1/models") else known["name"]
    if "file_id" in params:
        params["file_id"] = known["file_id"]
    if "document_id" in params:
        params["document_id"] = known["document_id"]
    if "job_id" in params and "fine_tuning" in case.path:
        params["job_id"] = known["fine_tuning_job"]
    if isinstance(case.body, dict):
        if "model" in case.body or case.path in ("/v1/chat/completions", "/v1/completions", "/v1/embeddings"):
            case.body["model"] = MODELS[zlib.crc32(repr(case.body).encode()) % len(MODELS)]
        for field in ("collection", "training_file"):
            if field in case.body:
                case.body[field] = known[field]


def _fuzz(operation: Any, mode: GenerationMode, known: dict[str, str]) -> None:
    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), database=None,
              phases=(Phase.explicit, Phase.generate))  # no shrinking: the first failure is reported as it is
    def run(case: Any) -> None:
        if case.method != "DELETE":  # deletes get made-up names: "kb", the file and the job stay for the rest
            _realistic(case, known)
        case.call_and_validate(checks=[not_a_server_error])

    run()


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_no_input_is_a_server_error(stack: Any, mode: GenerationMode) -> None:
    schema, known = stack
    failures = []
    for result in schema.get_all_operations():
        operation = result.ok()
        try:
            _fuzz(operation, mode, known)
        except Unsatisfiable:  # nothing to make invalid (no parameters, no body): nothing to fuzz
            continue
        except Exception as exc:  # every operation is fuzzed; all failures are reported together
            failures.append(f"{operation.method.upper()} {operation.path}: {str(exc)[:1500]}")
    assert not failures, "\n\n".join(failures)
