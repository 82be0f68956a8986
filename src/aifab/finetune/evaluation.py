"""Evaluation of a (fine-tuned) chat model on held-out examples: loss, exact match, preference accuracy.

* ``loss``: mean cross-entropy over the assistant tokens of the eval examples (for preference
  examples: over the chosen answers), computed on packed batches as in training.
* ``exact_match``: the share of examples whose greedy answer, after ``strip()`` and ``casefold()``,
  equals the reference (the last assistant message). ``match="first_word"`` compares the first word
  of the answer (punctuation stripped) instead: a classifier that says "Spam." or "spam, because..."
  counts as right, which is fair to a model that was never taught the exact answer format.
* ``preference_accuracy``: the share of preference pairs whose chosen answer has a higher
  log-probability than the rejected one.

Generation is greedy with transformers' ``generate`` (left-padded batches, sorted by length), with
the prompt rendered and tokenized as the engines do; it stops at the model's end-of-turn tokens.
"""

from __future__ import annotations

import math
import re
from typing import Any

import torch

from aifab.finetune.collate import pack
from aifab.finetune.data import Dataset, Example
from aifab.finetune.objectives import sequence_logprobs, target_logprobs
from aifab.finetune.render import ChatRenderer, Sequence
from aifab.registry import ModelPackage

WORD = re.compile(r"[\w'-]+")


def normalise(text: str, match: str = "exact") -> str:
    text = text.strip().casefold()
    if match == "first_word":
        found = WORD.search(text)
        return found.group(0) if found else ""
    return text


@torch.no_grad()
def eval_loss(model: Any, seqs: list[Sequence], *, batch_tokens: int) -> float:
    """Mean cross-entropy over the targets of ``seqs``."""
    total, count = 0.0, 0
    for mb in pack(seqs, batch_tokens=batch_tokens):
        total -= float(target_logprobs(model, mb).sum())
        count += mb.n_targets
    return total / count if count else math.nan


@torch.no_grad()
def preference_accuracy(model: Any, pairs: list[tuple[Sequence, Sequence]], *,
                        batch_tokens: int) -> tuple[float, float]:
    """(share of pairs with log p(chosen) > log p(rejected), mean log-probability margin)."""
    seqs = [s for pair in pairs for s in pair]
    lp = torch.zeros(len(seqs))
    for mb in pack(seqs, batch_tokens=batch_tokens):
        lp += sequence_logprobs(model, mb, len(seqs))
    margin = lp[0::2] - lp[1::2]
    return float((margin > 0).float().mean()), float(margin.mean())


def answerable(examples: list[Example]) -> list[tuple[list[dict[str, Any]], str]]:
    """(prompt turns, reference answer) of the examples whose last turn is a trained assistant turn."""
    out = []
    for ex in examples:
        last = ex.messages[-1]
        if ex.chosen is None and last["role"] == "assistant" and last.get("weight", 1) != 0:
            out.append((ex.messages[:-1], last["content"]))
    return out


@torch.no_grad()
def generate_answers(model: Any, tokenizer: Any, renderer: ChatRenderer, prompts: list[list[dict[str, Any]]], *,
                     max_new_tokens: int, batch_size: int = 16) -> list[str]:
    """Greedy answers to ``prompts``, in order."""
    ids = [renderer.prompt_ids(p) for p in prompts]
    order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    ends = _end_ids(model, tokenizer)
    answers = [""] * len(ids)
    for start in range(0, len(order), batch_size):
        chunk = order[start: start + batch_size]
        width = max(len(ids[i]) for i in chunk)
        batch = torch.full((len(chunk), width), pad, dtype=torch.long)
        mask = torch.zeros((len(chunk), width), dtype=torch.long)
        for r, i in enumerate(chunk):
            batch[r, width - len(ids[i]):] = torch.tensor(ids[i])
            mask[r, width - len(ids[i]):] = 1
        out = model.generate(input_ids=batch, attention_mask=mask, max_new_tokens=max_new_tokens, do_sample=False,
                             eos_token_id=ends, pad_token_id=pad, temperature=None, top_p=None, top_k=None)
        for r, i in enumerate(chunk):
            answers[i] = tokenizer.decode(out[r, width:], skip_special_tokens=True)
    return answers


def _end_ids(model: Any, tokenizer: Any) -> list[int]:
    ends: set[int] = set()
    gen = getattr(model, "generation_config", None)
    for source in (tokenizer.eos_token_id, getattr(gen, "eos_token_id", None)):
        if isinstance(source, int):
            ends.add(source)
        elif isinstance(source, list | tuple):
            ends.update(int(x) for x in source)
    return sorted(ends)


