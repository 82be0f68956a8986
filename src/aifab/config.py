"""Settings: one object, built once at start-up and passed down.

Sources, lowest to highest precedence: defaults < ``aifab.toml`` (working directory, or ``--config``)
< ``AIFAB_*`` environment variables (nested with ``__``: ``AIFAB_SERVE__PORT=9000``) < CLI flags.
Nothing here is read at import time.
"""

from __future__ import annotations

import difflib
import os
import types
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from aifab.errors import ConfigError

DEFAULT_CONFIG_FILE = "aifab.toml"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")  # a misspelt key is an error, not silently ignored


class ServeSettings(_Section):
    """The HTTP server."""

    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    max_body_bytes: int = Field(2 * 1024 * 1024, gt=0, description="requests above this get 413")
    max_queue: int = Field(64, ge=1, description="waiting requests per model before 429")
    header_timeout_s: float = Field(10.0, gt=0, description="a request's headers must arrive within this (408)")
    body_timeout_s: float = Field(30.0, gt=0, description="longest pause while a request body arrives (408)")
    keep_alive_s: float = Field(5.0, gt=0, description="an idle kept-alive connection is closed after this")
    max_connections: int = Field(1024, ge=1, description="open connections above this are answered 503")
    log_level: str = "info"


class EngineSettings(_Section):
    """Model runtimes."""

    threads: int = Field(0, ge=0, description="CPU threads for decoding; 0 = all cores")
    max_batch: int = Field(16, ge=1, description="sequences decoded together (continuous batching)")
    context_per_sequence: int = Field(2048, ge=64, description="KV-cache tokens per sequence")
    kv_cache_type: Literal["f16", "q8_0"] = Field(
        "f16", description="llama.cpp KV-cache precision; q8_0 halves its memory at a small cost in accuracy"
    )
    embedding_batch: int = Field(64, ge=1)
    cpu_weights: Literal["auto", "q8_0", "as-is"] = Field(
        "auto", description="llama.cpp: requantise a GGUF whose type has no fast prompt kernel (Q4_1, Q5_1, "
        "K-quants) to Q8_0 once, into cache_dir (auto: models up to about 1B weights, on x86-64)",
    )
    cache_dir: Path | None = Field(
        None, description="files aifab can rebuild (requantised weights), shared by data directories; "
        "default: $XDG_CACHE_HOME/aifab or ~/.cache/aifab, else data_dir/cache where home is not writable",
    )
    prefill_chunk: int = Field(
        256, ge=16, description="prompt tokens one decode step carries, shared by the prompts waiting, oldest first; "
        "a step's time is also the pause it puts between the tokens of the streams already decoding",
    )
    first_tokens: int = Field(
        3, ge=0, description="tokens a stream that just started decodes before the next prompt chunk is fed: its "
        "first words reach the client a decode step after its prefill, not a prefill chunk later",
    )
    prefix_cache: bool = Field(
        True, description="reuse a slot's KV cache for a prompt that starts with the same tokens (skips their prefill)"
    )


class ModelSettings(_Section):
    """Which registered models `aifab up` loads."""

    chat: str = "smollm2-135m-instruct"
    embedding: str = "all-minilm-l6-v2"
    extra: list[str] = Field(default_factory=list, description="more registered models to load")


class CorpusSettings(_Section):
    """Ingest: loaders, chunking, embedding."""

    chunk_tokens: int = Field(256, ge=16, description="chunk size in the embedding model's tokens (capped at its limit)")
    chunk_overlap: int = Field(32, ge=0, description="tokens repeated from the previous chunk")
    max_file_bytes: int = Field(64 * 1024 * 1024, gt=0, description="larger files are reported and skipped")
    embedder: str = Field("all-minilm-l6-v2", description="a registered embedding model, or 'openai' for embedder_url")
    embedder_url: str | None = Field(None, description="an OpenAI-compatible base URL (…/v1) when embedder = 'openai'")
    embedder_model: str | None = Field(None, description="the model name sent to embedder_url")
    embedder_api_key_env: str | None = Field(None, description="environment variable holding the endpoint's key")
    embed_batch: int = Field(64, ge=1, description="chunks per embedding call")
    token_vectors: bool = Field(
        True, description="store the local embedder's token vectors with each chunk (int8, about "
        "tokens × (dimensions + 2) bytes) so the maxsim reranker reads them instead of re-encoding",
    )


