"""An interaction log to test against: audit rows written as the gateway writes them (the same columns,
content redacted or absent by the key's policy, training consent copied from the key), and feedback
through the real ``FeedbackStore``. For tests of datasets, lineage and the feedback endpoint."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from aifab.feedback import FeedbackStore
from aifab.state import Database
from aifab.state.tables import AuditRow

# distinct subjects, so that examples made from them are neither exact nor near duplicates of each other
TOPICS = ("photosynthesis", "gravity", "tides", "volcanoes", "rainbows", "magnetism", "vaccines", "glaciers",
          "earthquakes", "eclipses", "inflation", "compilers", "bread yeast", "jet engines", "coral reefs",
          "black holes")


class InteractionLog:
    def __init__(self, db: Database) -> None:
        self.db = db
        self.feedback = FeedbackStore(db)
        self.n = 0

    def request(self, prompt: str, answer: str, *, consent: bool = True, content: bool = True, status: int = 200,
                endpoint: str = "chat.completions", model: str = "m1", route: str | None = None,
                ago: timedelta = timedelta(), key: str | None = "team-a", key_id: str | None = None,
                system: str | None = None) -> str:
        """Log one request and return its response id. ``content=False``: the key did not allow logging."""
        self.n += 1
        rid = f"chatcmpl-{self.n:04d}"
        messages = [{"role": "system", "content": system}] if system else []
        messages.append({"role": "user", "content": prompt})
        with self.db.session() as s:
            s.add(AuditRow(id=rid, ts=datetime.now(UTC) - ago, key_id=key_id or (f"id-{key}" if key else None),
                           key_name=key, endpoint=endpoint, model=model, route=route or model, upstream="local",
                           status=status, latency_ms=5.0, verdicts=[],
                           request={"messages": messages} if content else None,
                           response=answer if content else None, allow_training=consent))
        return rid

    def rate(self, rid: str, rating: str, correction: str | None = None, comment: str | None = None) -> str:
        """Feedback on a response, as a client without a key would send it; returns the feedback id."""
        return self.feedback.record(rid, rating, correction=correction, comment=comment)["id"]

    def accepted(self, topic: str, **kw: Any) -> str:
        """A request about ``topic`` whose answer was rated up."""
        rid = self.request(f"Explain {topic} in one sentence.", f"A short account of {topic}.", **kw)
        self.rate(rid, "up")
        return rid