def evaluate_model(model: Any, tokenizer: Any, renderer: ChatRenderer, examples: list[Example], *,
                   generate: int | None = None, max_new_tokens: int = 16, batch_tokens: int = 4096,
                   match: str = "exact", loss: bool = True, keep_answers: bool = False) -> dict[str, Any]:
    """Metrics of an in-memory model (see the module docstring). ``generate`` caps how many examples
    are answered by generation (None: all); ``loss=False`` skips the loss (a forward over every
    example); ``keep_answers`` returns every generated answer (else 5 samples)."""
    was_training = model.training
    model.eval()
    try:
        out: dict[str, Any] = {"examples": len(examples)}
        pairs = [p for ex in examples if ex.chosen is not None and (p := renderer.pair(ex)) is not None]
        seqs = [s for ex in examples if ex.chosen is None and (s := renderer.sft(ex)) is not None]
        seqs += [c for c, _r in pairs]
        if loss:
            out["loss"] = eval_loss(model, seqs, batch_tokens=batch_tokens)
        if pairs:
            acc, margin = preference_accuracy(model, pairs, batch_tokens=batch_tokens)
            out.update(preference_accuracy=acc, logprob_margin=margin)
        labelled = answerable(examples)[: generate if generate is not None else None]
        if labelled:
            answers = generate_answers(model, tokenizer, renderer, [p for p, _ in labelled],
                                       max_new_tokens=max_new_tokens)
            hits = [normalise(a, match) == normalise(ref, match) for a, (_, ref) in zip(answers, labelled, strict=True)]
            out.update(exact_match=sum(hits) / len(hits), answered=len(hits), match=match,
                       samples=[{"answer": a, "reference": ref} for a, (_, ref) in list(zip(answers, labelled, strict=True))[:5]])
            if keep_answers:
                out["answers"] = answers
        return out
    finally:
        model.train(was_training)


def load_package(package: ModelPackage, *, adapter: str | None = None) -> tuple[Any, Any]:
    """(model, tokenizer) of a package: its weights, plus one of its adapters (the only one, or
    ``adapter``) applied as the engine applies it."""
    from aifab.errors import InvalidRequest
    from aifab.finetune.model import load_base, quiet_peft

    model, tokenizer = load_base(package.path)
    if package.adapters:
        if adapter is None and len(package.adapters) > 1:
            raise InvalidRequest(f"model '{package.name}' has several adapters ({', '.join(package.adapters)}); "
                                 "say which", param="adapter")
        name = adapter or next(iter(package.adapters))
        if name not in package.adapters:
            raise InvalidRequest(f"model '{package.name}' has no adapter '{name}'", param="adapter")
        from peft import PeftModel

        with quiet_peft():
            model = PeftModel.from_pretrained(model, package.adapters[name], adapter_name=name, is_trainable=False)
    return model.eval(), tokenizer


def evaluate(target: ModelPackage | tuple[Any, Any], examples: list[Example] | Dataset, *,
             adapter: str | None = None, template: str | None = None, special_tokens: dict[str, str] | None = None,
             max_length: int = 512, generate: int | None = None, max_new_tokens: int = 16,
             batch_tokens: int = 4096, match: str = "exact", loss: bool = True,
             keep_answers: bool = False) -> dict[str, Any]:
    """Evaluate a model package (with its adapter) or a ``(model, tokenizer)`` pair on ``examples``
    (a :class:`Dataset` means its eval split). Returns ``{"loss", "exact_match", "answered",
    "preference_accuracy", ...}``, the keys present where the examples allow them.

    A ``(model, tokenizer)`` pair takes the chat ``template`` and ``special_tokens`` from the
    tokenizer unless given."""
    if isinstance(examples, Dataset):
        examples = examples.eval
    if isinstance(target, ModelPackage):
        model, tokenizer = load_package(target, adapter=adapter)
        template = template or target.chat_template
        special_tokens = special_tokens if special_tokens is not None else target.special_tokens
    else:
        model, tokenizer = target
        template = template or getattr(tokenizer, "chat_template", None)
        if special_tokens is None:
            special_tokens = {k: v for k, v in (("bos", tokenizer.bos_token), ("eos", tokenizer.eos_token)) if v}
    renderer = ChatRenderer(tokenizer, template, special_tokens, max_length=max_length)
    return evaluate_model(model, tokenizer, renderer, examples, generate=generate, max_new_tokens=max_new_tokens,
                          batch_tokens=batch_tokens, match=match, loss=loss, keep_answers=keep_answers)
