"""The OpenAI-compatible service: requests in, response dicts or SSE lines out. No HTTP here."""

from __future__ import annotations

import asyncio
import base64
import time
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import orjson

from aifab.api import Call, ChatCompletionRequest, CompletionRequest, EmbeddingRequest, aifab_event
from aifab.api.events import Kind, cited_chunks
from aifab.api.requests import ChatMessage, SamplingRequest, refuse_unknown
from aifab.engines.protocol import Delta, Engine, GenerationRequest, SamplingParams
from aifab.errors import EngineError, Forbidden, InvalidRequest
from aifab.identity import ApiKey
from aifab.registry.package import ModelPackage
from aifab.serve.agent import Guard, ToolLoop, drain, no_guard, tool_conversation
from aifab.serve.citing import cite_as_it_goes
from aifab.serve.metrics import Metrics
from aifab.serve.pool import ModelPool
from aifab.serve.toolcalls import call_json, fragment_json, parse_calls, plan_tools
from aifab.tools import Toolbox

if TYPE_CHECKING:
    from aifab.rag import Rag
    from aifab.rag.citations import StreamCiter

Extra = Callable[[str], dict[Kind, Any]]  # the answer's text -> extra fields of the message (and aifab events)
Events = Callable[[], list[tuple[Kind, Any]]]  # aifab events that happened since the last call (to send now)


@dataclass
class _Kind:
    """What differs between /v1/chat/completions and /v1/completions responses."""

    prefix: str
    object: str
    chunk_object: str
    chat: bool


CHAT = _Kind("chatcmpl-", "chat.completion", "chat.completion.chunk", True)
TEXT = _Kind("cmpl-", "text_completion", "text_completion", False)


