"""Continuous batching, shared by every token-generating engine.

One scheduler thread owns the model runtime. Each step it admits waiting requests into free slots,
feeds every live sequence (a chunk of its prompt, or its last sampled token) to the runtime as ONE
batch, and streams the sampled tokens back to the asyncio side. New requests join between steps;
finished or cancelled ones leave between steps, so a disconnected client frees its slot at once.

The runtime (llama.cpp, torch) only implements :class:`Runtime`; stop strings, UTF-8 assembly,
limits, queueing and the asyncio bridge live here once.
"""

from __future__ import annotations

import asyncio
import codecs
import heapq
import logging
import queue
import threading
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Protocol

from aifab.engines.prefix import PrefixCache
from aifab.engines.protocol import Delta, FinishReason, GenerationRequest
from aifab.errors import AifabError, EngineError, Overloaded

log = logging.getLogger(__name__)


class Runtime(Protocol):
    """What a model runtime gives the scheduler."""

    max_batch: int

    def start(self, seq: Sequence) -> None:
        """Prepare per-sequence state (sampler, cache slot ``seq.slot``). A runtime with a
        :class:`~aifab.engines.prefix.PrefixCache` (``prefix``) may set ``seq.fed`` to the prompt tokens
        its slot already holds."""

    max_step_tokens: int  # tokens one forward pass may carry

    def step(self, seqs: list[Sequence], feeds: list[list[int]]) -> list[int | None]:
        """Run one forward pass: ``seqs[i]`` feeds ``feeds[i]`` at positions from ``seqs[i].fed``.
        Returns the sampled next token for each sequence whose feed reaches the end of its prompt
        (``seq.completes(feed)``), None for those still prefilling."""

    def release(self, seq: Sequence) -> None:
        """Free the slot's cache and per-sequence state."""

    def piece(self, token: int) -> bytes: ...

    def is_end(self, token: int) -> bool: ...


@dataclass
class Sequence:
    """One request being decoded: its tokens, its output text and how it ends."""

    request: GenerationRequest
    prompt_ids: list[int]
    loop: asyncio.AbstractEventLoop
    out: asyncio.Queue[Delta | BaseException]
    prefill_chunk: int
    slot: int = -1
    fed: int = 0  # tokens (prompt, then generated) already in the runtime's cache
    generated: list[int] = field(default_factory=list)
    cancelled: bool = False
    state: Any = None  # the runtime's per-sequence state
    _decoder: Any = field(default_factory=lambda: codecs.getincrementaldecoder("utf-8")("replace"))
    _held: str = ""  # text held back because it may be the start of a stop string

    def pending(self, budget: int) -> list[int]:
        """The tokens this sequence feeds in the next step, at most ``budget``."""
        if self.fed < len(self.prompt_ids):
            return self.prompt_ids[self.fed : self.fed + min(self.prefill_chunk, budget)]
        return self.generated[-1:]

    def completes(self, feed: list[int]) -> bool:
        """Whether after ``feed`` the model has seen the whole prompt (so its logits are sampled)."""
        return bool(feed) and self.fed + len(feed) >= len(self.prompt_ids)

    @property
    def prefilling(self) -> bool:
        return self.fed < len(self.prompt_ids)

    def emit(self, item: Delta | BaseException) -> None:
        _deliver([(self, item)])

    def accept(self, token: int, runtime: Runtime) -> tuple[str, FinishReason | None]:
        """Add a sampled token; return the text that may be shown now and why the sequence ends."""
        sp = self.request.sampling
        if runtime.is_end(token) and not sp.ignore_eos:
            return self._flush(), "stop"
        self.generated.append(token)
        text = self._held + self._decoder.decode(runtime.piece(token))
        for stop in sp.stop:
            at = text.find(stop)
            if at >= 0:
                self._held = ""
                return text[:at], "stop"
        keep = _partial_stop_suffix(text, sp.stop)
        self._held = text[len(text) - keep :] if keep else ""
        shown = text[: len(text) - keep]
        if len(self.generated) >= (sp.max_tokens or 1):
            return shown + self._flush(), "length"
        return shown, None

    def _flush(self) -> str:
        text, self._held = self._held + self._decoder.decode(b"", final=True), ""
        return text


def _partial_stop_suffix(text: str, stops: list[str]) -> int:
    """Length of the longest suffix of ``text`` that is a proper prefix of a stop string."""
    best = 0
    for stop in stops:
        for n in range(min(len(stop) - 1, len(text)), best, -1):
            if text.endswith(stop[:n]):
                best = n
                break
    return best


Item = Delta | BaseException


