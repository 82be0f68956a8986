"""The CLI beside a running ``aifab up``: the banner is there once it serves, and a command that needs the
data directory's store, or a second server on it, names the running server and says to stop it."""

from __future__ import annotations

import httpx
import pytest

from aifab.testing.cli import run_aifab
from aifab.testing.server import RemoteAifabServer

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_a_second_process_on_the_data_directory_names_the_running_server(tmp_path):
    data = tmp_path / "data"
    with RemoteAifabServer(data) as server:
        assert f"aifab listening on {server.url}/v1" in server.log()
        assert httpx.get(f"{server.url}/v1/models").status_code == 200
        pid = server.proc.pid
        held = (f"aifab: error: the data directory {data} is in use by `aifab up` at {server.url} (pid {pid}): "
                f"stop that server first (Ctrl-C where it runs, or kill {pid})")
        r = run_aifab("collections", "list", "--data-dir", str(data))
        assert (r.returncode, r.stderr) == (1, held + "\n")
        r = run_aifab("up", "--port", "0", "--data-dir", str(data))  # refused before it loads a model
        assert r.returncode == 1 and r.stderr.splitlines()[-1] == held and "loading" not in r.stderr
    assert not (data / "server.json").exists()
