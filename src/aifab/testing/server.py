"""A real ``aifab up`` process for end-to-end tests, driven through real clients."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_ready(url: str, proc: subprocess.Popen[bytes], timeout: float, what: str, log: Callable[[], str]) -> None:
    """Poll ``GET url`` until it answers 200. Raises ``RuntimeError`` (with ``log()``) if ``proc`` exits,
    ``TimeoutError`` when ``timeout`` passes; it stops nothing, the caller does."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}:\n{log()}")
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    raise TimeoutError(f"{what} not ready after {timeout}s:\n{log()}")


def terminate(proc: subprocess.Popen[bytes], timeout: float = 15.0) -> None:
    """SIGTERM, then SIGKILL if it is still there after ``timeout`` seconds."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class RemoteAifabServer:
    """Spawns ``aifab up`` on a free loopback port and waits until ``/readyz`` answers 200.

    ``env`` adds ``AIFAB_*`` settings; ``args`` adds CLI flags. Use as a context manager.
    """

    def __init__(self, data_dir: Path, *, env: dict[str, str] | None = None, args: list[str] | None = None,
                 startup_timeout: float = 180.0) -> None:
        self.port = free_port()
        self.host = "127.0.0.1"
        self.url = f"http://{self.host}:{self.port}"
        self.log_path = Path(data_dir) / "server.log"
        Path(data_dir).mkdir(parents=True, exist_ok=True)
        cmd = [sys.executable, "-m", "aifab.cli.main", "up", "--host", self.host, "--port", str(self.port),
               "--data-dir", str(data_dir), *(args or [])]
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(cmd, stdout=self._log, stderr=subprocess.STDOUT,
                                     env={**os.environ, **(env or {})})
        try:
            wait_ready(f"{self.url}/readyz", self.proc, startup_timeout, "aifab up", self.log)
        except BaseException:
            self.stop()
            raise

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        terminate(self.proc)
        self._log.close()

    def __enter__(self) -> RemoteAifabServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class ThreadedServer:
    """An ASGI app on uvicorn (uvloop, httptools) in a background thread of this process, on a free
    loopback port: for tests that drive an in-process app (a gateway) over real sockets."""

    def __init__(self, app: Any) -> None:
        import threading

        import uvicorn

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning", loop="uvloop",
                                http="httptools", lifespan="on")
        self.server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self.server.run, name="aifab-test-server", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the test server did not start")
            time.sleep(0.02)

    def stop(self) -> None:
        self.server.should_exit = True
        self._thread.join(timeout=15)

    def __enter__(self) -> ThreadedServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
