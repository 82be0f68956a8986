"""Weights in a form this CPU multiplies fast.

Prompt prefill is matrix-matrix work, and llama.cpp's fast CPU kernels for it (llamafile's tinyBLAS and the
CPU repack) cover F32, F16, BF16, Q8_0 and Q4_0 but not Q4_1 or Q5_1, which fall back to one dot product
per row; the K-quants were slower than Q8_0 too. Measured on an x86-64 machine with AVX2 (SmolLM2-135M,
700 prompt tokens, 2 threads): Q4_1 189 tokens/s, Q5_1 129, Q4_K_M 208, Q8_0 268, F16 307; decode 63, 57,
63, 59 and 42 tokens/s. So a small model shipped in one of the slow types is requantised to Q8_0 once,
into the cache folder (``engines.cache_dir``), and that copy is loaded.

Q8_0 holds every value of a 4- or 5-bit block to within half an 8-bit step, so it is the same model
(greedy output can differ at rare near-ties). A large model is left as it is by default: there decode is
bound by memory bandwidth, and Q8_0 is nearly twice the bytes of a 4-bit file. ``engines.cpu_weights``
chooses: ``auto`` (a quantised model of a slow type whose Q8_0 copy is at most ``AUTO_MAX_BYTES``, on
x86-64), ``q8_0`` (any quantised model of a slow type), ``as-is`` (never).
"""

from __future__ import annotations

import ctypes
import hashlib
import logging
import os
import platform
from collections.abc import Callable
from pathlib import Path

from aifab.errors import EngineError

log = logging.getLogger(__name__)

# llama.cpp's LLAMA_FTYPE values with fast prompt kernels: F32, F16, Q4_0, Q8_0, BF16.
FAST_FTYPES = {0, 1, 2, 7, 32}
GUESSED = 1024  # LLAMA_FTYPE_GUESSED: a flag on a file type inferred from the tensors
AUTO_MAX_BYTES = 1 << 30  # the largest Q8_0 copy "auto" makes (about a 1B-parameter model)
Q8_0_BYTES_PER_WEIGHT = 34 / 32


def _header(path: str) -> tuple[int | None, int]:
    """The GGUF's ``general.file_type`` (a LLAMA_FTYPE value, None when it does not say) and its number of
    weights, read by llama.cpp without its tensors (a tenth of a second; the ``gguf`` package's reader
    parses the whole vocabulary and takes seconds)."""
    import llama_cpp as C

    from aifab.engines.llamacpp.runtime import init_backend

    init_backend()
    params = C.llama_model_default_params()
    params.vocab_only = True
    model = C.llama_model_load_from_file(path.encode(), params)
    if not model:
        raise EngineError(f"llama.cpp could not read {path}")
    try:
        buf = ctypes.create_string_buffer(32)
        n = C.llama_model_meta_val_str(model, b"general.file_type", buf, len(buf))
        ftype = int(buf.value) & ~GUESSED if n > 0 and buf.value.isdigit() else None
        return ftype, int(C.llama_model_n_params(model))
    finally:
        C.llama_model_free(model)


def wants_q8_0(path: str, mode: str) -> bool:
    if mode == "as-is":
        return False
    ftype, weights = _header(path)
    if ftype is None or ftype in FAST_FTYPES:
        return False
    if mode == "q8_0":
        return True
    x86 = platform.machine().lower() in {"x86_64", "amd64"}
    return x86 and weights * Q8_0_BYTES_PER_WEIGHT <= AUTO_MAX_BYTES


def _quantise(src: str, out: Path) -> int:
    import llama_cpp as C

    params = C.llama_model_quantize_default_params()
    params.ftype = C.LLAMA_FTYPE_MOSTLY_Q8_0
    params.allow_requantize = True
    params.nthread = os.cpu_count() or 1
    return int(C.llama_model_quantize(src.encode(), str(out).encode(), ctypes.byref(params)))


def weights_for(path: str, mode: str, cache_dir: Callable[[], Path]) -> str:
    """The GGUF to load for ``path``: itself, or its Q8_0 copy in ``cache_dir()`` (made once; a crash
    while making it leaves only a ``.partial`` file, never a half-written copy)."""
    if not wants_q8_0(path, mode):
        return path
    stat = os.stat(path)
    key = hashlib.sha256(f"{Path(path).resolve()}|{stat.st_size}|{stat.st_mtime_ns}".encode()).hexdigest()[:16]
    target = cache_dir() / f"{Path(path).stem}.{key}.q8_0.gguf"
    if target.is_file():
        return str(target)
    partial = target.with_name(f"{target.name}.{os.getpid()}.partial")  # two processes may race: each its own
    log.info("requantising %s to Q8_0 (fast prompt kernels) into %s", path, target)
    rc = _quantise(path, partial)
    if rc != 0 or not partial.is_file():
        partial.unlink(missing_ok=True)
        raise EngineError(f"llama.cpp could not requantise {path} to Q8_0 (code {rc}); "
                          "set engines.cpu_weights = 'as-is' to load it unchanged")
    partial.replace(target)
    return str(target)