class OpenAIServing:
    def __init__(self, pool: ModelPool, *, metrics: Metrics, rag: Rag | None = None,
                 tool_guard: Guard = no_guard) -> None:
        self.pool = pool
        self.metrics = metrics
        self.rag = rag
        self.toolbox: Toolbox | None = None  # opened at start-up when apps have tools (see serve.app)
        self.tool_guard = tool_guard

    def _engine(self, model: str) -> Engine:
        return self.pool.get(model, apps=self.rag.app_names() if self.rag else ())

    def list_models(self) -> dict[str, Any]:
        """The loaded models with the context each one enforces (the package's, cut to the engine's
        per-sequence KV cache) and when its version was registered; then the RAG apps."""
        data = []
        loaded = dict(self.pool.items())
        for name, engine in loaded.items():
            pkg = engine.package
            data.append(
                {
                    "id": name,
                    "object": "model",
                    "created": _created(pkg),
                    "owned_by": "aifab",
                    "kind": pkg.kind,
                    "format": pkg.format,
                    "context_length": engine.context_length,
                    "version": pkg.fingerprint,
                }
            )
        for name in self.rag.app_names() if self.rag else []:
            app = self.rag.app(name)  # type: ignore[union-attr]
            answers = loaded.get(app.model or "")  # an app is as new as the model that answers
            data.append({"id": name, "object": "model", "created": _created(answers.package) if answers else 0,
                         "owned_by": "aifab", "kind": "rag-app", "collection": app.collection,
                         "answer_model": app.model})
        return {"object": "list", "data": data}

    # --- generation -----------------------------------------------------------------------------

    async def chat(self, req: ChatCompletionRequest, caller: ApiKey | None = None,
                   call: Call | None = None) -> dict[str, Any] | AsyncIterator[bytes]:
        refuse_unknown(req)
        messages = [_message(m) for m in req.messages]
        if self.rag is not None and self.rag.has_app(req.model):
            return await self._answer(req, messages, caller, call)
        engine = self._engine(req.model)
        sampling = _sampling(req, engine, req.max_completion_tokens or req.max_tokens)
        gen, request_id = self._with_client_tools(req, engine, messages, sampling)
        return await self._generate(gen, req, request_id, CHAT, engine.package.fingerprint, call)

    def _with_client_tools(self, req: ChatCompletionRequest, engine: Engine, messages: list[dict[str, Any]],
                           sampling: SamplingParams) -> tuple[AsyncGenerator[Delta, None], str]:
        """The generation for ``messages`` with the request's own tools (if any): the calls the model makes go
        back to the client, which runs them."""
        tools = [t.model_dump(exclude_none=True) for t in req.tools] if req.tools is not None else None
        choice = req.tool_choice if isinstance(req.tool_choice, str | None) else req.tool_choice.model_dump()
        plan = plan_tools(tools, choice, req.parallel_tool_calls, engine)
        prompt = engine.render_chat(messages, plan.offered)
        rf = req.response_format
        if plan.forced and rf is not None and rf.type != "text":
            raise InvalidRequest("response_format cannot be combined with a forced tool call (tool_choice "
                                 "required or named): the call has its own grammar", param="response_format")
        for field, value in (("stop", sampling.stop), ("ignore_eos", sampling.ignore_eos)):
            if plan.forced and value:  # either would cut or overrun the call its grammar guarantees
                raise InvalidRequest(f"'{field}' cannot be combined with a forced tool call", param=field)
        if plan.forced:
            # Fixed up front (not cut to the context later): the call's grammar is sized to fit it.
            sampling.max_tokens = sampling.max_tokens or engine.package.generation.max_tokens
            sampling.json_schema = plan.schema(sampling.max_tokens)
        elif rf is not None and rf.type == "json_object":
            sampling.json_schema = {}
        elif rf is not None and rf.type == "json_schema":
            sampling.json_schema = rf.json_schema.schema_ if rf.json_schema else {}
        greq = GenerationRequest(prompt=prompt, sampling=sampling)
        gen = engine.generate(greq)
        if plan.parser is not None:
            gen = parse_calls(gen, plan.parser(), parallel=plan.parallel)
        return gen, greq.request_id

    async def _answer(self, req: ChatCompletionRequest, messages: list[dict[str, Any]], caller: ApiKey | None,
                      call: Call | None) -> dict[str, Any] | AsyncIterator[bytes]:
        """An app called as a model: retrieve and ground (an app with a collection), run its tools server-side
        (an app with tools), generate; citations and tool steps ride along. A key sees only the chunks its ACL
        tags allow, and only apps over collections in its scope. A request that brings its own ``tools`` gets
        the model's calls back and the server runs none."""
        assert self.rag is not None
        if req.response_format is not None and req.response_format.type != "text":
            raise InvalidRequest("an app answers in text with citations; response_format is not supported",
                                 param="response_format")
        app = self.rag.app(req.model)
        if caller is not None and app.collection is not None and not caller.allows_collection(app.collection):
            raise Forbidden(f"the key '{caller.name}' may not use the collection '{app.collection}' of app "
                            f"'{req.model}'", param="model")
        usable: list[str] = []  # the app's tools this key may run (a key's tool scope: see ApiKey.allows_tool)
        if app.tools and not req.tools:
            usable = [n for n in self._toolbox().expand(app.tools) if caller is None or caller.allows_tool(n)]
            if not usable and app.collection is None:
                assert caller is not None
                raise Forbidden(f"the key '{caller.name}' may use none of the tools of app '{req.model}'",
                                param="model")
        engine = self.pool.get(app.model or "")
        wanted = req.max_completion_tokens or req.max_tokens
        max_tokens = min(wanted, app.max_tokens) if wanted else app.max_tokens
        sampling = _sampling(req, engine, max_tokens)
        if req.temperature is None:
            sampling.temperature = app.temperature
        prepared = None
        if app.collection is not None:
            acl = caller.acl_filter() if caller is not None else None
            prepared = await self.rag.prepare(app, messages, engine, max_tokens=max_tokens, acl=acl)
        conversation = prepared.messages if prepared is not None else None
        runs_tools = bool(usable)
        if conversation is None and (req.tools or runs_tools):  # no sources (none configured, or none relevant)
            conversation = tool_conversation(app, messages)
        rag, loop = self.rag, None
        citer: StreamCiter | None = None  # a stream's sentences, cited as they complete

        def extra(answer: str) -> dict[Kind, Any]:
            out: dict[Kind, Any] = {}
            if prepared is not None:  # an app over a collection always lists its sources, if none
                if citer is not None and citer.finished:  # a stream: its sentences were cited as they completed
                    out["citations"] = citer.citations()
                else:
                    out["citations"] = rag.cite(prepared, answer)
                if call is not None:
                    call.context = cited_chunks(out["citations"])
            if loop is not None and not req.stream:  # a stream had them as events, step by step
                out["tool_steps"] = [asdict(s) for s in loop.steps]
            return out

        request_id = uuid.uuid4().hex  # one id for the engine's request and the response
        if req.tools and conversation is not None:
            gen, request_id = self._with_client_tools(req, engine, conversation, sampling)
        elif runs_tools and conversation is not None:
            loop = ToolLoop(app, self._toolbox(), engine, guard=self.tool_guard, call=call, tools=usable)
            gen = loop.deltas(conversation, sampling)
        else:
            assert prepared is not None
            gen = self.rag.generate(prepared, engine, sampling, request_id)
        events = loop.events if loop is not None else None
        if req.stream and loop is None and prepared is not None and prepared.passages and not req.tools:
            cited: list[tuple[Kind, Any]] = []
            citer = self.rag.citer(prepared)
            gen = cite_as_it_goes(gen, citer, cited, engine)
            events = partial(drain, cited)
        return await self._generate(gen, req, request_id, CHAT, engine.package.fingerprint, call, extra, events)

    def _toolbox(self) -> Toolbox:
        if self.toolbox is None:
            raise EngineError("the app's tools are not open (the server is still starting, or failed to open them)")
        return self.toolbox

    async def complete(self, req: CompletionRequest, call: Call | None = None) -> dict[str, Any] | AsyncIterator[bytes]:
        refuse_unknown(req)
        if isinstance(req.prompt, list) and len(req.prompt) != 1:
            raise InvalidRequest("this server takes one prompt per request", param="prompt")
        engine = self._engine(req.model)
        greq = GenerationRequest(prompt=req.prompt_text(), sampling=_sampling(req, engine, req.max_tokens))
        return await self._generate(engine.generate(greq), req, greq.request_id, TEXT, engine.package.fingerprint,
                                    call)

    async def _generate(
        self, gen: AsyncGenerator[Delta, None], req: SamplingRequest, request_id: str, kind: _Kind, fingerprint: str,
        call: Call | None, extra: Extra | None = None, events: Events | None = None,
    ) -> dict[str, Any] | AsyncIterator[bytes]:
        """The answer whole, or as SSE lines; ``fingerprint`` (the answering model's version) goes into
        every body as ``system_fingerprint``, so a client sees which side of a canary answered."""
        run = _Run(self.metrics, req.model, time.perf_counter())
        # Prime the stream: a bad request, a full queue or an over-long prompt raises here, before any
        # byte is sent, so the client gets a proper status code even when it asked for a stream.
        try:
            first = await anext(gen)
        except BaseException:
            await gen.aclose()
            raise
        run.observe(first)
        # behind the gateway: its response id and the name the client called, so its events pass as they are
        rid, model = (call.id, call.model) if call is not None else (kind.prefix + request_id, req.model)
        if req.stream:
            include_usage = bool(req.stream_options and req.stream_options.include_usage)
            return _sse(kind, rid, model, fingerprint, first, gen, run, include_usage, call, extra, events)
        text, last, calls = [first.text], first, list(first.tool_calls)
        try:
            async for delta in gen:
                run.observe(delta)
                text.append(delta.text)
                calls += delta.tool_calls
                last = delta
        finally:
            await gen.aclose()
        content = "".join(text)
        if call is not None:
            call.report(content, last.completion_tokens, last.prompt_tokens)
            call.report_calls(calls)
        choice: dict[str, Any] = {"index": 0, "finish_reason": last.finish_reason, "logprobs": None}
        if kind.chat:
            # off the event loop: attributing the answer embeds its sentences, and the other streams go on
            fields = await asyncio.to_thread(extra, content) if extra else {}
            choice["message"] = {"role": "assistant", "content": content, **fields}
            if calls:
                choice["message"].update(content=content or None, tool_calls=call_json(calls))
        else:
            choice["text"] = (req.prompt_text() if isinstance(req, CompletionRequest) and req.echo else "") + content
        return {
            "id": rid,
            "object": kind.object,
            "created": int(time.time()),
            "model": model,
            "system_fingerprint": fingerprint,
            "choices": [choice],
            "usage": _usage(last),
        }

    def fingerprint(self, model: str) -> str:
        """The version of the model that answers requests for ``model`` (for an app: its chat model)."""
        if self.rag is not None and self.rag.has_app(model):
            model = self.rag.app(model).model or ""
        return self.pool.get(model).package.fingerprint

    # --- embeddings -----------------------------------------------------------------------------

    async def embed(self, req: EmbeddingRequest, call: Call | None = None) -> dict[str, Any]:
        refuse_unknown(req)
        engine = self._engine(req.model)
        result = await engine.embed(req.texts())
        self.metrics.tokens_in.labels(req.model).inc(result.prompt_tokens)
        data = []
        for i, vec in enumerate(result.vectors):
            if req.dimensions is not None:
                vec = _truncate(vec, req.dimensions)
            value: Any = vec
            if req.encoding_format == "base64":
                value = base64.b64encode(np.asarray(vec, dtype="<f4").tobytes()).decode()
            data.append({"object": "embedding", "index": i, "embedding": value})
        usage = {"prompt_tokens": result.prompt_tokens, "total_tokens": result.prompt_tokens}
        if call is not None:
            call.report("", 0, result.prompt_tokens)
        return {"object": "list", "data": data, "model": call.model if call is not None else req.model, "usage": usage}


