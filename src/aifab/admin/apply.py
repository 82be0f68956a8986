"""Config as code: ``aifab apply`` makes the state what the config file declares — ``[collections.NAME]``
(their sources ingested, with their own chunking) and ``[keys.NAME]`` (scopes and limits; secrets from the
environment or files) — printing the plan first, as Terraform does. A second apply finds nothing to do;
what the file no longer declares is removed only with ``prune``.

The state is reached through a :class:`Target`: the state store itself, or the admin API of the server
that holds it (``aifab.cli.remote``); ``aifab.testing`` runs one conformance suite over both."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from aifab.config import CollectionSettings, KeySettings, Settings, read_secret
from aifab.corpus.sources import discover
from aifab.errors import ConfigError
from aifab.gateway.keys import SCOPE_FIELDS


class Target(Protocol):
    """The state ``apply`` reads and changes: plain JSON in and out, as the admin API speaks it."""

    def keys(self) -> list[dict[str, Any]]: ...  # the active keys

    def create_key(self, body: dict[str, Any]) -> dict[str, Any]: ...  # NewKey fields (+ secret); the key

    def update_key(self, name: str, body: dict[str, Any]) -> dict[str, Any]: ...

    def revoke_key(self, name: str) -> None: ...

    def collections(self) -> list[dict[str, Any]]: ...  # CollectionInfo.to_dict() each

    def documents(self, name: str) -> list[dict[str, Any]]: ...  # the live version's: source, content_hash, acl

    def ingest(self, name: str, paths: list[str], acl: list[str], prune: bool,
               chunking: tuple[int, int]) -> dict[str, Any]: ...  # the ingest report

    def promote(self, name: str, version: int) -> None: ...

    def delete_collection(self, name: str) -> None: ...

    def reload(self, dry_run: bool) -> dict[str, Any] | None: ...  # a running server reads its config again


@dataclass
class Change:
    """One thing the plan does: ``+`` create, ``~`` change, ``-`` remove; ``lines`` say what, one per line."""

    sign: str
    kind: str
    name: str
    lines: list[str] = field(default_factory=list)
    run: Callable[[Target], str | None] = lambda target: None  # returns a line to print after it ran

    def render(self) -> list[str]:
        return [f"{self.sign} {self.kind} {self.name}", *(f"    {line}" for line in self.lines)]


@dataclass
class Plan:
    changes: list[Change]
    kept: list[str]  # things in the state the file does not declare, kept (no prune)
    restart: list[str] = field(default_factory=list)  # sections a running server reads only at start

    def render(self) -> list[str]:
        out = [line for change in self.changes for line in change.render()]
        if self.kept:
            out.append(f"  not in the file, kept (--prune removes them): {', '.join(self.kept)}")
        if self.restart:
            out.append(f"  changed, and read only when `aifab up` starts (restart it): {', '.join(self.restart)}")
        counts = {sign: sum(c.sign == sign for c in self.changes) for sign in "+~-"}
        out.append(f"Plan: {counts['+']} to add, {counts['~']} to change, {counts['-']} to remove."
                   if self.changes else "No changes: the state matches the file.")
        return out


def plan(settings: Settings, base: Path, target: Target, *, prune: bool = False) -> Plan:
    """What applying ``settings`` (read from a file in ``base``) to ``target`` would do."""
    changes: list[Change] = []
    kept: list[str] = []
    have = {c["name"]: c for c in target.collections()}
    for name, declared in settings.collections.items():
        change = _collection(settings, base, target, name, declared, have.get(name))
        if change is not None:
            changes.append(change)
    for name in sorted(set(have) - set(settings.collections)):
        if prune:
            changes.append(Change("-", "collection", name, [f"{have[name]['documents']} documents"],
                                  run=_deleting(name)))
        else:
            kept.append(f"collection {name}")
    keys = {k["name"]: k for k in target.keys()}
    for name, declared_key in settings.keys.items():
        change = _key(base, name, declared_key, keys.get(name))
        if change is not None:
            changes.append(change)
    for name in sorted(set(keys) - set(settings.keys)):
        if prune:
            changes.append(Change("-", "key", name, ["revoked"], run=_revoking(name)))
        else:
            kept.append(f"key {name}")
    served = target.reload(True)
    if served and served["changes"]:
        changes.append(Change("~", "server", "config", served["changes"], run=_reloading))
    return Plan(changes, kept, served["restart"] if served else [])


def _reloading(target: Target) -> str:
    target.reload(False)
    return "apps and routes served from now on"


def _deleting(name: str) -> Callable[[Target], None]:
    return lambda t: t.delete_collection(name)


def _revoking(name: str) -> Callable[[Target], None]:
    return lambda t: t.revoke_key(name)


def execute(p: Plan, target: Target, echo: Callable[[str], None]) -> None:
    for change in p.changes:
        said = change.run(target)
        echo(f"{change.sign} {change.kind} {change.name}: done" + (f" ({said})" if said else ""))


# --- collections -----------------------------------------------------------------------------------

def _collection(settings: Settings, base: Path, target: Target, name: str, declared: CollectionSettings,
                have: dict[str, Any] | None) -> Change | None:
    roots = [base / s for s in declared.sources]
    missing = [str(r) for r in roots if not r.exists()]
    if missing:
        raise ConfigError(f"collections.{name}.sources: no such file or folder: {', '.join(missing)}")
    chunking = (declared.chunk_tokens or settings.corpus.chunk_tokens,
                declared.chunk_overlap if declared.chunk_overlap is not None else settings.corpus.chunk_overlap)
    files, _ = discover(roots)
    acl = sorted(set(declared.acl))
    paths = [str(r.resolve()) for r in roots]

    def run(t: Target) -> str:
        report = t.ingest(name, paths, acl, declared.prune, chunking)
        said = f"v{report['version']}: {report['documents_added']} added, {report['documents_updated']} updated, " \
               f"{report['documents_deleted']} removed, {report['chunks_embedded']} chunks embedded"
        if report.get("new_version") and report["version"] > 1:
            t.promote(name, report["version"])
            said += f"; version {report['version']} is live"
        if report.get("errors"):
            said += f"; {len(report['errors'])} file(s) failed: " + "; ".join(
                f"{e['path']}: {e['reason']}" for e in report["errors"][:3])
        return said

    if have is None:
        return Change("+", "collection", name, [f"{len(files)} files from {', '.join(declared.sources)}",
                                                f"chunking {chunking[0]}/{chunking[1]} tokens"], run=run)
    lines = []
    live = next((v for v in have["versions"] if v["version"] == have["live_version"]), None)
    chunker = (live or {}).get("pipeline", {}).get("chunker", {})
    was = (chunker.get("chunk_tokens"), chunker.get("overlap_tokens"))
    if live is not None and was != chunking:
        lines.append(f"chunking {was[0]}/{was[1]} -> {chunking[0]}/{chunking[1]} tokens: a new version, made live")
    docs = {d["source"]: d for d in target.documents(name)} if live is not None else {}
    for src in files:
        doc = docs.get(src.source)
        if doc is None:
            lines.append(f"+ {src.source}")
        elif doc["content_hash"] != _sha256(src.path) or sorted(doc["acl"]) != acl:
            lines.append(f"~ {src.source}")
    found = {s.source for s in files}
    if declared.prune:
        lines += [f"- {source}" for source in sorted(docs) if source not in found and _under(source, paths)]
    return Change("~", "collection", name, lines, run=run) if lines else None


def _under(source: str, roots: list[str]) -> bool:
    return any(source == r or source.startswith(r.rstrip("/") + "/") for r in roots)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# --- keys ------------------------------------------------------------------------------------------

def _key(base: Path, name: str, declared: KeySettings, have: dict[str, Any] | None) -> Change | None:
    wanted = declared.model_dump(include=set(SCOPE_FIELDS))
    secret = _secret(base, name, declared)
    if have is None:
        shown = [f"{k} = {v}" for k, v in wanted.items() if v not in (None, False)] or ["every model, no limits"]
        source = (f"secret from ${declared.secret_env}" if declared.secret_env else
                  f"secret from {declared.secret_file}" if declared.secret_file else "a new secret, printed once")

        def create(t: Target) -> str:
            made = t.create_key({"name": name, **wanted, "secret": secret})
            said = "" if secret else f"secret: {made['key']} (store it now: it is not shown again)"
            if made.get("first"):
                said += ("; " if said else "") + "the first key: from now on every request needs one"
            return said

        return Change("+", "key", name, [*shown, source], run=create)
    diff = {k: v for k, v in wanted.items() if _norm(have.get(k)) != _norm(v)}
    lines = [f"{k}: {have.get(k)} -> {v}" for k, v in diff.items()]
    body: dict[str, Any] = dict(diff)
    if secret is not None and not secret.startswith(have["prefix"]):  # only a prefix of the secret is kept
        lines.append("secret: rotated")
        body["secret"] = secret
    if not lines:
        return None

    def update(t: Target) -> None:
        t.update_key(name, body)

    return Change("~", "key", name, lines, run=update)


def _norm(value: Any) -> Any:
    return list(value) if isinstance(value, tuple | list) else value


def _secret(base: Path, name: str, declared: KeySettings) -> str | None:
    """The declared secret: from the environment or a file, never from the config file itself."""
    where = f"keys.{name}.secret_env" if declared.secret_env else f"keys.{name}.secret_file"
    return read_secret(declared.secret_env, base / declared.secret_file if declared.secret_file else None, where)
