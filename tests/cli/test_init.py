"""``aifab init``: the scaffold is written whole or not at all, and a new application passes its own gate by
the commands its README gives."""

from __future__ import annotations

import shlex
import tomllib

import pytest

from aifab.cli.scaffold import files
from aifab.testing.cli import run_aifab


def test_init_writes_the_scaffold_and_never_overwrites(tmp_path):
    r = run_aifab("init", "app", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[0] == f"created ./app ({len(files('app'))} files). Next:"
    for path, text in files("app").items():
        assert (tmp_path / "app" / path).read_text() == text
    assert tomllib.loads((tmp_path / "app" / "aifab.toml").read_text())["apps"]["helpdesk"]["collection"] == "handbook"
    r = run_aifab("init", "app", cwd=tmp_path)
    assert (r.returncode, r.stderr) == (1, "aifab: error: ./app is not empty: pick a new directory, or --force to "
                                           "add the files that are not there yet\n")
    r = run_aifab("init", "app", "--force", cwd=tmp_path)
    assert r.returncode == 1 and "has aifab.toml, docs/getting-started.md" in r.stderr and "nothing was written" in r.stderr
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("kept")
    assert run_aifab("init", "mine", "--force", cwd=tmp_path).returncode == 0
    assert (tmp_path / "mine" / "notes.txt").read_text() == "kept" and (tmp_path / "mine" / "aifab.toml").exists()


@pytest.mark.slow
def test_a_new_application_passes_its_own_gate_by_its_readme(tmp_path):
    assert run_aifab("init", "x", cwd=tmp_path).returncode == 0
    app = tmp_path / "x"
    readme = (app / "README.md").read_text()
    commands = [line.split("#")[0].split() for line in readme.splitlines()
                if line.startswith("aifab apply") or line.startswith("aifab eval run")]
    assert [c[:2] for c in commands] == [["aifab", "apply"], ["aifab", "eval"]]
    for command in commands:
        r = run_aifab(*command[1:], cwd=app, timeout=600)
        assert r.returncode == 0, f"{shlex.join(command)}: {r.stdout}{r.stderr}"
    again = run_aifab("apply", cwd=app)
    assert (again.returncode, again.stdout) == (0, "No changes: the state matches the file.\n")
    gate = run_aifab("eval", "run", "evals/suite.toml", "--gate", "--junit", "evals.xml", cwd=app, timeout=600)
    assert gate.returncode == 0 and "<testsuite" in (app / "evals.xml").read_text()