class StoreSettings(_Section):
    """Where chunks and vectors live."""

    backend: Literal["embedded", "pgvector"] = "embedded"
    url: str | None = Field(None, description="PostgreSQL URL for pgvector; default: database_url")
    hnsw_m: int = Field(32, ge=4, description="HNSW graph degree")
    hnsw_ef_construction: int = Field(128, ge=8)
    hnsw_ef_search: int = Field(128, ge=8, description="search breadth: higher = better recall, slower")


class RetrievalSettings(_Section):
    """How a question finds its passages: dense and lexical search fused by reciprocal rank."""

    mode: Literal["hybrid", "dense", "lexical"] = "hybrid"
    top_k: int = Field(5, ge=1, le=100, description="passages returned (and given to the model)")
    candidates: int = Field(40, ge=1, le=1000, description="hits taken from each search before fusion")
    rrf_k: int = Field(60, ge=1, description="reciprocal rank fusion constant: score = sum w / (rrf_k + rank)")
    dense_weight: float = Field(1.0, ge=0)
    lexical_weight: float = Field(0.5, ge=0, description="BM25's vote; dense is the stronger half on questions")
    mmr: bool = Field(False, description="diversify the passages (maximal marginal relevance)")
    mmr_lambda: float = Field(0.7, ge=0, le=1, description="1 = relevance only, 0 = diversity only")
    reranker: Literal["none", "maxsim", "maxsim-encode"] = Field(
        "maxsim", description="re-order the fused candidates: 'maxsim' = token-level late interaction over the "
        "token vectors stored at ingest; 'maxsim-encode' = the same, re-encoding each passage (slow); 'none' = off"
    )
    rerank_candidates: int = Field(20, ge=1, le=200, description="fused candidates the reranker sees")
    min_score: float = Field(
        0.4, ge=-1, le=1, description="below this cosine similarity for every passage, answers say they don't know"
    )
    context_tokens: int = Field(
        320, ge=0, description="source text given to the model, in its tokens: the passages' sentences most "
        "similar to the question (and their neighbours) up to this budget; 0 = whole passages",
    )
    attribute: bool = Field(True, description="cite sources for answer sentences without [n] markers, after generation")
    attribution_threshold: float = Field(
        0.6, ge=0, le=1, description="similarity (0.9 embedding cosine + 0.1 word overlap) a sentence needs to cite a source"
    )


class AppSettings(_Section):
    """A RAG app: a collection, a model and a prompt, called as a model through the OpenAI API."""

    collection: str | None = Field(None, description="the collection it answers from; none: tools only")
    model: str | None = Field(None, description="the chat model that answers; default: models.chat")
    tools: list[str] = Field(default_factory=list, description="names of [tools.*] the app may call")
    max_steps: int = Field(4, ge=1, le=32, description="model turns per request when it calls tools")
    tool_choice: Literal["auto", "required"] = Field(
        "auto", description="required: the first turn must call one of the tools, decoded under their grammar "
        "(a small model that never writes a call on its own still uses them)",
    )
    tool_budget_s: float = Field(60.0, gt=0, description="wall-clock bound on one request's tool loop")
    retrieval: RetrievalSettings | None = Field(None, description="default: the [rag] section")
    system_prompt: str | None = Field(None, description="replaces the default grounding instructions")
    rewrite: Literal["context", "model", "none"] = Field(
        "context", description="how a follow-up becomes a standalone search query"
    )
    max_tokens: int = Field(256, ge=1, description="answer length unless the request asks for less")
    temperature: float = Field(0.2, ge=0, le=2)
    max_context_tokens: int | None = Field(
        None, ge=256, description="prompt budget in the model's tokens; default: the model's context length"
    )

    @model_validator(mode="after")
    def _has_something_to_answer_from(self) -> AppSettings:
        if self.collection is None and not self.tools:
            raise ValueError("an app needs a collection, tools, or both")
        return self


