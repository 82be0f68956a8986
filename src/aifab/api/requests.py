"""Request bodies of the OpenAI-compatible API, validated once (by the gateway, or by the serving app when it
runs alone). The fields aifab's own engines honour are typed; unknown fields are kept, not refused here, so
that a remote upstream still gets what its client sent. This server's own engines refuse the ones they do
not honour with a 400 naming the field (:func:`refuse_unknown`), never ignoring them silently. Limits of
this server's engines (one choice, one prompt) are checked where those engines are called, not here: a
remote upstream may allow more."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from aifab.errors import InvalidRequest


class _Body(BaseModel):
    model_config = ConfigDict(extra="allow")


class ContentPart(_Body):
    type: str
    text: str | None = None


class FunctionCall(_Body):
    name: str
    arguments: str


class ToolCallItem(_Body):
    id: str
    type: Literal["function"] = "function"
    function: FunctionCall


class ChatMessage(_Body):
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[ContentPart] | None = None
    name: str | None = None
    tool_calls: list[ToolCallItem] | None = None  # assistant turns
    tool_call_id: str | None = None  # tool turns

    def text(self) -> str:
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        return "".join(p.text or "" for p in self.content if p.type == "text")


class FunctionDef(_Body):
    name: str = Field(pattern=r"^[a-zA-Z0-9_-]{1,64}$")
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class Tool(_Body):
    type: Literal["function"]
    function: FunctionDef


class NamedFunction(_Body):
    name: str


class NamedToolChoice(_Body):
    type: Literal["function"]
    function: NamedFunction


class StreamOptions(_Body):
    include_usage: bool = False


class JsonSchemaFormat(_Body):
    name: str = "response"
    schema_: dict[str, Any] = Field(default_factory=dict, alias="schema")
    strict: bool | None = None


class ResponseFormat(_Body):
    type: Literal["text", "json_object", "json_schema"] = "text"
    json_schema: JsonSchemaFormat | None = None


class SamplingRequest(_Body):
    """The fields chat and text completions share."""

    model: str = Field(min_length=1)
    max_tokens: int | None = Field(None, ge=1)
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, gt=0, le=1)
    stop: str | list[str] | None = None
    seed: int | None = None
    presence_penalty: float = Field(0.0, ge=-2, le=2)
    frequency_penalty: float = Field(0.0, ge=-2, le=2)
    n: int = Field(1, ge=1, le=128, description="choices per request (this server's own engines give one)")
    stream: bool = False
    stream_options: StreamOptions | None = None
    user: str | None = None
    ignore_eos: bool = Field(False, description="extension (as in vLLM): do not stop at end-of-sequence")

    @field_validator("stop")
    @classmethod
    def _stops(cls, v: str | list[str] | None) -> str | list[str] | None:
        stops = [v] if isinstance(v, str) else (v or [])
        if len(stops) > 4 or any(not s for s in stops):
            raise ValueError("stop takes up to 4 non-empty strings")
        return v

    def stop_list(self) -> list[str]:
        return [self.stop] if isinstance(self.stop, str) else list(self.stop or [])


class ChatCompletionRequest(SamplingRequest):
    messages: list[ChatMessage] = Field(min_length=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    response_format: ResponseFormat | None = None
    tools: list[Tool] | None = None
    tool_choice: str | NamedToolChoice | None = None
    parallel_tool_calls: bool | None = None

    @field_validator("tool_choice")
    @classmethod
    def _choice(cls, v: str | NamedToolChoice | None) -> str | NamedToolChoice | None:
        if isinstance(v, str) and v not in ("none", "auto", "required"):
            raise ValueError("tool_choice is 'none', 'auto', 'required' or {'type': 'function', 'function': {'name': ...}}")
        return v


class CompletionRequest(SamplingRequest):
    prompt: str | list[str] = Field(min_length=1)
    echo: bool = False

    def prompt_text(self) -> str:
        return self.prompt if isinstance(self.prompt, str) else self.prompt[0]


class EmbeddingRequest(_Body):
    model: str = Field(min_length=1)
    input: str | list[str] = Field(min_length=1)
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = Field(None, ge=1)
    user: str | None = None

    @field_validator("input")
    @classmethod
    def _texts(cls, v: str | list[str]) -> str | list[str]:
        texts = [v] if isinstance(v, str) else v
        if len(texts) > 2048:
            raise ValueError("at most 2048 inputs per request")
        if any(not t for t in texts):
            raise ValueError("inputs must be non-empty strings")
        return v

    def texts(self) -> list[str]:
        return [self.input] if isinstance(self.input, str) else list(self.input)


ModelRequest = ChatCompletionRequest | CompletionRequest | EmbeddingRequest


def refuse_unknown(body: BaseModel, where: str = "") -> None:
    """A field this server does not honour is a 400 naming it, never silently ignored. A null, false or
    empty value asks for nothing and passes (clients echo ``refusal: null`` back in assistant turns)."""
    for name, value in (body.model_extra or {}).items():
        if value not in (None, False, "", [], {}):
            raise InvalidRequest(f"'{where}{name}' is not supported by this server", param=f"{where}{name}")
    for name in type(body).model_fields:
        value = getattr(body, name)
        if isinstance(value, BaseModel):
            refuse_unknown(value, f"{where}{name}.")
        elif isinstance(value, list):
            for i, item in enumerate(value):
                if isinstance(item, BaseModel):
                    refuse_unknown(item, f"{where}{name}[{i}].")
