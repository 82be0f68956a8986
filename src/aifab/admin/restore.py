"""``aifab restore``: a backup (``backup.py``) back into a new data directory.

Only into a directory that does not exist or is empty: restoring over live state would mix two histories.
The backup is unpacked beside the target, every file checked against the manifest's sha256 (a corrupt or
partial backup is refused with the file it failed on), the database migrated when the backup is older than
this aifab, and the paths the database keeps (model packages, datasets, fine-tuning files) moved to the new
directory; only then is the unpacked copy renamed to the target. A failure leaves the target as it was.
"""

from __future__ import annotations

import json
import os
import shutil
import tarfile
import tempfile
import zlib
from pathlib import Path
from typing import Any

from sqlalchemy import select

from aifab.admin.backup import DATABASE, FORMAT, MANIFEST, is_archive, revision, sha256_file, summary
from aifab.errors import Conflict, InvalidRequest, NotFound
from aifab.state import Database
from aifab.state.db import schema_revisions
from aifab.state.tables import DatasetRow, FileRow, ModelRow


def restore_backup(source: Path, target: Path) -> dict[str, Any]:
    """Restore the backup at ``source`` into ``target`` (absent or empty). Returns the manifest without its
    file list, plus ``data_dir`` (the target) and ``migrated_from`` (the backup's schema revision when it was
    migrated, else None)."""
    target = target.resolve()
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise Conflict(f"{target} is not empty: restore into a new or empty directory")
    if not source.exists():
        raise NotFound(f"no backup at {source}")
    target.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".restoring", dir=target.parent))
    try:
        _unpack(source, work)
        manifest = verify(work)
        migrated = _migrate(work / DATABASE, revision(work / DATABASE))  # the copy's own word
        _relocate(work / DATABASE, Path(manifest["data_dir"]), target)
        if target.exists():
            target.rmdir()
        os.rename(work, target)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    return {**summary(manifest), "data_dir": str(target), "migrated_from": migrated}


def verify(root: Path) -> dict[str, Any]:
    """The manifest of the unpacked backup at ``root``, once every file it lists is there with its sha256 and
    nothing else is; ``InvalidRequest`` naming the first file that is not."""
    try:
        manifest = json.loads((root / MANIFEST).read_text())
        files: dict[str, dict[str, Any]] = manifest["files"]
    except FileNotFoundError:
        raise InvalidRequest("not an aifab backup: it has no manifest.json") from None
    except (ValueError, KeyError, TypeError) as exc:
        raise InvalidRequest(f"the backup's manifest.json is damaged ({exc})") from None
    if manifest.get("format") != FORMAT:
        raise InvalidRequest(f"backup format {manifest.get('format')!r} is not one this aifab reads ({FORMAT})")
    present = {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()} - {MANIFEST}
    missing = sorted(set(files) - present)
    if missing:
        raise InvalidRequest(f"the backup is incomplete: {missing[0]} is missing ({len(missing)} files in all)")
    extra = sorted(present - set(files))
    if extra:
        raise InvalidRequest(f"the backup holds a file its manifest does not list: {extra[0]}")
    for name, want in files.items():
        if sha256_file(root / name) != want.get("sha256"):
            raise InvalidRequest(f"the backup is corrupt: {name} does not match its sha256 in the manifest")
    return dict(manifest)


def _unpack(source: Path, work: Path) -> None:
    if source.is_dir():
        shutil.copytree(source, work, dirs_exist_ok=True)
        return
    if not is_archive(source):
        raise InvalidRequest(f"{source} is neither a backup directory nor a .tar.gz or .tar backup")
    try:
        with tarfile.open(source, "r:*") as tar:
            tar.extractall(work, members=_plain_members(tar))
    except (tarfile.TarError, EOFError, zlib.error, OSError) as exc:
        raise InvalidRequest(f"{source} is not a readable backup archive ({type(exc).__name__}: {exc})") from None


def _plain_members(tar: tarfile.TarFile) -> list[tarfile.TarInfo]:
    """The archive's files and folders, or ``InvalidRequest``: a backup holds nothing else, and a hostile archive
    (an absolute path, "..", a link, a device) must not write outside the folder it is unpacked in. Checked
    here rather than with ``extractall(filter="data")``, which Python 3.11 has only from 3.11.4."""
    members = tar.getmembers()
    for m in members:
        if not (m.isfile() or m.isdir()) or m.name.startswith("/") or ".." in Path(m.name).parts:
            raise InvalidRequest(f"not an aifab backup: the archive holds {m.name!r}, which a backup never does")
    return members


def _migrate(database: Path, revision: str | None) -> str | None:
    """Bring the copy's schema to this aifab's; the revision it had when it was older, else None."""
    known = schema_revisions()
    if revision not in known:
        raise InvalidRequest(f"the backup's schema revision {revision!r} is newer than this aifab's "
                             f"({known[-1]}): restore it with the aifab version that made it or a later one")
    if revision == known[-1]:
        return None
    db = Database(f"sqlite:///{database}")
    try:
        db.upgrade()
    finally:
        db.close()
    return revision


def _relocate(database: Path, old: Path, new: Path) -> None:
    """Point the paths the database keeps under the backed-up data directory at the new one (a model package,
    a dataset, a fine-tuning file); paths outside it (models registered by reference) stay as they are."""
    def moved(path: str) -> str:
        p = Path(path)
        return str(new / p.relative_to(old)) if p == old or old in p.parents else path

    db = Database(f"sqlite:///{database}")
    try:
        with db.session() as s:
            for model in s.scalars(select(ModelRow)):
                model.path = moved(model.path)
                if isinstance(model.manifest, dict) and "path" in model.manifest:
                    model.manifest = {**model.manifest, "path": moved(str(model.manifest["path"]))}
            for row in [*s.scalars(select(DatasetRow)), *s.scalars(select(FileRow))]:
                row.path = moved(row.path)
    finally:
        db.close()
