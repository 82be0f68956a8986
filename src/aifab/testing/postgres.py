"""A private, throw-away PostgreSQL cluster for tests (a real server, not a fake).

Uses ``AIFAB_TEST_DATABASE_URL`` when set (a server someone else runs); otherwise starts its own
cluster with the machine's ``initdb``/``pg_ctl`` on a free loopback port, as the ``postgres`` user
when running as root (initdb refuses root). ``find_bindir()`` returns None when PostgreSQL is not
installed, so callers can skip with a reason.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
import uuid
from pathlib import Path

from aifab.testing.server import free_port


def find_bindir() -> Path | None:
    for candidate in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True):
        if Path(candidate, "initdb").exists():
            return Path(candidate)
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


class PrivatePostgres:
    """``start()`` → a server URL (``postgresql+psycopg://``); ``new_database()`` → a fresh database URL."""

    def __init__(self, bindir: Path) -> None:
        self.bindir = bindir
        self.root = Path(tempfile.mkdtemp(prefix="aifab-pg-"))
        self.data = self.root / "data"
        self.port = free_port()
        self.url = f"postgresql+psycopg://aifab@127.0.0.1:{self.port}/postgres"

    def _run(self, *args: str) -> None:
        cmd = [str(self.bindir / args[0]), *args[1:]]
        if os.geteuid() == 0:
            shutil.chown(self.root, "postgres")
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        subprocess.run(cmd, check=True, capture_output=True, timeout=120)

    def start(self) -> str:
        self._run("initdb", "-D", str(self.data), "-A", "trust", "-U", "aifab", "--no-sync", "-E", "UTF8")
        opts = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off -c full_page_writes=off"
        self._run("pg_ctl", "-D", str(self.data), "-o", opts, "-l", str(self.root / "log"), "-w", "start")
        return self.url

    def new_database(self) -> str:
        import psycopg

        name = f"t_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(f"host=127.0.0.1 port={self.port} user=aifab dbname=postgres", autocommit=True) as c:
            c.execute(f'CREATE DATABASE "{name}"')
        return self.url.rsplit("/", 1)[0] + f"/{name}"

    def has_extension(self, name: str) -> bool:
        """Whether the extension ``name`` (e.g. ``vector``) is installed for this server."""
        import psycopg

        with psycopg.connect(f"host=127.0.0.1 port={self.port} user=aifab dbname=postgres") as c:
            row = c.execute("SELECT 1 FROM pg_available_extensions WHERE name = %s", (name,)).fetchone()
        return row is not None

    def stop(self) -> None:
        try:
            self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "stop")
        except subprocess.CalledProcessError:
            pass  # already down; the directory goes anyway
        shutil.rmtree(self.root, ignore_errors=True)
