"""Weights for fast prompt kernels: the default Q4_1 GGUF is requantised to Q8_0 once, into the cache."""

from __future__ import annotations

import pytest

from aifab.engines.llamacpp import weights
from aifab.errors import EngineError
from aifab.testing.models import smollm2_gguf_path

Q4_1, Q8_0 = 3, 7


@pytest.fixture
def source():
    return str(smollm2_gguf_path())


def test_the_default_model_is_a_slow_type(source):
    ftype, n = weights._header(source)
    assert ftype == Q4_1 and 100e6 < n < 200e6


def test_auto_requantises_once_and_reuses_the_copy(source, tmp_path, monkeypatch):
    monkeypatch.setattr(weights.platform, "machine", lambda: "x86_64")
    path = weights.weights_for(source, "auto", lambda: tmp_path)
    assert path != source and path.startswith(str(tmp_path)) and path.endswith(".q8_0.gguf")
    assert weights._header(path)[0] == Q8_0
    assert [p.name for p in tmp_path.iterdir()] == [path.rsplit("/", 1)[-1]]  # no partial file left
    made = (tmp_path / path.rsplit("/", 1)[-1]).stat().st_mtime_ns
    calls = []
    monkeypatch.setattr(weights, "_quantise", lambda *a: calls.append(a))
    assert weights.weights_for(source, "auto", lambda: tmp_path) == path and not calls
    assert (tmp_path / path.rsplit("/", 1)[-1]).stat().st_mtime_ns == made
    assert weights.weights_for(path, "auto", lambda: tmp_path) == path  # a Q8_0 file is loaded as it is


def test_as_is_other_machines_and_large_models_are_left_alone(source, tmp_path, monkeypatch):
    def no_cache():
        raise AssertionError("nothing should be written")

    assert weights.weights_for(source, "as-is", no_cache) == source
    monkeypatch.setattr(weights.platform, "machine", lambda: "aarch64")
    assert weights.weights_for(source, "auto", no_cache) == source
    monkeypatch.setattr(weights.platform, "machine", lambda: "x86_64")
    monkeypatch.setattr(weights, "AUTO_MAX_BYTES", 10_000_000)  # as if the model were large
    assert weights.weights_for(source, "auto", no_cache) == source
    assert weights.weights_for(source, "q8_0", lambda: tmp_path).endswith(".q8_0.gguf")  # asked for: done


def test_a_failed_requantisation_leaves_nothing_and_says_how_to_skip_it(source, tmp_path, monkeypatch):
    monkeypatch.setattr(weights.platform, "machine", lambda: "x86_64")

    def fails(src, out):
        out.write_bytes(b"half a file")
        return 1

    monkeypatch.setattr(weights, "_quantise", fails)
    with pytest.raises(EngineError, match="cpu_weights = 'as-is'"):
        weights.weights_for(source, "auto", lambda: tmp_path)
    assert list(tmp_path.iterdir()) == []
