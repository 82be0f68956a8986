"""The fine-tuning loop end to end, as users drive it: scripted users ask through the API and rate the
answers (with corrections), a dataset is built from the logs, a fine-tune runs and passes its gate, a
canary gets a share of the traffic, promotion completes, and lineage leads from the new model back to the
feedback that made it. Then the same through the OpenAI SDK's fine-tuning API. A tiny random Llama keeps
it to about a minute on two cores."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import httpx
import openai
import pytest

from aifab.testing.models import make_tiny_llama
from aifab.testing.server import RemoteAifabServer

pytestmark = [pytest.mark.integration, pytest.mark.slow]
WORDS = ["apple", "river", "stone", "cloud", "green", "seven", "paper", "light", "music", "table", "north", "sugar"]
ANSWER = "blue"


def aifab(data: Path, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    r = subprocess.run([sys.executable, "-m", "aifab.cli.main", *args, "--data-dir", str(data)],
                       capture_output=True, text=True, timeout=timeout, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert r.returncode == 0, f"aifab {' '.join(args)}: {r.stderr[-2000:]}"
    return r


def questions(n: int) -> list[str]:
    return [f"{WORDS[i % 12]} {WORDS[(i * 5) % 12]} {WORDS[(i * 7 + 3) % 12]} number {i}?" for i in range(n)]


def routes(data: Path, last: int) -> Counter[str]:
    """Which model version served the last ``last`` requests for 'tiny' (the audit log, flushed each 0.5 s)."""
    time.sleep(1.2)
    db = sqlite3.connect(data / "aifab.db")
    rows = db.execute("SELECT route FROM audit_log WHERE model = 'tiny' ORDER BY rowid DESC LIMIT ?", (last,))
    return Counter(route for (route,) in rows)


def ask(client: openai.OpenAI, n: int) -> None:
    for q in questions(n):
        client.chat.completions.create(model="tiny", max_tokens=4, temperature=0,
                                       messages=[{"role": "system", "content": "Answer with one word."},
                                                 {"role": "user", "content": q}])


def test_feedback_to_dataset_to_finetune_to_canary_to_promotion_with_lineage(tmp_path):
    data = tmp_path / "data"
    aifab(data, "models", "import", str(make_tiny_llama(tmp_path / "tiny-src")), "--name", "tiny")
    cfg = tmp_path / "aifab.toml"
    cfg.write_text('[models]\nchat = "tiny"\nembedding = ""\n[engines]\nthreads = 1\nmax_batch = 4\n')
    with RemoteAifabServer(data, args=["--config", str(cfg)]) as server:
        users = json.loads(aifab(data, "keys", "create", "--name", "users", "--log-content", "--allow-training",
                                 "--json").stdout)["key"]
        client = openai.OpenAI(base_url=server.url + "/v1", api_key=users, max_retries=0)
        responses = []
        for q in questions(40):  # scripted users: ask, then correct the (random) model
            r = client.chat.completions.create(model="tiny", max_tokens=4, temperature=0, messages=[
                {"role": "system", "content": "Answer with one word."}, {"role": "user", "content": q}])
            fb = httpx.post(server.url + "/v1/feedback", headers={"Authorization": f"Bearer {users}"},
                            json={"response_id": r.id, "rating": "down", "correction": ANSWER})
            assert fb.status_code == 200, fb.text
            responses.append(r.id)

        built = json.loads(aifab(data, "datasets", "build", "--from-logs", "--name", "loop", "--json").stdout)
        assert built["status"] == "created" and built["dataset"]["counts"]["train"] >= 30, built

        result = json.loads(aifab(data, "finetune", "--base", "tiny", "--dataset", "loop", "--name", "tiny-ft",
                                  "--max-steps", "30", "--lr", "3e-3", "--json").stdout)
        assert result["gate"]["passed"], result["gate"]

        aifab(data, "models", "promote", "tiny-ft", "--canary", "50", "--as", "tiny")
        time.sleep(3)  # the server polls rollouts each second and loads the adapter first
        ask(client, 40)
        split = routes(data, 40)
        assert split["tiny-ft"] >= 8 and split["tiny"] >= 8, split

        aifab(data, "models", "promote", "tiny-ft", "--full", "--as", "tiny")
        time.sleep(2.5)
        ask(client, 10)
        assert routes(data, 10) == {"tiny-ft": 10}

        lineage = json.loads(aifab(data, "models", "lineage", "tiny-ft", "--json").stdout)
        text = json.dumps(lineage)
        assert lineage["lineage"]["dataset"]["name"] == "loop" and lineage["lineage"]["gate"]["passed"]
        assert sum(rid in text for rid in responses) >= 30  # back to the rated interactions themselves
        assert "Traceback" not in server.log()


def test_the_openai_sdk_drives_a_fine_tune(tmp_path):
    data = tmp_path / "data"
    aifab(data, "models", "import", str(make_tiny_llama(tmp_path / "tiny-src")), "--name", "tiny")
    cfg = tmp_path / "aifab.toml"
    cfg.write_text('[models]\nchat = "tiny"\nembedding = ""\n[engines]\nthreads = 1\n')
    train = tmp_path / "train.jsonl"
    train.write_text("".join(json.dumps({"messages": [
        {"role": "user", "content": q}, {"role": "assistant", "content": ANSWER}]}) + "\n" for q in questions(30))
        + "this line is not JSON\n")
    with RemoteAifabServer(data, args=["--config", str(cfg)]) as server:
        client = openai.OpenAI(base_url=server.url + "/v1", api_key="local", max_retries=0)
        with pytest.raises(openai.BadRequestError, match="line 31"):  # malformed lines refuse the upload, by number
            client.files.create(file=train.open("rb"), purpose="fine-tune")
        train.write_text("\n".join(train.read_text().splitlines()[:-1]) + "\n")
        good = client.files.create(file=train.open("rb"), purpose="fine-tune")
        assert good.id in [f.id for f in client.files.list().data]
        job = client.fine_tuning.jobs.create(model="tiny", training_file=good.id, suffix="sdk",
                                             hyperparameters={"n_epochs": 1, "max_steps": 20, "lr": 3e-3})
        deadline = time.monotonic() + 300
        while job.status not in ("succeeded", "failed", "cancelled") and time.monotonic() < deadline:
            time.sleep(2)
            job = client.fine_tuning.jobs.retrieve(job.id)
        assert job.status == "succeeded", (job.error, [e.message for e in client.fine_tuning.jobs.list_events(job.id)])
        assert job.fine_tuned_model == "tiny-ft-sdk"
        listed = client.fine_tuning.jobs.list_events(job.id, limit=100).data
        assert any("new model created" in e.message for e in listed)
        # every training step's loss, as OpenAI's metrics events: what a loss chart is drawn from
        metrics = sorted((e.data["step"], e.data["train_loss"]) for e in listed if e.type == "metrics")
        assert [s for s, _ in metrics] == list(range(1, 21)) and all(loss > 0 for _, loss in metrics)
        assert job.id in [j.id for j in client.fine_tuning.jobs.list().data]
        out = client.chat.completions.create(model=job.fine_tuned_model, max_tokens=3, temperature=0,
                                             messages=[{"role": "user", "content": questions(1)[0]}])
        assert out.model == "tiny-ft-sdk" and out.choices[0].message.content is not None
        with pytest.raises(openai.BadRequestError, match="already succeeded"):
            client.fine_tuning.jobs.cancel(job.id)
