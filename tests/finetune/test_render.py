"""Examples become the token sequences the engines would see; the loss covers assistant tokens only."""

from __future__ import annotations

import pytest

from aifab.engines.chat import render_chat
from aifab.finetune.data import Example
from aifab.finetune.render import ChatRenderer

pytest.importorskip("transformers")


@pytest.fixture(scope="module")
def renderer(tiny_dir, tiny_base):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_dir)
    return ChatRenderer(tok, tiny_base.chat_template, tiny_base.special_tokens, max_length=512)


def targets_text(renderer, seq) -> list[str]:
    """The trained stretches, decoded, one string per run of consecutive target positions."""
    runs: list[list[int]] = []
    for p in seq.targets:
        if runs and runs[-1][-1] == p - 1:
            runs[-1].append(p)
        else:
            runs.append([p])
    return [renderer.tokenizer.decode([seq.ids[p] for p in run]) for run in runs]


def test_only_assistant_turns_and_their_end_of_turn_are_trained(renderer):
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Capital of France?"},
                {"role": "assistant", "content": "Paris."}, {"role": "user", "content": "And of Italy?"},
                {"role": "assistant", "content": "Rome, of course."}]
    seq = renderer.sft(Example(messages))
    assert targets_text(renderer, seq) == ["Paris.<|im_end|>", "Rome, of course.<|im_end|>"]


def test_an_assistant_turn_with_weight_0_is_context_not_target(renderer):
    messages = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Wrong answer", "weight": 0},
                {"role": "user", "content": "Try again"}, {"role": "assistant", "content": "Right answer"}]
    seq = renderer.sft(Example(messages))
    assert targets_text(renderer, seq) == ["Right answer<|im_end|>"]


def test_the_sequence_is_what_the_engine_tokenizes(renderer, tiny_base):
    """The serving path renders with the package's template and tokenizes the text in one call."""
    messages = [{"role": "user", "content": "Tell me a joke about tokens."},
                {"role": "assistant", "content": "Why did the token cross the context? To get attention."}]
    seq = renderer.sft(Example(messages))
    served = render_chat(tiny_base.chat_template, messages, tiny_base.special_tokens, add_generation_prompt=False)
    assert seq.ids == renderer.tokenizer(served)["input_ids"]
    prompt = render_chat(tiny_base.chat_template, messages[:1], tiny_base.special_tokens)
    assert renderer.prompt_ids(messages[:1]) == renderer.tokenizer(prompt)["input_ids"]
    assert seq.ids[: len(renderer.prompt_ids(messages[:1]))] == renderer.prompt_ids(messages[:1])


def test_truncation_keeps_the_start_and_drops_examples_left_without_an_answer(tiny_dir, tiny_base):
    from transformers import AutoTokenizer

    short = ChatRenderer(AutoTokenizer.from_pretrained(tiny_dir), tiny_base.chat_template, tiny_base.special_tokens,
                         max_length=24)
    system = {"role": "system", "content": "Hi"}  # short: the template's default one is 20 tokens
    long_question = [system, {"role": "user", "content": "word " * 40}, {"role": "assistant", "content": "ok"}]
    assert short.sft(Example(long_question)) is None
    long_answer = [system, {"role": "user", "content": "Hi"}, {"role": "assistant", "content": "word " * 40}]
    seq = short.sft(Example(long_answer))
    assert len(seq.ids) == 24 and seq.targets and max(seq.targets) == 23
    assert (short.stats.truncated, short.stats.dropped) == (2, 1)
