"""A transformers causal LM as a continuous-batching :class:`~aifab.engines.batching.Runtime`.

The KV cache is one buffer per layer, ``[max_batch, kv_heads, capacity, head_dim]``, indexed by the
scheduler's slot: sequence ``s`` keeps its keys at ``buf[s.slot, :, :s.fed]``. Each step all fed
sequences go through ONE forward pass:

* their new tokens are *left*-padded to a common width ``N`` (so every row's last token, whose logits
  are sampled, is in the last column), with explicit ``position_ids``;
* :class:`_StepCache` (a transformers ``Cache``) writes each row's new keys/values in place at its
  own positions in its own slot, then hands attention the rows' slots up to the longest sequence;
* a 4D additive mask lets row ``i``'s token at position ``p`` see keys ``0..p`` of its own slot only,
  so padding and other sequences' lengths never change a sequence's result.

A step that mixes long prompt chunks with one-token decodes would waste compute on padding, so when
padding would more than double the work it runs two forwards: the decodes, then the prompt chunks.
Sequences with different LoRA adapters share a forward through PEFT's mixed-adapter batches.
"""

from __future__ import annotations

import inspect
import json
import threading
from typing import Any

import torch

from aifab.engines.batching import Sequence
from aifab.engines.prefix import PrefixCache
from aifab.engines.torch.sampling import SeqSampler, sample
from aifab.engines.torch.structured import JsonGrammars
from aifab.errors import EngineError, InvalidRequest, NotFound

try:
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.cache_utils import Cache, DynamicLayer
except ImportError:  # pragma: no cover - transformers is a core dependency
    AutoModelForCausalLM = None  # type: ignore[assignment,misc]

BASE = "__base__"  # PEFT's name for "no adapter" in a mixed-adapter batch


class KVStore:
    """Per-layer key/value buffers indexed by slot; they grow along the time axis as needed."""

    def __init__(self, max_batch: int, n_layers: int) -> None:
        self.max_batch = max_batch
        self.keys: list[torch.Tensor | None] = [None] * n_layers
        self.values: list[torch.Tensor | None] = [None] * n_layers

    def clear(self) -> None:
        self.keys = [None] * len(self.keys)
        self.values = [None] * len(self.values)

    def _buffers(self, layer: int, like: torch.Tensor, need: int) -> tuple[torch.Tensor, torch.Tensor]:
        k, v = self.keys[layer], self.values[layer]
        if k is None or v is None or k.shape[2] < need:
            heads, dim = like.shape[1], like.shape[3]
            cap = max(256, need, 2 * (0 if k is None else k.shape[2]))
            nk = like.new_zeros(self.max_batch, heads, cap, dim)
            nv = like.new_zeros(self.max_batch, heads, cap, dim)
            if k is not None and v is not None:
                nk[:, :, : k.shape[2]] = k
                nv[:, :, : v.shape[2]] = v
            self.keys[layer], self.values[layer] = k, v = nk, nv
        return k, v

    def update(
        self, layer: int, key: torch.Tensor, value: torch.Tensor, plan: _StepPlan
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Write ``key``/``value`` ([B, heads, N, dim]) at ``plan.write``; return the rows' keys/values."""
        k, v = self._buffers(layer, key, plan.need)
        rows = plan.slots[:, None]
        k[rows, :, plan.write] = key.transpose(1, 2)
        v[rows, :, plan.write] = value.transpose(1, 2)
        if plan.contiguous is not None:
            lo, hi = plan.contiguous
            return k[lo:hi, :, : plan.read], v[lo:hi, :, : plan.read]
        return k[:, :, : plan.read].index_select(0, plan.slots), v[:, :, : plan.read].index_select(
            0, plan.slots
        )


class _StepPlan:
    """Where one forward's rows read and write in the :class:`KVStore`."""

    def __init__(self, slots: list[int], past: list[int], lens: list[int]) -> None:
        width = max(lens)
        self.slots = torch.tensor(slots, dtype=torch.long)
        lo = slots[0]
        self.contiguous = (lo, lo + len(slots)) if slots == list(range(lo, lo + len(slots))) else None
        self.read = max(p + n for p, n in zip(past, lens, strict=True))
        self.need = max(p + width for p in past)
        p = torch.tensor(past, dtype=torch.long)[:, None]
        t = torch.arange(width)[None, :] - (width - torch.tensor(lens, dtype=torch.long))[:, None]
        # Real tokens (t >= 0) sit at positions p + t; pads write past the sequence's end, never over it.
        self.positions = (p + t).clamp(min=0)
        self.write = torch.where(t >= 0, p + t, p + t + width)


class _StepCache(Cache):
    """A transformers ``Cache`` that routes every layer's update to the :class:`KVStore`."""

    def __init__(self, store: KVStore, plan: _StepPlan) -> None:
        super().__init__(layers=[DynamicLayer() for _ in range(len(store.keys))])
        self.store = store
        self.plan = plan

    def update(
        self, key_states: torch.Tensor, value_states: torch.Tensor, layer_idx: int, *args: Any, **kwargs: Any
    ) -> tuple[torch.Tensor, torch.Tensor]:
        return self.store.update(layer_idx, key_states, value_states, self.plan)

    def get_seq_length(self, layer_idx: int = 0) -> int:
        return self.plan.read


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's byte -> printable character map used by byte-level BPE vocabularies."""
    bs = (
        list(range(ord("!"), ord("~") + 1))
        + list(range(ord("¡"), ord("¬") + 1))
        + list(range(ord("®"), ord("ÿ") + 1))
    )
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, (chr(c) for c in cs), strict=True))


