"""Embedders for ingest: a registered sentence-transformers package run in process, or any
OpenAI-compatible ``/v1/embeddings`` endpoint; ``load_embedder`` picks one from ``settings.corpus``.

Embedding is the bottleneck of ingest, so the local embedder does nothing per text in Python: one
tokenizer call to order the texts by length, one forward pass per batch, rows written in place into the
result.
"""

from __future__ import annotations

import base64
import math
import os
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Any

import numpy as np

from aifab.corpus.chunking import CountTokens
from aifab.corpus.protocol import Embedder
from aifab.errors import ConfigError, EngineError, InvalidRequest

if TYPE_CHECKING:
    import httpx

    from aifab.config import Settings
    from aifab.engines.protocol import Engine
    from aifab.registry import ModelPackage, Registry

QUERY_MEMO = 64  # queries whose token vectors the local embedder keeps for the reranker
sleep = time.sleep  # module-level so that tests can skip the waits between retries


class SentenceTransformerEmbedder:
    """A sentence-transformers model package on the CPU, offline.

    Texts longer than ``max_tokens`` are truncated by the model, as ``SentenceTransformer.encode`` does;
    chunks sized with ``count_tokens`` never are. ``threads`` > 0 sets torch's thread count for the
    whole process (torch has no per-model setting). ``model``: a ``SentenceTransformer`` of this package
    already loaded (the server's embedding engine), used instead of loading a second copy.
    """

    def __init__(self, package: ModelPackage, *, batch_size: int = 64, threads: int = 0, model: Any = None) -> None:
        if package.format != "sentence-transformers":
            raise ConfigError(
                f"model '{package.name}' is a {package.format} package; the corpus embeds with a "
                "sentence-transformers package or an OpenAI-compatible endpoint (corpus.embedder = 'openai')"
            )
        self.package = package
        self.threads = threads
        self.name = f"{package.name}@{package.sha256[:12]}"
        self.batch_size = batch_size
        self._model: Any = None
        self._lock = threading.Lock()
        self._memo: OrderedDict[str, np.ndarray] = OrderedDict()  # query -> its token vectors
        self._memo_lock = threading.Lock()
        if model is not None:
            self._adopt(model)
        elif package.embedding_dimensions and package.context_length:
            # Known from the manifest: the model loads on first use, so an ingest with nothing new to
            # embed (the common re-run) never pays for it.
            self.dimensions, self.max_tokens = int(package.embedding_dimensions), int(package.context_length)
        else:
            self._load()

    @property
    def model(self) -> Any:
        return self._model if self._model is not None else self._load()

    def _load(self) -> Any:
        with self._lock:
            if self._model is not None:
                return self._model
            os.environ.setdefault("HF_HUB_OFFLINE", "1")  # a local package never needs the hub
            import torch
            from sentence_transformers import SentenceTransformer
            from transformers.utils import logging as hf_logging

            hf_logging.disable_progress_bar()  # a bar per weight load is noise on the CLI's stderr
            if self.threads > 0:
                torch.set_num_threads(self.threads)
            return self._adopt(SentenceTransformer(str(self.package.path), device="cpu", local_files_only=True))

    def _adopt(self, model: Any) -> Any:
        dimension = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
        self.dimensions = int(dimension() or self.package.embedding_dimensions or 0)
        self.max_tokens = int(model.max_seq_length or self.package.context_length)
        self._count = token_counter(model.tokenizer)
        self._preprocess = getattr(model, "preprocess", None) or model.tokenize
        self._model = model
        return model

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        """Tokens the model sees, special tokens included, before any truncation; one batch call."""
        self.model  # noqa: B018 - loads the tokenizer with the model on first use
        return self._count(texts)

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """float32 (len(texts), dimensions), rows L2-normalised, in the order given. Batches are formed
        longest first by exact token count, so each pads little; rows go straight to their place."""
        return self._encode(texts, tokens=False)[0]

    def embed_aside(self, texts: Sequence[str]) -> np.ndarray:
        """``embed`` on one torch thread, for work that runs beside a model's decoding (attributing the
        sentences of streaming answers). On a small machine torch's thread pool and the engine's threads
        then share the cores instead of preempting each other in their barriers: measured on two cores,
        eight concurrent RAG questions started answering 3 s sooner (p50) than with both pools at full
        width. Only the calling thread is narrowed (torch's thread count is per thread)."""
        import torch

        width = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            return self.embed(texts)
        finally:
            torch.set_num_threads(width)

    def embed_query(self, text: str) -> np.ndarray:
        """One query's vector. Its token vectors come from the same forward pass and are kept (the last
        ``QUERY_MEMO`` queries) for the maxsim reranker that follows the search: a query is encoded once."""
        vectors, tokens = self._encode([text], tokens=True)
        with self._memo_lock:
            self._memo[text] = tokens[0]
            self._memo.move_to_end(text)
            while len(self._memo) > QUERY_MEMO:
                self._memo.popitem(last=False)
        return vectors[0]

    def token_spans(self, texts: Sequence[str]) -> list[np.ndarray]:
        """int (rows, 2): the character places in each text of the rows ``token_vectors`` gives it (the
        model's tokenizer and truncation, special tokens dropped)."""
        encoded = self.model.tokenizer(
            list(texts), return_offsets_mapping=True, truncation=True, max_length=self.max_tokens,
        )
        return [np.asarray(offsets[1:-1], dtype=np.int64).reshape(-1, 2) for offsets in encoded["offset_mapping"]]

    def embed_with_tokens(self, texts: Sequence[str]) -> tuple[np.ndarray, list[np.ndarray]]:
        """``embed`` and ``token_vectors`` of the same texts from one forward pass: what ingest stores so
        that the maxsim reranker never re-encodes a passage."""
        return self._encode(texts, tokens=True)

    def token_vectors(self, texts: Sequence[str]) -> list[np.ndarray]:
        """Per-token contextual vectors (float32 (tokens, dimensions), rows L2-normalised, padding and
        special tokens dropped) of each text: what late-interaction scoring compares."""
        if len(texts) == 1:
            with self._memo_lock:
                kept = self._memo.get(texts[0])
            if kept is not None:
                return [kept]
        return self._encode(texts, tokens=True)[1]

    def _encode(self, texts: Sequence[str], *, tokens: bool) -> tuple[np.ndarray, list[np.ndarray]]:
        import torch

        texts = list(texts)
        out = np.empty((len(texts), self.dimensions), dtype=np.float32)
        token_rows: list[np.ndarray] = [np.empty((0, self.dimensions), np.float32)] * len(texts)
        order = np.argsort(-np.asarray(self.count_tokens(texts), dtype=np.int64), kind="stable")
        model = self.model
        with torch.inference_mode():
            for at in range(0, len(texts), self.batch_size):
                rows = order[at : at + self.batch_size]
                features = self._preprocess([texts[i] for i in rows])
                result = model(features)
                vectors = torch.nn.functional.normalize(result["sentence_embedding"].to(torch.float32), p=2, dim=1)
                out[rows] = vectors.numpy()
                if tokens:
                    for i, t in zip(rows, _token_rows(result, features), strict=True):
                        token_rows[i] = t
        return out, token_rows


