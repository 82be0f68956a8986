"""The ``aifab`` command as a user runs it: a real subprocess, its stdout, stderr and exit code."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import aifab

SRC = str(Path(aifab.__file__).parents[1])  # the child runs the code under test, not an installed copy


def run_aifab(*args: str, cwd: Path | str | None = None, env: dict[str, str] | None = None,
              timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run ``aifab ARGS...`` to completion (``python -m aifab.cli.main``, the console script's code)."""
    path = os.pathsep.join(filter(None, [SRC, os.environ.get("PYTHONPATH")]))
    return subprocess.run([sys.executable, "-m", "aifab.cli.main", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=cwd, env={**os.environ, "PYTHONPATH": path, **(env or {})})
