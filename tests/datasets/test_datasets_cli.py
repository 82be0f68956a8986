"""``aifab datasets`` and ``aifab models lineage`` as an operator runs them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from typer.testing import CliRunner

from aifab.cli.main import app
from aifab.errors import AifabError
from aifab.registry import Registry
from aifab.registry.package import ModelPackage
from aifab.testing.interactions import TOPICS

SRC = str(Path(sys.modules["aifab"].__file__).parents[1])
runner = CliRunner()


def cli(*args: str, data_dir: Path):
    result = runner.invoke(app, [*args, "--data-dir", str(data_dir)])
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result


def test_build_list_show(data_dir, db, log):
    for topic in TOPICS[:12]:
        log.accepted(topic)
    log.accepted(TOPICS[12], consent=False)
    r = cli("datasets", "build", "--from-logs", "--name", "support", "--since", "7d", data_dir=data_dir)
    assert r.exit_code == 0 and r.stdout.startswith("built support@v1 (sft): ")
    assert "dropped: 1 no consent" in r.stdout
    r = cli("datasets", "build", "--from-logs", "--name", "support", data_dir=data_dir)
    assert r.stdout.startswith("unchanged: support@v1 has the same content")
    (listed,) = json.loads(cli("datasets", "list", "--json", data_dir=data_dir).stdout)
    assert listed["ref"] == "support@v1" and listed["counts"]["train"] + listed["counts"]["eval"] == 12
    assert "support@v1" in cli("datasets", "list", data_dir=data_dir).stdout
    shown = json.loads(cli("datasets", "show", "support@v1", "--head", "2", "--json", data_dir=data_dir).stdout)
    assert shown["sha256"] == listed["sha256"] and len(shown["head"]) == 2
    text = cli("datasets", "show", "support", data_dir=data_dir).stdout
    assert listed["sha256"] in text and "logs (since " in text and "12 interactions" in text
    assert text.count('{"messages"') == 3


def test_import_reports_malformed_lines_on_stderr(data_dir, db, tmp_path):
    path = tmp_path / "f.jsonl"
    good = [json.dumps({"messages": [{"role": "user", "content": f"About {t}?"},
                                     {"role": "assistant", "content": f"{t} in brief."}]}) for t in TOPICS[:10]]
    path.write_text("\n".join([good[0], "{oops", *good[1:], '{"messages": []}']) + "\n")
    r = cli("datasets", "import", str(path), "--name", "f", "--json", data_dir=data_dir)
    assert r.exit_code == 0
    assert r.stderr.splitlines() == ["line 2: not valid JSON (Expecting property name enclosed in double quotes "
                                     "at column 2)", "line 12: 'messages' must be a non-empty list",
                                     "skipped 2 malformed line(s)"]
    out = json.loads(r.stdout)
    assert out["status"] == "created" and out["problems"] == r.stderr.splitlines()[:2]


def test_models_lineage_both_ways(data_dir, db, log):
    ids = [log.accepted(t) for t in TOPICS[:10]]
    build = json.loads(cli("datasets", "build", "--from-logs", "--name", "s", "--json", data_dir=data_dir).stdout)
    ds = build["dataset"]
    Registry(db, data_dir / "models").add(ModelPackage(
        name="s-ft", kind="chat", format="safetensors", path="/x",
        lineage={"base": "smollm2-135m-instruct", "method": "lora",
                 "dataset": {"name": "s", "version": ds["version"], "sha256": ds["sha256"]}}))
    text = cli("models", "lineage", "s-ft", data_dir=data_dir).stdout
    assert "base        smollm2-135m-instruct" in text and "dataset     s@v1 (sft" in text
    assert "interactions (10):" in text and all(i in text for i in ids)
    answered = log.request("Explain tides.", "The moon.", route="s-ft")
    data = json.loads(cli("models", "lineage", "--response", answered, "--json", data_dir=data_dir).stdout)
    assert data["model"]["dataset"]["ref"] == "s@v1" and data["response"]["route"] == "s-ft"
    text = cli("models", "lineage", "--response", ids[0], data_dir=data_dir).stdout
    assert "in datasets  s@v1" in text and "missing: model m1 that answered it is not in the registry" in text


def test_models_lineage_shows_the_gate_verdict(data_dir, db):
    registry = Registry(db, data_dir / "models")
    verdicts = {"kept": {"passed": True, "reason": "eval loss 1.20 < 1.50 of the base"},
                "dropped": {"passed": False, "reason": "eval loss 1.60 >= 1.50 of the base"}, "ungated": None}
    for name, gate in verdicts.items():
        registry.add(ModelPackage(name=name, kind="chat", format="safetensors", path="/x",
                                  lineage={"base": "smollm2-135m-instruct", "method": "lora", "gate": gate}))
    lines = {name: cli("models", "lineage", name, data_dir=data_dir).stdout.splitlines() for name in verdicts}
    assert "  gate        passed: eval loss 1.20 < 1.50 of the base" in lines["kept"]
    assert "  gate        NOT passed (promote needs --force): eval loss 1.60 >= 1.50 of the base" in lines["dropped"]
    assert "  gate        not run (--no-gate)" in lines["ungated"]


def test_bad_usage_is_refused(data_dir, db):
    for args, expected in ((["datasets", "build", "--name", "x"], "--from-logs"),
                           (["models", "lineage"], "give a model NAME or --response"),
                           (["datasets", "show", "nope"], "dataset 'nope' is not in this data directory")):
        result = runner.invoke(app, [*args, "--data-dir", str(data_dir)])
        assert isinstance(result.exception, AifabError) and expected in result.exception.message


def test_a_refusal_is_one_line_and_states_the_minimum(data_dir, db):
    r = subprocess.run([sys.executable, "-m", "aifab.cli.main", "datasets", "build", "--from-logs", "--name", "tiny",
                        "--data-dir", str(data_dir)], capture_output=True, text=True, timeout=120,
                       env={**os.environ, "PYTHONPATH": SRC})
    assert r.returncode == 1 and r.stderr.count("\n") == 1 and "Traceback" not in r.stderr
    assert "0 example(s) after filtering and deduplication, at least 10 needed (--min-examples)" in r.stderr