def _token_rows(result: dict[str, Any], features: dict[str, Any]) -> list[np.ndarray]:
    """Each text's token vectors, L2-normalised, without padding, [CLS] and [SEP]."""
    import torch

    tokens = torch.nn.functional.normalize(result["token_embeddings"].to(torch.float32), p=2, dim=2)
    mask = features["attention_mask"].bool()
    mask[:, 0] = False  # [CLS]
    lengths = features["attention_mask"].sum(dim=1)
    mask[torch.arange(mask.shape[0]), lengths - 1] = False  # [SEP]
    return [tokens[i][mask[i]].numpy() for i in range(tokens.shape[0])]


def token_counter(tokenizer: Any) -> CountTokens:
    """Exact counts (special tokens included, nothing truncated), one batch call each, from a
    transformers tokenizer or a ``tokenizers.Tokenizer``. A fast tokenizer's Rust core is copied:
    transformers resets the shared one's truncation and padding on every call, and a model's
    ``tokenizer.json`` may carry both (MiniLM's pads and truncates to 128)."""
    core = getattr(tokenizer, "backend_tokenizer", tokenizer)
    if not hasattr(core, "to_str"):  # a slow, pure-Python transformers tokenizer

        def slow(texts: Sequence[str]) -> list[int]:
            ids = tokenizer(list(texts), add_special_tokens=True, truncation=False)["input_ids"] if texts else []
            return [len(x) for x in ids]

        return slow
    from tokenizers import Tokenizer

    core = Tokenizer.from_str(core.to_str())
    core.no_truncation()
    core.no_padding()
    encode = getattr(core, "encode_batch_fast", core.encode_batch)  # _fast skips offsets (tokenizers>=0.21)

    def fast(texts: Sequence[str]) -> list[int]:
        return [len(e) for e in encode(list(texts))]

    return fast