def _sampling(req: SamplingRequest, engine: Engine, max_tokens: int | None) -> SamplingParams:
    if req.n != 1:
        raise InvalidRequest("this server's models give one choice per request", param="n")
    defaults = engine.package.generation
    return SamplingParams(
        temperature=defaults.temperature if req.temperature is None else req.temperature,
        top_p=defaults.top_p if req.top_p is None else req.top_p,
        max_tokens=max_tokens,
        stop=req.stop_list(),
        seed=req.seed,
        presence_penalty=req.presence_penalty,
        frequency_penalty=req.frequency_penalty,
        ignore_eos=req.ignore_eos,
    )


def _chat_deltas(delta: Delta, role: bool) -> list[dict[str, Any]]:
    """The ``delta`` objects of the chat chunks for one engine delta: its content, then each tool-call fragment."""
    parts: list[dict[str, Any]] = []
    if delta.text or role or not delta.tool_calls:
        parts.append({"content": delta.text})
    parts += [{"tool_calls": [fragment_json(f)]} for f in delta.tool_calls]
    if role:
        parts[0] = {"role": "assistant", **parts[0]}
    return parts


def _message(m: ChatMessage) -> dict[str, Any]:
    """A turn as chat templates take it: developer turns are system turns; tool fields ride along."""
    out: dict[str, Any] = {"role": "system" if m.role == "developer" else m.role, "content": m.text()}
    if m.tool_calls:
        out["tool_calls"] = [c.model_dump(include={"id", "type", "function"}) for c in m.tool_calls]
    if m.tool_call_id is not None:
        out["tool_call_id"] = m.tool_call_id
    return out


