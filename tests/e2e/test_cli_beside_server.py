"""The CLI beside a running ``aifab up``: the banner is there once it serves; a command that touches the state
goes through the server's admin API (by the data directory's token file) and prints what it prints offline,
with the same exit codes; a second server on the same data directory is refused, naming the first."""

from __future__ import annotations

import json
import stat

import httpx
import pytest

from aifab.testing.cli import run_aifab
from aifab.testing.server import RemoteAifabServer

pytestmark = [pytest.mark.integration, pytest.mark.slow]

QUESTION = "Which cities does the Danube flow through?"


def _aifab(data, *args: str, timeout: float = 300):
    return run_aifab(*args, "--data-dir", str(data), timeout=timeout)


def _json(r):
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def _sources(answer: dict) -> list[tuple[int, str]]:
    return [(c["index"], c["source"]) for c in answer["citations"]]


READS = [("collections", "list", "--json"), ("collections", "show", "handbook", "--json"),
         ("collections", "versions", "handbook", "--json"), ("keys", "list", "--all", "--json"),
         ("models", "list", "--json"), ("models", "show", "smollm2-135m-instruct", "--json"),
         ("models", "rollouts", "--json"), ("datasets", "list", "--json")]
ERRORS = [("collections", "show", "nope"), ("ask", "x", "--collection", "nope"), ("keys", "revoke", "nobody"),
          ("models", "show", "nope"), ("datasets", "show", "nope")]


def test_the_cli_goes_through_a_running_server_and_prints_what_it_prints_offline(tmp_path):
    data, docs = tmp_path / "data", tmp_path / "docs"
    docs.mkdir()
    (docs / "rivers.md").write_text("# Rivers\n\nThe Danube flows through Vienna and Budapest. It is the second "
                                    "longest river in Europe.\n\nThe Rhine flows through Basel and Cologne.\n")
    with RemoteAifabServer(data) as server:
        assert f"aifab listening on {server.url}/v1" in server.log()
        token = data / "server.token"
        assert stat.S_IMODE(token.stat().st_mode) == 0o600  # the owner's only: reading it makes you admin

        report = _json(_aifab(data, "ingest", str(docs), "--collection", "handbook", "--json"))
        assert (report["documents_added"], report["errors"]) == (1, [])
        online_answer = _json(_aifab(data, "ask", QUESTION, "--collection", "handbook", "--json"))
        assert online_answer["answer"].strip() and _sources(online_answer)

        _json(_aifab(data, "keys", "create", "--name", "ops", "--admin", "--json"))
        made = _json(_aifab(data, "keys", "create", "--name", "ci", "--json"))
        models = httpx.get(f"{server.url}/v1/models", headers={"authorization": f"Bearer {made['key']}"})
        assert models.status_code == 200  # the server knows the key at once
        assert httpx.get(f"{server.url}/v1/admin/keys",  # a key without --admin: not the admin API
                         headers={"authorization": f"Bearer {made['key']}"}).status_code == 403
        assert httpx.get(f"{server.url}/v1/models").status_code == 401  # keys exist now: the CLI still works,
        r = _aifab(data, "keys", "revoke", "ci")                        # by the token file
        assert (r.returncode, r.stdout) == (0, f"revoked ci (id {made['id']})\n")
        assert httpx.get(f"{server.url}/v1/models",
                         headers={"authorization": f"Bearer {made['key']}"}).status_code == 401

        online = {args: _aifab(data, *args) for args in READS + ERRORS}
        held = f"is in use by `aifab up` at {server.url} (pid {server.proc.pid})"
        r = _aifab(data, "up", "--port", "0")  # a second server: refused before it loads a model
        assert r.returncode == 1 and held in r.stderr.splitlines()[-1] and "loading" not in r.stderr
    assert not (data / "server.json").exists() and not (data / "server.token").exists()

    offline_answer = _json(_aifab(data, "ask", QUESTION, "--collection", "handbook", "--json"))
    assert (offline_answer["query"], _sources(offline_answer)) == (online_answer["query"], _sources(online_answer))
    for args, through in online.items():
        here = _aifab(data, *args)
        assert (through.returncode, through.stdout, through.stderr) == (here.returncode, here.stdout, here.stderr), args
    assert all(online[args].returncode == 1 and online[args].stderr.count("\n") == 1 for args in ERRORS)
