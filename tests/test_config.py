from __future__ import annotations

from pathlib import Path

import pytest

from aifab.config import Settings, load_settings
from aifab.errors import ConfigError


def test_defaults():
    s = load_settings()
    assert s.data_dir == Path(".aifab")
    assert s.serve.port == 8000 and s.serve.host == "127.0.0.1"
    assert s.models.chat == "smollm2-135m-instruct"
    assert s.effective_database_url.startswith("sqlite:///") and s.effective_database_url.endswith(".aifab/aifab.db")


def test_precedence_toml_then_env_then_flags(monkeypatch):
    Path("aifab.toml").write_text('data_dir = "from-toml"\n[serve]\nport = 7000\nhost = "0.0.0.0"\nmax_queue = 5\n')
    s = load_settings()
    assert (s.data_dir, s.serve.port, s.serve.host, s.serve.max_queue) == (Path("from-toml"), 7000, "0.0.0.0", 5)
    monkeypatch.setenv("AIFAB_SERVE__PORT", "7100")
    s = load_settings()
    assert s.serve.port == 7100 and s.serve.host == "0.0.0.0"  # env overrides one key, keeps the file's others
    s = load_settings(serve={"port": 7200, "host": None}, data_dir=None)
    assert s.serve.port == 7200 and s.serve.host == "0.0.0.0" and s.serve.max_queue == 5
    assert s.data_dir == Path("from-toml")  # an unset flag does not hide the file


def test_explicit_config_file(tmp_path):
    cfg = tmp_path / "other.toml"
    cfg.write_text("[engines]\nmax_batch = 3\n")
    assert load_settings(cfg).engines.max_batch == 3


def test_bad_values_are_one_clear_error(monkeypatch):
    monkeypatch.setenv("AIFAB_SERVE__PORT", "not-a-port")
    with pytest.raises(ConfigError, match="serve.port"):
        load_settings()


def test_unknown_key_in_file_is_refused():
    Path("aifab.toml").write_text("[serve]\nprot = 1\n")
    with pytest.raises(ConfigError, match="prot"):
        load_settings()


def test_missing_explicit_config_file():
    with pytest.raises(ConfigError, match="not found"):
        load_settings(Path("nope.toml"))


def test_broken_toml_is_reported():
    Path("aifab.toml").write_text("[serve\nport = 1\n")
    with pytest.raises(ConfigError, match="cannot read"):
        load_settings()


def test_misspelt_app_key_is_named_with_the_closest_known_one():
    Path("aifab.toml").write_text('[apps.pydocs]\ncolection = "python-docs"\n')
    with pytest.raises(ConfigError) as info:
        load_settings()
    assert info.value.message == "unknown setting apps.pydocs.colection: did you mean 'collection'?"


def test_unknown_key_far_from_any_lists_the_known_keys():
    Path("aifab.toml").write_text("[gateway.guardrails]\nzzz = 1\n")
    with pytest.raises(ConfigError, match=r"gateway\.guardrails\.zzz: the known keys here are enabled, input_pii"):
        load_settings()


def test_misspelt_key_in_a_list_of_sections():
    Path("aifab.toml").write_text('[gateway.routes.chat]\nupstreams = [{urll = "http://x/v1"}]\n')
    with pytest.raises(ConfigError, match=r"gateway\.routes\.chat\.upstreams\.0\.urll: did you mean 'url'\?"):
        load_settings()


def test_the_cache_folder_is_shared_by_data_directories_and_falls_back_to_one_of_them(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    settings = Settings(data_dir=tmp_path / "data")
    assert settings.cache_dir("gguf") == tmp_path / "xdg" / "aifab" / "gguf" and (tmp_path / "xdg/aifab/gguf").is_dir()
    (tmp_path / "ro").write_text("a file, so no folder can be made under it")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "ro"))
    assert settings.cache_dir("gguf") == tmp_path / "data" / "cache" / "gguf"
    chosen = Settings(data_dir=tmp_path / "data", engines={"cache_dir": str(tmp_path / "mine")})
    assert chosen.cache_dir("gguf") == tmp_path / "mine" / "gguf"
    (tmp_path / "blocked").write_text("")
    with pytest.raises(OSError, match="set engines.cache_dir"):
        Settings(data_dir=tmp_path / "data", engines={"cache_dir": str(tmp_path / "blocked")}).cache_dir("gguf")
