"""``aifab datasets build --from-logs``: the interaction log and its feedback turned into a dataset.

Only requests whose key allowed training, that succeeded (200), went to ``chat.completions`` and had their
content logged are used; of those, the latest feedback on each decides what it gives:

- rated up: an SFT example, the logged answer as the assistant turn;
- a correction (whatever the rating): an SFT example with the correction as the assistant turn, and a
  preference pair (chosen = correction, rejected = the logged answer) when the two differ;
- rated down without a correction: a preference pair when the same prompt has an up-rated or corrected
  answer (chosen), else nothing.

Everything that enters a dataset passes ``redact`` (the guardrails' PII and secrets redaction) again: the
log's content was redacted by the gateway when its guardrails were on, corrections are raw user text.
Comments never enter a dataset. The counts say what each interaction gave or why it was dropped.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import exists, func, select

from aifab.errors import InvalidRequest
from aifab.feedback import Feedback, FeedbackStore, Interaction, window
from aifab.finetune.datasets.dedup import dedupe, example_text, normalise
from aifab.finetune.datasets.store import KINDS, MIN_EXAMPLES, DatasetStore, Saved, check_name, example_hash
from aifab.state import Database
from aifab.state.tables import AuditRow, FeedbackRow

CHAT = "chat.completions"
ROLES = frozenset({"system", "user", "assistant"})
Redact = Callable[[str], str]


@dataclass(frozen=True)
class Candidate:
    """An example and the interactions and feedback it came from (what lineage goes back to)."""

    example: dict[str, Any]
    interactions: tuple[str, ...]
    feedback: tuple[str, ...]


@dataclass(frozen=True)
class _Rated:
    interaction: Interaction
    feedback: Feedback
    prompt: list[dict[str, str]]
    answer: str
    key: str  # the prompt, normalised: which answers compete for the same prompt


def build_from_logs(db: Database, store: DatasetStore, name: str, *, kind: str = "sft",
                    since: datetime | None = None, model: str | None = None, min_examples: int = MIN_EXAMPLES,
                    redact: Redact | None = None) -> Saved:
    """Build the next version of dataset ``name`` (``kind`` sft or preference) from the log since
    ``since``, of ``model`` (asked-for name or route). ``redact`` defaults to the guardrails' redaction."""
    check_name(name)
    if kind not in KINDS:
        raise InvalidRequest(f"kind must be sft or preference, not {kind!r}", param="kind")
    redact = redact or default_redact()
    interactions = FeedbackStore(db).interactions(since=since, model=model)
    dropped = unrated(db, since=since, model=model)
    considered = sum(dropped.values()) + len(interactions)
    rated = []
    for interaction in interactions:
        reason = excluded(interaction)
        if reason is not None:
            dropped[reason] += 1
        elif (r := _rated(interaction, redact)) is not None:
            rated.append(r)
        else:
            dropped["unsupported"] += 1
    sft, pairs = candidates(rated, redact)
    chosen = sft if kind == "sft" else pairs
    used = {i for c in chosen for i in c.interactions}
    dropped["down_rated" if kind == "sft" else "no_pair"] += sum(r.interaction.id not in used for r in rated)
    deduped = dedupe(sorted(chosen, key=lambda c: example_hash(c.example)), lambda c: example_text(c.example))
    dropped["duplicate"] += deduped.exact
    dropped["near_duplicate"] += deduped.near
    counts = {"interactions": considered, "rated": len(interactions),
              "candidates": {"sft": len(sft), "preference": len(pairs)},
              "dropped": {k: v for k, v in sorted(dropped.items()) if v}}
    source = {"from": "logs", "since": since.isoformat() if since else None, "model": model,
              "interactions": sorted({i for c in deduped.kept for i in c.interactions}),
              "feedback": sorted({f for c in deduped.kept for f in c.feedback})}
    return store.save(name, kind=kind, examples=[c.example for c in deduped.kept], counts=counts, source=source,
                      min_examples=min_examples)


def default_redact() -> Redact:
    """The audit log's redaction: every PII and secret detector, whatever the guardrails' actions say."""
    from aifab.redaction import Redactor

    return Redactor()


