"""Read a model package's manifest from the files on disk (GGUF metadata, Hugging Face configs)."""

from __future__ import annotations

import json
import mmap
import struct
from pathlib import Path
from typing import Any

from aifab.errors import InvalidRequest
from aifab.registry.package import MANIFEST_FILE, GenerationDefaults, ModelPackage, sha256_of


def inspect_path(path: Path, name: str) -> ModelPackage:
    """Build a package manifest for ``path``: a ``.gguf`` file or a model directory."""
    path = path.resolve()
    if not path.exists():
        raise InvalidRequest(f"no such file or directory: {path}")
    if path.is_file():
        if not _is_gguf(path):
            raise InvalidRequest(f"{path} is not a GGUF file (expected the 'GGUF' magic bytes)")
        pkg = _from_gguf(path, name)
    elif (path / MANIFEST_FILE).is_file():
        data = json.loads((path / MANIFEST_FILE).read_text())
        pkg = ModelPackage.from_dict({**data, "name": name, "path": str(path)})
    elif (path / "modules.json").is_file():
        pkg = _from_sentence_transformers(path, name)
    elif (path / "config.json").is_file() and any(path.glob("*.safetensors")):
        pkg = _from_hf_dir(path, name)
    else:
        raise InvalidRequest(
            f"{path} is not a model package: expected a .gguf file, or a directory with config.json and "
            "*.safetensors (transformers) or modules.json (sentence-transformers)"
        )
    pkg.sha256 = pkg.sha256 or sha256_of(pkg.weight_files())
    return pkg


def _is_gguf(path: Path) -> bool:
    with open(path, "rb") as fh:
        return fh.read(4) == b"GGUF"


# GGUF value types (ggml's gguf.h) -> struct format of a scalar; 8 is a string, 9 an array
_SCALARS = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d"}
_STRING, _ARRAY = 8, 9


def gguf_metadata(path: Path) -> dict[str, Any]:
    """Scalar and string metadata of a GGUF file (v2 or v3). Arrays such as the vocabulary are skipped
    over, not decoded: reading the header of a 49k-token model takes milliseconds (the ``gguf`` package's
    reader decodes every field and took 5-10 s, on every new data directory's first command)."""
    with open(path, "rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as buf:
        magic, version, _tensors, count = struct.unpack_from("<4sIQQ", buf, 0)
        if magic != b"GGUF" or version < 2:
            raise InvalidRequest(f"{path} is not a GGUF file of version 2 or 3 (version {version})")
        at = 24
        out: dict[str, Any] = {}
        try:
            for _ in range(count):
                key, at = _string(buf, at)
                (kind,), at = struct.unpack_from("<I", buf, at), at + 4
                if kind == _ARRAY:
                    at = _skip_array(buf, at)
                elif kind == _STRING:
                    out[key], at = _string(buf, at)
                else:
                    fmt = "<" + _SCALARS[kind]
                    out[key] = struct.unpack_from(fmt, buf, at)[0]
                    at += struct.calcsize(fmt)
        except (KeyError, struct.error) as exc:
            raise InvalidRequest(f"{path}: the GGUF header is damaged or of an unknown kind ({exc})") from None
    return out


def _string(buf: mmap.mmap, at: int) -> tuple[str, int]:
    (n,) = struct.unpack_from("<Q", buf, at)
    return buf[at + 8 : at + 8 + n].decode("utf-8", errors="replace"), at + 8 + n


def _skip_array(buf: mmap.mmap, at: int) -> int:
    kind, n = struct.unpack_from("<IQ", buf, at)
    at += 12
    if kind == _STRING:
        for _ in range(n):
            at += 8 + struct.unpack_from("<Q", buf, at)[0]
        return at
    if kind == _ARRAY:
        for _ in range(n):
            at = _skip_array(buf, at)
        return at
    return at + n * struct.calcsize("<" + _SCALARS[kind])


def _from_gguf(path: Path, name: str) -> ModelPackage:
    meta = gguf_metadata(path)
    arch = meta.get("general.architecture", "llama")
    template = meta.get("tokenizer.chat_template")
    return ModelPackage(
        name=name,
        kind="chat" if template else "completion",
        format="gguf",
        path=str(path),
        chat_template=template,
        special_tokens={
            k.removeprefix("tokenizer.ggml.").removesuffix("_token_id"): str(v)
            for k, v in meta.items()
            if k.startswith("tokenizer.ggml.") and k.endswith("_token_id")
        },
        context_length=int(meta.get(f"{arch}.context_length", 2048)),
        license=meta.get("general.license"),
        lineage={"source": str(path), "base_model": meta.get("general.name"), "architecture": arch},
    )


def _from_hf_dir(path: Path, name: str) -> ModelPackage:
    config = json.loads((path / "config.json").read_text())
    tok_cfg_path = path / "tokenizer_config.json"
    tok_cfg = json.loads(tok_cfg_path.read_text()) if tok_cfg_path.is_file() else {}
    template = tok_cfg.get("chat_template")
    if template is None and (path / "chat_template.jinja").is_file():
        template = (path / "chat_template.jinja").read_text()
    gen_path = path / "generation_config.json"
    gen = json.loads(gen_path.read_text()) if gen_path.is_file() else {}
    special = {
        k.removesuffix("_token"): v if isinstance(v, str) else v.get("content", "")
        for k, v in tok_cfg.items()
        if k.endswith("_token") and v
    }
    return ModelPackage(
        name=name,
        kind="chat" if template else "completion",
        format="safetensors",
        path=str(path),
        chat_template=template,
        special_tokens=special,
        context_length=int(config.get("max_position_embeddings", 2048)),
        generation=GenerationDefaults(
            temperature=float(gen.get("temperature", 0.7)), top_p=float(gen.get("top_p", 0.95))
        ),
        lineage={"source": str(path), "architecture": (config.get("architectures") or ["?"])[0]},
    )


def _from_sentence_transformers(path: Path, name: str) -> ModelPackage:
    config = json.loads((path / "config.json").read_text()) if (path / "config.json").is_file() else {}
    st_cfg_path = path / "sentence_bert_config.json"
    st_cfg = json.loads(st_cfg_path.read_text()) if st_cfg_path.is_file() else {}
    return ModelPackage(
        name=name,
        kind="embedding",
        format="sentence-transformers",
        path=str(path),
        context_length=int(st_cfg.get("max_seq_length", config.get("max_position_embeddings", 512))),
        embedding_dimensions=config.get("hidden_size"),
        lineage={"source": str(path)},
    )