class TorchRuntime:
    """Owns the model, tokenizer, KV buffers and adapters. Only the scheduler thread calls ``step``."""

    def __init__(
        self, path: str, *, max_batch: int, ctx_per_seq: int, threads: int, max_step_tokens: int = 512,
        prefix_cache: bool = True,
    ) -> None:
        if AutoModelForCausalLM is None:
            raise EngineError("transformers is not installed: pip install transformers")
        torch.set_num_threads(threads)
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        try:
            model = AutoModelForCausalLM.from_pretrained(
                path, dtype=torch.float32, attn_implementation="sdpa"
            )
        except (ValueError, ImportError):  # an architecture without SDPA support
            model = AutoModelForCausalLM.from_pretrained(
                path, dtype=torch.float32, attn_implementation="eager"
            )
        self.base = model.eval()
        self.model: Any = self.base  # becomes the PeftModel once an adapter is loaded
        self.adapters: dict[str, str] = {}
        config = self.base.config.get_text_config()
        self.vocab_size = int(config.vocab_size)
        self.max_batch = max_batch
        self.max_step_tokens = max_step_tokens
        self.ctx_per_seq = ctx_per_seq
        self.kv = KVStore(max_batch, int(config.num_hidden_layers))
        self.prefix = PrefixCache(max_batch, enabled=prefix_cache)  # keyed by adapter: LoRA changes K and V
        params = inspect.signature(self.base.forward).parameters
        self._cache_kw = "cache" if "cache" in params else "past_key_values"
        self._keep_kw = "logits_to_keep" in params
        self._lock = threading.Lock()  # forward passes vs adapter loading
        self._live = 0
        self._pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        self._ends = self._end_ids()
        self._pieces: dict[int, bytes] = {}
        self._piece_of = self._piece_fn()
        self.grammars = JsonGrammars(
            self.tokenizer,
            vocab_size=self.vocab_size,
            stop_ids=sorted(self._ends),
            piece=self.piece,
            threads=threads,
        )

    # --- tokenizer ------------------------------------------------------------------------------

    def tokenize(self, text: str) -> list[int]:
        return list(self.tokenizer(text)["input_ids"])

    def _end_ids(self) -> set[int]:
        ends: set[int] = set()
        gen = getattr(self.base, "generation_config", None)
        for source in (
            self.tokenizer.eos_token_id,
            getattr(gen, "eos_token_id", None),
            self.base.config.eos_token_id,
        ):
            if isinstance(source, int):
                ends.add(source)
            elif isinstance(source, list | tuple):
                ends.update(int(x) for x in source)
        return ends

    def _piece_fn(self) -> Any:
        """How a token id maps to its own bytes, chosen from the tokenizer's decoder."""
        tok = self.tokenizer
        special = set(tok.all_special_ids)
        added = {i: t.content for i, t in getattr(tok, "added_tokens_decoder", {}).items()}
        try:
            decoder = json.dumps(json.loads(tok.backend_tokenizer.to_str()).get("decoder"))
        except Exception:  # a slow tokenizer: no serialized decoder
            decoder = ""
        byte_level = "ByteLevel" in decoder
        inverse = {c: b for b, c in bytes_to_unicode().items()}

        def piece(token: int) -> bytes:
            if token in special:
                return b""
            if token in added:
                return added[token].encode()
            text = tok.convert_ids_to_tokens(token)
            if isinstance(text, str):
                if byte_level and all(c in inverse for c in text):
                    return bytes(inverse[c] for c in text)
                if not byte_level and text.startswith("<0x") and text.endswith(">") and len(text) == 6:
                    return bytes([int(text[3:5], 16)])  # SentencePiece byte fallback
                if not byte_level and "▁" in decoder:
                    return text.replace("▁", " ").encode()
            return str(tok.decode([token])).encode()

        return piece

    def piece(self, token: int) -> bytes:
        cached = self._pieces.get(token)
        if cached is None:
            cached = self._pieces[token] = self._piece_of(token) if token < len(self.tokenizer) else b""
        return cached

    def is_end(self, token: int) -> bool:
        return token in self._ends

    # --- adapters -------------------------------------------------------------------------------

    def load_adapter(self, name: str, path: str) -> None:
        """Load (or replace) the PEFT LoRA adapter ``name``; requests select it by name."""
        if name == BASE:
            raise InvalidRequest(f"'{BASE}' is reserved", param="name")
        try:
            from peft import PeftModel
        except ImportError as exc:
            raise EngineError("adapters need peft: pip install 'aifab[train]'") from exc
        with self._lock:
            try:
                if self.model is self.base:
                    self.model = PeftModel.from_pretrained(
                        self.base, path, adapter_name=name, is_trainable=False
                    )
                else:
                    if name in self.adapters:
                        self.model.delete_adapter(name)
                    self.model.load_adapter(path, adapter_name=name, is_trainable=False)
            except (OSError, ValueError) as exc:
                raise InvalidRequest(
                    f"cannot load adapter '{name}' from {path}: {exc}", param="path"
                ) from exc
            self.model.eval()
            self.adapters[name] = path
            self.prefix.forget()  # a replaced adapter's cached keys are stale

    def check_adapter(self, name: str | None) -> None:
        if name is not None and name not in self.adapters:
            raise NotFound(
                f"adapter '{name}' is not loaded (loaded: {', '.join(sorted(self.adapters)) or 'none'})"
            )

    # --- sequences ------------------------------------------------------------------------------

    def start(self, seq: Sequence) -> None:
        self.check_adapter(seq.request.adapter)
        sp = seq.request.sampling
        grammar = self.grammars.constraint(sp.json_schema) if sp.json_schema is not None else None
        seq.state = SeqSampler.create(sp, grammar)
        self._live += 1
        keep = self.prefix.match(seq.slot, seq.prompt_ids, seq.request.adapter)
        self.prefix.take(seq.slot, keep)
        seq.fed = keep  # the slot's buffers hold these positions' keys already

    def release(self, seq: Sequence) -> None:
        if seq.state is not None:
            seq.state = None
            self._live -= 1
        held = (seq.prompt_ids + seq.generated)[: seq.fed]
        if self.prefix.enabled and held:
            self.prefix.keep(seq.slot, held, seq.request.adapter)
        else:
            self.prefix.forget(seq.slot)
        if self._live == 0 and not self.prefix.enabled:
            self.kv.clear()  # nothing decoding and nothing to reuse: give the KV memory back

    # --- one decode step ------------------------------------------------------------------------

    def step(self, seqs: list[Sequence], feeds: list[list[int]]) -> list[int | None]:
        out: list[int | None] = [None] * len(seqs)
        rows: list[int] = []
        picked: list[torch.Tensor] = []
        with self._lock, torch.inference_mode():
            for group in self._groups(feeds):
                logits = self._forward([seqs[i] for i in group], [feeds[i] for i in group])
                done = [j for j, i in enumerate(group) if seqs[i].completes(feeds[i])]
                rows += [group[j] for j in done]
                picked.append(logits if len(done) == len(group) else logits[done])
            if rows:
                samplers = [seqs[i].state for i in rows]
                remaining = [
                    (seqs[i].request.sampling.max_tokens or 1) - len(seqs[i].generated) for i in rows
                ]
                batch = picked[0] if len(picked) == 1 else torch.cat(picked)
                tokens = sample(samplers, batch, remaining, self.grammars)
                for i, tok in zip(rows, tokens, strict=True):
                    out[i] = tok
        return out

    @staticmethod
    def _groups(feeds: list[list[int]]) -> list[list[int]]:
        """One forward for the whole step, unless padding would more than double its tokens."""
        lens = [len(f) for f in feeds]
        if len(lens) * max(lens) <= 2 * sum(lens):
            return [list(range(len(feeds)))]
        decode = [i for i, n in enumerate(lens) if n == 1]
        prompt = [i for i, n in enumerate(lens) if n > 1]
        return [g for g in (decode, prompt) if g]

    def _forward(self, seqs: list[Sequence], feeds: list[list[int]]) -> torch.Tensor:
        """One forward over ``seqs``; the logits of each row's last fed token, [rows, vocab]."""
        lens = [len(f) for f in feeds]
        width = max(lens)
        plan = _StepPlan([s.slot for s in seqs], [s.fed for s in seqs], lens)
        ids = torch.full((len(seqs), width), self._pad, dtype=torch.long)
        for r, feed in enumerate(feeds):
            ids[r, width - len(feed) :] = torch.tensor(feed, dtype=torch.long)
        allowed = torch.arange(plan.read)[None, None, :] <= plan.positions[:, :, None]
        mask = torch.zeros(allowed.shape, dtype=torch.float32).masked_fill_(
            ~allowed, torch.finfo(torch.float32).min
        )
        kwargs: dict[str, Any] = {
            "input_ids": ids,
            "attention_mask": mask[:, None],
            "position_ids": plan.positions,
            self._cache_kw: _StepCache(self.kv, plan),
            "use_cache": True,
        }
        if self._keep_kw:
            kwargs["logits_to_keep"] = 1
        if self.model is not self.base:
            kwargs["adapter_names"] = [s.request.adapter or BASE for s in seqs]
        logits = self.model(**kwargs).logits
        return logits[:, -1, :].float().contiguous()

    def close(self) -> None:
        self.kv.clear()
