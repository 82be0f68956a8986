"""The GGUF header is read directly: every scalar and string, arrays skipped, damage is a clear error."""

from __future__ import annotations

from pathlib import Path

import gguf
import numpy as np
import pytest

from aifab.errors import InvalidRequest
from aifab.registry.inspect import gguf_metadata


def _write(path: Path) -> None:
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_context_length(4096)
    w.add_chat_template("{{ messages }}")
    w.add_array("tokenizer.ggml.tokens", ["<s>", "hé", "world"] * 1000)  # strings: skipped over
    w.add_array("tokenizer.ggml.scores", [0.5, 1.5, 2.5])  # numbers: skipped over
    w.add_array("nested", [[1, 2], [3]])
    w.add_uint8("u8", 200)
    w.add_int16("i16", -3)
    w.add_uint64("u64", 2**40)
    w.add_float64("f64", 0.25)
    w.add_bool("flag", True)
    w.add_string("general.name", "tiny ✓")
    w.add_tensor("t", np.zeros(4, dtype=np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def test_scalars_and_strings_are_read_and_arrays_skipped(tmp_path):
    path = tmp_path / "m.gguf"
    _write(path)
    meta = gguf_metadata(path)
    assert meta["llama.context_length"] == 4096 and meta["tokenizer.chat_template"] == "{{ messages }}"
    assert (meta["u8"], meta["i16"], meta["u64"], meta["f64"], meta["flag"]) == (200, -3, 2**40, 0.25, True)
    assert meta["general.name"] == "tiny ✓" and meta["general.architecture"] == "llama"
    assert not {"tokenizer.ggml.tokens", "tokenizer.ggml.scores", "nested"} & meta.keys()


def test_a_cut_or_foreign_file_is_a_clear_error(tmp_path):
    path = tmp_path / "m.gguf"
    _write(path)
    cut = tmp_path / "cut.gguf"
    cut.write_bytes(path.read_bytes()[:200])  # ends inside the token list
    with pytest.raises(InvalidRequest, match="header is damaged"):
        gguf_metadata(cut)
    old = tmp_path / "v1.gguf"
    old.write_bytes(b"GGUF" + (1).to_bytes(4, "little") + bytes(16))
    with pytest.raises(InvalidRequest, match="version 2 or 3"):
        gguf_metadata(old)