class _ToolSettings(_Section):
    description: str | None = Field(None, description="what the model is told the tool does; default: derived")
    timeout_s: float = Field(10.0, gt=0, description="a call that takes longer fails with a timeout")
    max_result_chars: int = Field(8000, ge=100, description="a longer result is cut, and says so")


class SqlToolSettings(_ToolSettings):
    """Read-only SELECT/WITH queries on a SQLite file or a PostgreSQL database, over allow-listed tables."""

    kind: Literal["sql"]
    url: str = Field(description="sqlite:///path/to.db or postgresql://user@host/db")
    tables: list[str] = Field(min_length=1, description="the tables (and views) a query may read")
    max_rows: int = Field(100, ge=1, le=10000)


class WebToolSettings(_ToolSettings):
    """Fetch a public web page and return its main text; private and metadata addresses are refused."""

    kind: Literal["web"]
    allow_hosts: list[str] = Field(default_factory=list, description="if set, only these hosts (and subdomains)")
    allow_networks: list[str] = Field(
        default_factory=list, description="CIDRs allowed even though private or loopback (e.g. an intranet)"
    )
    max_bytes: int = Field(2 * 1024 * 1024, ge=1024)
    max_redirects: int = Field(5, ge=0, le=20)


class OpenApiToolSettings(_ToolSettings):
    """Selected operations of an OpenAPI 3 document, each a tool (``NAME-operationId``)."""

    kind: Literal["openapi"]
    spec: str = Field(description="path to the OpenAPI 3 document (JSON or YAML)")
    operations: list[str] = Field(min_length=1, description="operationIds to expose")
    base_url: str | None = Field(None, description="default: the document's first server")
    api_key_env: str | None = Field(None, description="environment variable holding the API key")
    auth_header: str = "Authorization"
    auth_scheme: str = Field("Bearer", description="prefix of the header value; empty for the bare key")
    allow_networks: list[str] = Field(default_factory=list, description="as for web tools")
    max_bytes: int = Field(2 * 1024 * 1024, ge=1024, description="a longer answer fails rather than being cut")


class McpToolSettings(_ToolSettings):
    """The tools of an MCP server, over stdio (``command``) or Streamable HTTP (``url``)."""

    kind: Literal["mcp"]
    command: list[str] | None = Field(None, min_length=1, description='a stdio server, e.g. ["mcp-server-time"]')
    url: str | None = Field(None, description="a Streamable HTTP server, e.g. http://127.0.0.1:9000/mcp")
    env: dict[str, str] = Field(default_factory=dict, description="extra environment for a stdio server")
    tools: list[str] | None = Field(None, description="import only these of the server's tools")
    api_key_env: str | None = Field(None, description="environment variable holding a Bearer token for a url server")
    start_timeout_s: float = Field(30.0, gt=0, description="the server must start and list its tools within this")

    @model_validator(mode="after")
    def _one_transport(self) -> McpToolSettings:
        if (self.command is None) == (self.url is None):
            raise ValueError("an mcp tool needs exactly one of command (stdio) or url (Streamable HTTP)")
        if self.api_key_env and self.url is None:
            raise ValueError("api_key_env is for a url server (a stdio server gets env instead)")
        return self


BUILTIN_TOOLS = ("search", "ask")
"""The tools ``/mcp`` has of its own; no ``[tools.*]`` entry may take their names."""

ToolSettings = Annotated[
    SqlToolSettings | WebToolSettings | OpenApiToolSettings | McpToolSettings, Field(discriminator="kind")
]


GuardAction = Literal["off", "flag", "redact", "block"]


