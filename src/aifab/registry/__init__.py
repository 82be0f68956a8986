"""Model registry: model packages (see ``package.py``) by name, with their lineage."""

from aifab.registry.package import GenerationDefaults, ModelPackage
from aifab.registry.store import Registry

__all__ = ["GenerationDefaults", "ModelPackage", "Registry"]
