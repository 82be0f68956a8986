"""Embedders: the real MiniLM package in process, and OpenAIEmbedder against a stub endpoint (retries,
errors) and against a real ``aifab up`` (same vectors as the local model)."""

from __future__ import annotations

import base64
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import numpy as np
import pytest
from tokenizers import Tokenizer

from aifab.config import load_settings
from aifab.corpus import embedders
from aifab.corpus.chunking import StructuredChunker
from aifab.corpus.embedders import (
    OpenAIEmbedder,
    SentenceTransformerEmbedder,
    estimate_tokens,
    load_embedder,
    token_counter,
)
from aifab.corpus.protocol import Embedder
from aifab.errors import ConfigError, EngineError, InvalidRequest, NotFound
from aifab.registry import Registry
from aifab.registry.defaults import DEFAULTS, locate
from aifab.registry.inspect import inspect_path
from aifab.state import Database
from aifab.testing.documents import DocumentBuilder

MINILM = next(d for d in DEFAULTS if d.name == "all-minilm-l6-v2")
KEY = "sk-test-secret-1234"


class StubEndpoint:
    """An OpenAI-compatible ``/v1/embeddings`` on a loopback port. It first plays ``script`` — (status,
    headers, body) answers — then answers 200 with vector ``[len(text), 1, 2, 3]`` per input, listed in
    reverse with their ``index`` (the client must put them back in order)."""

    def __init__(self, script: list[tuple[int, dict[str, str], Any]] | None = None, *, b64: bool = False) -> None:
        self.script = list(script or [])
        self.requests: list[tuple[dict[str, str], dict[str, Any]]] = []
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                stub.requests.append((dict(self.headers), body))
                status, headers, answer = stub.script.pop(0) if stub.script else (200, {}, stub.answer(body, b64))
                data = json.dumps(answer).encode()
                self.send_response(status)
                for k, v in {**headers, "Content-Type": "application/json"}.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        threading.Thread(target=self.server.serve_forever, args=(0.02,), daemon=True).start()

    @staticmethod
    def answer(body: dict[str, Any], b64: bool) -> dict[str, Any]:
        def vector(text: str) -> Any:
            v = np.array([len(text), 1, 2, 3], dtype="<f4")
            return base64.b64encode(v.tobytes()).decode() if b64 else v.tolist()

        data = [{"object": "embedding", "index": i, "embedding": vector(t)} for i, t in enumerate(body["input"])]
        return {"object": "list", "data": data[::-1], "model": body["model"]}

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def error(status: int, message: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], Any]:
    return status, headers or {}, {"error": {"message": message, "type": "x", "param": None, "code": None}}


@pytest.fixture
def sleeps(monkeypatch) -> list[float]:
    """The waits between retries, recorded instead of slept."""
    waits: list[float] = []
    monkeypatch.setattr(embedders, "sleep", waits.append)
    return waits


@pytest.fixture
def stub():
    endpoint = StubEndpoint()
    yield endpoint
    endpoint.close()


