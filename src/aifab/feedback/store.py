"""Feedback on logged responses, and the interactions (audit row + its feedback) the dataset builder reads.

A response's id is the audit log's id (the ``id`` the client saw, also sent as ``x-request-id``), so feedback
needs no other bookkeeping: it points at the audit row, which holds the model, route and upstream that
answered, the redacted prompt and answer (only where the key's policy allowed logging them), the chunk ids
a RAG app used, and the key's training consent at the time of the request.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import ColumnElement, or_, select

from aifab.errors import Forbidden, NotFound
from aifab.feedback.request import feedback_from_request
from aifab.state import Database
from aifab.state.tables import AuditRow, FeedbackRow

if TYPE_CHECKING:  # the key is only read (id, admin): no import of the gateway at run time
    from aifab.identity import ApiKey


@dataclass(frozen=True)
class Feedback:
    id: str
    response_id: str
    key_id: str | None
    rating: str  # up | down
    correction: str | None
    comment: str | None
    created_at: datetime

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "object": "feedback", "response_id": self.response_id, "rating": self.rating,
                "correction": self.correction, "comment": self.comment,
                "created": int(self.created_at.timestamp())}


@dataclass(frozen=True)
class Interaction:
    """One logged model request with the feedback given on it (oldest first). ``request`` is
    ``{"messages": [...]}`` for chat, redacted; it and ``response`` are None where the key did not allow
    logging content."""

    id: str
    ts: datetime
    key_id: str | None
    key_name: str | None
    endpoint: str
    model: str
    route: str | None
    upstream: str | None
    status: int
    request: dict[str, Any] | None
    response: str | None
    allow_training: bool
    context: list[str] | None
    feedback: tuple[Feedback, ...] = ()

    @property
    def latest(self) -> Feedback | None:
        """The feedback that counts when a response was rated more than once: the latest."""
        return self.feedback[-1] if self.feedback else None


class FeedbackStore:
    """Feedback in the state database. ``redact``, when given (the gateway passes its guardrails'
    ``redact``), is applied to corrections and comments before they are stored; the dataset builder
    redacts them again in any case, since rows may come from elsewhere."""

    def __init__(self, db: Database, *, redact: Callable[[str], str] | None = None) -> None:
        self.db = db
        self.redact = redact

    def record(self, response_id: str, rating: str, *, correction: str | None = None, comment: str | None = None,
               key: ApiKey | None = None) -> dict[str, Any]:
        """Store one rating of a logged response and return it (``"object": "feedback"``). A key may rate
        only responses made with that same key, unless it is an admin key; ``key=None`` (no auth: a local
        gateway, the CLI) may rate any. Raises InvalidRequest, NotFound or Forbidden."""
        given = feedback_from_request({"response_id": response_id, "rating": rating, "correction": correction,
                                       "comment": comment})
        if self.redact is not None:
            given = replace(given, correction=_maybe(self.redact, given.correction),
                            comment=_maybe(self.redact, given.comment))
        row = FeedbackRow(id="fb-" + secrets.token_hex(12), response_id=given.response_id,
                          key_id=key.id if key else None, rating=given.rating, correction=given.correction,
                          comment=given.comment, created_at=datetime.now(UTC))  # microseconds: the latest wins
        with self.db.session() as s:
            owner = s.execute(select(AuditRow.key_id).where(AuditRow.id == given.response_id)).first()
            if owner is None:
                raise NotFound(f"no logged response with id {given.response_id!r}", param="response_id")
            if key is not None and not key.admin and owner.key_id != key.id:
                raise Forbidden("this key may rate only responses made with it", param="response_id")
            s.add(row)
        return _feedback(row).to_dict()

    def for_response(self, response_id: str) -> list[Feedback]:
        """Every rating of one response, oldest first."""
        with self.db.session() as s:
            rows = s.scalars(select(FeedbackRow).where(FeedbackRow.response_id == response_id)
                             .order_by(FeedbackRow.created_at, FeedbackRow.id))
            return [_feedback(r) for r in rows]

    def interactions(self, *, since: datetime | None = None, model: str | None = None) -> list[Interaction]:
        """Logged requests that have feedback, oldest first, each with all of its feedback. ``model``
        matches the name the client asked for or the route it resolved to."""
        query = (select(AuditRow, FeedbackRow).join(FeedbackRow, FeedbackRow.response_id == AuditRow.id)
                 .where(*window(since, model))
                 .order_by(AuditRow.ts, AuditRow.id, FeedbackRow.created_at, FeedbackRow.id))
        found: dict[str, tuple[AuditRow, list[Feedback]]] = {}
        with self.db.session() as s:
            for audit, fb in s.execute(query):
                found.setdefault(audit.id, (audit, []))[1].append(_feedback(fb))
        return [_interaction(audit, fbs) for audit, fbs in found.values()]


def window(since: datetime | None = None, model: str | None = None) -> list[ColumnElement[bool]]:
    """The audit-log conditions of ``since`` and ``model`` (the asked-for name or the route)."""
    where: list[ColumnElement[bool]] = []
    if since is not None:
        where.append(AuditRow.ts >= since.astimezone(UTC))
    if model is not None:
        where.append(or_(AuditRow.model == model, AuditRow.route == model))
    return where


def utc(ts: datetime) -> datetime:
    return ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts  # SQLite drops the zone


def _maybe(redact: Callable[[str], str], text: str | None) -> str | None:
    return None if text is None else redact(text)


def _feedback(row: FeedbackRow) -> Feedback:
    return Feedback(row.id, row.response_id, row.key_id, row.rating, row.correction, row.comment,
                    utc(row.created_at or datetime.now(UTC)))


def _interaction(row: AuditRow, feedback: list[Feedback]) -> Interaction:
    return Interaction(
        id=row.id, ts=utc(row.ts), key_id=row.key_id, key_name=row.key_name, endpoint=row.endpoint,
        model=row.model, route=row.route, upstream=row.upstream, status=row.status, request=row.request,
        response=row.response, allow_training=bool(row.allow_training), context=row.context,
        feedback=tuple(feedback),
    )
