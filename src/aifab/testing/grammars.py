"""Grammar checks without a trained model: varied tool schemas, and *walkers* that decode under a
grammar with random logits through the engines' own samplers, so every path a grammar allows (a
trained model would take only likely ones) has a chance to be taken. A call that parses, validates and
ends within ``max_tokens`` when the logits are noise will do so with a real model too.
"""

from __future__ import annotations

import ctypes
import random
from pathlib import Path
from typing import Any

import numpy as np

WORDS = ["city", "query", "limit", "unit", "date", "tags", "user", "items", "options", "price", "enabled",
         "note", "level", "color", "email", "ids", "range", "filters", "lang", "mode"]


def _value_schema(rng: random.Random, depth: int) -> dict[str, Any]:
    kinds = ["string", "string", "integer", "number", "boolean", "enum", "array", "nullable", "ranged", "anyof"]
    if depth < 2:
        kinds += ["object", "array_of_objects"]
    kind = rng.choice(kinds)
    if kind == "string":
        s: dict[str, Any] = {"type": "string", "description": "free text"}
        if rng.random() < 0.3:
            s["maxLength"] = rng.randint(1, 20)
        if rng.random() < 0.2:
            s["minLength"] = rng.randint(1, 3)
            s["maxLength"] = max(s.get("maxLength", 0), s["minLength"])
        return s
    if kind == "integer":
        return {"type": "integer"}
    if kind == "number":
        return {"type": "number"}
    if kind == "ranged":
        lo = rng.randint(-50, 50)
        if rng.random() < 0.5:
            return {"type": "integer", "minimum": lo, "maximum": lo + rng.randint(0, 2000)}
        return {"type": "number", "minimum": lo / 10, "exclusiveMaximum": lo / 10 + rng.choice([0.5, 3, 100])}
    if kind == "boolean":
        return {"type": "boolean"}
    if kind == "enum":
        return {"type": "string", "enum": rng.sample(["red", "green", "blue", "naïve", "x y", "a-b"], rng.randint(1, 4))}
    if kind == "array":
        a: dict[str, Any] = {"type": "array", "items": _value_schema(rng, depth + 1)}
        if rng.random() < 0.3:
            a["minItems"] = 1
        if rng.random() < 0.3:
            a["maxItems"] = rng.randint(1, 3)
        return a
    if kind == "nullable":
        return {"type": [rng.choice(["string", "integer", "boolean"]), "null"]}
    if kind == "anyof":
        return {"anyOf": [_value_schema(rng, depth + 1), _value_schema(rng, depth + 1)]}
    if kind == "array_of_objects":
        return {"type": "array", "items": object_schema(rng, depth + 1), "maxItems": rng.randint(1, 3)}
    return object_schema(rng, depth + 1)


def object_schema(rng: random.Random, depth: int = 0) -> dict[str, Any]:
    names = rng.sample(WORDS, rng.randint(0 if depth else 1, 4 if depth else 5))
    props = {n: _value_schema(rng, depth) for n in names}
    required = [n for n in names if rng.random() < 0.6]
    schema: dict[str, Any] = {"type": "object", "properties": props, "required": required}
    if rng.random() < 0.5:
        schema["additionalProperties"] = False
    return schema


def varied_tools(n: int, seed: int = 0) -> list[dict[str, Any]]:
    """``n`` OpenAI tool objects with varied parameter schemas (some with ``$defs`` references)."""
    rng = random.Random(seed)
    tools = []
    for i in range(n):
        params = object_schema(rng)
        if i % 10 == 3:  # a shared definition, referenced
            params = {"type": "object", "$defs": {"place": object_schema(rng, 1)},
                      "properties": {"from": {"$ref": "#/$defs/place"}, "to": {"$ref": "#/$defs/place"}},
                      "required": ["from"]}
        tools.append({"type": "function", "function": {"name": f"tool_{i}", "description": "test tool",
                                                         "parameters": params}})
    return tools