def expected(texts: list[str]) -> np.ndarray:
    v = np.array([[len(t), 1, 2, 3] for t in texts], dtype=np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def test_openai_batches_keep_order_normalise_and_learn_dimensions(stub):
    texts = ["a", "bb", "ccc", "dddd", "eeeee"]
    emb = OpenAIEmbedder(stub.url, "m", api_key=KEY, batch_size=2)
    out = emb.embed(texts)
    assert out.dtype == np.float32 and out.shape == (5, 4)
    np.testing.assert_allclose(out, expected(texts), rtol=1e-6)
    assert [len(body["input"]) for _, body in stub.requests] == [2, 2, 1]
    assert all(h["Authorization"] == f"Bearer {KEY}" and b["model"] == "m" for h, b in stub.requests)
    assert emb.dimensions == 4 and len(stub.requests) == 3
    assert emb.name == f"openai:{stub.url}#m" and isinstance(emb, Embedder)


def test_openai_dimensions_before_any_embed_cost_one_request(stub):
    emb = OpenAIEmbedder(stub.url, "m")
    assert emb.dimensions == 4 and emb.dimensions == 4
    assert len(stub.requests) == 1 and "Authorization" not in stub.requests[0][0]
    given = OpenAIEmbedder(stub.url, "m", dimensions=4)
    given.embed(["x"])
    assert stub.requests[-1][1]["dimensions"] == 4  # asked for, as text-embedding-3 understands it


def test_openai_reads_base64_vectors():
    endpoint = StubEndpoint(b64=True)
    try:
        np.testing.assert_allclose(OpenAIEmbedder(endpoint.url, "m").embed(["ab", "c"]), expected(["ab", "c"]), rtol=1e-6)
    finally:
        endpoint.close()


def test_openai_retries_5xx_with_backoff(stub, sleeps):
    stub.script = [error(500, "boom"), error(502, "bad gateway")]
    out = OpenAIEmbedder(stub.url, "m", backoff=0.5).embed(["hello"])
    np.testing.assert_allclose(out, expected(["hello"]), rtol=1e-6)
    assert len(stub.requests) == 3 and sleeps == [0.5, 1.0]


def test_openai_honours_retry_after(stub, sleeps):
    stub.script = [error(429, "slow down", {"Retry-After": "7"})]
    OpenAIEmbedder(stub.url, "m").embed(["hello"])
    assert sleeps == [7.0]


def test_openai_gives_up_with_a_clear_engine_error(stub, sleeps):
    stub.script = [error(503, "model is loading")] * 3
    with pytest.raises(EngineError) as exc:
        OpenAIEmbedder(stub.url, "m", retries=2).embed(["hello"])
    assert "503" in exc.value.message and "model is loading" in exc.value.message and "3 tries" in exc.value.message
    assert len(stub.requests) == 3 and len(sleeps) == 2


def test_openai_client_errors_are_not_retried(stub, sleeps):
    stub.script = [error(400, "input is too long")]
    with pytest.raises(InvalidRequest, match="input is too long"):
        OpenAIEmbedder(stub.url, "m").embed(["hello"])
    assert len(stub.requests) == 1 and sleeps == []


def test_openai_errors_never_show_the_key(stub):
    stub.script = [error(401, f"Incorrect API key provided: {KEY}")]
    with pytest.raises(EngineError) as exc:
        OpenAIEmbedder(stub.url, "m", api_key=KEY).embed(["hello"])
    assert KEY not in str(exc.value) and "refused the API key" in str(exc.value)


def test_openai_unreachable_endpoint(sleeps):
    from aifab.testing.server import free_port

    emb = OpenAIEmbedder(f"http://127.0.0.1:{free_port()}/v1", "m", api_key=KEY, retries=2)
    with pytest.raises(EngineError, match="cannot reach") as exc:
        emb.embed(["hello"])
    assert KEY not in str(exc.value) and len(sleeps) == 2


def test_openai_rejects_empty_input_before_sending(stub):
    with pytest.raises(InvalidRequest, match=r"input\[1\]"):
        OpenAIEmbedder(stub.url, "m").embed(["a", ""])
    assert stub.requests == []


def test_estimated_tokens_are_above_minilm_for_prose_and_code():
    counter = token_counter(Tokenizer.from_file(str(locate(MINILM) / "tokenizer.json")))
    texts = [
        "The quick brown fox jumps over the lazy dog while the corpus is chunked and embedded.",
        "def add(a, b):\n    return a + b  # the sum of two numbers",
        "| name | size |\n|---|---|\n| item | 10 |",
    ]
    assert all(e >= n for e, n in zip(estimate_tokens(texts), counter(texts), strict=True))


def test_load_embedder_openai_reads_the_key_from_the_environment(stub, monkeypatch):
    corpus = {"embedder": "openai", "embedder_url": stub.url, "embedder_model": "m", "embedder_api_key_env": "EMB_KEY"}
    settings = load_settings(corpus=corpus)
    monkeypatch.delenv("EMB_KEY", raising=False)
    with pytest.raises(ConfigError, match="EMB_KEY"):
        load_embedder(settings, registry=None)
    monkeypatch.setenv("EMB_KEY", KEY)
    load_embedder(settings, registry=None).embed(["x"])
    assert stub.requests[0][0]["Authorization"] == f"Bearer {KEY}"
    with pytest.raises(ConfigError, match="embedder_url"):
        load_embedder(load_settings(corpus={"embedder": "openai"}), registry=None)


@pytest.fixture(scope="module")
def registry(tmp_path_factory) -> Registry:
    where = tmp_path_factory.mktemp("registry")
    db = Database(f"sqlite:///{where / 'state.db'}")
    db.upgrade()
    reg = Registry(db, where / "models")
    reg.add(inspect_path(locate(MINILM), MINILM.name))
    return reg


def test_load_embedder_unknown_model(registry):
    with pytest.raises(NotFound):
        load_embedder(load_settings(corpus={"embedder": "no-such-model"}), registry)


@pytest.fixture(scope="module")
def minilm(registry) -> SentenceTransformerEmbedder:
    embedder = load_embedder(load_settings(corpus={"embed_batch": 4}), registry)
    assert isinstance(embedder, SentenceTransformerEmbedder)
    return embedder


def test_local_embedder_loads_its_model_only_when_used(registry):
    """Identity, dimensions and limit come from the manifest: a re-ingest with nothing new never loads it."""
    embedder = SentenceTransformerEmbedder(registry.get(MINILM.name))
    assert (embedder.dimensions, embedder.max_tokens) == (384, 256) and embedder._model is None
    assert embedder.name.startswith(f"{MINILM.name}@")


TEXTS = [
    "short",
    "A medium sentence about retrieval-augmented generation and citations.",
    "word " * 300,  # over the model's 256 tokens: truncated by the model, counted whole
    "Code: def f(x):\n    return x * 2",
    "Another, slightly longer text that talks about vector stores, chunk sizes and overlap between chunks.",
    "é ü 中文 text",
]


@pytest.mark.slow
def test_local_embedder_identity_and_counts(minilm, registry):
    pkg = registry.get(MINILM.name)
    assert minilm.name == f"{MINILM.name}@{pkg.sha256[:12]}"
    assert (minilm.dimensions, minilm.max_tokens) == (384, 256) and isinstance(minilm, Embedder)
    counts = minilm.count_tokens(TEXTS)
    assert counts[0] == 3 and counts[2] == 302  # [CLS] ... [SEP], nothing truncated
    assert counts == [len(minilm.model.tokenizer(t)["input_ids"]) for t in TEXTS]


@pytest.mark.slow
def test_local_embedder_matches_encode_in_the_given_order(minilm):
    out = minilm.embed(TEXTS)  # batch 4: two batches, formed longest first
    assert out.dtype == np.float32 and out.shape == (len(TEXTS), 384) and out.flags.c_contiguous
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, rtol=1e-5)
    one_by_one = np.stack([minilm.model.encode([t], normalize_embeddings=True)[0] for t in TEXTS])
    assert np.min(np.sum(out * one_by_one, axis=1)) > 0.9999
    np.testing.assert_allclose(minilm.embed(TEXTS[::-1]), out[::-1], atol=1e-5)
    assert minilm.embed([]).shape == (0, 384)


