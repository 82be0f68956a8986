from __future__ import annotations

import json
from pathlib import Path

import pytest

from aifab.errors import Conflict, InvalidRequest, NotFound
from aifab.registry import ModelPackage, Registry
from aifab.registry.defaults import DEFAULTS, locate
from aifab.state import Database


@pytest.fixture
def registry(tmp_path):
    db = Database(f"sqlite:///{tmp_path / 'state.db'}")
    db.upgrade()
    return Registry(db, tmp_path / "models")


def test_defaults_are_registered_offline_from_their_packages(registry):
    added = registry.ensure_defaults()
    assert set(added) == {"smollm2-135m-instruct", "all-minilm-l6-v2"}
    chat = registry.get("smollm2-135m-instruct")
    assert chat.kind == "chat" and chat.format == "gguf" and chat.chat_template
    emb = registry.get("all-minilm-l6-v2")
    assert emb.kind == "embedding" and emb.embedding_dimensions == 384
    assert registry.ensure_defaults() == []  # idempotent: nothing re-hashed on the next start


def test_import_gguf_copies_and_keeps_metadata(registry, tmp_path):
    src = locate(DEFAULTS[0])
    pkg = registry.import_path(src, "my-chat")
    assert Path(pkg.path).is_relative_to(tmp_path / "models")
    assert Path(pkg.path).stat().st_size == src.stat().st_size
    again = registry.get("my-chat")
    assert again.chat_template == pkg.chat_template and again.sha256 == pkg.sha256
    assert again.lineage["base_model"]
    with pytest.raises(Conflict):
        registry.import_path(src, "my-chat")
    registry.remove("my-chat")
    assert not (tmp_path / "models" / "my-chat").exists()
    with pytest.raises(NotFound):
        registry.get("my-chat")


def test_import_sentence_transformers_dir_in_place(registry):
    pkg = registry.import_path(locate(DEFAULTS[1]), "emb", copy=False)
    assert pkg.kind == "embedding" and pkg.path == str(locate(DEFAULTS[1]))
    registry.remove("emb")
    assert locate(DEFAULTS[1]).exists()  # files we do not own are never deleted


def test_import_refuses_what_is_not_a_model(registry, tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(InvalidRequest, match="not a GGUF"):
        registry.import_path(tmp_path / "notes.txt", "x")
    with pytest.raises(InvalidRequest, match="not a model package"):
        registry.import_path(tmp_path, "x")
    with pytest.raises(InvalidRequest, match="no such file"):
        registry.import_path(tmp_path / "missing.gguf", "x")
    assert registry.list() == []


def test_manifest_round_trips(registry, tmp_path):
    pkg = ModelPackage(name="m", kind="completion", format="safetensors", path=str(tmp_path),
                       lineage={"dataset_hash": "abc", "hyperparameters": {"lr": 0.001}})
    assert ModelPackage.from_dict(json.loads(json.dumps(pkg.to_dict()))) == pkg
    registry.add(pkg)
    assert registry.get("m") == pkg
