"""Training a language model from scratch: data, tokenizer, shards, model, optimisation, checkpoints,
evaluation, and packaging into the model registry (``pipeline.py`` runs the stages in order).

Importing this package does not import torch (the CLI lists the training flags without it)."""

from aifab.training.config import ModelConfig, TrainSpec, load_spec

__all__ = ["ModelConfig", "TrainSpec", "load_spec"]
