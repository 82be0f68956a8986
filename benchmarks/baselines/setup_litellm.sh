#!/usr/bin/env bash
# Build benchmarks/.venv-litellm: the LiteLLM proxy in its OWN virtualenv (its pins never touch
# aifab's .venv). The gateway benchmark (benchmarks/gateway.py) runs `litellm` from there.
#
#   bash benchmarks/baselines/setup_litellm.sh            # idempotent (stamp file)
#   PY=python3.11 bash benchmarks/baselines/setup_litellm.sh
#   LITELLM_SPEC='litellm[proxy]' bash ...                # the newest release instead of the pinned one
#   FORCE=1 bash benchmarks/baselines/setup_litellm.sh    # rebuild from scratch
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
VENV="${VENV:-$REPO/benchmarks/.venv-litellm}"
PY="${PY:-python3.11}"
# pinned, so that runs compare like with like (the version goes into the results)
SPEC="${LITELLM_SPEC:-litellm[proxy]==1.108.7}"
STAMP="$VENV/.stamp-installed"

if [[ "${FORCE:-0}" == 1 ]]; then rm -rf "$VENV"; fi
if [[ -f "$STAMP" && "$(head -n1 "$STAMP")" == "$SPEC" && -x "$VENV/bin/litellm" ]]; then
    echo "$VENV is up to date ($(tail -n1 "$STAMP"))"; exit 0
fi

test -d "$VENV" || "$PY" -m venv "$VENV"
BIN="$VENV/bin"
"$BIN/pip" install -q --upgrade pip wheel setuptools
"$BIN/pip" install -q "$SPEC"
# Offline check: the proxy's imports must not reach the network (cost map, telemetry).
LITELLM_LOCAL_MODEL_COST_MAP=True LITELLM_TELEMETRY_DISABLED=True \
    "$BIN/python" -c "import litellm.proxy.proxy_server; from importlib.metadata import version; print('litellm', version('litellm'))" \
    > "$STAMP.tmp"
{ echo "$SPEC"; cat "$STAMP.tmp"; } > "$STAMP" && rm "$STAMP.tmp"
tail -n1 "$STAMP"
