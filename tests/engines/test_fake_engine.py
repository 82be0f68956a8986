"""The conformance suite over the fake engine, and the scheduler's own behaviour."""

from __future__ import annotations

import asyncio

import pytest

from aifab.engines.protocol import GenerationRequest, SamplingParams
from aifab.errors import Overloaded
from aifab.testing import EngineConformance, FakeEngine, FakeRuntime
from aifab.testing.conformance import collect


class TestFakeEngine(EngineConformance):
    supports_structured_output = False

    @pytest.fixture(scope="class")
    @classmethod
    def engine(cls):
        engine = FakeEngine(runtime=FakeRuntime("The quick brown fox jumps over the lazy dog.", step_delay=0.002))
        yield engine
        engine.close()


@pytest.fixture
def slow_engine():
    engine = FakeEngine(runtime=FakeRuntime("abcdefghijklmnopqrstuvwxyz" * 4, max_batch=4, step_delay=0.005),
                        max_queue=3)
    yield engine
    engine.close()


async def test_concurrent_requests_share_decode_steps(slow_engine):
    results = await asyncio.gather(*(collect(slow_engine, f"p{i}", temperature=0, max_tokens=50) for i in range(4)))
    assert all(last.completion_tokens == 50 for _, last in results)
    # Continuous batching: most steps carried several sequences, not one at a time.
    assert max(slow_engine.runtime.batch_sizes) == 4


async def test_late_request_joins_a_running_batch(slow_engine):
    first = asyncio.create_task(collect(slow_engine, "first", temperature=0, max_tokens=80))
    await asyncio.sleep(0.05)
    steps_before = len(slow_engine.runtime.batch_sizes)
    second = await collect(slow_engine, "second", temperature=0, max_tokens=5)
    assert not first.done()  # the second request finished while the first was still decoding
    assert second[1].completion_tokens == 5
    assert 2 in slow_engine.runtime.batch_sizes[steps_before:]
    await first


async def test_stop_string_split_across_tokens_is_held_back():
    engine = FakeEngine(runtime=FakeRuntime("Hello END world"))
    try:
        pieces = []
        req = GenerationRequest(prompt="x", sampling=SamplingParams(temperature=0, stop=["END"], max_tokens=50))
        async for delta in engine.generate(req):
            pieces.append(delta.text)
        assert "".join(pieces) == "Hello "
        assert not any("E" in p for p in pieces)  # never streamed a partial stop string
    finally:
        engine.close()


async def test_multibyte_characters_are_never_split():
    engine = FakeEngine(runtime=FakeRuntime("héllo wörld ✓"))
    try:
        text, _ = await collect(engine, "x", temperature=0, max_tokens=50)
        assert text == "héllo wörld ✓"
    finally:
        engine.close()


async def test_full_queue_is_refused_with_overloaded(slow_engine):
    # 4 slots busy, 3 waiting: the next request is refused at once rather than queued forever.
    running = [asyncio.create_task(collect(slow_engine, f"r{i}", temperature=0, max_tokens=100)) for i in range(7)]
    await asyncio.sleep(0.05)
    with pytest.raises(Overloaded):
        await collect(slow_engine, "one too many", temperature=0, max_tokens=5)
    for task in running:
        task.cancel()
    await asyncio.gather(*running, return_exceptions=True)


class FeedLog(FakeRuntime):
    """Records each step's feeds as (request tag, tokens, prompt tokens left before the step)."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.steps: list[list[tuple[str, int, int]]] = []

    def step(self, seqs, feeds):
        self.steps.append([(s.request.prompt[:2], len(f), len(s.prompt_ids) - s.fed) for s, f in zip(seqs, feeds, strict=True)])
        return super().step(seqs, feeds)


async def test_prompts_are_prefilled_first_come_first_served_within_one_chunk_a_step():
    runtime = FeedLog("ok", max_batch=4, step_delay=0.002)
    engine = FakeEngine(runtime=runtime, context_length=2048)
    engine._scheduler.prefill_chunk = 100
    try:
        prompts = [f"p{i}" + "x" * 248 for i in range(4)]  # 250 tokens each: three chunks' worth
        order: list[str] = []

        async def one(prompt: str) -> None:
            request = GenerationRequest(prompt=prompt, sampling=SamplingParams(temperature=0, max_tokens=3))
            async for delta in engine.generate(request):
                if delta.completion_tokens == 1 and prompt[:2] not in order:
                    order.append(prompt[:2])

        await asyncio.gather(*(one(p) for p in prompts))
    finally:
        engine.close()
    assert order == ["p0", "p1", "p2", "p3"]  # first tokens in arrival order
    for feeds in runtime.steps:
        prompt_feeds = [(tag, n, left) for tag, n, left in feeds if left > 0]
        assert sum(n for _, n, _ in prompt_feeds) <= 100  # one chunk of prompt a step, decode tokens beside it
        # every prompt fed in a step but the last one is finished by it: none is started before the
        # one ahead of it is done
        assert all(n == left for _, n, left in prompt_feeds[:-1])


@pytest.mark.parametrize("first_tokens", [3, 0])
async def test_a_stream_that_just_started_gets_its_first_tokens_before_the_next_prompt_chunk(first_tokens):
    runtime = FeedLog("ok", max_batch=4, step_delay=0.002)
    engine = FakeEngine(runtime=runtime, context_length=2048)
    engine._scheduler.prefill_chunk = 100
    engine._scheduler.first_tokens = first_tokens
    try:
        async def one(prompt: str) -> None:
            request = GenerationRequest(prompt=prompt, sampling=SamplingParams(temperature=0, max_tokens=6))
            async for _ in engine.generate(request):
                pass

        await asyncio.gather(*(one(f"p{i}" + "x" * 148) for i in range(2)))  # 150 tokens: two chunks each
    finally:
        engine.close()
    # the step that finishes p0's prompt samples its first token; then p0 decodes alone for first_tokens - 1
    # steps while p1's prompt waits, and only then does p1's next chunk come
    done = next(i for i, feeds in enumerate(runtime.steps) if ("p0", 50, 50) in feeds)
    following = runtime.steps[done + 1 : done + 1 + max(first_tokens - 1, 1)]
    p1_fed = [any(tag == "p1" and left > 0 for tag, _, left in feeds) for feeds in following]
    if first_tokens:
        assert p1_fed == [False] * (first_tokens - 1)
        assert all(any(tag == "p0" and n == 1 for tag, n, _ in feeds) for feeds in following)
    else:
        assert p1_fed == [True]  # the old order: the next chunk at once


async def test_prompts_read_returns_once_no_prompt_waits():
    runtime = FeedLog("ok", max_batch=4, step_delay=0.002)
    engine = FakeEngine(runtime=runtime, context_length=2048)
    engine._scheduler.prefill_chunk = 100
    try:
        await engine.prompts_read()  # nothing to read: at once
        gen = engine.generate(GenerationRequest(prompt="p0" + "x" * 248, sampling=SamplingParams(max_tokens=50)))
        first = asyncio.ensure_future(anext(gen))
        while not engine.health().prefilling:
            await asyncio.sleep(0)
        await engine.prompts_read()
        assert engine.health().prefilling == 0
        assert sum(n for feeds in runtime.steps for tag, n, left in feeds if left > 0) == 250  # all of it read
        assert (await first).completion_tokens == 1
        await gen.aclose()
    finally:
        engine.close()