def excluded(interaction: Interaction) -> str | None:
    """Why a logged request cannot become training data, or None when it can."""
    return _reason(interaction.allow_training, interaction.endpoint, interaction.status,
                   interaction.request is not None and interaction.response is not None)


def unrated(db: Database, *, since: datetime | None = None, model: str | None = None) -> Counter[str]:
    """Logged requests in the window that nobody rated, by the first reason they would be dropped for."""
    no_content = AuditRow.response.is_(None)
    rated = exists().where(FeedbackRow.response_id == AuditRow.id)
    # grouped by plain columns (not by comparisons with bound values, which PostgreSQL cannot match up)
    query = (select(AuditRow.allow_training, AuditRow.endpoint, AuditRow.status, no_content, func.count())
             .where(*window(since, model), ~rated)
             .group_by(AuditRow.allow_training, AuditRow.endpoint, AuditRow.status, no_content))
    counts: Counter[str] = Counter()
    with db.session() as s:
        for consent, endpoint, status, missing, n in s.execute(query):
            counts[_reason(bool(consent), endpoint, status, not missing) or "no_feedback"] += n
    return counts


def candidates(rated: Iterable[_Rated], redact: Redact) -> tuple[list[Candidate], list[Candidate]]:
    """SFT examples and preference pairs from usable, rated interactions."""
    sft: list[Candidate] = []
    pairs: list[Candidate] = []
    good: dict[str, tuple[_Rated, str]] = {}  # prompt -> its latest accepted answer (up-rated or a correction)
    downs: list[_Rated] = []
    for r in rated:
        fb = r.feedback
        correction = redact(fb.correction).strip() if fb.correction else ""
        if correction:
            sft.append(Candidate(_chat(r.prompt, correction), (r.interaction.id,), (fb.id,)))
            if normalise(correction) != normalise(r.answer):
                pairs.append(Candidate(_pair(r.prompt, correction, r.answer), (r.interaction.id,), (fb.id,)))
            _accept(good, r, correction)
        elif fb.rating == "up":
            sft.append(Candidate(_chat(r.prompt, r.answer), (r.interaction.id,), (fb.id,)))
            _accept(good, r, r.answer)
        else:
            downs.append(r)
    for r in downs:
        best = good.get(r.key)
        if best is not None and normalise(best[1]) != normalise(r.answer):
            winner, answer = best
            pairs.append(Candidate(_pair(r.prompt, answer, r.answer), (r.interaction.id, winner.interaction.id),
                                   (r.feedback.id, winner.feedback.id)))
    return sft, pairs


def _reason(consent: bool, endpoint: str, status: int, content: bool) -> str | None:
    if not consent:
        return "no_consent"
    if endpoint != CHAT:
        return "not_chat"
    if status != 200:
        return "failed"
    if not content:
        return "no_content"
    return None


def _rated(interaction: Interaction, redact: Redact) -> _Rated | None:
    """The interaction's prompt and answer, redacted, or None when they are not plain system/user/assistant
    text (tool calls, images) ending in a user turn, or the answer is empty."""
    messages = (interaction.request or {}).get("messages")
    answer = interaction.response
    feedback = interaction.latest
    if not isinstance(messages, list) or not messages or not answer or not answer.strip() or feedback is None:
        return None
    prompt = []
    for m in messages:
        if not isinstance(m, dict) or m.get("role") not in ROLES or not isinstance(m.get("content"), str):
            return None
        prompt.append({"role": m["role"], "content": redact(m["content"])})
    if prompt[-1]["role"] != "user":
        return None
    key = "\n".join(f"{m['role']}: {normalise(m['content'])}" for m in prompt)
    return _Rated(interaction, feedback, prompt, redact(answer), key)


def _accept(good: dict[str, tuple[_Rated, str]], r: _Rated, answer: str) -> None:
    held = good.get(r.key)
    if held is None or held[0].feedback.created_at <= r.feedback.created_at:
        good[r.key] = (r, answer)


def _chat(prompt: list[dict[str, str]], answer: str) -> dict[str, Any]:
    return {"messages": [*prompt, {"role": "assistant", "content": answer}]}


def _pair(prompt: list[dict[str, str]], chosen: str, rejected: str) -> dict[str, Any]:
    return {"messages": list(prompt), "chosen": chosen, "rejected": rejected}
