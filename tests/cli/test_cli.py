"""The CLI as a user runs it: a real subprocess, its output and its exit code."""

from __future__ import annotations

import json
import subprocess
import sys

from aifab.registry.defaults import DEFAULTS, locate


def aifab(*args: str, cwd=None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "aifab.cli.main", *args], capture_output=True, text=True,
                          timeout=120, cwd=cwd)


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
