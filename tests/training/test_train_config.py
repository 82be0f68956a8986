from __future__ import annotations

import pytest
from typer.testing import CliRunner

from aifab.cli.main import app
from aifab.errors import ConfigError
from aifab.testing.cli import run_aifab
from aifab.training.config import TrainSpec, load_spec, options


def test_toml_then_flags_override_defaults(tmp_path):
    toml = tmp_path / "train.toml"
    toml.write_text('[model]\nn_layer = 3\nn_embd = 64\n[train]\nlr = 1\nsteps = 7\n[data]\nsources = ["a", "b"]\n')
    spec = load_spec(toml, {"n_embd": 96, "steps": None})
    assert (spec.model.n_layer, spec.model.n_embd, spec.train.steps) == (3, 96, 7)
    assert spec.train.lr == 1.0 and isinstance(spec.train.lr, float)  # TOML int where a float is meant
    assert spec.data.sources == ["a", "b"]
    assert TrainSpec.from_dict(spec.to_dict()) == spec


@pytest.mark.parametrize("text, message", [
    ("[model]\nn_layers = 3\n", "unknown key 'n_layers' in [model]"),
    ("[optim]\nlr = 1\n", "unknown section [optim]"),
    ("[model]\npositions = 'rope'\nnorm = 'layernorm'\n", "no transformers equivalent"),
    ("[model]\nn_embd = 30\nn_head = 4\n", "not divisible"),
    ("[data]\nval_fraction = 1.5\n", "val_fraction"),
    ("[tokenizer]\ntokenizer = 'wordpiece'\n", "tokenizer must be one of bpe, char"),
])
def test_bad_config_is_refused_with_its_key(tmp_path, text, message):
    toml = tmp_path / "train.toml"
    toml.write_text(text)
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        load_spec(toml, {})


def test_every_key_is_a_documented_flag():
    result = CliRunner().invoke(app, ["train", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    for opt in options():
        flag = "--source" if opt.name == "sources" else "--" + opt.name.replace("_", "-")
        assert flag in result.output, flag
    assert "--config" in result.output and "--train-config" in result.output


def test_flag_sets_a_key_through_the_cli(tmp_path):
    # a bad value proves the flag reached the spec: the check names it before any work starts
    result = CliRunner().invoke(app, ["train", str(tmp_path), "--n-embd", "30", "--n-head", "4",
                                      "--data-dir", str(tmp_path / "d")])
    assert isinstance(result.exception, ConfigError) and "not divisible" in str(result.exception)


BAD_SHAPE = "[model]\nn_embd = 30\nn_head = 4\n"  # refused before any work: proof that the file was read


def test_train_config_has_its_own_flag_and_c_is_the_aifab_config(tmp_path):
    (tmp_path / "train.toml").write_text(BAD_SHAPE)
    r = run_aifab("train", "--train-config", "train.toml", "--data-dir", "d", cwd=tmp_path)
    assert r.returncode == 1 and r.stderr.startswith("aifab: error: ") and "not divisible" in r.stderr
    assert r.stderr.count("\n") == 1, r.stderr
    (tmp_path / "aifab.toml").write_text("[serve]\nport = 9100\n")  # an aifab config, as -c means everywhere
    r = run_aifab("train", "-c", "aifab.toml", "--n-embd", "30", "--n-head", "4", "--data-dir", "d", cwd=tmp_path)
    assert r.returncode == 1 and "not divisible" in r.stderr and "warning" not in r.stderr, r.stderr


def test_c_with_a_training_config_still_works_for_one_release_with_a_warning(tmp_path):
    (tmp_path / "train.toml").write_text(BAD_SHAPE)
    r = run_aifab("train", "-c", "train.toml", "--data-dir", "d", cwd=tmp_path)
    warning, error = r.stderr.splitlines()
    assert warning == ("aifab: warning: -c/--config train.toml names a training config: that is deprecated, and in "
                       "the next release -c will mean the aifab config, as in every aifab command; use "
                       "--train-config train.toml")
    assert r.returncode == 1 and "not divisible" in error


def test_the_help_of_the_training_config_is_whole():
    r = run_aifab("train", "--help", env={"COLUMNS": "200"})
    assert r.returncode == 0
    assert "train.toml, with sections [data] [tokenizer] [model] [train] [run]" in r.stdout
