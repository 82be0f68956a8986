"""A safetensors model package, imported with the CLI, is served by `aifab up` through the torch engine."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from openai import OpenAI

from aifab.testing.models import make_tiny_llama
from aifab.testing.server import RemoteAifabServer

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_imported_torch_model_is_served(tmp_path):
    data = tmp_path / "data"
    model_dir = make_tiny_llama(tmp_path / "tiny")
    imported = subprocess.run(
        [sys.executable, "-m", "aifab.cli.main", "models", "import", str(model_dir), "--name", "tiny",
         "--data-dir", str(data), "--json"],
        capture_output=True, text=True, timeout=120,
    )
    assert imported.returncode == 0, imported.stderr
    assert json.loads(imported.stdout)["format"] == "safetensors"

    with RemoteAifabServer(data, env={"AIFAB_MODELS__EXTRA": '["tiny"]'}) as srv:
        assert (data / "server.json").exists()  # where CLI commands find the running server
        client = OpenAI(base_url=f"{srv.url}/v1", api_key="unused", max_retries=0)
        assert "tiny" in {m.id for m in client.models.list()}
        r = client.completions.create(model="tiny", prompt="Hello", max_tokens=6, temperature=0,
                                      extra_body={"ignore_eos": True})
        assert r.usage.completion_tokens == 6
        chat = client.chat.completions.create(
            model="tiny", messages=[{"role": "user", "content": "JSON please"}], max_tokens=60, seed=1,
            response_format={"type": "json_schema", "json_schema": {"name": "x", "schema": {
                "type": "object", "properties": {"ok": {"type": "boolean"}}, "required": ["ok"]}}},
        )
        assert isinstance(json.loads(chat.choices[0].message.content)["ok"], bool)
    # SIGTERM shuts down gracefully (uvicorn raises the signal again once done: aifab exits 128 + 15 after its
    # clean-up: the address it announced in the data directory is gone), no traceback.
    assert srv.proc.returncode == 143
    assert not (data / "server.json").exists()
    assert "Traceback" not in srv.log()
