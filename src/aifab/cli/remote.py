"""The CLI beside a running server: while ``aifab up`` holds a data directory, a command that touches its
state asks that server through the admin API instead of failing on the store's lock. The server's address is
in ``server.json`` and its secret in ``server.token`` (mode 0600: whoever can read it is that machine's
admin, as with Jupyter's and Docker's sockets). An error from the server ends the command as the same error
would offline: one line, exit code 1."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx

from aifab.cli.common import TOKEN_FILE, running_server, shown_path
from aifab.config import Settings
from aifab.errors import (
    AifabError,
    Conflict,
    Forbidden,
    InvalidRequest,
    NotFound,
    Unauthorized,
    UpstreamError,
)
from aifab.evals.protocol import Measured, Progress
from aifab.evals.suite import AnswersCheck, Check, RetrievalCheck, TaskCheck

_BY_STATUS: dict[int, type[AifabError]] = {400: InvalidRequest, 401: Unauthorized, 403: Forbidden, 404: NotFound,
                                           409: Conflict}
POLL_S = 0.5  # how often the CLI looks at a server's ingest job
TIMEOUT = httpx.Timeout(30.0, read=600.0)  # an eval or an ingest answers when done


class Server:
    """The admin API of the server that holds a data directory."""

    def __init__(self, url: str, token: str, *, pid: int | None = None, data_dir: str = "",
                 transport: httpx.BaseTransport | None = None) -> None:
        self.url, self.pid, self.data_dir = url, pid, data_dir
        self.http = httpx.Client(base_url=url, headers={"authorization": f"Bearer {token}"}, timeout=TIMEOUT,
                                 transport=transport)

    def call(self, method: str, path: str, **kwargs: Any) -> Any:
        """The JSON answer of one request; an error answer is raised as the aifab error it stands for."""
        try:
            r = self.http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise self._silent(exc) from None
        if r.status_code >= 400:
            raise _error(r.status_code, r.content)
        return r.json()

    def ingest(self, body: dict[str, Any], on_progress: Callable[[dict[str, Any]], None] | None = None,
               sleep: Callable[[float], None] = time.sleep) -> dict[str, Any]:
        """Ingest the server machine's files (``POST /v1/admin/ingest``) and follow the job to its end; its
        report, as the ingest writes it. A job that never started raises the error that stopped it."""
        job = self.call("POST", "/v1/admin/ingest", json=body)
        while job["status"] in ("queued", "running"):
            if on_progress is not None:
                on_progress(job)
            sleep(POLL_S)
            job = self.call("GET", f"/v1/ingest/jobs/{job['id']}")
        summary = job["summary"] or {}
        if "collection" not in summary:
            raise AifabError(summary.get("error") or f"the ingest into '{body['collection']}' failed")
        return summary

    def events(self, path: str, body: dict[str, Any]) -> Iterator[dict[str, Any]]:
        """The ``data:`` events of a streamed answer, parsed."""
        try:
            with self.http.stream("POST", path, json=body) as r:
                if r.status_code >= 400:
                    raise _error(r.status_code, r.read())
                for line in r.iter_lines():
                    if line.startswith("data: ") and line != "data: [DONE]":
                        yield json.loads(line[6:])
        except httpx.HTTPError as exc:
            raise self._silent(exc) from None

    def _silent(self, exc: httpx.HTTPError) -> AifabError:
        """A server that holds the data directory but does not answer (still loading its models, or hung)."""
        if isinstance(exc, httpx.ConnectError):
            return Conflict(f"the data directory {self.data_dir} is in use by `aifab up` at {self.url} (pid {self.pid}), "
                            f"which does not answer yet (still loading its models?): wait for its banner, or stop it "
                            f"(Ctrl-C where it runs, or kill {self.pid})")
        return UpstreamError(f"the server at {self.url} did not answer: {exc}")

    def close(self) -> None:
        self.http.close()


class RemoteHarnesses:
    """An eval suite's checks measured by the server that holds the data directory (``aifab.evals`` seam)."""

    def __init__(self, server: Server) -> None:
        self.server = server

    def measure(self, kind: str, check: Check) -> Measured:
        body = {"kind": kind, "check": check.model_dump(mode="json"), "root": str(check.file(Path(".")).resolve())}
        data = self.server.call("POST", "/v1/admin/evals/measure", json=body)
        return Measured(data["metrics"], data["inputs"], data["rows"])

    def retrieval(self, check: RetrievalCheck, progress: Progress) -> Measured:
        return self.measure("retrieval", check)

    def answers(self, check: AnswersCheck, progress: Progress) -> Measured:
        return self.measure("answers", check)

    def task(self, check: TaskCheck, progress: Progress) -> Measured:
        return self.measure("task", check)


def server_for(settings: Settings) -> Server | None:
    """The running server that holds ``settings``' data directory, or None when none does (the command then
    opens the state itself)."""
    if settings.database_url is None and not settings.data_dir.exists():
        return None
    found = running_server(settings.data_dir)
    if found is None:
        return None
    try:
        token = (settings.data_dir / TOKEN_FILE).read_text().strip()
    except OSError as exc:
        raise Conflict(
            f"the data directory {shown_path(settings.data_dir)} is in use by `aifab up` at {found['url']} (pid "
            f"{found['pid']}), and its token file cannot be read ({exc.strerror or exc}): run the command as the "
            "user who started the server, or stop that server first"
        ) from None
    return Server(str(found["url"]), token, pid=found["pid"], data_dir=shown_path(settings.data_dir))


def server_error(event: dict[str, Any]) -> AifabError:
    """The error a stream ended with (OpenAI's mid-stream error event), as the aifab error it stands for."""
    error = event.get("error") or {}
    status = {"invalid_request_error": 400, "not_found_error": 404}.get(error.get("type", ""), 500)
    return _BY_STATUS.get(status, UpstreamError)(str(error.get("message") or "the server failed"))


def _error(status: int, body: bytes) -> AifabError:
    try:
        message = json.loads(body)["error"]["message"]
    except (ValueError, KeyError, TypeError):
        message = body[:300].decode(errors="replace") or f"HTTP {status}"
    return _BY_STATUS.get(status, UpstreamError)(message)
