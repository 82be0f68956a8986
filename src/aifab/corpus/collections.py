"""Collections and their versions, kept in the state database; chunks live in the vector store, one
namespace per collection version (``NAME@vN``).

A version is one build of a collection with one pipeline (chunker settings + embedding model). Ingest
reuses the version whose pipeline matches; a changed pipeline builds a new version beside the live one,
and ``promote`` switches retrieval to it in one row update, leaving the old one for rollback.
"""

from __future__ import annotations

import builtins
import hashlib
import json
import re
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import delete, func, select

from aifab.errors import Conflict, InvalidRequest, NotFound
from aifab.state import Database
from aifab.state.tables import CollectionRow, CollectionVersionRow, DocumentRow, IngestJobRow
from aifab.stores.protocol import VectorStore

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")


def pipeline_hash(pipeline: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(pipeline, sort_keys=True).encode()).hexdigest()[:16]


@dataclass
class VersionInfo:
    collection: str
    version: int
    namespace: str
    pipeline_hash: str
    pipeline: dict[str, Any]
    dimensions: int
    live: bool
    documents: int
    chunks: int
    created_at: datetime | None
    promoted_at: datetime | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class CollectionInfo:
    name: str
    live_version: int | None
    created_at: datetime | None
    versions: list[VersionInfo] = field(default_factory=list)

    @property
    def live(self) -> VersionInfo | None:
        return next((v for v in self.versions if v.live), None)

    def to_dict(self) -> dict[str, Any]:
        live = self.live
        return {
            "name": self.name,
            "live_version": self.live_version,
            "documents": live.documents if live else 0,
            "chunks": live.chunks if live else 0,
            "created_at": self.created_at,
            "versions": [v.to_dict() for v in self.versions],
        }


