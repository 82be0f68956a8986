"""llama.cpp through its C API: one context, one KV stream per sequence, one ``llama_decode`` per step."""

from __future__ import annotations

import ctypes
import json
import re
import threading
from typing import Any

from aifab.engines.batching import Sequence
from aifab.engines.prefix import PrefixCache
from aifab.errors import EngineError, InvalidRequest

try:
    import llama_cpp as C
    from llama_cpp.llama_grammar import JSON_GBNF, json_schema_to_gbnf
except ImportError:  # pragma: no cover - llama-cpp-python is a core dependency
    C = None  # type: ignore[assignment]

GRAMMAR_CACHE = 64  # compiled grammars kept, least recently used dropped first
MIN_COPY = 16  # a prefix another slot holds is copied when it saves at least this many prompt tokens
_CHAR_RULE = re.compile(r"^char ::= .*$", re.MULTILINE)
STRICT_CHAR = r'char ::= [^"\\\x00-\x1F\x7F] | "\\" ["\\/bfnrt]'
_NUMBER_RULE = re.compile(r"^number ::= .*$", re.MULTILINE)
FINITE_NUMBER = 'number ::= ("-"? integral-part) ("." decimal-part)? space'
_backend_lock = threading.Lock()
_backend_ready = False


@C.llama_log_callback if C else (lambda f: f)
def _quiet_log(level: int, text: bytes, user_data: Any) -> None:
    # Kept at module level: llama.cpp holds the pointer for the life of the process.
    return None


def init_backend() -> None:
    global _backend_ready
    with _backend_lock:
        if not _backend_ready:
            C.llama_log_set(_quiet_log, ctypes.c_void_p())
            C.llama_backend_init()
            _backend_ready = True


def schema_to_gbnf(schema: dict[str, Any] | None) -> str | None:
    """The GBNF grammar of a JSON schema (``{}``: any JSON object; None: no grammar)."""
    if schema is None:
        return None
    if not schema:
        return JSON_GBNF
    try:
        gbnf = json_schema_to_gbnf(json.dumps(schema))
    except Exception as exc:  # the converter raises plain exceptions on unsupported schemas
        raise InvalidRequest(f"unsupported JSON schema: {exc}", param="response_format") from exc
    # The converter's string character admits raw control characters (invalid JSON) and \uXXXX
    # escapes (six bytes a character, which breaks the byte budgets of forced tool calls); its number
    # admits an exponent of 16 digits (8E198673199 is infinite, which no JSON parser accepts).
    gbnf = _CHAR_RULE.sub(lambda _: STRICT_CHAR, gbnf)
    return _NUMBER_RULE.sub(lambda _: FINITE_NUMBER, gbnf)


