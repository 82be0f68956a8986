"""The torch engine: transformers (safetensors) models on the CPU, continuous-batched."""

from aifab.engines.torch.engine import TorchEngine

__all__ = ["TorchEngine"]
