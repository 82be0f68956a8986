"""The gateway as users meet it: ``aifab up`` with routes in aifab.toml, keys made with ``aifab keys``,
clients on the official ``openai`` SDK. Security: out-of-scope keys get 403 and see no other tenant's
chunks, a revoked key is refused at once, and neither key secrets nor raw PII reach the logs."""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import httpx
import openai
import pytest

from aifab.testing import FakeUpstream
from aifab.testing.server import RemoteAifabServer

pytestmark = [pytest.mark.integration]
EMAIL, CARD = "jane.doe@example.org", "4111 1111 1111 1111"


def aifab(data: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "aifab.cli.main", *args, "--data-dir", str(data)],
                          capture_output=True, text=True, timeout=300, env=os.environ.copy())


def new_key(data: Path, name: str, *flags: str) -> str:
    r = aifab(data, "keys", "create", "--name", name, *flags, "--json")
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)["key"]


def config(tmp: Path, upstream: FakeUpstream, **extra: str) -> Path:
    path = tmp / "aifab.toml"
    lines = ['[models]', 'chat = ""', 'embedding = ""', '[gateway]', 'health_interval = 0.5',
             '[gateway.routes.chat]', f'upstreams = [{{ url = "{upstream.url}", name = "replica" }}]',
             'aliases = ["gpt-4o-mini"]', '[gateway.routes.other]', f'upstreams = [{{ url = "{upstream.url}" }}]']
    lines += [f"{k} = {v}" for k, v in extra.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture
def upstream():
    with FakeUpstream(name="replica", reply=f"Write to {EMAIL} or pay with {CARD}.") as up:
        yield up


def test_keys_scopes_revocation_and_clean_logs(tmp_path, upstream):
    data = tmp_path / "data"
    cfg = config(tmp_path, upstream)
    with RemoteAifabServer(data, args=["--config", str(cfg)]) as server:
        url = server.url + "/v1"
        # no key exists yet: loopback is open for local use
        open_client = openai.OpenAI(base_url=url, api_key="anything", max_retries=0)
        assert open_client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])

        team = new_key(data, "team-a", "--models", "chat", "--log-content")
        admin = new_key(data, "root", "--admin")
        with pytest.raises(openai.AuthenticationError):  # a key now exists: every request needs one
            open_client.models.list()
        client = openai.OpenAI(base_url=url, api_key=team, max_retries=0)
        out = client.chat.completions.create(
            model="chat", messages=[{"role": "user", "content": f"My card is {CARD}, mail me at {EMAIL}"}])
        assert out.choices[0].message.content and out.model == "chat"
        assert [m.id for m in client.models.list().data] == ["chat"]  # only what the key may use
        with pytest.raises(openai.PermissionDeniedError, match="may not use the model 'other'"):
            client.chat.completions.create(model="other", messages=[{"role": "user", "content": "hi"}])
        usage = httpx.get(url + "/usage", headers={"Authorization": f"Bearer {team}"}).json()
        assert usage["keys"][0]["key"] == "team-a" and usage["keys"][0]["requests"] >= 1

        assert aifab(data, "keys", "revoke", "team-a").returncode == 0
        with pytest.raises(openai.AuthenticationError):  # at once: the very next request
            client.chat.completions.create(model="chat", messages=[{"role": "user", "content": "hi"}])
        metrics = httpx.get(server.url + "/metrics", headers={"Authorization": f"Bearer {admin}"}).text
        assert 'aifab_gateway_requests_total{key="team-a"' in metrics or 'key="team-a"' in metrics
        log = server.log()
    db = sqlite3.connect(data / "aifab.db")
    rows = db.execute("SELECT key_name, request, response, verdicts, prompt_tokens FROM audit_log").fetchall()
    logged = [r for r in rows if r[0] == "team-a"]
    assert logged and logged[0][1] is not None  # the key's policy keeps (redacted) content
    everything = log + json.dumps(rows) + (data / "aifab.db").read_bytes().decode("latin-1")
    for secret in (team, admin, EMAIL, CARD, CARD.replace(" ", "")):
        assert secret not in everything, f"{secret[:8]}… leaked"


def test_a_burst_of_1000_requests_holds_the_rate_limit_within_5_percent(tmp_path, upstream):
    data = tmp_path / "data"
    with RemoteAifabServer(data, args=["--config", str(config(tmp_path, upstream))]) as server:
        key = new_key(data, "limited", "--rpm", "100")

        async def burst() -> list[httpx.Response]:
            limits = httpx.Limits(max_connections=50)
            async with httpx.AsyncClient(base_url=server.url, limits=limits, timeout=60,
                                         headers={"Authorization": f"Bearer {key}"}) as http:
                body = {"model": "chat", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}
                return await asyncio.gather(*(http.post("/v1/chat/completions", json=body) for _ in range(1000)))

        start = time.monotonic()
        responses = asyncio.run(burst())
        elapsed = time.monotonic() - start
    ok = sum(r.status_code == 200 for r in responses)
    refused = [r for r in responses if r.status_code == 429]
    assert ok + len(refused) == 1000
    allowed = 100 + 100 / 60 * elapsed  # the full bucket, plus what refills (100/min) while the burst lasts
    assert 0.95 * 100 <= ok <= 1.05 * allowed, (ok, allowed)
    assert int(refused[0].headers["Retry-After"]) >= 1
    assert refused[0].json()["error"]["type"] == "rate_limit_error"


def test_a_non_loopback_address_without_keys_is_refused(tmp_path, upstream):
    r = subprocess.run([sys.executable, "-m", "aifab.cli.main", "up", "--host", "0.0.0.0", "--port", "0",
                        "--config", str(config(tmp_path, upstream)), "--data-dir", str(tmp_path / "d")],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 1
    assert "refusing to serve 0.0.0.0 without API keys" in r.stderr
