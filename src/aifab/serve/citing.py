"""A streamed app answer's sentences cited as they complete, without taking the cores from prompts waiting
to be read.

Attributing a sentence embeds it (and, at the first one, the sources' sentences: about twenty). On a small
machine that competes with the chat model's prefill of the other users' prompts, so with eight questions at
once the attribution of the first answers pushed back everyone else's first token. Here a stream's
sentences go to one worker per stream that cites them in order, and, while the chat model has prompts
not yet read (``Engine.health().prefilling``), waits until it has read them (``Engine.prompts_read``): the text streams on, and a sentence's ``citation`` event comes once the
prompts are read. When nothing waits, each sentence is cited before the next piece of text is handed on, so
an idle server's events come right after their sentence. The end of the answer waits for every sentence
(the final ``citations`` list is built from them), busy or not.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Awaitable
from typing import Any

from aifab.api.events import Kind
from aifab.engines.protocol import Delta, Engine
from aifab.rag.citations import StreamCiter


async def cite_as_it_goes(
    gen: AsyncGenerator[Delta, None], citer: StreamCiter, out: list[tuple[Kind, Any]], engine: Engine,
) -> AsyncGenerator[Delta, None]:
    """``gen`` (``engine``'s answer), with a ``citation`` event appended to ``out`` for each sentence that
    cites a source."""

    def busy() -> bool:
        return engine.health().prefilling > 0

    spans: asyncio.Queue[tuple[int, int]] = asyncio.Queue()
    ended = asyncio.Event()  # the answer is complete: cite the rest now, busy or not
    uncited = 0  # spans queued and not cited yet

    async def work() -> None:
        nonlocal uncited
        while True:
            span = await spans.get()
            try:
                if busy() and not ended.is_set():
                    await _first(engine.prompts_read(), ended.wait())
                found = await asyncio.to_thread(citer.cite, span)  # an embedding call: off the event loop
                if found is not None:
                    out.append(("citation", found))
            finally:
                uncited -= 1
                spans.task_done()

    worker = asyncio.create_task(work())
    try:
        async for delta in gen:
            new = citer.feed(delta.text)
            if delta.finish_reason is not None:
                new += citer.finish()
                ended.set()
            for span in new:
                spans.put_nowait(span)
            uncited += len(new)
            if uncited and (ended.is_set() or not busy()):
                await _first(spans.join(), worker)  # a worker that is done has failed: its error ends the stream
                if worker.done():
                    worker.result()
            yield delta
    finally:
        worker.cancel()
        await gen.aclose()


async def _first(*waits: Awaitable[Any]) -> None:
    """Until the first of ``waits`` is done; the others are cancelled (a task passed in is left running)."""
    futures = [asyncio.ensure_future(w) for w in waits]
    await asyncio.wait(futures, return_when=asyncio.FIRST_COMPLETED)
    for f, w in zip(futures, waits, strict=True):
        if f is not w:
            f.cancel()
