"""The RAG block wired from settings: retrieval over the corpus's collections, and apps that answer
questions from them with a chat model. The server and the CLI (``aifab ask``, ``aifab eval``) both use
this one object; generation itself stays with the engine (and the OpenAI serving layer)."""

from __future__ import annotations

import asyncio
import logging
import re
import threading
from collections.abc import AsyncGenerator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from aifab.config import AppSettings, RetrievalSettings, Settings
from aifab.corpus.service import Corpus
from aifab.engines.protocol import Delta, Engine, GenerationRequest, SamplingParams
from aifab.errors import ConfigError, Conflict, InvalidRequest, NotFound
from aifab.rag.attribution import Attributor
from aifab.rag.citations import StreamCiter, citations
from aifab.rag.prompting import build_prompt
from aifab.rag.protocol import Passage, Reranker
from aifab.rag.rerank import make_reranker
from aifab.rag.retrieval import Retriever
from aifab.rag.selection import Similarity, embedded_similarity, select_context, stored_similarity
from aifab.stores.protocol import Filter, Scalar

log = logging.getLogger("aifab.rag")
DONT_KNOW = "I don't know: nothing in collection '{collection}' is relevant enough to answer this question."
_ANAPHORA = re.compile(
    r"\b(it|its|it's|this|that|these|those|they|them|their|theirs|he|him|his|she|her|hers|there|"
    r"one|ones|same|former|latter|above|previous|else|more|other)\b",
    re.IGNORECASE,
)
REWRITE_PROMPT = (
    "Rewrite the user's last question as one standalone search query that can be understood without the "
    "conversation. Reply with the query only.\n\nConversation:\n{conversation}\n\nLast question: {question}"
)


@dataclass
class Prepared:
    """A question made ready for generation: its search query, the passages given to the model and the
    prompt, or, when nothing relevant was found, the fixed answer to give instead."""

    app: AppSettings
    query: str
    passages: list[Passage] = field(default_factory=list)
    prompt: str | None = None
    prompt_tokens: int = 0
    fallback: str | None = None
    messages: list[dict[str, Any]] | None = None  # what ``prompt`` renders (a tool loop renders more turns)


