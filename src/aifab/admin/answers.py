"""The body of ``POST /v1/admin/ask``: a question for a collection or an app, as ``aifab ask`` takes it (the
answer itself is :func:`aifab.rag.harness.answer`, the same offline and in the server)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

Mode = Literal["hybrid", "dense", "lexical"]


class Question(BaseModel):
    model_config = ConfigDict(extra="forbid")

    question: str
    collection: str | None = None
    app: str | None = None
    top_k: int | None = Field(None, ge=1, le=100)
    mode: Mode | None = None