_ASCII_WORD = re.compile(r"[A-Za-z0-9]")
_ASCII_PUNCT = re.compile(r"[!-/:-@\[-`{-~]")


def estimate_tokens(texts: Sequence[str]) -> list[int]:
    """A token count without the model's tokenizer, meant to be high: a third of a token per ASCII letter
    or digit, a whole one per ASCII punctuation mark and per other character, plus two special tokens.
    Above the truth for English prose and code under WordPiece and BPE tokenizers alike; it is only an
    estimate, so pass a real counter when chunks must come close to the endpoint's limit."""
    out = []
    for t in texts:
        other = len(t) - len(t.encode("ascii", "ignore"))
        word = len(_ASCII_WORD.findall(t))
        out.append(math.ceil(word / 3) + len(_ASCII_PUNCT.findall(t)) + other + 2)
    return out


_RETRY_STATUS = frozenset({429, 500, 502, 503, 504})
MAX_RETRY_AFTER = 60.0


class OpenAIEmbedder:
    """Any OpenAI-compatible ``/v1/embeddings`` endpoint (OpenAI, vLLM, Ollama, another aifab).

    Requests go out ``batch_size`` texts at a time on one keep-alive connection. Connection failures,
    429 and 5xx are retried ``retries`` times with exponential backoff from ``backoff`` seconds, or after
    the ``Retry-After`` the endpoint asks for (capped at a minute). Vectors are re-normalised, since not
    every server normalises. ``dimensions``, when given, is also sent (models such as text-embedding-3
    shorten their vectors on request); otherwise it is learned from the first response — reading it
    before any ``embed`` costs one small request. Token counts come from ``count_tokens`` when given
    (e.g. ``token_counter`` over the model's Hugging Face tokenizer), else from ``estimate_tokens``.
    """

    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        api_key: str | None = None,
        batch_size: int = 64,
        timeout: float = 60,
        count_tokens: CountTokens | None = None,
        max_tokens: int = 8192,
        dimensions: int | None = None,
        retries: int = 4,
        backoff: float = 0.5,
    ) -> None:
        import httpx

        self.url = base_url.rstrip("/") + "/embeddings"
        self.model = model
        self.name = f"openai:{base_url}#{model}"
        self.max_tokens = max_tokens
        self.batch_size = batch_size
        self._count = count_tokens or estimate_tokens
        self.retries, self.backoff = retries, backoff
        self._requested_dimensions = dimensions
        self._dimensions = dimensions
        self._key = api_key
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._client = httpx.Client(timeout=timeout, headers=headers)

    @property
    def dimensions(self) -> int:
        if self._dimensions is None:
            self.embed(["dimensions"])
        return self._dimensions or 0

    @dimensions.setter
    def dimensions(self, value: int) -> None:  # the Embedder protocol declares a plain attribute
        self._dimensions = value

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        return self._count(texts)

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        for i, t in enumerate(texts):
            if not t:
                raise InvalidRequest(f"input[{i}] is empty; embedding endpoints reject empty strings")
        parts = [self._embed_batch(list(texts[at : at + self.batch_size]))
                 for at in range(0, len(texts), self.batch_size)]
        if not parts:
            return np.empty((0, self._dimensions or 0), dtype=np.float32)
        out = np.concatenate(parts) if len(parts) > 1 else parts[0]
        out /= np.maximum(np.linalg.norm(out, axis=1, keepdims=True), np.float32(1e-12))
        return out

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> OpenAIEmbedder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _embed_batch(self, texts: list[str]) -> np.ndarray:
        body: dict[str, Any] = {"model": self.model, "input": texts, "encoding_format": "float"}
        if self._requested_dimensions is not None:
            body["dimensions"] = self._requested_dimensions
        data = self._post(body).get("data")
        if not isinstance(data, list) or len(data) != len(texts):
            raise EngineError(f"{self.url} answered {len(data) if isinstance(data, list) else 'no'} "
                              f"embeddings for {len(texts)} inputs")
        rows = [_vector(item["embedding"]) for item in sorted(data, key=lambda item: item.get("index", 0))]
        if self._dimensions is None:
            self._dimensions = len(rows[0])
        if any(len(r) != self._dimensions for r in rows):
            raise EngineError(f"{self.url} answered vectors of {len(rows[0])} dimensions, not {self._dimensions}")
        return np.stack(rows)

    def _post(self, body: dict[str, Any]) -> dict[str, Any]:
        import httpx

        attempt = 0
        while True:
            try:
                r = self._client.post(self.url, json=body)
            except (httpx.NetworkError, httpx.ConnectTimeout, httpx.RemoteProtocolError) as exc:
                if attempt == self.retries:
                    raise EngineError(f"cannot reach {self.url} after {attempt + 1} tries: {exc}") from exc
                wait = self._wait(attempt, None)
            except httpx.TimeoutException as exc:
                raise EngineError(f"{self.url} did not answer within {self._client.timeout.read}s") from exc
            else:
                if r.status_code == 200:
                    try:
                        return dict(r.json())
                    except ValueError as exc:
                        raise EngineError(f"{self.url} answered 200 with a body that is not JSON") from exc
                if r.status_code not in _RETRY_STATUS or attempt == self.retries:
                    raise self._error(r, attempt + 1)
                wait = self._wait(attempt, r.headers.get("retry-after"))
            sleep(wait)
            attempt += 1

    def _wait(self, attempt: int, retry_after: str | None) -> float:
        asked = _seconds(retry_after)
        return min(asked if asked is not None else self.backoff * 2**attempt, MAX_RETRY_AFTER)

    def _error(self, r: httpx.Response, tries: int) -> EngineError | InvalidRequest:
        message = self._redact(_message(r))
        where = f"{self.url} (model '{self.model}') answered {r.status_code}"
        if r.status_code in (401, 403):
            return EngineError(f"{where}: the endpoint refused the API key: {message}")
        if 400 <= r.status_code < 500 and r.status_code != 429:
            return InvalidRequest(f"{where}: {message}")
        return EngineError(f"{where} after {tries} tries: {message}")

    def _redact(self, text: str) -> str:
        return text.replace(self._key, "***") if self._key else text


