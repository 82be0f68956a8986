"""Prompt prefix reuse: what each slot's KV cache still holds after its sequence left, so that the next
prompt starting with the same tokens (the system prompt and instructions, the turns of a conversation so
far, a tool loop's previous step) skips their prefill (llama.cpp server's ``cache_prompt``, vLLM's prefix
caching at slot granularity).

The scheduler gives a new request the free slot whose cache shares the longest prefix with its prompt;
the runtime keeps that many positions, drops the rest, and starts the sequence with ``fed`` there. When
another slot, busy or free, holds a longer shared prefix (eight questions to one app arrive together:
one slot holds the app's instructions, seven do not), a runtime that can copy between slots (llama.cpp)
copies it over instead of prefilling it again (``source``, ``copied``). At least the prompt's last token
is always fed again, since its logits give the first sampled token. The result is the same as without
reuse: the kept keys and values are those the same tokens at the same positions produce
(``tests/engines`` checks greedy output on the real models, with and without).
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence

import numpy as np


class PrefixCache:
    """Per slot: the tokens whose keys and values are in the runtime's cache, and the key (e.g. a LoRA
    adapter) under which they were computed; a prompt under another key reuses nothing."""

    def __init__(self, slots: int, *, enabled: bool = True) -> None:
        self.enabled = enabled
        self._tokens: list[list[int]] = [[] for _ in range(slots)]
        self._keys: list[Hashable] = [None] * slots
        self.reused = 0  # prompt tokens not prefilled again, in all (for metrics and tests)
        self.copies = 0  # prefixes copied from another slot, in all
        self._pending: set[int] = set()  # slots whose copy the runtime applies at its next step

    def match(self, slot: int, prompt: Sequence[int], key: Hashable = None) -> int:
        """How many leading tokens of ``prompt`` slot ``slot`` could reuse (at most all but the last)."""
        cached = self._tokens[slot]
        if not self.enabled or not cached or self._keys[slot] != key:
            return 0
        limit = min(len(cached), len(prompt) - 1)
        if limit <= 0:
            return 0
        differ = np.flatnonzero(np.asarray(cached[:limit]) != np.asarray(prompt[:limit]))
        return int(differ[0]) if len(differ) else limit

    def best(self, slots: Sequence[int], prompt: Sequence[int], key: Hashable = None) -> tuple[int, int]:
        """(slot, reusable tokens) of the free slot sharing most with ``prompt``; ties go to the lowest slot."""
        scored = [(self.match(s, prompt, key), -s) for s in slots]
        n, neg = max(scored)
        return -neg, n

    def source(self, dst: int, prompt: Sequence[int], key: Hashable = None) -> tuple[int, int]:
        """(slot, tokens) of the slot other than ``dst``, busy or free, whose cache shares most with
        ``prompt``; a slot whose own copy is not applied yet is no source. (-1, 0) when none shares any."""
        best = (0, 0)
        for slot in range(len(self._tokens)):
            if slot != dst and slot not in self._pending:
                best = max(best, (self.match(slot, prompt, key), -slot))
        return (-best[1], best[0]) if best[0] else (-1, 0)

    def copied(self, src: int, dst: int, n: int) -> None:
        """``dst`` now holds the first ``n`` tokens of ``src`` (applied at the runtime's next step)."""
        self._tokens[dst] = self._tokens[src][:n]
        self._keys[dst] = self._keys[src]
        self._pending.add(dst)
        self.copies += 1

    def applied(self) -> None:
        """The runtime ran a step: every copy made before it is in place."""
        self._pending.clear()

    def take(self, slot: int, n: int) -> None:
        """A sequence starts in ``slot`` reusing its first ``n`` tokens."""
        self._tokens[slot] = self._tokens[slot][:n]
        self.reused += n

    def keep(self, slot: int, tokens: list[int], key: Hashable = None) -> None:
        """A sequence left ``slot`` with ``tokens`` in the cache."""
        self._tokens[slot] = tokens if self.enabled else []
        self._keys[slot] = key

    def forget(self, slot: int | None = None) -> None:
        """The cache of ``slot`` (or of every slot) was cleared or can no longer be trusted."""
        for s in range(len(self._tokens)) if slot is None else (slot,):
            self._tokens[s] = []
            self._keys[s] = None
            self._pending.discard(s)
