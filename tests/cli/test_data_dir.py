"""The data directory as the CLI uses it: a command that only reads never creates it, an error that
depends on it says which one was read, and a store held by a running server names that server."""

from __future__ import annotations

import os

import pytest

from aifab.cli.common import announce_server
from aifab.stores.embedded import EmbeddedStore
from aifab.testing.cli import run_aifab as aifab

READ_ONLY = [["models", "list"], ["collections", "list"], ["keys", "list"], ["datasets", "list"], ["usage"]]


@pytest.mark.parametrize("args", READ_ONLY, ids=" ".join)
def test_a_read_only_command_does_not_create_the_data_directory(tmp_path, args):
    r = aifab(*args, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("args, error", [
    (["collections", "show", "pydocs"], "collection 'pydocs' does not exist"),
    (["ask", "What is a list?", "-C", "pydocs"], "collection 'pydocs' does not exist"),
    (["models", "lineage", "tiny"], "model 'tiny' is not in the registry"),
    (["datasets", "show", "support"], "dataset 'support' is not in this data directory"),
])
def test_not_found_names_the_data_directory_it_looked_in(tmp_path, args, error):
    r = aifab(*args, cwd=tmp_path)
    assert r.returncode == 1 and r.stderr.count("\n") == 1, r.stderr
    assert r.stderr.startswith(f"aifab: error: {error}")
    assert r.stderr.endswith("; looked in ./.aifab, which does not exist\n")
    assert list(tmp_path.iterdir()) == []


def test_not_found_names_a_data_directory_given_by_flag(tmp_path):
    data = tmp_path / "elsewhere"
    r = aifab("keys", "revoke", "ci", "--data-dir", str(data))  # a command that writes: it creates the directory
    assert r.returncode == 1 and r.stderr == f"aifab: error: no API key named 'ci' (aifab keys list shows them); looked in {data}\n"


def test_a_store_held_by_a_running_server_names_its_address(tmp_path):
    data = tmp_path / "d"
    data.mkdir()
    store = EmbeddedStore(data / "vectors")  # held as `aifab up` holds it
    try:
        r = aifab("collections", "list", "--data-dir", str(data))
        assert r.returncode == 1 and "stop the other aifab process that uses this data directory" in r.stderr
        with announce_server(data, "http://127.0.0.1:8123"):
            r = aifab("collections", "list", "--data-dir", str(data))
        assert r.returncode == 1 and r.stderr.count("\n") == 1, r.stderr
        # nothing listens at that address: a server still loading its models (the CLI goes through a server
        # that answers: tests/e2e/test_cli_beside_server.py)
        assert r.stderr == (f"aifab: error: the data directory {data} is in use by `aifab up` at http://127.0.0.1:8123 "
                            f"(pid {os.getpid()}), which does not answer yet (still loading its models?): wait for its "
                            f"banner, or stop it (Ctrl-C where it runs, or kill {os.getpid()})\n")
        assert not (data / "server.json").exists()  # gone with the server
        assert not (data / "server.token").exists()
    finally:
        store.close()
