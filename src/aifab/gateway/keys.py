"""API keys: created and revoked by the CLI, checked by the gateway on every request.

Only the sha256 of a secret is stored. Secrets are 256 random bits, so a fast hash is enough: there is
nothing to brute-force, which is why GitHub and Stripe tokens are stored the same way (a slow password
hash would only slow down every request). ``authenticate`` answers from memory and notices, before each
answer, when another process (``aifab keys revoke`` while the server runs) changed the keys.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Protocol

from sqlalchemy import or_, select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from aifab.errors import Conflict, InvalidRequest, NotFound
from aifab.identity import ApiKey
from aifab.state import Database
from aifab.state.tables import ApiKeyRow

SECRET_PREFIX = "afk-"
CHANNEL = "aifab_keys"  # PostgreSQL NOTIFY channel of key changes
SAFETY_S = 5.0  # a change made behind KeyStore's back (plain SQL) is seen within this long
_NAME = re.compile(r"[A-Za-z0-9._-]{1,128}")
_LIMITS = ("rpm", "tpm", "budget_tokens", "max_tokens")
_SCOPES = ("models", "collections", "acl", "tools")
SCOPE_FIELDS = (*_SCOPES, *_LIMITS, "admin", "log_content", "allow_training")  # what a key may do
MIN_SECRET = 32


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


class KeyStore:
    """API keys in the state database, with an in-memory cache for ``authenticate``."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self._lock = threading.Lock()
        self._watch: _Watch | None = None
        self._active: dict[str, ApiKey] = {}  # secret hash -> key
        self._loaded = 0.0

    def create(
        self,
        name: str,
        *,
        models: Sequence[str] | None = None,
        collections: Sequence[str] | None = None,
        acl: Sequence[str] | None = None,
        tools: Sequence[str] | None = None,
        rpm: int | None = None,
        tpm: int | None = None,
        budget_tokens: int | None = None,
        max_tokens: int | None = None,
        admin: bool = False,
        log_content: bool = False,
        allow_training: bool = False,
        secret: str | None = None,
    ) -> tuple[ApiKey, str]:
        """Create a key; returns it and its secret, which exists nowhere else afterwards. ``secret``: one
        chosen elsewhere (config as code keeps it in a CI secret store), else a fresh random one."""
        if not _NAME.fullmatch(name):
            raise InvalidRequest(f"bad key name {name!r}: 1-128 characters of A-Z a-z 0-9 . _ -", param="name")
        limits = {"rpm": rpm, "tpm": tpm, "budget_tokens": budget_tokens, "max_tokens": max_tokens}
        _check_limits(limits)
        if secret is not None:
            check_secret(secret)
        secret = secret or SECRET_PREFIX + secrets.token_urlsafe(32)
        row = ApiKeyRow(
            id=uuid.uuid4().hex, name=name, prefix=secret[:10], secret_hash=hash_secret(secret),
            models=_scope(models), collections=_scope(collections), acl=_scope(acl), tools=_scope(tools), **limits,
            admin=admin, log_content=log_content, allow_training=allow_training,
            created_at=datetime.now(UTC),
        )
        try:
            with self.db.session() as s:
                if s.scalar(select(ApiKeyRow.id).where(ApiKeyRow.name == name)) is not None:
                    raise Conflict(f"a key named {name!r} exists")
                s.add(row)
                s.flush()
                self._notify(s)
        except IntegrityError:  # created by someone else between the check and the insert
            raise Conflict(f"a key named {name!r} exists") from None
        return to_key(row), secret

    def update(self, name: str, secret: str | None = None, **fields: object) -> ApiKey:
        """Change an active key's scopes and limits (``fields`` as in ``create``) and, given, its secret."""
        unknown = set(fields) - set(SCOPE_FIELDS)
        if unknown:
            raise InvalidRequest(f"a key has no field {', '.join(sorted(unknown))}")
        _check_limits({k: v for k, v in fields.items() if k in _LIMITS})
        with self.db.session() as s:
            row = self._row(s, name)
            if row.revoked_at is not None:
                raise Conflict(f"the key {row.name!r} is revoked: create a new one")
            for field, value in fields.items():
                setattr(row, field, _scope(value) if field in _SCOPES else value)  # type: ignore[arg-type]
            if secret is not None:
                check_secret(secret)
                row.secret_hash, row.prefix = hash_secret(secret), secret[:10]
            s.flush()
            self._notify(s)
            return to_key(row)

    def list(self, include_revoked: bool = False) -> list[ApiKey]:
        query = select(ApiKeyRow).order_by(ApiKeyRow.created_at, ApiKeyRow.name)
        if not include_revoked:
            query = query.where(ApiKeyRow.revoked_at.is_(None))
        with self.db.session() as s:
            return [to_key(r) for r in s.scalars(query)]

    def get(self, name_or_id: str) -> ApiKey:
        with self.db.session() as s:
            return to_key(self._row(s, name_or_id))

    def revoke(self, name_or_id: str) -> ApiKey:
        """Revoke a key (for good). Revoking it again is a ``Conflict``: the caller most likely meant
        another key, and should hear that this one was already off."""
        with self.db.session() as s:
            row = self._row(s, name_or_id)
            if row.revoked_at is not None:
                raise Conflict(f"the key {row.name!r} was already revoked on {row.revoked_at:%Y-%m-%d %H:%M} UTC")
            row.revoked_at = datetime.now(UTC)
            s.flush()
            self._notify(s)
            return to_key(row)

    def any_active(self) -> bool:
        """Whether any unrevoked key exists: from memory, as fresh as ``authenticate``."""
        with self._lock:
            self._refresh()
            return bool(self._active)

    def authenticate(self, secret: str) -> ApiKey | None:
        """The active key with this secret, or None. Answers from memory in a few µs; when the keys changed,
        or every ``SAFETY_S`` seconds, it first reloads them with one blocking query (about a millisecond)."""
        digest = hash_secret(secret)
        with self._lock:
            self._refresh()
            # A dict lookup by hash leaks nothing timing-wise: the hash of a guess tells nothing of a secret.
            return self._active.get(digest)

    def check(self, secret: str | None) -> tuple[bool, ApiKey | None]:
        """(whether any key is active, the active key with this secret) after one freshness check: what
        the gateway asks on every request."""
        with self._lock:
            self._refresh()
            return bool(self._active), (self._active.get(hash_secret(secret)) if secret else None)

    def _refresh(self) -> None:
        """Reload the active keys when another process changed them (or every ``SAFETY_S`` seconds)."""
        if self._watch is None:
            self._watch = _open_watch(self.db)
            self._reload()
        elif self._watch.changed() or time.monotonic() - self._loaded > SAFETY_S:
            self._reload()

    def close(self) -> None:
        with self._lock:
            if self._watch is not None:
                self._watch.close()
                self._watch = None

    def _reload(self) -> None:
        self._loaded = time.monotonic()
        with self.db.session() as s:
            rows = s.execute(select(ApiKeyRow).where(ApiKeyRow.revoked_at.is_(None))).scalars()
            self._active = {r.secret_hash: to_key(r) for r in rows}

    def _row(self, s: Session, name_or_id: str) -> ApiKeyRow:
        query = select(ApiKeyRow).where(or_(ApiKeyRow.id == name_or_id, ApiKeyRow.name == name_or_id))
        rows = sorted(s.scalars(query), key=lambda r: r.id != name_or_id)  # an id wins over a name
        if not rows:
            raise NotFound(f"no API key named {name_or_id!r} (aifab keys list shows them)")
        return rows[0]

    def _notify(self, s: Session) -> None:
        """Tell every running gateway, at commit, that the keys changed (``_SqliteWatch``, ``_PgWatch``)."""
        if self.db.engine.dialect.name == "postgresql":
            s.execute(text(f"NOTIFY {CHANNEL}"))
        else:  # this transaction holds the write lock already, so read-and-bump is atomic
            stamp = s.execute(text("PRAGMA user_version")).scalar_one()
            s.execute(text(f"PRAGMA user_version = {int(stamp) + 1}"))