@pytest.mark.slow
def test_one_pass_gives_the_vectors_and_the_token_vectors_of_each_text(minilm):
    vectors, tokens = minilm.embed_with_tokens(TEXTS)
    np.testing.assert_allclose(vectors, minilm.embed(TEXTS), atol=1e-5)
    counts = minilm.count_tokens(TEXTS)
    for text, rows, n in zip(TEXTS, tokens, counts, strict=True):
        assert rows.shape == (min(n, minilm.max_tokens) - 2, 384)  # [CLS] and [SEP] dropped
        (alone,) = minilm.token_vectors([text])
        np.testing.assert_allclose(rows, alone, atol=1e-4)


@pytest.mark.slow
def test_embedding_aside_narrows_only_the_calling_thread_and_gives_the_same_vectors(minilm):
    import torch

    width = torch.get_num_threads()
    seen = []
    encode = minilm._encode
    minilm._encode = lambda texts, tokens: seen.append(torch.get_num_threads()) or encode(texts, tokens=tokens)
    try:
        aside = minilm.embed_aside(TEXTS)
    finally:
        del minilm._encode
    assert seen == [1] and torch.get_num_threads() == width
    np.testing.assert_allclose(aside, minilm.embed(TEXTS), atol=1e-5)


@pytest.mark.slow
def test_a_query_is_encoded_once_for_the_search_and_the_reranker(minilm, monkeypatch):
    query = "What is a decorator?"
    vector = minilm.embed_query(query)
    np.testing.assert_allclose(vector, minilm.embed([query])[0], atol=1e-5)
    expected = minilm.embed_with_tokens([query])[1][0]
    passes = []
    encode = minilm._encode
    monkeypatch.setattr(minilm, "_encode", lambda texts, tokens: passes.append(texts) or encode(texts, tokens=tokens))
    (rows,) = minilm.token_vectors([query])  # the reranker, after the search: no second forward pass
    np.testing.assert_allclose(rows, expected, atol=1e-5)
    assert passes == []
    minilm.token_vectors(["another question?"])  # not searched before: encoded
    assert passes == [["another question?"]]
    for i in range(embedders.QUERY_MEMO):
        minilm.embed_query(f"question {i}")
    assert len(minilm._memo) == embedders.QUERY_MEMO and query not in minilm._memo  # bounded, oldest out


