"""The OpenAI-compatible API as data, shared by the gateway and the serving app (both import it; it imports
neither): the request models, the one JSON parser and body reader, the hand-over of a validated request
across the in-process hop, and the shape of aifab's own stream events."""

from aifab.api.body import MAX_DEPTH, parse_json, read_body, validate, validation_error
from aifab.api.call import CALL_SCOPE, Call
from aifab.api.events import EVENT_KEY, aifab_event, is_aifab_event
from aifab.api.requests import ChatCompletionRequest, CompletionRequest, EmbeddingRequest, ModelRequest

__all__ = ["CALL_SCOPE", "MAX_DEPTH", "Call", "ChatCompletionRequest", "CompletionRequest", "EmbeddingRequest", "EVENT_KEY",
           "ModelRequest", "aifab_event", "is_aifab_event", "parse_json", "read_body", "validate", "validation_error"]