def _created(pkg: ModelPackage) -> int:
    """When the registry registered the package, else when its files were written (a package served
    without a registry, e.g. in tests)."""
    if pkg.created:
        return pkg.created
    try:
        return int(Path(pkg.path).stat().st_mtime)
    except OSError:
        return 0


def _truncate(vec: list[float], dims: int) -> list[float]:
    if dims > len(vec):
        raise InvalidRequest(f"dimensions {dims} exceeds the model's {len(vec)}", param="dimensions")
    cut = np.asarray(vec[:dims])
    return (cut / (np.linalg.norm(cut) or 1.0)).tolist()


def _usage(last: Delta) -> dict[str, int]:
    return {
        "prompt_tokens": last.prompt_tokens,
        "completion_tokens": last.completion_tokens,
        "total_tokens": last.prompt_tokens + last.completion_tokens,
    }


class _Run:
    """Latency and token accounting of one generation."""

    def __init__(self, metrics: Metrics, model: str, start: float) -> None:
        self.metrics, self.model, self.last = metrics, model, start
        self.first_seen = False

    def observe(self, delta: Delta) -> None:
        """Time to first token is to the first delta with text (a piece of a multi-byte character comes out
        empty); inter-token latency is between deltas after it."""
        if not self.first_seen and not delta.text and delta.finish_reason is None:
            return
        now = time.perf_counter()
        if not self.first_seen:
            self.metrics.ttft.labels(self.model).observe(now - self.last)
            self.metrics.tokens_in.labels(self.model).inc(delta.prompt_tokens)
            self.first_seen = True
        else:
            self.metrics.itl.labels(self.model).observe(now - self.last)
        self.last = now
        if delta.finish_reason is not None:
            self.metrics.tokens_out.labels(self.model).inc(delta.completion_tokens)


