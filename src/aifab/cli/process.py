"""Process-wide settings that must be in place before any model runtime is loaded."""

from __future__ import annotations

import os

# torch and llama.cpp share one libgomp in this process. Once both have a thread team, libgomp sees
# more threads than cores and cuts every barrier's spin to almost nothing, so llama.cpp's decode
# (a barrier per graph node) sleeps and wakes at each one: 2.5x slower, measured. An active wait
# policy keeps barriers spinning, and a bounded spin count lets idle workers sleep soon after a
# step, so the event loop that streams tokens is not starved either.
OPENMP_DEFAULTS = {"OMP_WAIT_POLICY": "ACTIVE", "GOMP_SPINCOUNT": "100000"}


def configure_openmp() -> None:
    """Apply :data:`OPENMP_DEFAULTS` unless the user set them. libgomp reads them once, when it is
    first loaded, so this runs first thing in the CLI."""
    for key, value in OPENMP_DEFAULTS.items():
        os.environ.setdefault(key, value)