def check_secret(secret: str) -> None:
    """A secret chosen outside aifab must be as hard to guess as one aifab makes."""
    if len(secret) < MIN_SECRET or not secret.isprintable() or secret != secret.strip():
        raise InvalidRequest(f"a key secret must be at least {MIN_SECRET} printable characters without surrounding "
                             "spaces (e.g. `openssl rand -hex 32`)", param="secret")


def _check_limits(limits: Mapping[str, object]) -> None:
    for field, value in limits.items():
        if value is not None and (not isinstance(value, int) or value < 1):
            raise InvalidRequest(f"{field} must be a positive number, not {value}", param=field)


def to_key(row: ApiKeyRow) -> ApiKey:
    return ApiKey(
        id=row.id, name=row.name, prefix=row.prefix, models=_tuple(row.models),
        collections=_tuple(row.collections), acl=_tuple(row.acl), tools=_tuple(row.tools), rpm=row.rpm, tpm=row.tpm,
        budget_tokens=row.budget_tokens, max_tokens=row.max_tokens, admin=bool(row.admin),
        log_content=bool(row.log_content), allow_training=bool(row.allow_training),
        created_at=_utc(row.created_at), revoked_at=_utc(row.revoked_at),
    )


def _scope(values: Iterable[str] | None) -> list[str] | None:
    return None if values is None else list(dict.fromkeys(v.strip() for v in values if v.strip()))