class GuardrailSettings(_Section):
    """Checks on what goes into and comes out of a model: flag (log the verdict), redact (replace the span
    with a placeholder), block (refuse: 400 on input, a stopped stream on output) or off."""

    enabled: bool = True
    input_pii: GuardAction = Field("flag", description="e-mail, phone, credit card (Luhn), IBAN, national IDs")
    input_secrets: GuardAction = Field("redact", description="API keys, tokens, private keys, passwords in URLs")
    input_injection: GuardAction = Field("block", description="prompt injection and jailbreak attempts")
    scan_operator_roles: bool = Field(
        False, description="also check system and developer messages (for deployments whose clients write those roles)"
    )
    output_pii: GuardAction = "flag"
    output_secrets: GuardAction = "redact"
    max_hold_chars: int = Field(
        17408, ge=256, description="the most streamed output held back while it could still become a finding "
        "(a 16 KB private-key block); past it the oldest held text is released"
    )
    window_chars: int | None = Field(
        None, description="deprecated and ignored: streamed output is held back only while it could still become "
        "a finding (see max_hold_chars)"
    )


class UpstreamSettings(_Section):
    """One member of a route's pool."""

    url: str | None = Field(None, description="an OpenAI-compatible base URL (…/v1); none = this process's own models")
    model: str | None = Field(None, description="the model's name at the upstream; default: the route's name")
    weight: float = Field(1.0, gt=0, description="share of traffic under round-robin; capacity under least-outstanding")
    api_key_env: str | None = Field(None, description="environment variable holding the upstream's key")
    api_key_file: Path | None = Field(None, description="file holding the upstream's key")
    name: str | None = Field(None, description="label in metrics and the audit log; default: host:port or 'local'")


class RouteSettings(_Section):
    """A model name (and its aliases) mapped to a pool of upstreams."""

    upstreams: list[UpstreamSettings] = Field(default_factory=lambda: [UpstreamSettings()], min_length=1)
    aliases: list[str] = Field(default_factory=list, description="other names clients may call the route by")
    balance: Literal["least_outstanding", "round_robin", "prefix"] = Field(
        "least_outstanding", description="prefix = consistent hashing of the session id or prompt prefix, bounded load"
    )
    prefix_chars: int = Field(512, ge=16, description="prompt characters hashed for prefix affinity")
    split: dict[str, float] = Field(
        default_factory=dict, description="canary: other route -> percent of this route's traffic sent there"
    )
    fallback: list[str] = Field(
        default_factory=list, description="routes tried in order when every upstream here fails before the first byte"
    )
    max_tokens: int | None = Field(None, ge=1, description="max_tokens is clamped to this")
    retries: int = Field(2, ge=0, description="attempts on other upstreams after a failure before the first byte")
    connect_timeout: float = Field(2.0, gt=0)
    first_token_timeout: float = Field(60.0, gt=0, description="seconds to the response headers / first stream event")
    total_timeout: float = Field(600.0, gt=0)


class GatewaySettings(_Section):
    """The front door: routes, balancing, health, keys, quotas, guardrails and the audit log."""

    routes: dict[str, RouteSettings] = Field(
        default_factory=dict, description="model name -> pool; models not named here are served by this process"
    )
    allow_open: bool = Field(
        False, description="serve a non-loopback address although no API key exists (anyone can call it)"
    )
    health_interval: float = Field(1.0, gt=0, description="seconds between active health checks of remote upstreams")
    eject_after: int = Field(3, ge=1, description="consecutive failures that eject an upstream (a refused connection ejects at once)")
    eject_seconds: float = Field(1.0, gt=0, description="first ejection; doubles on each failed half-open probe, up to 30 s")
    retry_budget: float = Field(0.2, ge=0, le=1, description="retries allowed as a share of recent requests (at least 3/s)")
    audit: bool = Field(True, description="record every model request in the state store")
    log_content: bool = Field(
        False, description="keep (redacted) prompts and completions of requests made without a key (loopback)"
    )
    otel_endpoint: str | None = Field(None, description="OTLP/HTTP endpoint for traces; none = no tracing")
    guardrails: GuardrailSettings = GuardrailSettings()