class GbnfWalker:
    """Decodes under a llama.cpp GBNF grammar with random logits, through llama.cpp's own grammar and
    distribution samplers over the real vocabulary of ``gguf`` (loaded without weights)."""

    def __init__(self, gguf: Path, candidates: int = 2048) -> None:
        import llama_cpp as C

        from aifab.engines.llamacpp.runtime import init_backend

        init_backend()
        params = C.llama_model_default_params()
        params.vocab_only = True
        self.C = C
        self.model = C.llama_model_load_from_file(str(gguf).encode(), params)
        self.vocab = C.llama_model_get_vocab(self.model)
        self.n_vocab = C.llama_vocab_n_tokens(self.vocab)
        self.buf = ctypes.create_string_buffer(256)
        # Candidates each step: every one-byte token (any text can be spelled with them, so the grammar
        # can always move on) plus a fresh random sample of the others (long tokens, UTF-8 pieces).
        # and the end-of-generation tokens (a finished grammar allows only those).
        self.single = np.array([t for t in range(self.n_vocab)
                                if len(self._piece(t)) == 1 or C.llama_vocab_is_eog(self.vocab, t)], dtype=np.int32)
        self.data = (C.llama_token_data * (len(self.single) + candidates))()
        self.view = np.ctypeslib.as_array(ctypes.cast(self.data, ctypes.POINTER(ctypes.c_float)),
                                          shape=(len(self.data) * 3,)).reshape(len(self.data), 3)
        self.candidates = candidates

    def _piece(self, token: int) -> bytes:
        k = self.C.llama_token_to_piece(self.vocab, token, self.buf, len(self.buf), 0, False)
        return self.buf.raw[: max(k, 0)]

    def walk(self, gbnf: str, max_tokens: int, seed: int) -> tuple[str, int, bool]:
        """``(text, tokens, ended)``: ended is True when the grammar let the sequence stop in time."""
        C, rng = self.C, np.random.default_rng(seed)
        chain = C.llama_sampler_chain_init(C.llama_sampler_chain_default_params())
        grammar = C.llama_sampler_init_grammar(self.vocab, gbnf.encode(), b"root")
        assert grammar, "the grammar did not compile"
        C.llama_sampler_chain_add(chain, grammar)
        C.llama_sampler_chain_add(chain, C.llama_sampler_init_dist(seed & 0xFFFFFFFF))
        out = bytearray()
        try:
            for n in range(max_tokens):
                ids = np.concatenate([self.single, rng.integers(0, self.n_vocab, self.candidates, dtype=np.int32)])
                self.view[:, 0] = ids.view(np.float32)
                self.view[:, 1] = rng.normal(0, 3, len(ids)).astype(np.float32)
                self.view[:, 2] = 0
                arr = C.llama_token_data_array(self.data, len(ids), -1, False)
                C.llama_sampler_apply(chain, ctypes.byref(arr))
                token = int(self.data[arr.selected].id)
                if not np.isfinite(self.data[arr.selected].logit):  # the grammar allowed no candidate
                    return out.decode("utf-8", "replace"), n, False
                if C.llama_vocab_is_eog(self.vocab, token):
                    return out.decode("utf-8", "replace"), n + 1, True
                C.llama_sampler_accept(chain, token)
                out += self._piece(token)
            return out.decode("utf-8", "replace"), max_tokens, False
        finally:
            C.llama_sampler_free(chain)

    def close(self) -> None:
        self.C.llama_model_free(self.model)


class XgrammarWalker:
    """Decodes under the torch engine's xgrammar constraint with random logits, through its own
    ``sample`` (grammar mask, closing mode near ``max_tokens``), over a Hugging Face tokenizer."""

    def __init__(self, tokenizer: Any) -> None:
        from aifab.engines.torch.structured import JsonGrammars

        self.tokenizer = tokenizer
        self.vocab_size = len(tokenizer)
        self.eos = int(tokenizer.eos_token_id)
        # Only the closers' single-character tokens are looked up (closing mode): their text is exact.
        pieces = {i: tokenizer.convert_tokens_to_string([t]).encode() for t, i in tokenizer.get_vocab().items()}
        self.grammars = JsonGrammars(tokenizer, vocab_size=self.vocab_size, stop_ids=[self.eos],
                                     piece=lambda t: pieces.get(t, b""), threads=1)

    def walk(self, schema: dict[str, Any], max_tokens: int, seed: int) -> tuple[str, int, bool]:
        import torch

        from aifab.engines.protocol import SamplingParams
        from aifab.engines.torch.sampling import SeqSampler, sample

        # Greedy over random logits: a uniform pick among the allowed tokens, without a costly multinomial.
        params = SamplingParams(temperature=0, max_tokens=max_tokens, seed=seed)
        sampler = SeqSampler.create(params, self.grammars.constraint(schema))
        gen = torch.Generator().manual_seed(seed)
        ids: list[int] = []
        for n in range(max_tokens):
            logits = torch.randn(1, self.vocab_size, generator=gen) * 3
            token = sample([sampler], logits, [max_tokens - n], self.grammars)[0]
            if token == self.eos:
                return self.tokenizer.decode(ids), n + 1, True
            ids.append(token)
        return self.tokenizer.decode(ids), max_tokens, False
