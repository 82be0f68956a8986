"""The body of ``POST /v1/feedback``, validated: a pure function, so the HTTP edge stays a parse-and-call."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from aifab.errors import InvalidRequest

Rating = Literal["up", "down"]
RATINGS: tuple[str, ...] = ("up", "down")
MAX_TEXT_BYTES = 64 * 1024  # per correction or comment, UTF-8
MAX_ID_CHARS = 64  # audit_log.id
FIELDS = frozenset({"response_id", "rating", "correction", "comment"})


@dataclass(frozen=True)
class FeedbackInput:
    response_id: str
    rating: Rating
    correction: str | None = None
    comment: str | None = None


def feedback_from_request(body: Any) -> FeedbackInput:
    """``{"response_id", "rating": "up"|"down", "correction"?, "comment"?}`` checked field by field; raises
    ``InvalidRequest`` with ``param`` naming the bad field. Unknown fields are refused (a misspelt
    ``"corection"`` would otherwise be lost silently); an empty correction or comment counts as none."""
    if not isinstance(body, dict):
        raise InvalidRequest("the feedback body must be a JSON object")
    unknown = sorted(set(body) - FIELDS)
    if unknown:
        raise InvalidRequest(f"unknown field {unknown[0]!r}: expected response_id, rating, correction, comment",
                             param=unknown[0])
    response_id = body.get("response_id")
    if not isinstance(response_id, str) or not response_id.strip():
        raise InvalidRequest("'response_id' is required: the id of the response being rated", param="response_id")
    if len(response_id) > MAX_ID_CHARS:
        raise InvalidRequest(f"'response_id' is longer than {MAX_ID_CHARS} characters", param="response_id")
    rating = body.get("rating")
    if rating not in RATINGS:
        raise InvalidRequest(f"'rating' must be \"up\" or \"down\", not {rating!r}", param="rating")
    return FeedbackInput(response_id.strip(), rating, _text(body, "correction"), _text(body, "comment"))


def _text(body: dict[str, Any], field: str) -> str | None:
    value = body.get(field)
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidRequest(f"'{field}' must be a string", param=field)
    if len(value.encode("utf-8", "surrogatepass")) > MAX_TEXT_BYTES:
        raise InvalidRequest(f"'{field}' is longer than {MAX_TEXT_BYTES // 1024} KB", param=field)
    return value if value.strip() else None
