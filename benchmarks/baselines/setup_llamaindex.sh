#!/usr/bin/env bash
# Build benchmarks/.venv-llamaindex: LlamaIndex in its OWN virtualenv, so that its dependency pins can
# never change torch / transformers / sentence-transformers in aifab's .venv.
#
#   bash benchmarks/baselines/setup_llamaindex.sh          # idempotent (stamp file)
#   PY=python3.11 bash benchmarks/baselines/setup_llamaindex.sh
#   FORCE=1 bash benchmarks/baselines/setup_llamaindex.sh  # rebuild from scratch
#
# torch goes in first, pinned to the same CPU build as aifab's (the Makefile's pin), so that
# llama-index-embeddings-huggingface -> sentence-transformers -> torch is already satisfied and
# no CUDA build can be pulled in its place.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
VENV="${VENV:-$REPO/benchmarks/.venv-llamaindex}"
PY="${PY:-python3}"
TORCH_VERSION="${TORCH_VERSION:-2.13.0}"
STAMP="$VENV/.stamp-installed"
REQS="$HERE/llamaindex-requirements.txt"

if [[ "${FORCE:-0}" == 1 ]]; then rm -rf "$VENV"; fi
if [[ -f "$STAMP" && "$STAMP" -nt "$REQS" && "$STAMP" -nt "${BASH_SOURCE[0]}" ]]; then
    echo "$VENV is up to date"; exit 0
fi

test -d "$VENV" || "$PY" -m venv "$VENV"
BIN="$VENV/bin"
"$BIN/pip" install -q --upgrade pip wheel setuptools
# CPU build only: as in the Makefile, pip's configured local wheels serve torch==2.13.0+cpu here.
"$BIN/pip" install -q "torch==$TORCH_VERSION"
"$BIN/python" -W ignore::UserWarning - <<'PY'  # (numpy is not there yet: torch warns about it)
import torch
assert "+cpu" in torch.__version__ or not torch.cuda.is_available(), torch.__version__
PY
# Everything else, with torch held where it is (a constraint, so a dependency asking for another
# torch fails loudly instead of replacing it).
CONSTRAINT="$(mktemp)"; trap 'rm -f "$CONSTRAINT"' EXIT
"$BIN/python" -c "import torch; print('torch==' + torch.__version__)" > "$CONSTRAINT"
# Same model runtime as aifab: when aifab's venv is there, hold the libraries that actually run the
# embedding model at its versions, so the comparison measures the pipelines, not two library releases.
AIFAB_PY="${AIFAB_VENV:-$REPO/.venv}/bin/python"
if [[ -x "$AIFAB_PY" ]]; then
    "$AIFAB_PY" - >> "$CONSTRAINT" <<'PY'
from importlib.metadata import PackageNotFoundError, version
for dist in ("sentence-transformers", "transformers", "tokenizers", "huggingface-hub", "safetensors", "numpy"):
    try:
        print(f"{dist}=={version(dist)}")
    except PackageNotFoundError:
        pass
PY
else
    echo "note: no aifab venv at $AIFAB_PY (set AIFAB_VENV): model libraries are not matched to it" >&2
fi
echo "constraints:"; sed 's/^/  /' "$CONSTRAINT"
"$BIN/pip" install -q -r "$REQS" -c "$CONSTRAINT"
"$BIN/python" - <<'PY'
import torch, llama_index.core, llama_index.embeddings.huggingface  # noqa: F401
assert "+cpu" in torch.__version__ or not torch.cuda.is_available(), torch.__version__
import sentence_transformers, transformers
print("torch", torch.__version__, "| llama-index-core", llama_index.core.__version__,
      "| sentence-transformers", sentence_transformers.__version__, "| transformers", transformers.__version__)
PY
touch "$STAMP"