async def _sse(
    kind: _Kind, rid: str, model: str, fingerprint: str, first: Delta, rest: AsyncGenerator[Delta, None], run: _Run,
    include_usage: bool, call: Call | None, extra: Extra | None = None, events: Events | None = None,
) -> AsyncIterator[bytes]:
    created = int(time.time())
    head: dict[str, Any] = {"id": rid, "object": kind.chunk_object, "created": created, "model": model,
                            "system_fingerprint": fingerprint}

    def chunk(delta: Delta | None, role: bool = False, usage: dict[str, int] | None = None) -> bytes:
        body = dict(head)
        if include_usage:
            body["usage"] = usage
        if call is not None:
            call.report(delta.text if delta else "", delta.completion_tokens if delta else call.completion_tokens,
                        delta.prompt_tokens if delta else call.prompt_tokens)
            if delta is not None:
                call.report_calls(delta.tool_calls)
        if delta is None:
            return b"data: " + orjson.dumps({**body, "choices": []}) + b"\n\n"
        if not kind.chat:
            body["choices"] = [{"index": 0, "text": delta.text, "finish_reason": delta.finish_reason, "logprobs": None}]
            return b"data: " + orjson.dumps(body) + b"\n\n"
        parts = _chat_deltas(delta, role)  # a tool call's fragments go one an event, as OpenAI sends them
        return b"".join(
            b"data: " + orjson.dumps({**body, "choices": [{
                "index": 0, "delta": d, "logprobs": None,
                "finish_reason": delta.finish_reason if i == len(parts) - 1 else None}]}) + b"\n\n"
            for i, d in enumerate(parts)
        )

    last, text = first, [first.text]
    try:
        yield chunk(first, role=True)
        if first.finish_reason is None:
            async for delta in rest:
                run.observe(delta)
                last = delta
                text.append(delta.text)
                if delta.text or delta.finish_reason or delta.tool_calls:
                    yield chunk(delta)
                for name, data in events() if events is not None else ():  # tool steps, cited sentences
                    yield aifab_event(name, data, **head)
        if extra is not None:  # e.g. an app's citations, as aifab events (see aifab.api.events)
            for name, data in extra("".join(text)).items():
                yield aifab_event(name, data, **head)
        if include_usage:
            yield chunk(None, usage=_usage(last))
        yield b"data: [DONE]\n\n"
    finally:
        await rest.aclose()  # frees the engine slot at once when the client went away
