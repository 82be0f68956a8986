"""ORM tables. Each block adds its tables here and a migration under ``migrations/versions``."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    ForeignKeyConstraint,
    Integer,
    String,
    Text,
    func,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    pass


class ModelRow(Base):
    """A model package in the registry; ``manifest`` is the package's full manifest (JSON)."""

    __tablename__ = "models"

    name: Mapped[str] = mapped_column(String(200), primary_key=True)
    kind: Mapped[str] = mapped_column(String(32))
    format: Mapped[str] = mapped_column(String(32))
    path: Mapped[str] = mapped_column(String(4096))
    sha256: Mapped[str] = mapped_column(String(64))
    manifest: Mapped[dict] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class CollectionRow(Base):
    """A named corpus; ``live_version`` is the version retrieval reads (switched by ``promote``)."""

    __tablename__ = "collections"

    name: Mapped[str] = mapped_column(String(128), primary_key=True)
    live_version: Mapped[int | None] = mapped_column(Integer, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class CollectionVersionRow(Base):
    """One build of a collection with one pipeline (chunker + embedder); lives in its own store namespace."""

    __tablename__ = "collection_versions"

    collection: Mapped[str] = mapped_column(
        String(128), ForeignKey("collections.name", ondelete="CASCADE"), primary_key=True
    )
    version: Mapped[int] = mapped_column(Integer, primary_key=True)
    namespace: Mapped[str] = mapped_column(String(160))
    pipeline: Mapped[dict] = mapped_column(JSON)
    pipeline_hash: Mapped[str] = mapped_column(String(64))
    dimensions: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    promoted_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class DocumentRow(Base):
    """A document as last ingested into one collection version. Written only after its chunks are in the
    store, so a crash in between is repaired by ingesting again."""

    __tablename__ = "documents"

    collection: Mapped[str] = mapped_column(String(128), primary_key=True)
    version: Mapped[int] = mapped_column(Integer, primary_key=True)
    document_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    source: Mapped[str] = mapped_column(String(4096))
    content_hash: Mapped[str] = mapped_column(String(64))
    acl: Mapped[list] = mapped_column(JSON)
    format: Mapped[str] = mapped_column(String(16))
    title: Mapped[str] = mapped_column(String(1024))
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    chunks: Mapped[int] = mapped_column(Integer)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())

    __table_args__ = (
        ForeignKeyConstraint(
            ["collection", "version"],
            ["collection_versions.collection", "collection_versions.version"],
            ondelete="CASCADE",
        ),
    )


class IngestJobRow(Base):
    """Progress and outcome of one ingest (CLI or HTTP upload)."""

    __tablename__ = "ingest_jobs"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    collection: Mapped[str] = mapped_column(String(128), index=True)
    version: Mapped[int | None] = mapped_column(Integer, nullable=True)
    # queued | running | succeeded | partial | failed | interrupted
    status: Mapped[str] = mapped_column(String(16))
    pid: Mapped[int] = mapped_column(Integer)
    files_total: Mapped[int] = mapped_column(Integer, default=0)
    files_done: Mapped[int] = mapped_column(Integer, default=0)
    summary: Mapped[dict] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    # the owner's lease (host, pid above, a per-process token), renewed while the job is queued or running
    host: Mapped[str | None] = mapped_column(String(255), nullable=True)
    instance: Mapped[str | None] = mapped_column(String(32), nullable=True)
    lease_expires: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    request: Mapped[dict | None] = mapped_column(JSON, nullable=True)  # what to ingest again on resume
    recovery: Mapped[dict | None] = mapped_column(JSON, nullable=True)  # what became of an interrupted job


class ApiKeyRow(Base):
    """A gateway API key. Only the sha256 of the secret is stored; ``prefix`` is its first characters, shown
    in listings so a key can be recognised. Scope lists are JSON; null means unrestricted."""

    __tablename__ = "api_keys"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(128), unique=True)
    prefix: Mapped[str] = mapped_column(String(16))
    secret_hash: Mapped[str] = mapped_column(String(64), unique=True)
    models: Mapped[list | None] = mapped_column(JSON, nullable=True)
    collections: Mapped[list | None] = mapped_column(JSON, nullable=True)
    acl: Mapped[list | None] = mapped_column(JSON, nullable=True)
    tools: Mapped[list | None] = mapped_column(JSON, nullable=True)
    rpm: Mapped[int | None] = mapped_column(Integer, nullable=True)
    tpm: Mapped[int | None] = mapped_column(Integer, nullable=True)
    budget_tokens: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    max_tokens: Mapped[int | None] = mapped_column(Integer, nullable=True)
    admin: Mapped[bool] = mapped_column(Boolean, default=False)
    log_content: Mapped[bool] = mapped_column(Boolean, default=False)
    allow_training: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class KeyUsageRow(Base):
    """Tokens a key has spent in all (its budget is checked against ``prompt_tokens + completion_tokens``)."""

    __tablename__ = "key_usage"

    key_id: Mapped[str] = mapped_column(String(32), ForeignKey("api_keys.id", ondelete="CASCADE"), primary_key=True)
    requests: Mapped[int] = mapped_column(BigInteger, default=0)
    prompt_tokens: Mapped[int] = mapped_column(BigInteger, default=0)
    completion_tokens: Mapped[int] = mapped_column(BigInteger, default=0)


class RateBucketRow(Base):
    """A token bucket shared by several gateway processes (PostgreSQL state): ``level`` tokens left at
    ``updated`` (epoch seconds); refilled on read."""

    __tablename__ = "rate_buckets"

    key_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    kind: Mapped[str] = mapped_column(String(8), primary_key=True)  # rpm | tpm
    level: Mapped[float] = mapped_column(Float)
    updated: Mapped[float] = mapped_column(Float)


