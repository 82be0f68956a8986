"""aifab's own events in an OpenAI stream: one shape for all of them.

An aifab event is a chunk of the stream's own kind with no choices (as OpenAI's usage event is), an
``aifab`` member naming what it carries, and the payload under a member of that same name::

    data: {"id": "chatcmpl-…", "object": "chat.completion.chunk", "created": 1700000000, "model": "docs",
           "choices": [], "aifab": "citations", "citations": [{"index": 1, "cited": true, ...}]}

Plain clients skip it like any chunk without choices; the ``openai`` SDK hands it over as a chunk whose
``model_extra`` holds ``aifab`` and the payload. Kinds: ``citations`` (a RAG app's sources, last before the
usage event), ``citation`` (the sources of one answer sentence, sent once the sentence is complete:
``{"answer_span": [start, end], "sources": [n, ...], "found": "marker"|"attributed"}``), ``tool_step`` (one step of an app's server-side tool loop: ``phase`` ``call`` when a tool
starts, ``result`` when it ends; a whole answer lists them in ``message.tool_steps`` instead) and
``progress`` (reserved for long-running work). The gateway
passes such events through untouched, whatever the output guardrails do to the text around them.
"""

from __future__ import annotations

from typing import Any, Literal

import orjson

EVENT_KEY = "aifab"
Kind = Literal["citations", "citation", "tool_step", "tool_steps", "progress"]


def aifab_event(kind: Kind, data: Any, **envelope: Any) -> bytes:
    """The SSE event (``data: …`` and its blank line) carrying ``data`` as ``kind``; ``envelope`` is the
    stream's own chunk fields (``id``, ``object``, ``created``, ``model``, ``system_fingerprint``)."""
    body = {**envelope, "choices": [], EVENT_KEY: kind, kind: data}
    return b"data: " + orjson.dumps(body) + b"\n\n"


def is_aifab_event(obj: dict[str, Any]) -> bool:
    return EVENT_KEY in obj


def cited_chunks(citations: Any) -> list[str]:
    """The chunk ids in a ``citations`` payload: what a RAG answer was grounded on (audit log, feedback)."""
    if not isinstance(citations, list):
        return []
    return [c["chunk_id"] for c in citations if isinstance(c, dict) and "chunk_id" in c]
