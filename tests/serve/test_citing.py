"""A stream's sentences are cited as they complete, and wait while the chat model has prompts to read."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator

import pytest

from aifab.engines.protocol import Delta, EngineHealth
from aifab.rag.attribution import Attributor
from aifab.rag.citations import StreamCiter
from aifab.rag.protocol import Passage
from aifab.serve.citing import cite_as_it_goes
from aifab.testing import FakeEmbedder

PASSAGES = [
    Passage("a", "d1", "The Danube flows through Vienna and Budapest. It ends in the Black Sea.", 0.0, 0.9,
            {"source": "rivers.md"}),
    Passage("b", "d2", "Cats sleep sixteen hours a day. They purr when content.", 0.0, 0.5, {"source": "cats.md"}),
]
ANSWER = ["The Danube flows ", "through Vienna and Budapest. ", "Cats sleep sixteen ", "hours a day. ", "Bye."]


class Recorder:
    """The attributor's embedder, counting its calls."""

    def __init__(self) -> None:
        self.calls = 0
        self.inner = FakeEmbedder(dimensions=256)

    def embed(self, texts):
        self.calls += 1
        return self.inner.embed(texts)


class Reading:
    """The engine as the citing sees it: prompts wait to be read until ``read`` is set (None: never)."""

    def __init__(self, read: asyncio.Event | None) -> None:
        self.read = read

    def health(self) -> EngineHealth:
        return EngineHealth(ok=True, prefilling=int(self.read is not None and not self.read.is_set()))

    async def prompts_read(self) -> None:
        if self.read is None:
            raise AssertionError("an idle engine is not waited for")
        await self.read.wait()


async def _deltas(log: list[str], go: asyncio.Queue[None]) -> AsyncGenerator[Delta, None]:
    for i, text in enumerate(ANSWER):
        await go.get()
        log.append(text)
        yield Delta(text, "stop" if i == len(ANSWER) - 1 else None)


async def _run(busy_steps: int):
    """Streams ANSWER while the engine is busy for the first ``busy_steps`` deltas; returns, per delta
    handed on, how many embedding calls had been made and how many citation events were out."""
    recorder = Recorder()
    citer = StreamCiter(PASSAGES, Attributor(recorder.embed))
    out: list = []
    handed = 0
    go: asyncio.Queue[None] = asyncio.Queue()
    log: list[str] = []
    seen = []
    read = asyncio.Event()  # set once the engine has read its prompts
    stream = cite_as_it_goes(_deltas(log, go), citer, out, Reading(read))
    if not busy_steps:
        read.set()
    for _ in ANSWER:
        go.put_nowait(None)
        await anext(stream)
        handed += 1
        if handed == busy_steps:
            read.set()
        seen.append((recorder.calls, len(out)))
    with pytest.raises(StopAsyncIteration):
        go.put_nowait(None)
        await anext(stream)
    return seen, out, citer


async def test_an_idle_engine_gets_each_sentence_cited_before_the_next_text():
    seen, out, citer = await _run(busy_steps=0)
    # the first sentence completes when the third delta starts the next one: cited before that delta goes on
    assert seen[2][1] == 1 and out[0][1]["sources"] == [1]
    assert seen[3][1] == 1  # "Cats sleep sixteen hours a day." is complete only once "Bye." begins
    assert [e["sources"] for _, e in out] == [[1], [2]]
    assert [c["index"] for c in citer.citations() if c["cited"]] == [1, 2]


async def test_while_prompts_wait_the_text_streams_on_and_citations_come_once_they_are_read():
    seen, out, citer = await _run(busy_steps=3)
    assert seen[:3] == [(0, 0)] * 3  # nothing embedded while the engine had prompts to read
    assert seen[3][1] == 1  # once they are read, the first sentence's event comes before the answer ends
    # the last delta ends the answer: every sentence is cited before it goes on, in order
    assert [e["sources"] for _, e in out] == [[1], [2]]
    assert [tuple(e["answer_span"]) for _, e in out] == sorted(tuple(e["answer_span"]) for _, e in out)
    assert [c["index"] for c in citer.citations() if c["cited"]] == [1, 2]


async def test_the_end_of_an_answer_waits_for_its_citations_even_while_busy():
    seen, out, _ = await _run(busy_steps=99)
    assert seen[:4] == [(0, 0)] * 4
    assert len(out) == 2 and seen[4][1] == 2


async def test_a_failing_citation_ends_the_stream_with_its_error():
    citer = StreamCiter(PASSAGES, Attributor(lambda texts: (_ for _ in ()).throw(RuntimeError("embedder down"))))
    go: asyncio.Queue[None] = asyncio.Queue()
    for _ in range(len(ANSWER) + 1):
        go.put_nowait(None)
    with pytest.raises(RuntimeError, match="embedder down"):
        async for _ in cite_as_it_goes(_deltas([], go), citer, [], Reading(None)):
            pass

