"""A real server (uvicorn + httptools, as ``aifab up`` runs it) against raw sockets: a client that stalls
in its headers or its body is answered 408 and disconnected within the configured time, and connections
over the cap are answered 503 at once. Timeouts are set small; no test sleeps."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Callable, Iterator

import pytest
import uvicorn

from aifab.config import load_settings
from aifab.serve import ModelPool, create_app
from aifab.serve.middleware import ReadDeadline
from aifab.serve.server import server_options
from aifab.testing import FakeEngine

Connect = Callable[[], socket.socket]


@pytest.fixture
def serve(tmp_path) -> Iterator[Callable[..., Connect]]:
    """Start a server with the given ``serve`` settings; returns a function that opens a connection."""
    running: list[tuple[uvicorn.Server, threading.Thread]] = []
    engine = FakeEngine()

    def start(**serve_settings: float) -> Connect:
        s = load_settings(data_dir=tmp_path / "d", serve=serve_settings).serve
        app = ReadDeadline(create_app(ModelPool({"fake": engine})), seconds=s.body_timeout_s)
        sock = socket.create_server(("127.0.0.1", 0))  # listening before the server runs: no start-up race
        server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off", **server_options(s)))
        thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
        thread.start()
        running.append((server, thread))
        return lambda: socket.create_connection(sock.getsockname(), timeout=10)

    yield start
    for server, thread in running:
        server.should_exit = True
        thread.join(10)
    engine.close()


def answer(conn: socket.socket) -> tuple[bytes, dict]:
    """Everything until the server closes the connection (a stuck server fails on the 10 s socket timeout)."""
    data = b""
    while chunk := conn.recv(65536):
        data += chunk
    conn.close()
    head, _, body = data.partition(b"\r\n\r\n")
    return head.split(b"\r\n")[0], json.loads(body)


def test_stalled_headers_get_408_and_the_connection_closes(serve):
    connect = serve(header_timeout_s=0.2)
    conn = connect()
    conn.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: appl")  # ... and nothing more
    status, body = answer(conn)
    assert status == b"HTTP/1.1 408 Request Timeout" and body["error"]["code"] == "request_timeout"


def test_a_stalled_body_gets_408_in_the_envelope(serve):
    connect = serve(body_timeout_s=0.2)
    conn = connect()
    conn.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                 b"Content-Length: 100\r\n\r\n{\"model\": ")  # 10 of the 100 bytes announced
    status, body = answer(conn)
    assert status == b"HTTP/1.1 408 Request Timeout", status
    assert body["error"]["code"] == "request_timeout" and "stalled" in body["error"]["message"]


def test_connections_over_the_cap_get_503_and_requests_within_it_are_served(serve):
    connect = serve(max_connections=2, header_timeout_s=30)
    stalled = [connect(), connect()]
    for conn in stalled:
        conn.sendall(b"GET /healthz HTTP/1.1\r\n")
    status, body = answer(connect())
    assert status == b"HTTP/1.1 503 Service Unavailable" and body["error"]["code"] == "too_many_connections"
    for conn in stalled:  # the held ones finish their request and are served
        conn.sendall(b"Host: x\r\nConnection: close\r\n\r\n")
        assert answer(conn)[0] == b"HTTP/1.1 200 OK"