class AuditRow(Base):
    """One model request through the gateway. ``request``/``response`` hold redacted content only where the
    key's policy allows it (else null); ``verdicts`` are the guardrails' findings (never the raw text)."""

    __tablename__ = "audit_log"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)  # the response id the client saw
    ts: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    key_id: Mapped[str | None] = mapped_column(String(32), nullable=True, index=True)
    key_name: Mapped[str | None] = mapped_column(String(128), nullable=True)
    endpoint: Mapped[str] = mapped_column(String(64))
    model: Mapped[str] = mapped_column(String(200), index=True)
    route: Mapped[str | None] = mapped_column(String(200), nullable=True)
    upstream: Mapped[str | None] = mapped_column(String(200), nullable=True)
    status: Mapped[int] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(String(1024), nullable=True)
    stream: Mapped[bool] = mapped_column(Boolean, default=False)
    attempts: Mapped[int] = mapped_column(Integer, default=1)
    prompt_tokens: Mapped[int] = mapped_column(Integer, default=0)
    completion_tokens: Mapped[int] = mapped_column(Integer, default=0)
    latency_ms: Mapped[float] = mapped_column(Float)
    ttft_ms: Mapped[float | None] = mapped_column(Float, nullable=True)
    verdicts: Mapped[list] = mapped_column(JSON)
    request: Mapped[dict | None] = mapped_column(JSON, nullable=True)
    response: Mapped[str | None] = mapped_column(Text, nullable=True)
    allow_training: Mapped[bool] = mapped_column(Boolean, default=False)
    context: Mapped[list | None] = mapped_column(JSON, nullable=True)  # chunk ids an app retrieved for it
    # [{"name": ...}] per tool call of the answer, "arguments" (redacted) added where content is kept
    tool_calls: Mapped[list | None] = mapped_column(JSON, nullable=True)


class FeedbackRow(Base):
    """A user's rating of one logged response (``response_id`` = the audit log's id)."""

    __tablename__ = "feedback"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    response_id: Mapped[str] = mapped_column(String(64), index=True)
    key_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    rating: Mapped[str] = mapped_column(String(8))  # up | down
    correction: Mapped[str | None] = mapped_column(Text, nullable=True)
    comment: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class DatasetRow(Base):
    """One version of a fine-tuning dataset: ``train.jsonl``, ``eval.jsonl`` and ``manifest.json`` under
    ``path``; ``sha256`` covers both splits; ``source`` says where the examples came from (log row ids)."""

    __tablename__ = "datasets"

    name: Mapped[str] = mapped_column(String(128), primary_key=True)
    version: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))  # sft | preference
    path: Mapped[str] = mapped_column(String(4096))
    sha256: Mapped[str] = mapped_column(String(64))
    counts: Mapped[dict] = mapped_column(JSON)
    source: Mapped[dict] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class FileRow(Base):
    """A file uploaded through ``/v1/files`` (purpose ``fine-tune``), kept under the data directory."""

    __tablename__ = "files"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    purpose: Mapped[str] = mapped_column(String(32))
    filename: Mapped[str] = mapped_column(String(1024))
    bytes: Mapped[int] = mapped_column(BigInteger)
    path: Mapped[str] = mapped_column(String(4096))
    key_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class FinetuneJobRow(Base):
    """A fine-tuning job (CLI or ``/v1/fine_tuning/jobs``): its inputs, status, result and events."""

    __tablename__ = "finetune_jobs"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    status: Mapped[str] = mapped_column(String(24))  # validating_files|queued|running|succeeded|failed|cancelled
    base: Mapped[str] = mapped_column(String(200))
    dataset: Mapped[str] = mapped_column(String(200))
    method: Mapped[str] = mapped_column(String(16))
    hyperparameters: Mapped[dict] = mapped_column(JSON)
    suffix: Mapped[str | None] = mapped_column(String(64), nullable=True)
    result_model: Mapped[str | None] = mapped_column(String(200), nullable=True)
    gate: Mapped[dict | None] = mapped_column(JSON, nullable=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    events: Mapped[list] = mapped_column(JSON)
    key_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class RolloutRow(Base):
    """How a served model name is split between its current version and a candidate (the gateway reads
    it): ``percent`` of traffic to ``candidate``; ``previous`` is what ``rollback`` returns to."""

    __tablename__ = "rollouts"

    model: Mapped[str] = mapped_column(String(200), primary_key=True)
    current: Mapped[str] = mapped_column(String(200))
    candidate: Mapped[str | None] = mapped_column(String(200), nullable=True)
    percent: Mapped[float] = mapped_column(Float, default=0.0)
    previous: Mapped[str | None] = mapped_column(String(200), nullable=True)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class EvalRunRow(Base):
    """One run of an eval suite (``aifab eval run``): the parsed suite, the sha256 of every file it read
    and what it measured, the metrics per check and each metric's verdict."""

    __tablename__ = "eval_runs"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    suite: Mapped[str] = mapped_column(String(128), index=True)
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    passed: Mapped[bool] = mapped_column(Boolean)
    baseline: Mapped[str | None] = mapped_column(String(4096), nullable=True)  # "run ID" or a file path
    config: Mapped[dict] = mapped_column(JSON)
    hashes: Mapped[dict] = mapped_column(JSON)
    metrics: Mapped[dict] = mapped_column(JSON)  # check id -> metric -> value
    verdicts: Mapped[list] = mapped_column(JSON)  # one row per check and metric
    seconds: Mapped[dict] = mapped_column(JSON)  # check id -> wall time