class LlamaCppRuntime:
    """Owns a llama.cpp model and context. Only the scheduler thread calls ``step``."""

    def __init__(
        self, path: str, *, max_batch: int, ctx_per_seq: int, threads: int, n_batch: int = 2048,
        kv_cache_type: str = "f16", prefix_cache: bool = True,
    ) -> None:
        if C is None:
            raise EngineError("llama-cpp-python is not installed: pip install llama-cpp-python")
        init_backend()
        mparams = C.llama_model_default_params()
        self.model = C.llama_model_load_from_file(path.encode(), mparams)
        if not self.model:
            raise EngineError(f"llama.cpp could not load {path}")
        self.vocab = C.llama_model_get_vocab(self.model)
        self.n_vocab = C.llama_vocab_n_tokens(self.vocab)
        cparams = C.llama_context_default_params()
        cparams.n_ctx = ctx_per_seq * max_batch
        cparams.n_batch = n_batch
        cparams.n_ubatch = min(512, n_batch)
        cparams.n_seq_max = max_batch
        cparams.n_threads = threads
        cparams.n_threads_batch = threads
        cparams.type_k = cparams.type_v = {"f16": C.GGML_TYPE_F16, "q8_0": C.GGML_TYPE_Q8_0}[kv_cache_type]
        cparams.kv_unified = False  # a KV stream per sequence: faster batched decode, no cross-talk
        cparams.no_perf = True
        self.ctx = C.llama_init_from_model(self.model, cparams)
        if not self.ctx:
            C.llama_model_free(self.model)
            raise EngineError("llama.cpp could not create a context (out of memory?)")
        self.mem = C.llama_get_memory(self.ctx)
        self.max_batch = max_batch
        self.max_step_tokens = n_batch
        self.prefix = PrefixCache(max_batch, enabled=prefix_cache)
        self._batch = C.llama_batch_init(n_batch, 0, 1)
        self._piece_buf = ctypes.create_string_buffer(256)
        self._pieces: dict[int, bytes] = {}
        self._grammars: dict[str, Any] = {}  # schema JSON -> pristine grammar sampler (scheduler thread only)

    # --- tokenizer ------------------------------------------------------------------------------

    def tokenize(self, text: str, *, add_special: bool = True) -> list[int]:
        data = text.encode("utf-8")
        cap = len(data) + 16
        buf = (C.llama_token * cap)()
        n = C.llama_tokenize(self.vocab, data, len(data), buf, cap, add_special, True)
        if n < 0:
            raise EngineError(f"tokenization failed ({n})")
        return list(buf[:n])

    def piece(self, token: int) -> bytes:
        cached = self._pieces.get(token)
        if cached is None:
            n = C.llama_token_to_piece(self.vocab, token, self._piece_buf, len(self._piece_buf), 0, False)
            cached = self._piece_buf.raw[: max(n, 0)]
            self._pieces[token] = cached
        return cached

    def token_text(self, token: int) -> str:
        n = C.llama_token_to_piece(self.vocab, token, self._piece_buf, len(self._piece_buf), 0, True)
        return self._piece_buf.raw[: max(n, 0)].decode("utf-8", errors="replace")

    def is_end(self, token: int) -> bool:
        return bool(C.llama_vocab_is_eog(self.vocab, token))

    # --- per-sequence sampling ------------------------------------------------------------------

    def grammar_for(self, schema: dict[str, Any] | None) -> str | None:
        return schema_to_gbnf(schema)

    def _grammar(self, schema: dict[str, Any]) -> Any:
        """A pristine grammar sampler for ``schema``, parsed once and cloned for each sequence."""
        key = json.dumps(schema, sort_keys=True)
        g = self._grammars.pop(key, None)
        if g is None:
            grammar = self.grammar_for(schema) or ""
            g = C.llama_sampler_init_grammar(self.vocab, grammar.encode(), b"root")
            if not g:
                raise InvalidRequest("the JSON schema could not be compiled to a grammar", param="response_format")
            if len(self._grammars) >= GRAMMAR_CACHE:
                C.llama_sampler_free(self._grammars.pop(next(iter(self._grammars))))
        self._grammars[key] = g  # most recently used last
        return g

    def start(self, seq: Sequence) -> None:
        sp = seq.request.sampling
        chain = C.llama_sampler_chain_init(C.llama_sampler_chain_default_params())
        if sp.json_schema is not None:
            try:
                C.llama_sampler_chain_add(chain, C.llama_sampler_clone(self._grammar(sp.json_schema)))
            except BaseException:
                C.llama_sampler_free(chain)
                raise
        if sp.presence_penalty or sp.frequency_penalty:
            C.llama_sampler_chain_add(
                chain, C.llama_sampler_init_penalties(self.n_vocab, 64, 1.0, sp.frequency_penalty, sp.presence_penalty)
            )
        if sp.temperature <= 0:
            C.llama_sampler_chain_add(chain, C.llama_sampler_init_greedy())
        else:
            if sp.top_p < 1.0:
                C.llama_sampler_chain_add(chain, C.llama_sampler_init_top_p(sp.top_p, 1))
            C.llama_sampler_chain_add(chain, C.llama_sampler_init_temp(sp.temperature))
            seed = sp.seed if sp.seed is not None else C.LLAMA_DEFAULT_SEED
            C.llama_sampler_chain_add(chain, C.llama_sampler_init_dist(seed & 0xFFFFFFFF))
        seq.state = chain
        keep = self.prefix.match(seq.slot, seq.prompt_ids)
        src, shared = self.prefix.source(seq.slot, seq.prompt_ids) if self.prefix.enabled else (-1, 0)
        if shared >= keep + MIN_COPY and self._copy(src, seq.slot, shared):
            keep = shared
        elif keep and not C.llama_memory_seq_rm(self.mem, seq.slot, keep, -1):  # a model that cannot cut its cache
            keep = 0
        if not keep:
            C.llama_memory_seq_rm(self.mem, seq.slot, -1, -1)
        self.prefix.take(seq.slot, keep)
        seq.fed = keep

    def _copy(self, src: int, dst: int, n: int) -> bool:
        """Slot ``dst`` gets the first ``n`` positions of slot ``src``'s cache. With a KV stream per
        sequence llama.cpp copies a whole stream (a buffer copy at the next decode, milliseconds; the
        prefill it saves takes about 4 ms a token on two cores), then the rest is cut. A busy ``src`` is
        fine: positions below its ``n`` never change while its sequence runs."""
        C.llama_memory_seq_rm(self.mem, dst, -1, -1)
        C.llama_memory_seq_cp(self.mem, src, dst, -1, -1)
        if not C.llama_memory_seq_rm(self.mem, dst, n, -1):
            C.llama_memory_seq_rm(self.mem, dst, -1, -1)
            return False
        self.prefix.copied(src, dst, n)
        return True

    def release(self, seq: Sequence) -> None:
        held = (seq.prompt_ids + seq.generated)[: seq.fed]  # what the slot's KV cache now holds
        if self.prefix.enabled and held:
            self.prefix.keep(seq.slot, held)  # kept for the next prompt that starts the same way
        else:
            C.llama_memory_seq_rm(self.mem, seq.slot, -1, -1)
            self.prefix.forget(seq.slot)
        if seq.state:
            C.llama_sampler_free(seq.state)
            seq.state = None

    # --- one decode step ------------------------------------------------------------------------

    def step(self, seqs: list[Sequence], feeds: list[list[int]]) -> list[int | None]:
        b = self._batch
        n = 0
        logit_at: list[int | None] = []
        for seq, feed in zip(seqs, feeds, strict=True):
            for i, tok in enumerate(feed):
                b.token[n] = tok
                b.pos[n] = seq.fed + i
                b.n_seq_id[n] = 1
                b.seq_id[n][0] = seq.slot
                b.logits[n] = False
                n += 1
            if seq.completes(feed):
                b.logits[n - 1] = True
                logit_at.append(n - 1)
            else:
                logit_at.append(None)
        b.n_tokens = n
        rc = C.llama_decode(self.ctx, b)
        if rc != 0:
            raise EngineError(f"llama_decode returned {rc}")
        self.prefix.applied()
        return [
            None if idx is None else int(C.llama_sampler_sample(seq.state, self.ctx, idx))
            for seq, idx in zip(seqs, logit_at, strict=True)
        ]

    def close(self) -> None:
        for g in self._grammars.values():
            C.llama_sampler_free(g)
        self._grammars.clear()
        C.llama_batch_free(self._batch)
        C.llama_free(self.ctx)
        C.llama_model_free(self.model)