class CollectionSettings(_Section):
    """``[collections.NAME]``: a collection declared as code; ``aifab apply`` ingests its sources and keeps it
    in sync with them."""

    sources: list[str] = Field(min_length=1, description="files or folders, relative to the config file")
    acl: list[str] = Field(default_factory=list, description="ACL tags on every chunk")
    prune: bool = Field(True, description="remove documents whose files are gone from the sources")
    chunk_tokens: int | None = Field(None, ge=16, description="default: corpus.chunk_tokens")
    chunk_overlap: int | None = Field(None, ge=0, description="default: corpus.chunk_overlap")


class KeySettings(_Section):
    """``[keys.NAME]``: an API key declared as code: its scopes and limits. The secret never sits in the
    file: ``secret_env`` or ``secret_file`` names where it is, else ``aifab apply`` makes one and prints it
    once."""

    models: list[str] | None = Field(None, description="models it may call; default: all")
    collections: list[str] | None = Field(None, description="collections it may read; default: all")
    acl: list[str] | None = Field(None, description="ACL tags its retrieval may see; default: every chunk")
    tools: list[str] | None = Field(None, description="tools it may list and run; default: all")
    rpm: int | None = Field(None, ge=1)
    tpm: int | None = Field(None, ge=1)
    budget_tokens: int | None = Field(None, ge=1)
    max_tokens: int | None = Field(None, ge=1)
    admin: bool = False
    log_content: bool = False
    allow_training: bool = False
    secret_env: str | None = Field(None, description="environment variable holding the key's secret")
    secret_file: Path | None = Field(None, description="file holding the key's secret (relative to the config file)")


class Settings(BaseSettings):
    """The effective aifab configuration."""

    model_config = SettingsConfigDict(
        env_prefix="AIFAB_",
        env_nested_delimiter="__",
        toml_file=DEFAULT_CONFIG_FILE,
        extra="forbid",
    )

    data_dir: Path = Path(".aifab")
    database_url: str | None = Field(
        None, description="SQLAlchemy URL; default is SQLite under data_dir"
    )
    serve: ServeSettings = ServeSettings()
    engines: EngineSettings = EngineSettings()
    models: ModelSettings = ModelSettings()
    corpus: CorpusSettings = CorpusSettings()
    stores: StoreSettings = StoreSettings()
    rag: RetrievalSettings = Field(RetrievalSettings(), description="retrieval defaults for /v1/retrieve and ask")
    apps: dict[str, AppSettings] = Field(default_factory=dict, description="RAG apps, called as models")
    tools: dict[str, ToolSettings] = Field(default_factory=dict, description="connectors apps and /mcp expose")
    gateway: GatewaySettings = GatewaySettings()
    collections: dict[str, CollectionSettings] = Field(
        default_factory=dict, description="collections `aifab apply` keeps in sync with their sources")
    keys: dict[str, KeySettings] = Field(default_factory=dict, description="API keys `aifab apply` keeps as declared")

    @model_validator(mode="after")
    def _apps_name_known_tools(self) -> Settings:
        taken = [n for n in BUILTIN_TOOLS if n in self.tools]
        if taken:
            raise ValueError(f"a [tools.*] entry may not be named {', '.join(taken)}: /mcp has tools of that name")
        for name, app in self.apps.items():
            unknown = [t for t in app.tools if t not in self.tools]
            if unknown:
                known = ", ".join(sorted(self.tools)) or "none"
                raise ValueError(f"app '{name}' names unknown tools {', '.join(unknown)} (known: {known})")
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, TomlConfigSettingsSource(settings_cls))

    @property
    def effective_database_url(self) -> str:
        return self.database_url or f"sqlite:///{self.data_dir.resolve() / 'aifab.db'}"

    def threads(self) -> int:
        return self.engines.threads or (os.cpu_count() or 1)

    def cache_dir(self, kind: str) -> Path:
        """A writable folder for rebuildable files of ``kind`` (created)."""
        roots = [self.engines.cache_dir] if self.engines.cache_dir else [
            Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "aifab", self.data_dir / "cache"]
        for root in roots:
            try:
                (root / kind).mkdir(parents=True, exist_ok=True)
            except OSError:
                continue
            if os.access(root / kind, os.W_OK):
                return root / kind
        raise OSError(f"no writable cache folder: tried {', '.join(str(r) for r in roots)}; set engines.cache_dir")