class Rag:
    def __init__(self, settings: Settings, corpus: Corpus) -> None:
        self.settings = settings
        self.corpus = corpus
        self.retriever = Retriever(corpus.store, self._embed_query, self._reranker)
        self._rerankers: dict[str, Reranker | None] = {}
        self._lock = threading.Lock()

    # --- apps ------------------------------------------------------------------------------------

    def app_names(self) -> list[str]:
        return sorted(self.settings.apps)

    def has_app(self, name: str) -> bool:
        return name in self.settings.apps

    def app(self, name: str) -> AppSettings:
        try:
            return self._resolved(self.settings.apps[name])
        except KeyError:
            known = ", ".join(self.app_names()) or "none configured"
            raise NotFound(f"no app named '{name}' (apps: {known})", param="model") from None

    def unready_apps(self) -> list[str]:
        """One line per app whose collection cannot answer yet (missing, or nothing ingested): said at
        start-up, where the fix is one command, rather than as a 404 at the app's first request."""
        out = []
        for name in self.app_names():
            collection = self.settings.apps[name].collection
            if collection is None:
                continue
            try:
                ready = self.corpus.collections.get(collection).live_version is not None
                state = "has no documents yet"
            except NotFound:
                ready, state = False, f"does not exist in {self.settings.data_dir.resolve()}"
            if not ready:
                out.append(f"app '{name}': collection '{collection}' {state}; the app answers 404 until "
                           f"`aifab ingest PATH -C {collection}` fills it")
        return out

    def app_for_collection(self, collection: str, **overrides: Any) -> AppSettings:
        """An ad-hoc app over one collection with the default model, prompt and retrieval."""
        return self._resolved(AppSettings(collection=collection, **overrides))

    def _resolved(self, app: AppSettings) -> AppSettings:
        return app.model_copy(update={
            "model": app.model or self.settings.models.chat,
            "retrieval": app.retrieval or self.settings.rag,
        })

    # --- retrieval -------------------------------------------------------------------------------

    def retrieve(
        self, collection: str, query: str, *, settings: RetrievalSettings | None = None, top_k: int | None = None,
        where: Mapping[str, Scalar | Sequence[Scalar]] | None = None, acl: frozenset[str] | None = None,
    ) -> list[Passage]:
        """The best passages of the collection's live version. ``acl`` None = an unscoped, trusted caller."""
        if not query.strip():
            raise InvalidRequest("the query is empty", param="query")
        version = self.corpus.collections.version(collection)
        embedder = self.corpus.embedder()
        built_with = version.pipeline.get("embedder")
        if built_with and built_with != embedder.name:
            raise Conflict(
                f"collection '{collection}' v{version.version} was embedded with {built_with}, but the configured "
                f"embedder is {embedder.name}: re-ingest it, or set corpus.embedder back"
            )
        return self.retriever.search(
            version.namespace, query, settings or self.settings.rag, Filter(acl=acl, where=dict(where or {})),
            top_k=top_k,
        )

    def _embed_query(self, query: str) -> np.ndarray:
        embedder = self.corpus.embedder()
        one_pass = getattr(embedder, "embed_query", None)  # the local embedder keeps the query's token vectors
        return one_pass(query) if one_pass is not None else embedder.embed([query])[0]

    def _similarity(self, passages: Sequence[Passage]) -> Similarity:
        """How context selection scores sentences: from the token vectors stored at ingest where the passages
        carry them (the maxsim reranker fetched them) and the embedder can place them, else by embedding."""
        embedder = self.corpus.embedder()
        vectors, spans = getattr(embedder, "token_vectors", None), getattr(embedder, "token_spans", None)
        if passages and all(p.stored is not None for p in passages) and vectors and spans:
            return stored_similarity(vectors, spans)
        return embedded_similarity(embedder.embed)

    def _reranker(self, name: str) -> Reranker | None:
        """The named reranker; None (with one warning) when the embedder cannot feed it, e.g. an
        embedding endpoint has no token vectors for ``maxsim``: retrieval then keeps the fused order."""
        with self._lock:
            if name not in self._rerankers:
                try:
                    self._rerankers[name] = make_reranker(name, self.corpus.embedder())
                except ConfigError as exc:
                    log.warning("%s; retrieval goes on without reranking (set rag.reranker = \"none\")", exc.message)
                    self._rerankers[name] = None
            return self._rerankers[name]

    # --- answering -------------------------------------------------------------------------------

    async def prepare(
        self, app: AppSettings, messages: Sequence[dict[str, Any]], engine: Engine, *, max_tokens: int,
        acl: frozenset[str] | None = None,
    ) -> Prepared:
        """Search query, passages and grounded prompt for the conversation's last user question."""
        if app.collection is None:
            raise InvalidRequest("this app has no collection to search", param="model")
        turns = [m for m in messages if m["role"] in ("user", "assistant")]  # the app owns the instructions
        if not turns or turns[-1]["role"] != "user" or not str(turns[-1]["content"]).strip():
            raise InvalidRequest("the last message must be a non-empty user question", param="messages")
        question, history = str(turns[-1]["content"]), turns[:-1]
        query = await self.standalone_query(app, question, history, engine)
        retrieval = app.retrieval or self.settings.rag
        passages = await asyncio.to_thread(
            self.retrieve, app.collection, query, settings=retrieval, acl=acl
        )
        if not any(p.similarity >= retrieval.min_score for p in passages):
            return Prepared(app, query, fallback=DONT_KNOW.format(collection=app.collection))
        if retrieval.context_tokens > 0:
            passages = await asyncio.to_thread(
                select_context, query, passages, similarity=self._similarity(passages),
                count_tokens=engine.count_tokens, budget=retrieval.context_tokens,
            )
        window = min(engine.package.context_length, self.settings.engines.context_per_sequence)
        budget = (app.max_context_tokens or window) - max_tokens
        grounded = build_prompt(
            question, history, passages, render=engine.render_chat, count_tokens=engine.count_tokens,
            budget=budget, system_prompt=app.system_prompt,
        )
        return Prepared(app, query, grounded.passages, grounded.prompt, grounded.tokens, messages=grounded.messages)

    async def standalone_query(
        self, app: AppSettings, question: str, history: Sequence[dict[str, Any]], engine: Engine
    ) -> str:
        """The question as a search query that stands on its own.

        ``context`` (default): a question that refers back (a pronoun such as "it" or "those", or
        "more"/"other") is searched together with the previous user question; one that does not is
        searched alone. ``model``: the chat model rewrites it (falling back to ``context`` when the
        rewrite is empty or rambles). ``none``: the question as asked."""
        previous = [str(m["content"]) for m in history if m["role"] == "user"]
        if app.rewrite == "none" or not previous:
            return question
        if app.rewrite == "model":
            rewritten = await self._rewrite(question, history, engine)
            if rewritten:
                return rewritten
        return f"{previous[-1]} {question}" if _ANAPHORA.search(question) else question

    async def _rewrite(self, question: str, history: Sequence[dict[str, Any]], engine: Engine) -> str | None:
        conversation = "\n".join(f"{m['role']}: {m['content']}" for m in history[-6:])
        prompt = engine.render_chat([{
            "role": "user", "content": REWRITE_PROMPT.format(conversation=conversation, question=question)
        }])
        request = GenerationRequest(prompt, SamplingParams(temperature=0.0, max_tokens=64, stop=["\n"]))
        text = "".join([d.text async for d in engine.generate(request)]).strip().strip('"')
        if not text or len(text) > 3 * len(question) + 200:
            return None
        return text

    def cite(self, prepared: Prepared, answer: str) -> list[dict[str, Any]]:
        """The answer's citations: its markers, and for its other sentences the sources attribution finds
        (``rag.attribute``), each marked with how it was found."""
        return citations(prepared.passages, answer, self._attributor(prepared))

    def citer(self, prepared: Prepared) -> StreamCiter:
        """Cites a streamed answer sentence by sentence, by the same rules as :meth:`cite`."""
        return StreamCiter(prepared.passages, self._attributor(prepared))

    def _attributor(self, prepared: Prepared) -> Attributor | None:
        settings = prepared.app.retrieval or self.settings.rag
        if settings.attribute and prepared.passages:
            embedder = self.corpus.embedder()  # attribution runs while answers decode: aside, if it can
            embed = getattr(embedder, "embed_aside", embedder.embed)
            return Attributor(embed, threshold=settings.attribution_threshold)
        return None

    @staticmethod
    def generate(
        prepared: Prepared, engine: Engine, sampling: SamplingParams, request_id: str | None = None
    ) -> AsyncGenerator[Delta, None]:
        """The answer's deltas: the model's over the grounded prompt, or the fixed reply."""
        if prepared.prompt is None:
            return _fixed(prepared.fallback or "")
        request = GenerationRequest(prepared.prompt, sampling)
        if request_id is not None:
            request.request_id = request_id
        return engine.generate(request)


async def _fixed(text: str) -> AsyncGenerator[Delta, None]:
    yield Delta(text, finish_reason="stop", prompt_tokens=0, completion_tokens=0)
