"""``aifab up`` before and at start-up: a port in use is refused before any model loads, and the banner
comes only once the socket accepts connections."""

from __future__ import annotations

import socket

import pytest
import uvicorn

from aifab.cli.up import bind, serve
from aifab.testing.cli import run_aifab as aifab


def test_a_port_in_use_is_one_line_before_any_model_loads(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        r = aifab("up", "--port", str(port), "--data-dir", str(tmp_path / "d"))
    assert r.returncode == 3, r.stderr
    assert r.stderr.splitlines()[-1] == (f"aifab: error: cannot listen on 127.0.0.1:{port}: Address already in use "
                                         "(is another server running there? pick a free port with --port)")
    assert "loading" not in r.stderr and r.stdout == ""  # no model was loaded, no banner


async def _app(scope, receive, send):  # the smallest ASGI app: lifespan and nothing else
    if scope["type"] == "lifespan":
        while (await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})


def test_the_socket_accepts_only_once_the_server_runs_and_then_the_banner_comes():
    sock = bind("127.0.0.1", 0)
    port = sock.getsockname()[1]
    with pytest.raises(ConnectionRefusedError):  # bound while the models load, not yet listening
        socket.create_connection(("127.0.0.1", port), timeout=5).close()
    accepted = []

    def on_started(server: uvicorn.Server) -> None:
        with socket.create_connection(("127.0.0.1", port), timeout=5):  # refused would raise here
            accepted.append(True)
        server.should_exit = True

    config = uvicorn.Config(_app, log_level="warning", loop="asyncio", http="h11")
    with sock:
        assert serve(config, sock, on_started) is True
    assert accepted == [True]
