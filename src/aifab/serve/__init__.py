"""The OpenAI-compatible HTTP server (block 1, inference)."""

from aifab.serve.app import create_app
from aifab.serve.pool import ModelPool

__all__ = ["ModelPool", "create_app"]
