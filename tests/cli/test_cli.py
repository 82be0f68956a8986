"""The CLI as a user runs it: a real subprocess, its output and its exit code."""

from __future__ import annotations

import json
import re

import pytest

from aifab import __version__
from aifab.registry.defaults import DEFAULTS, locate
from aifab.testing.cli import run_aifab as aifab


def test_help_lists_commands():
    r = aifab("--help")
    assert r.returncode == 0
    for cmd in ("up", "models", "config"):
        assert cmd in r.stdout


def test_models_list_json_has_both_defaults(tmp_path):
    r = aifab("models", "list", "--json", "--data-dir", str(tmp_path / "d"))
    assert r.returncode == 0, r.stderr
    names = {m["name"] for m in json.loads(r.stdout)}
    assert names == {"smollm2-135m-instruct", "all-minilm-l6-v2"}


def test_models_import_show_remove(tmp_path):
    d = str(tmp_path / "d")
    r = aifab("models", "import", str(locate(DEFAULTS[0])), "--name", "copy", "--json", "--data-dir", d)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["name"] == "copy"
    shown = json.loads(aifab("models", "show", "copy", "--json", "--data-dir", d).stdout)
    assert shown["format"] == "gguf" and "<|im_start|>" in shown["chat_template"]
    assert aifab("models", "remove", "copy", "--data-dir", d).returncode == 0
    assert "copy" not in aifab("models", "list", "--data-dir", d).stdout


def test_errors_are_one_line_and_nonzero(tmp_path):
    d = str(tmp_path / "d")
    r = aifab("models", "show", "no-such-model", "--data-dir", d)
    assert r.returncode == 1
    assert r.stderr.strip().count("\n") == 0 and "no-such-model" in r.stderr
    assert "Traceback" not in r.stderr
    r = aifab("models", "import", str(tmp_path / "missing.gguf"), "--name", "x", "--data-dir", d)
    assert r.returncode == 1 and "no such file" in r.stderr and "Traceback" not in r.stderr


def test_config_show_reflects_file_env_and_flags(tmp_path):
    (tmp_path / "aifab.toml").write_text("[serve]\nport = 9100\n")
    r = aifab("config", "show", "--json", "--data-dir", "elsewhere", cwd=tmp_path)
    cfg = json.loads(r.stdout)
    assert cfg["serve"]["port"] == 9100 and cfg["data_dir"] == "elsewhere"
    r = aifab("config", "show", cwd=tmp_path)
    assert "port = 9100" in r.stdout


def test_bad_config_is_one_line(tmp_path):
    (tmp_path / "aifab.toml").write_text("[serve]\nport = 'eighty'\n")
    r = aifab("config", "show", cwd=tmp_path)
    assert r.returncode == 1 and "serve.port" in r.stderr and "Traceback" not in r.stderr


def test_convert_refuses_a_model_that_is_not_gguf(tmp_path):
    r = aifab("models", "convert", "all-minilm-l6-v2", "--name", "x", "--data-dir", str(tmp_path / "d"))
    assert r.returncode == 1 and "not GGUF" in r.stderr and "Traceback" not in r.stderr


def test_misspelt_config_key_names_it_and_the_closest_known_one(tmp_path):
    (tmp_path / "aifab.toml").write_text('[apps.pydocs]\ncolection = "python-docs"\n')
    r = aifab("config", "show", cwd=tmp_path)
    assert r.returncode == 1 and r.stdout == ""
    assert r.stderr == "aifab: error: unknown setting apps.pydocs.colection: did you mean 'collection'?\n"