def read_secret(env: str | None, file: Path | None, what: str) -> str | None:
    """A secret the config names but never holds: the environment variable ``env``, else the file ``file``
    (None: neither given). ``what`` says whose secret it is in the error."""
    if env and file:
        raise ConfigError(f"{what}: give an environment variable or a file, not both")
    if env:
        value = os.environ.get(env)
        if not value:
            raise ConfigError(f"{what}: the environment variable {env} is not set")
        return value.strip()
    if file:
        try:
            return Path(file).read_text().strip()
        except OSError as exc:
            raise ConfigError(f"{what}: cannot read {file}: {exc.strerror or exc}") from None
    return None


def load_settings(config_file: Path | None = None, **overrides: Any) -> Settings:
    """Build the settings from the TOML file, the environment and ``overrides`` (CLI flags).

    ``overrides`` may be nested dicts (``serve={"port": 9000}``); ``None`` values are ignored so that
    an unset CLI flag does not hide the file or the environment.
    """
    path = Path(config_file) if config_file else Path(DEFAULT_CONFIG_FILE)
    if config_file and not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    cls: type[Settings] = type(
        "Settings", (Settings,), {"model_config": {**Settings.model_config, "toml_file": path}}
    )
    try:
        return cls(**_drop_none(overrides))
    except ValidationError as exc:
        raise ConfigError(describe_error(exc, cls)) from exc
    except (OSError, ValueError) as exc:  # tomllib.TOMLDecodeError is a ValueError
        raise ConfigError(f"cannot read {path}: {exc}") from exc


def describe_error(exc: ValidationError, root: type[BaseModel], noun: str = "setting") -> str:
    """One line for the error a user should fix first (in a file of ``root``'s shape, whose keys are
    ``noun``s). A misspelt key also makes pydantic report the key it
    was meant to be as missing ("collection: Field required"), so an unknown key is named first, with the
    closest known key as a suggestion."""
    errors = exc.errors()
    unknown = [e for e in errors if e["type"] == "extra_forbidden"]
    first = (unknown or errors)[0]
    where = ".".join(str(p) for p in first["loc"])
    if not unknown:
        return f"invalid {noun} {where}: {first['msg']}"
    *parent, key = first["loc"]
    known = _known_keys(root, parent)
    close = difflib.get_close_matches(str(key), known, n=1, cutoff=0.6)
    if close:
        return f"unknown {noun} {where}: did you mean '{close[0]}'?"
    return f"unknown {noun} {where}: the known keys here are {', '.join(known) or 'none'}"


def _known_keys(root: type[BaseModel], path: Sequence[str | int]) -> list[str]:
    """The keys a settings section at ``path`` accepts (``("apps", "pydocs")`` -> the fields of an app)."""
    kind: Any = root
    for part in path:
        kind = _unwrap(kind)
        if isinstance(kind, type) and issubclass(kind, BaseModel):
            field = kind.model_fields.get(str(part))
            if field is None:
                return []
            kind = field.annotation
        elif get_origin(kind) in (dict, list):  # ``part`` is a dict key or a list index
            kind = get_args(kind)[-1]
        else:
            return []
    kind = _unwrap(kind)
    return list(kind.model_fields) if isinstance(kind, type) and issubclass(kind, BaseModel) else []


def _unwrap(kind: Any) -> Any:
    """``X | None`` -> ``X``."""
    if get_origin(kind) in (Union, types.UnionType):
        return next((a for a in get_args(kind) if a is not type(None)), kind)
    return kind


def _drop_none(values: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in values.items():
        if isinstance(value, dict):
            nested = _drop_none(value)
            if nested:
                out[key] = nested
        elif value is not None:
            out[key] = value
    return out