def _vector(value: Any) -> np.ndarray:
    if isinstance(value, str):  # encoding_format=base64, from a server that ignores our "float"
        return np.frombuffer(base64.b64decode(value), dtype="<f4").astype(np.float32)
    return np.asarray(value, dtype=np.float32)


def _message(r: httpx.Response) -> str:
    """The OpenAI error envelope's message, else the start of the body."""
    try:
        error = r.json().get("error")
        if isinstance(error, dict) and error.get("message"):
            return str(error["message"])
        if isinstance(error, str):
            return error
    except (ValueError, AttributeError):
        pass
    return r.text[:300] or r.reason_phrase


def _seconds(retry_after: str | None) -> float | None:
    """``Retry-After`` as seconds: a number, or an HTTP date."""
    if not retry_after:
        return None
    try:
        return max(0.0, float(retry_after))
    except ValueError:
        pass
    try:
        return max(0.0, parsedate_to_datetime(retry_after).timestamp() - time.time())
    except (TypeError, ValueError):
        return None


def load_embedder(settings: Settings, registry: Registry, loaded: Iterable[Engine] = ()) -> Embedder:
    """The embedder ``settings.corpus`` names: a registered embedding model, or ``"openai"`` for the
    endpoint at ``embedder_url`` (its key read now from the variable ``embedder_api_key_env`` names).

    When one of the ``loaded`` engines already holds that model (inside the server), the embedder runs on
    the engine's copy: one copy of each model per process."""
    corpus = settings.corpus
    if corpus.embedder != "openai":
        package = registry.get(corpus.embedder)
        model = next((e.model for e in loaded if _holds(e, package)), None)  # type: ignore[attr-defined]
        return SentenceTransformerEmbedder(package, batch_size=corpus.embed_batch, threads=settings.engines.threads,
                                           model=model)
    if not corpus.embedder_url or not corpus.embedder_model:
        raise ConfigError("corpus.embedder = 'openai' needs corpus.embedder_url and corpus.embedder_model")
    key = None
    if corpus.embedder_api_key_env:
        key = os.environ.get(corpus.embedder_api_key_env)
        if not key:
            raise ConfigError(f"corpus.embedder_api_key_env names {corpus.embedder_api_key_env}, which is not set")
    return OpenAIEmbedder(corpus.embedder_url, corpus.embedder_model, api_key=key, batch_size=corpus.embed_batch)



def _holds(engine: Engine, package: ModelPackage) -> bool:
    """Whether ``engine`` serves ``package``'s weights with a sentence-transformers model it exposes."""
    return (engine.package.format == "sentence-transformers" and engine.package.path == package.path
            and engine.package.sha256 == package.sha256 and hasattr(engine, "model"))