@pytest.mark.slow
@pytest.mark.integration
def test_openai_embedder_against_a_real_server_gives_the_local_vectors(minilm, tmp_path):
    from aifab.testing.server import RemoteAifabServer

    doc = DocumentBuilder().heading("Intro").paragraph(" ".join(TEXTS[1::2]) * 8).code(TEXTS[3]).build()
    with RemoteAifabServer(tmp_path / "server") as server:
        remote = OpenAIEmbedder(f"{server.url}/v1", MINILM.name, api_key="unused",
                                count_tokens=minilm.count_tokens, max_tokens=minilm.max_tokens)
        chunks = StructuredChunker.for_embedder(remote, chunk_tokens=64).chunk(doc)
        texts = [c.text for c in chunks]
        far = remote.embed(texts)
    near = minilm.embed(texts)
    assert len(texts) > 3 and remote.dimensions == 384
    assert np.min(np.sum(far * near, axis=1)) > 0.999


@pytest.mark.slow
def test_inside_the_server_the_corpus_embeds_with_the_engine_copy(minilm, registry, tmp_path):
    """One copy of each model per process: with the embedding engine loaded, the corpus embedder (ingest,
    queries, the maxsim reranker) runs on the engine's model instead of loading MiniLM again."""
    from aifab.corpus.service import Corpus
    from aifab.engines import load_engine
    from aifab.testing import MemoryStore

    settings = load_settings(data_dir=tmp_path)
    engine = load_engine(registry.get(MINILM.name), settings)
    try:
        corpus = Corpus(settings, registry, MemoryStore(), engines=lambda: [engine])
        embedder = corpus.embedder()
        assert isinstance(embedder, SentenceTransformerEmbedder) and embedder.model is engine.model
        assert embedder.name == minilm.name and (embedder.dimensions, embedder.max_tokens) == (384, 256)
        assert np.min(np.sum(embedder.embed(TEXTS) * minilm.embed(TEXTS), axis=1)) > 0.9999
        other = load_settings(data_dir=tmp_path, corpus={"embedder": "copy"})
        registry.add(inspect_path(locate(MINILM), "copy"))  # the same files under another name: same weights
        assert Corpus(other, registry, MemoryStore(), engines=lambda: [engine]).embedder().model is engine.model
    finally:
        engine.close()
