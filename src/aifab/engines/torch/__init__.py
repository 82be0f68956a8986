"""The torch engine: transformers (safetensors) models on the CPU, continuous-batched."""

import os

# Set before torch loads OpenMP: spinning workers between decode steps would starve the event loop.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from aifab.engines.torch.engine import TorchEngine  # noqa: E402

__all__ = ["TorchEngine"]
