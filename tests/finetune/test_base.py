"""A GGUF base is converted to safetensors once, through the registry, and reused after."""

from __future__ import annotations

from dataclasses import replace

import pytest

from aifab.errors import InvalidRequest, NotFound
from aifab.finetune.model import converted_name, safetensors_base
from aifab.registry import ModelPackage

GGUF = ModelPackage(name="chat", kind="chat", format="gguf", path="/models/chat.gguf", sha256="a" * 64)


class CountingRegistry:
    """The three registry calls ``safetensors_base`` makes; ``convert`` is counted, not run."""

    def __init__(self) -> None:
        self.models: dict[str, ModelPackage] = {}
        self.conversions = 0

    def get(self, name: str) -> ModelPackage:
        if name not in self.models:
            raise NotFound(name)
        return self.models[name]

    def remove(self, name: str) -> None:
        del self.models[name]

    def convert(self, name: str, new_name: str) -> ModelPackage:
        self.conversions += 1
        source = self.models.get(name, GGUF)
        pkg = ModelPackage(name=new_name, kind="chat", format="safetensors", path=f"/models/{new_name}",
                           lineage={"converted_from": {"name": name, "sha256": source.sha256}})
        self.models[new_name] = pkg
        return pkg


def test_a_gguf_base_is_converted_once_and_reused():
    registry = CountingRegistry()
    first = safetensors_base(GGUF, registry=registry)
    again = safetensors_base(GGUF, registry=registry)
    assert registry.conversions == 1 and first == again and first.name == converted_name(GGUF) == "chat-safetensors"


def test_a_new_version_of_the_gguf_is_converted_again():
    registry = CountingRegistry()
    safetensors_base(GGUF, registry=registry)
    newer = replace(GGUF, sha256="b" * 64)
    registry.models["chat"] = newer
    safetensors_base(newer, registry=registry)
    assert registry.conversions == 2


def test_safetensors_bases_are_used_as_they_are_and_embeddings_refused():
    st = replace(GGUF, format="safetensors", path="/models/st")
    assert safetensors_base(st) is st
    with pytest.raises(InvalidRequest, match="only chat models"):
        safetensors_base(replace(GGUF, kind="embedding", format="sentence-transformers"))
