"""RAG as a user runs it: real embedding and chat models, the embedded store on disk, ``aifab ask`` as a
subprocess, and an app served by ``aifab up`` called through the ``openai`` SDK."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import openai
import pytest

from aifab.testing.server import RemoteAifabServer

pytestmark = [pytest.mark.slow, pytest.mark.integration]

DOCS = {
    "volcanoes.md": "# Volcanoes\n\n## Mount Etna\n\nMount Etna is an active stratovolcano on the east coast of "
                    "Sicily. It erupts frequently and is one of the most active volcanoes in the world.\n",
    "bread.md": "# Baking bread\n\nKnead the dough for ten minutes, let it rise for an hour, then bake it at "
                "220 degrees for thirty minutes until the crust is brown.\n",
    "tides.md": "# Tides\n\nTides are caused by the gravitational pull of the Moon and the Sun on the oceans. "
                "Most coasts see two high tides a day.\n",
}


def aifab(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "aifab.cli.main", *args], capture_output=True, text=True,
                          timeout=600, env=os.environ.copy())


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("rag")
    docs = root / "docs"
    docs.mkdir()
    for name, text in DOCS.items():
        (docs / name).write_text(text)
    r = aifab("ingest", str(docs), "-C", "kb", "--data-dir", str(root / "data"), "--json")
    assert r.returncode == 0, r.stderr
    (root / "aifab.toml").write_text('[apps.helpdesk]\ncollection = "kb"\ntemperature = 0\nmax_tokens = 48\n')
    return root


def test_ask_cites_the_right_document(data):
    r = aifab("ask", "How long should bread dough be kneaded?", "-C", "kb", "--data-dir", str(data / "data"), "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["answer"].strip() and not out["answer"].startswith("I don't know")
    top = out["citations"][0]
    assert top["source"].endswith("bread.md") and top["section"] == ["Baking bread"]
    assert "Knead the dough" in top["text"] and top["start"] < top["end"]


def test_ask_says_it_does_not_know(data):
    r = aifab("ask", "Who won the 1998 football world cup final?", "-C", "kb", "--data-dir", str(data / "data"))
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("I don't know") and "Sources:" not in r.stdout


def test_ask_unknown_collection_is_one_line(data):
    r = aifab("ask", "anything", "-C", "nope", "--data-dir", str(data / "data"))
    assert r.returncode == 1 and r.stderr.strip().count("\n") == 0 and "nope" in r.stderr


def test_an_app_answers_through_the_openai_sdk(data):
    with RemoteAifabServer(data / "data", args=["--config", str(data / "aifab.toml")]) as server:
        client = openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused")
        assert "helpdesk" in [m.id for m in client.models.list().data]
        reply = client.chat.completions.create(
            model="helpdesk", messages=[{"role": "user", "content": "What causes the tides?"}]
        )
        message = reply.choices[0].message
        assert message.content.strip()
        cites = message.model_extra["citations"]
        assert cites[0]["source"].endswith("tides.md") and "gravitational pull" in cites[0]["text"]
        stream = client.chat.completions.create(
            model="helpdesk", messages=[{"role": "user", "content": "Which volcano is on Sicily?"}], stream=True
        )
        chunks = list(stream)
        assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices).strip()
        assert chunks[-1].model_extra["citations"][0]["source"].endswith("volcanoes.md")
        with pytest.raises(openai.NotFoundError):
            client.chat.completions.create(model="no-such-app", messages=[{"role": "user", "content": "hi"}])
