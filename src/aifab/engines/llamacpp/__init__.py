"""The llama.cpp engine: GGUF models on CPU (and GPU when llama.cpp is built for one)."""

from aifab.engines.llamacpp.engine import LlamaCppEngine

__all__ = ["LlamaCppEngine"]