class Collections:
    """CRUD over collections and versions. ``store`` is consulted for chunk counts and cleaned on delete."""

    def __init__(self, db: Database, store: VectorStore) -> None:
        self.db = db
        self.store = store

    # -- collections ----------------------------------------------------------------------------------

    def list(self) -> builtins.list[CollectionInfo]:
        with self.db.session() as s:
            names = s.scalars(select(CollectionRow.name).order_by(CollectionRow.name)).all()
        return [self.get(n) for n in names]

    def get(self, name: str) -> CollectionInfo:
        with self.db.session() as s:
            row = s.get(CollectionRow, name)
            if row is None:
                raise NotFound(f"collection '{name}' does not exist (see `aifab collections list`)", param="collection")
            versions = s.scalars(
                select(CollectionVersionRow).where(CollectionVersionRow.collection == name)
                .order_by(CollectionVersionRow.version)
            ).all()
            docs = dict(
                s.execute(
                    select(DocumentRow.version, func.count()).where(DocumentRow.collection == name)
                    .group_by(DocumentRow.version)
                ).all()
            )
            present = self.store.namespaces()
            return CollectionInfo(
                name=row.name,
                live_version=row.live_version,
                created_at=row.created_at,
                versions=[
                    VersionInfo(
                        collection=name, version=v.version, namespace=v.namespace, pipeline_hash=v.pipeline_hash,
                        pipeline=v.pipeline, dimensions=v.dimensions, live=v.version == row.live_version,
                        documents=docs.get(v.version, 0),
                        chunks=self.store.count(v.namespace) if v.namespace in present else 0,
                        created_at=v.created_at, promoted_at=v.promoted_at,
                    )
                    for v in versions
                ],
            )

    def create(self, name: str, *, exist_ok: bool = False) -> CollectionInfo:
        if not NAME.match(name):
            raise InvalidRequest(
                f"invalid collection name {name!r}: use 1-64 letters, digits, '-' or '_', starting with a letter or digit",
                param="collection",
            )
        with self.db.session() as s:
            if s.get(CollectionRow, name) is not None:
                if not exist_ok:
                    raise Conflict(f"collection '{name}' already exists")
            else:
                s.add(CollectionRow(name=name))
        return self.get(name)

    def delete(self, name: str) -> None:
        info = self.get(name)
        for v in info.versions:
            self.store.drop_namespace(v.namespace)
        with self.db.session() as s:
            s.execute(delete(DocumentRow).where(DocumentRow.collection == name))
            s.execute(delete(CollectionVersionRow).where(CollectionVersionRow.collection == name))
            s.execute(delete(IngestJobRow).where(IngestJobRow.collection == name))
            s.execute(delete(CollectionRow).where(CollectionRow.name == name))

    # -- versions -------------------------------------------------------------------------------------

    def version_for(self, name: str, pipeline: dict[str, Any], dimensions: int) -> tuple[VersionInfo, bool]:
        """The version to ingest into with this pipeline: the live one if it matches, else the newest
        matching one, else a new one (live at once when the collection has no live version).
        Returns it and whether it was created."""
        digest = pipeline_hash(pipeline)
        info = self.create(name, exist_ok=True)
        matching = [v for v in info.versions if v.pipeline_hash == digest]
        if matching:
            return next((v for v in matching if v.live), matching[-1]), False
        number = max((v.version for v in info.versions), default=0) + 1
        namespace = f"{name}@v{number}"
        self.store.create_namespace(namespace, dimensions)
        with self.db.session() as s:
            s.add(CollectionVersionRow(collection=name, version=number, namespace=namespace, pipeline=pipeline,
                                       pipeline_hash=digest, dimensions=dimensions))
            row = s.get(CollectionRow, name)
            assert row is not None
            if row.live_version is None:
                row.live_version = number
        version = next(v for v in self.get(name).versions if v.version == number)
        return version, True

    def version(self, name: str, version: int | None = None) -> VersionInfo:
        """One version; the live one when ``version`` is None."""
        info = self.get(name)
        wanted = info.live_version if version is None else version
        if wanted is None:
            raise NotFound(f"collection '{name}' has no live version yet: ingest documents first", param="collection")
        for v in info.versions:
            if v.version == wanted:
                return v
        raise NotFound(f"collection '{name}' has no version {wanted} (see `aifab collections versions {name}`)")

    def promote(self, name: str, version: int) -> VersionInfo:
        target = self.version(name, version)
        with self.db.session() as s:
            row = s.get(CollectionRow, name)
            assert row is not None
            row.live_version = target.version
            vrow = s.get(CollectionVersionRow, (name, target.version))
            assert vrow is not None
            vrow.promoted_at = datetime.now(UTC)
        return self.version(name, version)

    # -- documents ------------------------------------------------------------------------------------

    def documents(self, name: str, version: int | None = None) -> builtins.list[DocumentRow]:
        v = self.version(name, version)
        with self.db.session() as s:
            return list(
                s.scalars(
                    select(DocumentRow).where(DocumentRow.collection == name, DocumentRow.version == v.version)
                    .order_by(DocumentRow.source)
                ).all()
            )

    def delete_document(self, name: str, document_id: str, version: int | None = None) -> int:
        """Remove one document's chunks and row; returns the number of chunks removed."""
        v = self.version(name, version)
        with self.db.session() as s:
            if s.get(DocumentRow, (name, v.version, document_id)) is None:
                raise NotFound(f"collection '{name}' has no document '{document_id}'")
        return self.remove_document(v, document_id)

    def remove_document(self, version: VersionInfo, document_id: str) -> int:
        """Chunks first, row last: a crash in between leaves a row whose removal is simply redone."""
        removed = self.store.delete(version.namespace, self.store.document_chunks(version.namespace, document_id))
        with self.db.session() as s:
            s.execute(
                delete(DocumentRow).where(
                    DocumentRow.collection == version.collection, DocumentRow.version == version.version,
                    DocumentRow.document_id == document_id,
                )
            )
        return removed
