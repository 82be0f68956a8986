"""GGUF -> safetensors keeps the package whole: chat template, special tokens, lineage; the result
loads in plain transformers and is served by the torch engine."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from aifab.config import Settings
from aifab.engines import load_engine
from aifab.registry import Registry
from aifab.state import Database
from aifab.testing.conformance import collect

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    root = tmp_path_factory.mktemp("convert")
    db = Database(f"sqlite:///{root / 'state.db'}")
    db.upgrade()
    registry = Registry(db, root / "models")
    registry.ensure_defaults()
    return registry, registry.convert("smollm2-135m-instruct", "smollm2-st")


def test_converted_package_keeps_template_tokens_and_lineage(converted):
    registry, pkg = converted
    gguf = registry.get("smollm2-135m-instruct")
    assert pkg.format == "safetensors" and pkg.kind == "chat"
    assert pkg.chat_template == gguf.chat_template
    assert pkg.lineage["converted_from"] == {"name": gguf.name, "sha256": gguf.sha256}
    assert len(pkg.sha256) == 64 and pkg.sha256 != gguf.sha256
    assert json.loads((Path(pkg.path) / "aifab.json").read_text())["chat_template"] == gguf.chat_template
    assert not Path(pkg.path + ".partial").exists()


def test_converted_package_loads_in_plain_transformers(converted):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    _, pkg = converted
    tok = AutoTokenizer.from_pretrained(pkg.path)
    text = tok.apply_chat_template([{"role": "user", "content": "Hi"}], tokenize=False, add_generation_prompt=True)
    assert "<|im_start|>user\nHi<|im_end|>" in text
    model = AutoModelForCausalLM.from_pretrained(pkg.path)
    assert model.config.num_hidden_layers == 30


def test_torch_engine_answers_with_the_converted_model(converted, tmp_path):
    _, pkg = converted
    engine = load_engine(pkg, Settings(data_dir=tmp_path, engines={"max_batch": 2, "threads": 2}))
    try:
        prompt = engine.render_chat([{"role": "user", "content": "What is the capital of France?"}])
        text, last = asyncio.run(collect(engine, prompt, temperature=0, max_tokens=12))
        assert "Paris" in text  # greedy, float32: the converted model still answers as the chat model
        assert last.prompt_tokens == engine.count_tokens(prompt)
    finally:
        engine.close()