def _tuple(values: list | None) -> tuple[str, ...] | None:
    return None if values is None else tuple(values)


def _utc(ts: datetime | None) -> datetime | None:
    return ts.replace(tzinfo=UTC) if ts is not None and ts.tzinfo is None else ts  # SQLite drops the zone


class _Watch(Protocol):
    """Tells, cheaply and without blocking, whether ``KeyStore`` changed the keys since the last call."""

    def changed(self) -> bool: ...

    def close(self) -> None: ...


def _open_watch(db: Database) -> _Watch:
    if db.engine.dialect.name == "postgresql":
        return _PgWatch(db)
    return _SqliteWatch(db)


class _SqliteWatch:
    """Two O(1) reads of the file header on a private connection: ``PRAGMA data_version`` changes when any
    other connection commits (an audit row, say), and only then is ``user_version`` read, which
    ``KeyStore`` bumps with every change of a key."""

    def __init__(self, db: Database) -> None:
        self._conn = sqlite3.connect(db.engine.url.database or "", timeout=5, check_same_thread=False,
                                     isolation_level=None)
        self._version = self._pragma("data_version")
        self._stamp = self._pragma("user_version")

    def changed(self) -> bool:
        version = self._pragma("data_version")
        if version == self._version:
            return False
        self._version = version
        stamp, self._stamp = self._stamp, self._pragma("user_version")
        return stamp != self._stamp

    def _pragma(self, name: str) -> int:
        return self._conn.execute(f"PRAGMA {name}").fetchone()[0]

    def close(self) -> None:
        self._conn.close()


FINGERPRINT = "SELECT count(*), max(created_at), max(revoked_at), count(revoked_at) FROM api_keys"


class _PgWatch:
    """``LISTEN aifab_keys`` on a private connection, polled without waiting; ``KeyStore`` sends ``NOTIFY``
    with every change. A lost connection is re-opened and counts as a change (notices may be lost)."""

    def __init__(self, db: Database) -> None:
        self._url = db.engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
        self._conn = self._listen()
        self._stamp = self._conn.execute(FINGERPRINT).fetchone()

    def _listen(self):  # type: ignore[no-untyped-def]
        import psycopg

        conn = psycopg.connect(self._url, autocommit=True)
        conn.execute(f"LISTEN {CHANNEL}")
        return conn

    def changed(self) -> bool:
        import psycopg

        try:
            if list(self._conn.notifies(timeout=0)):  # timeout=0: one poll, no wait
                return True
            # NOTIFY arrives asynchronously: a change committed an instant ago may not be here yet, so
            # also compare the table's fingerprint (one small query on the listening connection)
            stamp = self._conn.execute(FINGERPRINT).fetchone()
            changed, self._stamp = stamp != self._stamp, stamp
            return changed
        except psycopg.OperationalError:
            self._conn.close()
            self._conn = self._listen()
            return True

    def close(self) -> None:
        self._conn.close()