@pytest.mark.parametrize("args, error, hint", [
    (["ingest", "x", "--colection", "c"], "No such option: --colection (Possible options: --collection)",
     "aifab ingest --help"),
    (["up", "--prot", "8105"], "No such option: --prot", "aifab up --help"),
    (["ingst", "x"], "No such command 'ingst'. Did you mean 'ingest', 'init'?", "aifab --help"),
    (["ask"], "Missing argument 'question'.", "aifab ask --help"),
    (["up", "--port", "abc"], "Invalid value for '--port'", "aifab up --help"),
    (["eval", "retrieval", "-C", "c", "--qa", "missing.jsonl"],
     "Invalid value for '--qa': file 'missing.jsonl' does not exist.", "aifab eval retrieval --help"),
    (["keys", "revoke"], "Missing argument 'name_or_id'.", "aifab keys revoke --help"),
])
def test_a_usage_error_is_one_line_and_a_pointer_to_help(args, error, hint):
    r = aifab(*args)
    assert r.returncode == 2, r.stderr
    assert r.stderr.splitlines() == [r.stderr.splitlines()[0], f"Try '{hint}' for help."], r.stderr
    assert r.stderr.startswith(f"aifab: error: {error}") and r.stdout == ""


def test_version_and_bare_aifab():
    r = aifab("--version")
    assert (r.returncode, r.stdout, r.stderr) == (0, f"aifab {__version__}\n", "")
    r = aifab()
    assert r.returncode == 0 and r.stderr == "" and "Start with `aifab up`" in r.stdout and "ingest" in r.stdout
    r = aifab("keys")  # a group without its command: its help
    assert r.returncode == 0 and r.stderr == "" and "revoke" in r.stdout


def test_ingest_of_a_missing_path_or_an_empty_folder_creates_nothing(tmp_path):
    data = tmp_path / "d"
    r = aifab("ingest", str(tmp_path / "nope"), "-C", "c", "--data-dir", str(data))
    assert r.returncode == 1 and r.stderr == f"aifab: error: no such file or folder: {tmp_path / 'nope'}\n"
    (tmp_path / "empty" / ".hidden").mkdir(parents=True)
    (tmp_path / "empty" / ".hidden" / "a.md").write_text("hidden files are skipped")
    r = aifab("ingest", str(tmp_path / "empty"), "-C", "c", "--data-dir", str(data))
    assert r.returncode == 0 and r.stdout == ""
    assert r.stderr == (f"aifab: warning: no files to ingest in {tmp_path / 'empty'} (hidden files are skipped); "
                        "nothing was created\n")
    assert not data.exists()


@pytest.mark.slow
def test_ask_lists_sources_with_how_they_were_found_and_places_in_the_file(tmp_path):
    docs = tmp_path / "docs"
    docs.mkdir()
    guide = ("# Staff handbook\n\nWork starts at nine. Lunch is a break of\nforty-five minutes.\n\n## Holidays\n\n"
             "Every employee gets twenty-five days of paid leave a year, booked in the leave planner at least "
             "two weeks ahead. Public holidays come on top of them.\n")
    (docs / "guide.md").write_text(guide)
    data = str(tmp_path / "d")
    r = aifab("ingest", str(docs), "--collection", "kb", "--data-dir", data, timeout=600)  # loads the embedder
    assert r.returncode == 0, r.stderr
    r = aifab("ask", "How many days of paid leave does an employee get?", "--collection", "kb", "--json",
              "--data-dir", data, timeout=600)
    assert r.returncode == 0, r.stderr
    cites = json.loads(r.stdout)["citations"]
    assert cites and all(c["found"] in ("marker", "attributed", None) and c["cited"] == bool(c["found"])
                         for c in cites)
    holidays = next(c for c in cites if "paid leave" in c["text"])
    assert holidays["offsets"] == "file"  # the passage fits the context budget whole: no "spans" to cut it
    words = re.compile(r"\w+").findall
    assert words(guide[holidays["start"] : holidays["end"]]) == words(holidays["text"])
    r = aifab("ask", "How many days of paid leave does an employee get?", "--collection", "kb", "--data-dir", data,
              timeout=600)
    assert r.returncode == 0, r.stderr
    sources = [line for line in r.stdout.split("Sources:\n")[1].splitlines() if line.strip()]
    assert sources and all(line[0] in "*~ " and "guide.md" in line for line in sources)
