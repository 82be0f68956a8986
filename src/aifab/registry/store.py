"""The model registry: model packages by name, kept in the state database."""

from __future__ import annotations

import builtins
import shutil
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import select

from aifab.errors import Conflict, NotFound
from aifab.registry.defaults import DEFAULTS, locate
from aifab.registry.inspect import inspect_path
from aifab.registry.package import ModelPackage
from aifab.state import Database
from aifab.state.tables import ModelRow


class Registry:
    """List, show, import and remove model packages. ``models_dir`` holds imported copies."""

    def __init__(self, db: Database, models_dir: Path) -> None:
        self.db = db
        self.models_dir = models_dir

    def list(self) -> list[ModelPackage]:
        with self.db.session() as s:
            rows = s.scalars(select(ModelRow).order_by(ModelRow.name)).all()
            return [_package(r) for r in rows]

    def get(self, name: str) -> ModelPackage:
        with self.db.session() as s:
            row = s.get(ModelRow, name)
            if row is None:
                raise NotFound(f"model '{name}' is not in the registry (see `aifab models list`)", param="model")
            return _package(row)

    def add(self, pkg: ModelPackage, *, replace: bool = False) -> ModelPackage:
        with self.db.session() as s:
            row = s.get(ModelRow, pkg.name)
            if row is not None and not replace:
                raise Conflict(f"model '{pkg.name}' already exists; remove it first or pick another --name")
            if row is None:
                row = ModelRow(name=pkg.name)
                s.add(row)
            row.created_at = datetime.now(UTC)  # replaced: new files under the old name, a new version
            pkg.created = int(row.created_at.timestamp())
            row.kind, row.format, row.path, row.sha256 = pkg.kind, pkg.format, pkg.path, pkg.sha256
            row.manifest = pkg.to_dict()
        return pkg

    def import_path(self, path: Path, name: str, *, copy: bool = True) -> ModelPackage:
        """Register the model at ``path``; with ``copy`` its files go under the data directory first,
        so that the package stays whole when the source moves."""
        with self.db.session() as s:
            if s.get(ModelRow, name) is not None:
                raise Conflict(f"model '{name}' already exists; remove it first or pick another --name")
        pkg = inspect_path(path, name)  # validates before anything is copied
        if copy:
            dest = self.models_dir / name
            if dest.exists():
                shutil.rmtree(dest)
            src = Path(pkg.path)
            if src.is_file():
                dest.mkdir(parents=True)
                shutil.copy2(src, dest / src.name)
                pkg.path = str(dest / src.name)
            else:
                shutil.copytree(src, dest)
                pkg.path = str(dest)
        return self.add(pkg)

    def convert(self, name: str, new_name: str) -> ModelPackage:
        """Register a safetensors copy of the GGUF model ``name`` as ``new_name`` (for the torch
        engine and fine-tuning); its files live under the data directory."""
        from aifab.registry.convert import gguf_to_safetensors

        with self.db.session() as s:
            if s.get(ModelRow, new_name) is not None:
                raise Conflict(f"model '{new_name}' already exists; remove it first or pick another --name")
        dest = gguf_to_safetensors(self.get(name), self.models_dir / new_name)
        return self.add(inspect_path(dest, new_name))

    def remove(self, name: str) -> None:
        pkg = self.get(name)
        with self.db.session() as s:
            row = s.get(ModelRow, name)
            if row is not None:
                s.delete(row)
        owned = Path(pkg.path)
        if self.models_dir.resolve() in owned.resolve().parents:
            shutil.rmtree(self.models_dir / name, ignore_errors=True)

    def ensure_defaults(self) -> builtins.list[str]:
        """Register the default models from their Python packages if they are installed and not yet
        registered (or have moved, e.g. after a reinstall). Returns the names registered now."""
        added = []
        existing = {p.name: p for p in self.list()}
        for default in DEFAULTS:
            path = locate(default)
            if path is None:
                continue
            current = existing.get(default.name)
            if current is not None and Path(current.path) == path:
                continue
            pkg = inspect_path(path, default.name)
            pkg.license = pkg.license or default.license
            pkg.lineage["python_package"] = default.module
            self.add(pkg, replace=True)
            added.append(default.name)
        return added


def _package(row: ModelRow) -> ModelPackage:
    pkg = ModelPackage.from_dict(row.manifest)
    if row.created_at is not None:
        at = row.created_at if row.created_at.tzinfo else row.created_at.replace(tzinfo=UTC)  # SQLite: UTC, naive
        pkg.created = int(at.timestamp())
    return pkg