def _deliver(items: list[tuple[Sequence, Item]]) -> None:
    """Hand a step's deltas (or errors) to their event loops with ONE wake-up per loop, not one per
    sequence: on a small machine every extra wake-up steals a core from the decode threads."""
    by_loop: dict[asyncio.AbstractEventLoop, list[tuple[Sequence, Item]]] = {}
    for seq, delta in items:
        by_loop.setdefault(seq.loop, []).append((seq, delta))
    for loop, group in by_loop.items():
        try:
            loop.call_soon_threadsafe(_put_all, group)
        except RuntimeError:  # that event loop is gone: nobody is listening any more
            for seq, _ in group:
                seq.cancelled = True


def _settle(done: asyncio.Future[None]) -> None:
    if not done.done():  # a waiter that was cancelled meanwhile is left as it is
        done.set_result(None)


def _put_all(group: list[tuple[Sequence, Item]]) -> None:
    for seq, delta in group:
        seq.out.put_nowait(delta)


class BatchScheduler:
    """Admits requests into ``runtime.max_batch`` slots and decodes them together."""

    def __init__(self, runtime: Runtime, *, max_queue: int = 64, prefill_chunk: int = 256, first_tokens: int = 3,
                 name: str = "") -> None:
        self.runtime = runtime
        self.first_tokens = first_tokens
        self.max_queue = max_queue
        self.prefill_chunk = prefill_chunk
        self._inbox: queue.Queue[Sequence | None] = queue.Queue()
        self._waiting: deque[Sequence] = deque()
        self._live: list[Sequence] = []
        self._free = list(range(runtime.max_batch))  # a min-heap: live sequences keep low slot ids
        self._closed = False
        self._unadmitted = 0  # submitted, not yet admitted or dropped
        self._count_lock = threading.Lock()
        self._read_waiters: list[asyncio.Future[None]] = []  # prompts_read() callers, woken together
        self._thread = threading.Thread(target=self._run, name=f"aifab-batch-{name}", daemon=True)
        self._thread.start()

    @property
    def running(self) -> int:
        return len(self._live)

    @property
    def waiting(self) -> int:
        """Requests not yet given a slot (including those that will get a free one next step)."""
        return self._unadmitted

    @property
    def prefilling(self) -> int:
        """Requests whose prompt the model has not read whole yet: queued, or in a slot and prefilling."""
        return self._unadmitted + sum(1 for s in list(self._live) if s.prefilling)

    async def prompts_read(self) -> None:
        """Returns once no prompt waits to be read (``prefilling`` is 0): the scheduler thread wakes the
        waiters after the step that reads the last one, or when it shuts down. Nothing polls."""
        loop = asyncio.get_running_loop()
        with self._count_lock:
            if self.prefilling == 0 or self._closed:
                return
            done = loop.create_future()
            self._read_waiters.append(done)
        await done

    def _wake_readers(self) -> None:
        """Wake the ``prompts_read`` waiters if no prompt waits (scheduler thread, after each step)."""
        with self._count_lock:
            if not self._read_waiters or (self.prefilling and not self._closed):
                return
            waiters, self._read_waiters = self._read_waiters, []
        for done in waiters:
            try:
                done.get_loop().call_soon_threadsafe(_settle, done)
            except RuntimeError:  # that event loop is gone
                pass

    def _queued_beyond_slots(self) -> int:
        return self._unadmitted - len(self._free)

    async def submit(self, request: GenerationRequest, prompt_ids: list[int]) -> AsyncIterator[Delta]:
        if self._closed:
            raise EngineError("engine is shut down")
        if self._queued_beyond_slots() >= self.max_queue:
            raise Overloaded(f"the queue for this model is full ({self.max_queue} waiting); retry shortly")
        seq = Sequence(
            request, prompt_ids, asyncio.get_running_loop(), asyncio.Queue(), prefill_chunk=self.prefill_chunk
        )
        with self._count_lock:
            self._unadmitted += 1
        self._inbox.put(seq)
        return self._stream(seq)

    async def _stream(self, seq: Sequence) -> AsyncIterator[Delta]:
        try:
            while True:
                item = await seq.out.get()
                if isinstance(item, BaseException):
                    raise item
                yield item
                if item.finish_reason is not None:
                    return
        finally:
            # A client that went away (or a caller that stopped iterating) frees the slot next step.
            seq.cancelled = True

    def close(self) -> None:
        self._closed = True
        self._inbox.put(None)
        self._thread.join(timeout=10)

    # --- the scheduler thread -------------------------------------------------------------------

    def _run(self) -> None:
        while not self._closed:
            if not self._take_inbox(block=not self._live and not self._waiting):
                break
            self._admit()
            if not self._live:
                self._wake_readers()  # the prompts waiting were all cancelled
                continue
            try:
                self._step()
            except Exception as exc:  # a runtime failure ends the batch, not the server
                log.exception("decode step failed")
                for seq in list(self._live):
                    seq.emit(EngineError(f"decode failed: {exc}"))
                    seq.fed = 0  # its cache cannot be trusted: nothing of it is kept for reuse
                    self._finish(seq)
            self._wake_readers()
        for seq in self._live + list(self._waiting):
            seq.emit(EngineError("engine is shut down"))
        self._wake_readers()

    def _take_inbox(self, *, block: bool) -> bool:
        try:
            item = self._inbox.get(block=block)
            while True:
                if item is None:
                    return False
                self._waiting.append(item)
                item = self._inbox.get_nowait()
        except queue.Empty:
            return True

    def _admit(self) -> None:
        while self._waiting and self._free:
            seq = self._waiting.popleft()
            with self._count_lock:
                self._unadmitted -= 1
            if seq.cancelled:
                continue
            seq.slot = self._slot_for(seq)
            try:
                self.runtime.start(seq)
            except Exception as exc:
                seq.emit(exc if isinstance(exc, AifabError) else EngineError(f"cannot start: {exc}"))
                heapq.heappush(self._free, seq.slot)
                continue
            self._live.append(seq)

    def _slot_for(self, seq: Sequence) -> int:
        """The free slot whose cache shares most with the prompt (runtimes that reuse prefixes), else the
        lowest free slot."""
        prefix: PrefixCache | None = getattr(self.runtime, "prefix", None)
        if prefix is None or not prefix.enabled or len(self._free) == 1:
            return heapq.heappop(self._free)
        slot, _ = prefix.best(self._free, seq.prompt_ids, seq.request.adapter)
        self._free.remove(slot)
        heapq.heapify(self._free)
        return slot

    def _step(self) -> None:
        for seq in [s for s in self._live if s.cancelled]:
            self._finish(seq)
        if not self._live:
            return
        # Decoding sequences are served first (one token each) so a long prompt never stalls them.
        # Prompts then share ONE chunk of ``prefill_chunk`` tokens a step, in arrival order: the first
        # prompt is finished before the next one starts (first come, first served, as vLLM's chunked
        # prefill does), so with eight prompts at once the first answer starts after one prompt's work,
        # not after all eight; and no step grows past one chunk, which bounds the pause that a burst of
        # prompts puts between the tokens of the streams already decoding (``engines.prefill_chunk``, 256:
        # llama.cpp prefills chunks of 256 as fast as chunks of 512 on two cores, in half the time a step).
        # A stream that has just started decodes its first ``first_tokens`` tokens on steps without a
        # prompt chunk (``engines.first_tokens``, 3): a client shows words, and a word is whole only once
        # the next token begins (the output guardrails hold the word in progress), so a first token
        # followed by a whole chunk's step (~0.9 s on two cores) reached the user as late as that step.
        # A decode-only step of eight streams costs tens of milliseconds.
        # The batch itself is laid out by slot: llama.cpp's per-sequence KV streams decode markedly
        # slower when the batch visits them out of order.
        budget = self.runtime.max_step_tokens
        chosen: list[tuple[Sequence, list[int]]] = []
        decoding = [s for s in self._live if not s.prefilling]
        for seq in decoding:
            chosen.append((seq, seq.pending(budget)))
        budget = min(budget - len(decoding), self.prefill_chunk)
        if any(len(s.generated) < self.first_tokens for s in decoding):
            budget = 0
        for seq in (s for s in self._live if s.prefilling):
            if budget <= 0:
                break
            feed = seq.pending(budget)
            budget -= len(feed)
            chosen.append((seq, feed))
        chosen.sort(key=lambda item: item[0].slot)
        batch = [seq for seq, _ in chosen]
        feeds = [feed for _, feed in chosen]
        tokens = self.runtime.step(batch, feeds)
        out: list[tuple[Sequence, Item]] = []
        for seq, feed, token in zip(batch, feeds, tokens, strict=True):
            seq.fed += len(feed)
            if token is None:
                continue
            first = not seq.generated
            text, reason = seq.accept(token, self.runtime)
            if text or reason or first:
                delta = Delta(text, reason, len(seq.prompt_ids), len(seq.generated))
                out.append((seq, delta))
            if reason is not None:
                self._finish(seq)
        _deliver(out)

    def _finish(self, seq: Sequence) -> None:
        if seq in self._live:
            self._live.remove(seq)
            self.runtime.release(seq)
            heapq.heappush(self._free, seq.slot)
