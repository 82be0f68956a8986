"""``aifab keys`` and ``aifab usage``: the gateway's API keys and what they used."""

from __future__ import annotations

import sys
from datetime import datetime
from typing import Annotated, Any
from urllib.parse import quote

import typer
from rich.console import Console
from rich.table import Table

from aifab.admin.keys import NewKey, create_key, key_dict
from aifab.cli.common import (
    ConfigOpt,
    DataDirOpt,
    JsonOpt,
    open_database,
    open_registry,
    print_json,
    settings_from,
    warn,
)
from aifab.cli.remote import server_for
from aifab.gateway.keys import KeyStore
from aifab.gateway.usage import parse_since, usage_report

app = typer.Typer(
    help="Create, list and revoke the gateway's API keys (a running server sees changes at once).",
    no_args_is_help=True,
)
ListOpt = list[str] | None
IntOpt = int | None


def _split(values: ListOpt) -> list[str] | None:
    """``--models a,b`` and ``--models a --models b`` alike; not given = unrestricted."""
    return None if not values else [v for value in values for v in value.split(",") if v.strip()]


def _console() -> Console:
    return Console(width=None if sys.stdout.isatty() else 160)


@app.command("create")
def create(
    name: Annotated[str, typer.Option("--name", "-n", help="unique name (A-Z a-z 0-9 . _ -), e.g. search")],
    models: Annotated[ListOpt, typer.Option(
        "--models", help="models it may call (comma-separated or repeated); default: all")] = None,
    collections: Annotated[ListOpt, typer.Option(
        "--collections", help="collections it may read; default: all")] = None,
    acl: Annotated[ListOpt, typer.Option(
        "--acl", help="ACL tag its retrieval may see; repeat for several; default: every chunk")] = None,
    tools: Annotated[ListOpt, typer.Option(
        "--tools", help="tools it may list and run (/mcp, /v1/tools, apps with tools): [tools.*] entries, search, ask; "
        "'' for none; default: all")] = None,
    rpm: Annotated[IntOpt, typer.Option("--rpm", help="requests per minute")] = None,
    tpm: Annotated[IntOpt, typer.Option("--tpm", help="tokens (prompt + completion) per minute")] = None,
    budget_tokens: Annotated[IntOpt, typer.Option("--budget-tokens", help="lifetime token budget")] = None,
    max_tokens: Annotated[IntOpt, typer.Option(
        "--max-tokens", help="max_tokens of its requests is clamped to this")] = None,
    admin: Annotated[bool, typer.Option(
        "--admin", help="every model, collection and chunk, and the admin endpoints")] = False,
    log_content: Annotated[bool, typer.Option(
        "--log-content", help="keep its (redacted) prompts and completions in the audit log")] = False,
    allow_training: Annotated[bool, typer.Option(
        "--allow-training", help="its logged requests may be used as training data")] = False,
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Create an API key and print its secret, once: only a hash of it is kept.

    The first key ends keyless access: from then on every request needs a key, local ones too."""
    settings = settings_from(config, data_dir)
    new = NewKey(name=name, models=_split(models), collections=_split(collections), acl=_split(acl),
                 tools=_split(tools), rpm=rpm, tpm=tpm, budget_tokens=budget_tokens, max_tokens=max_tokens,
                 admin=admin, log_content=log_content, allow_training=allow_training)
    server = server_for(settings)
    if server is not None:
        made = server.call("POST", "/v1/admin/keys", json=new.model_dump())
    else:
        registry = open_registry(settings)
        key, secret, first = create_key(KeyStore(registry.db), settings, registry, new)
        made = {**key_dict(key), "key": secret, "first": first}
    secret, first = made.pop("key"), made.pop("first")
    if first:
        warn("this is the first API key: from now on every request needs one, local ones included "
             "(a UI or script that calls without a key gets 401 from now on)")
    if as_json:
        print_json({**made, "key": secret})
        return
    typer.echo(f"created key {made['name']} (id {made['id']})")
    typer.echo(secret)
    typer.echo("Store this secret now: it will not be shown again. Send it as the header "
               f"'Authorization: Bearer {secret}', or set OPENAI_API_KEY={secret} for OpenAI clients.", err=True)


@app.command("list")
def list_keys(
    include_revoked: Annotated[bool, typer.Option("--all", help="include revoked keys")] = False,
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """List API keys (never their secrets): scopes, limits, when created and revoked."""
    settings = settings_from(config, data_dir, read_only=True)
    server = server_for(settings)
    if server is not None:
        keys = server.call("GET", "/v1/admin/keys", params={"all": include_revoked})["data"]
    else:
        keys = [key_dict(k) for k in KeyStore(open_database(settings)).list(include_revoked=include_revoked)]
    if as_json:
        print_json(keys)
        return
    table = Table("name", "id", "prefix", "scopes", "limits", "created", "revoked")
    for k in keys:
        table.add_row(k["name"], k["id"], k["prefix"] + "…", _scopes(k), _limits(k), _when(k["created_at"]),
                      _when(k["revoked_at"]))
    _console().print(table)


@app.command("revoke")
def revoke(
    name_or_id: Annotated[str, typer.Argument(help="key name or id")],
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Revoke an API key for good; a running gateway refuses it from its next request."""
    settings = settings_from(config, data_dir)
    server = server_for(settings)
    if server is not None:
        key = server.call("DELETE", f"/v1/admin/keys/{quote(name_or_id, safe='')}")
    else:
        key = key_dict(KeyStore(open_database(settings)).revoke(name_or_id))
    if as_json:
        print_json(key)
    else:
        typer.echo(f"revoked {key['name']} (id {key['id']})")


def usage(
    key: Annotated[str | None, typer.Option("--key", "-k", help="one key (name or id); default: all")] = None,
    since: Annotated[str | None, typer.Option(
        "--since", help="24h, 7d, 30m or a date (2026-11-01); default: all time")] = None,
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Requests, errors, tokens and latency per key and model (from the audit log), and budgets left."""
    settings = settings_from(config, data_dir, read_only=True)
    server = server_for(settings)
    if server is not None:
        report = server.call("GET", "/v1/usage", params={k: v for k, v in (("key", key), ("since", since)) if v})
    else:
        db = open_database(settings)
        report = usage_report(db, key=KeyStore(db).get(key) if key else None,
                              since=parse_since(since) if since else None)
    if as_json:
        print_json(report)
        return
    table = Table("key", "model", "requests", "errors", "prompt tok", "completion tok", "p50 / p95 ms",
                  "budget left")
    for e in report["keys"]:
        errors = e["errors"]
        latency = "-" if e["latency_ms"] is None else f"{e['latency_ms']['p50']} / {e['latency_ms']['p95']}"
        budget = "-" if e["budget_left"] is None else f"{e['budget_left']} of {e['budget_tokens']}"
        table.add_row(e["key"] or "(no key)", "all", str(e["requests"]),
                      f"{errors['4xx']} 4xx, {errors['5xx']} 5xx", str(e["prompt_tokens"]),
                      str(e["completion_tokens"]), latency, budget)
        for model, m in sorted(e["models"].items()):
            table.add_row("", model, str(m["requests"]), str(m["errors"]), str(m["prompt_tokens"]),
                          str(m["completion_tokens"]), "", "")
    typer.echo(f"usage since {report['since'] or 'the start'}")
    _console().print(table)


def _scopes(k: dict[str, Any]) -> str:
    parts = ["admin"] if k["admin"] else [f"{label}={','.join(k[label]) or 'none'}"
                                          for label in ("models", "collections", "acl", "tools")
                                          if k[label] is not None] or ["all"]
    flags = [flag for flag, field in (("log-content", "log_content"), ("training", "allow_training")) if k[field]]
    return " ".join(parts + flags)


def _limits(k: dict[str, Any]) -> str:
    parts = [f"{label}={k[field]}" for label, field in (("rpm", "rpm"), ("tpm", "tpm"), ("budget", "budget_tokens"),
                                                        ("max_tokens", "max_tokens")) if k[field] is not None]
    return " ".join(parts) or "-"


def _when(ts: datetime | str | None) -> str:
    if isinstance(ts, str):  # through the server: ISO text
        ts = datetime.fromisoformat(ts)
    return ts.strftime("%Y-%m-%d %H:%M") if ts else "-"
