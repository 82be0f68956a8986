"""Connections for the pgvector store: URL handling, the one-time database set-up, the ``vector`` type
adapters (binary, float32) and a small thread-safe pool.

The pool is deliberately tiny (no psycopg_pool dependency): connections are opened on demand up to
``size``, reused LIFO, and dropped when they come back broken or mid-transaction. A connection found
broken on reuse (the server restarted) is reported to the caller, which retries once on a fresh one.
"""

from __future__ import annotations

import re
import struct
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import numpy as np

from aifab.errors import ConfigError, MissingDependency

try:
    import psycopg
    from psycopg import pq
    from psycopg.adapt import Dumper, Loader
    from psycopg.conninfo import conninfo_to_dict, make_conninfo
    from psycopg.types import TypeInfo
except ImportError as exc:  # pragma: no cover - depends on the installed extras
    raise MissingDependency("psycopg", "pg") from exc

INSTALL_HINT = (
    "the pgvector extension is not installed on this PostgreSQL server; install it on the server "
    "(Debian 12: .ci/install-pgvector.sh, which .ci/run calls; elsewhere: the postgresql-NN-pgvector package "
    "or https://github.com/pgvector/pgvector#installation)"
)
# Serialises CREATE EXTENSION / catalogue DDL across processes (CREATE ... IF NOT EXISTS still races).
DDL_LOCK = 0x61696661625F7663  # "aifab_vc"


def conninfo(url: str) -> str:
    """A libpq URL from a SQLAlchemy-style one: ``postgresql+psycopg://`` → ``postgresql://``."""
    return re.sub(r"^(postgres(?:ql)?)\+[A-Za-z0-9_]+://", r"\1://", url)


def describe(url: str) -> str:
    """``user@host:port/dbname`` for messages: never the password."""
    try:
        d = conninfo_to_dict(conninfo(url))
    except psycopg.ProgrammingError:
        return "<unparsable URL>"
    return f"{d.get('user', '')}@{d.get('host', '')}:{d.get('port', 5432)}/{d.get('dbname', '')}"


class _VectorBinaryDumper(Dumper):
    """numpy array → pgvector's binary input: int16 dims, int16 unused, big-endian float4 values."""

    format = pq.Format.BINARY

    def dump(self, obj: np.ndarray) -> bytes:
        values = np.asarray(obj, dtype=">f4")
        return struct.pack(">HH", values.shape[0], 0) + values.tobytes()


class _VectorBinaryLoader(Loader):
    format = pq.Format.BINARY

    def load(self, data: bytes | bytearray | memoryview) -> np.ndarray:
        dims = struct.unpack_from(">H", data)[0]
        return np.frombuffer(data, dtype=">f4", count=dims, offset=4).astype(np.float32)


class _VectorTextLoader(Loader):
    def load(self, data: bytes | bytearray | memoryview) -> np.ndarray:
        return np.array(bytes(data).decode()[1:-1].split(","), dtype=np.float32)


def bootstrap(conn: psycopg.Connection, catalogue_ddl: list[bytes]) -> bool:
    """Create the extension and the catalogue once per database. Returns whether the loaded pgvector
    library has iterative index scans (0.8+), which keep filtered ANN queries filling ``k``."""
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (DDL_LOCK,))
        if conn.execute("SELECT 1 FROM pg_extension WHERE extname = 'vector'").fetchone() is None:
            if conn.execute("SELECT 1 FROM pg_available_extensions WHERE name = 'vector'").fetchone() is None:
                raise ConfigError(INSTALL_HINT)
            try:
                conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
            except psycopg.errors.InsufficientPrivilege as exc:
                raise ConfigError(
                    "the pgvector extension is installed on the server but not enabled in this database, and "
                    f"this user may not enable it: ask a superuser to run CREATE EXTENSION vector ({exc})"
                ) from exc
        for statement in catalogue_ddl:
            conn.execute(statement)
    conn.execute("SELECT '[1]'::vector")  # loads the library, which defines its settings
    row = conn.execute("SELECT current_setting('hnsw.iterative_scan', true)").fetchone()
    return row is not None and row[0] is not None


def register_vector(conn: psycopg.Connection) -> int:
    """Teach this connection the ``vector`` type; returns its oid (for COPY)."""
    info = TypeInfo.fetch(conn, "vector")
    if info is None:  # pragma: no cover - bootstrap created it
        raise ConfigError(INSTALL_HINT)
    dumper = type("VectorDumper", (_VectorBinaryDumper,), {"oid": info.oid})
    conn.adapters.register_dumper(np.ndarray, dumper)
    conn.adapters.register_loader(info.oid, _VectorBinaryLoader)
    conn.adapters.register_loader(info.oid, _VectorTextLoader)
    return info.oid


class Pool:
    """At most ``size`` autocommit connections, opened on demand; thread-safe."""

    def __init__(self, url: str, size: int, setup: Callable[[psycopg.Connection], None]) -> None:
        self._conninfo = conninfo(url)
        self._url = url
        self._setup = setup
        self._idle: list[psycopg.Connection] = []
        self._lock = threading.Lock()
        self._slots = threading.BoundedSemaphore(size)
        self._closed = False

    def _open(self) -> psycopg.Connection:
        info = self._conninfo
        if "connect_timeout" not in conninfo_to_dict(info):
            info = make_conninfo(info, connect_timeout=10)
        try:
            conn = psycopg.connect(info, autocommit=True)
        except psycopg.OperationalError as exc:
            raise ConfigError(f"cannot connect to PostgreSQL at {describe(self._url)}: {exc}") from exc
        try:
            self._setup(conn)
        except BaseException:
            conn.close()
            raise
        return conn

    @contextmanager
    def connection(self) -> Iterator[tuple[psycopg.Connection, bool]]:
        """A connection and whether it was reused (so may have gone stale since)."""
        if self._closed:
            raise RuntimeError("the PgVectorStore is closed")
        with self._slots:
            with self._lock:
                conn = self._idle.pop() if self._idle else None
            reused = conn is not None and not conn.closed
            if conn is None or conn.closed:
                conn = self._open()
            try:
                yield conn, reused
            finally:
                healthy = not (conn.closed or conn.broken) and conn.info.transaction_status == pq.TransactionStatus.IDLE
                with self._lock:
                    keep = healthy and not self._closed
                    if keep:
                        self._idle.append(conn)
                if not keep:
                    conn.close()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()
