"""The state store itself as ``aifab apply``'s :class:`~aifab.admin.apply.Target` (no server holds it)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from aifab.admin.keys import KeyChange, NewKey, create_key, key_dict, update_key
from aifab.admin.state import collection_detail
from aifab.corpus.service import Corpus
from aifab.gateway.keys import KeyStore


class LocalTarget:
    def __init__(self, corpus: Corpus, keys: KeyStore) -> None:
        self.corpus, self._keys = corpus, keys

    def keys(self) -> list[dict[str, Any]]:
        return [key_dict(k) for k in self._keys.list()]

    def create_key(self, body: dict[str, Any]) -> dict[str, Any]:
        key, secret, first = create_key(self._keys, self.corpus.settings, self.corpus.registry, NewKey(**body))
        return {**key_dict(key), "key": secret, "first": first}

    def update_key(self, name: str, body: dict[str, Any]) -> dict[str, Any]:
        return key_dict(update_key(self._keys, self.corpus.settings, self.corpus.registry, name, KeyChange(**body)))

    def revoke_key(self, name: str) -> None:
        self._keys.revoke(name)

    def collections(self) -> list[dict[str, Any]]:
        return [c.to_dict() for c in self.corpus.collections.list()]

    def documents(self, name: str) -> list[dict[str, Any]]:
        return collection_detail(self.corpus, name)["documents_list"]

    def ingest(self, name: str, paths: list[str], acl: list[str], prune: bool,
               chunking: tuple[int, int]) -> dict[str, Any]:
        return self.corpus.ingest_paths(name, [Path(p) for p in paths], acl=acl, prune=prune,
                                        chunking=chunking).to_dict()

    def promote(self, name: str, version: int) -> None:
        self.corpus.collections.promote(name, version)

    def delete_collection(self, name: str) -> None:
        self.corpus.collections.delete(name)

    def reload(self, dry_run: bool) -> dict[str, Any] | None:
        return None  # no server runs: it reads the file when it starts
