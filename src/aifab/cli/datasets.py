"""``aifab datasets``: fine-tuning datasets built from the interaction log or imported from JSONL."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote

import typer
from rich.console import Console
from rich.table import Table

from aifab.cli.common import ConfigOpt, DataDirOpt, JsonOpt, open_database, print_json, settings_from
from aifab.cli.remote import server_for
from aifab.errors import InvalidRequest
from aifab.finetune.datasets import DatasetStore, Saved, build_from_logs, import_jsonl
from aifab.finetune.datasets.store import MIN_EXAMPLES
from aifab.gateway.usage import parse_since

app = typer.Typer(help="Build, import, list and show fine-tuning datasets (versioned, hashed JSONL).",
                  no_args_is_help=True)
KindOpt = Annotated[str, typer.Option("--kind", help="sft (chat examples) or preference (chosen/rejected pairs)")]
MinOpt = Annotated[int, typer.Option("--min-examples", help="refuse a dataset with fewer examples than this")]
NameOpt = Annotated[str, typer.Option("--name", "-n", help="dataset name; each build or import is a new version")]
SHOWN = 20  # interactions listed by `models lineage` without --json


def open_datasets(config: Path | None, data_dir: Path | None, *, read_only: bool = False) -> DatasetStore:
    settings = settings_from(config, data_dir, read_only=read_only)
    return DatasetStore(open_database(settings), settings.data_dir / "datasets")


@app.command("build")
def build(
    name: NameOpt,
    from_logs: Annotated[bool, typer.Option(
        "--from-logs", help="from the gateway's interaction log and the feedback on it")] = False,
    since: Annotated[str | None, typer.Option(
        "--since", help="24h, 7d, 30m or a date (2026-11-01); default: all time")] = None,
    model: Annotated[str | None, typer.Option("--model", help="only requests for this model name or route")] = None,
    kind: KindOpt = "sft",
    min_examples: MinOpt = MIN_EXAMPLES,
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Turn rated interactions (with consent) into SFT examples or preference pairs: PII redacted,
    duplicates removed, split train/eval, stored as the next version."""
    if not from_logs:
        raise InvalidRequest("say where the examples come from: --from-logs (for a file: aifab datasets import)")
    store = open_datasets(config, data_dir)
    saved = build_from_logs(store.db, store, name, kind=kind, since=parse_since(since) if since else None,
                            model=model, min_examples=min_examples)
    _report(saved, as_json)


@app.command("import")
def import_file(
    path: Annotated[Path, typer.Argument(help="a JSONL file in OpenAI's chat fine-tuning format")],
    name: NameOpt,
    kind: KindOpt = "sft",
    strict: Annotated[bool, typer.Option(
        "--strict", help="refuse the whole file if any line is malformed (default: skip such lines)")] = False,
    min_examples: MinOpt = MIN_EXAMPLES,
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Import a JSONL file as the next version of a dataset; malformed lines are reported by number."""
    store = open_datasets(config, data_dir)
    saved = import_jsonl(store, path, name, kind=kind, strict=strict, min_examples=min_examples,
                         report=lambda problem: typer.echo(problem, err=True))
    if saved.problems:
        typer.echo(f"skipped {len(saved.problems)} malformed line(s)", err=True)
    _report(saved, as_json)


@app.command("list")
def list_datasets(
    name: Annotated[str | None, typer.Argument(help="only the versions of this dataset")] = None,
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """List dataset versions."""
    server = server_for(settings_from(config, data_dir, read_only=True))
    if server is not None:
        versions = server.call("GET", "/v1/admin/datasets", params={"name": name} if name else None)["data"]
    else:
        versions = [v.to_dict() for v in open_datasets(config, data_dir, read_only=True).list(name)]
    if as_json:
        print_json(versions)
        return
    table = Table("dataset", "kind", "train", "eval", "sha256", "source", "created")
    for v in versions:
        table.add_row(v["ref"], v["kind"], str(v["counts"].get("train")), str(v["counts"].get("eval")), v["sha256"][:12],
                      source_line(v["source"]), v["created"][:16].replace("T", " ") if v["created"] else "-")
    Console(width=None if sys.stdout.isatty() else 160).print(table)


@app.command("show")
def show(
    ref: Annotated[str, typer.Argument(help="NAME (latest version) or NAME@vN")],
    head: Annotated[int, typer.Option("--head", help="how many train examples to print")] = 3,
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Show one dataset version: counts, hash, source and its first examples."""
    server = server_for(settings_from(config, data_dir, read_only=True))
    if server is not None:
        data = server.call("GET", f"/v1/admin/datasets/{quote(ref, safe='')}", params={"head": head})
    else:
        version = open_datasets(config, data_dir, read_only=True).get(ref)
        data = {**version.to_dict(), "head": version.head(head)}
    if as_json:
        print_json(data)
        return
    counts = data["counts"]
    typer.echo(f"{data['ref']}  ({data['kind']})")
    typer.echo(f"  sha256    {data['sha256']}")
    typer.echo(f"  path      {data['path']}")
    typer.echo(f"  examples  {counts.get('train')} train, {counts.get('eval')} eval")
    if counts.get("dropped"):
        typer.echo(f"  dropped   {_dropped(counts['dropped'])}")
    typer.echo(f"  source    {source_line(data['source'])}")
    for example in data["head"]:
        typer.echo(json.dumps(example, ensure_ascii=False)[:400])


def source_line(source: dict[str, Any]) -> str:
    if source.get("from") == "file":
        return f"file {source.get('path')} (sha256 {str(source.get('sha256'))[:12]})"
    window = [f"since {source['since']}" if source.get("since") else "", f"model {source['model']}"
              if source.get("model") else ""]
    scope = ", ".join(w for w in window if w)
    return (f"logs{' (' + scope + ')' if scope else ''}: {len(source.get('interactions') or [])} interactions, "
            f"{len(source.get('feedback') or [])} feedback")


def lineage_lines(data: dict[str, Any], indent: str = "") -> list[str]:
    """``aifab models lineage`` as text: a model's chain, or a response and then its model's chain."""
    if "response" in data:
        return _response_lines(data)
    lines = [f"{indent}model {data['model']}"]
    lineage = data["lineage"]
    for field in ("base", "method", "metrics"):
        if lineage.get(field) is not None:
            lines.append(f"{indent}  {field:12}{_plain(lineage[field])}")
    if "gate" in lineage:  # a fine-tune: whether it beat its base decides whether it may be promoted
        lines.append(f"{indent}  {'gate':12}{_gate(lineage['gate'])}")
    ds = data.get("dataset")
    if ds:
        lines.append(f"{indent}  {'dataset':12}{ds['ref']} ({ds['kind']}, sha256 {ds['sha256'][:12]}, "
                     f"{ds['counts'].get('train')} train, {ds['counts'].get('eval')} eval)")
        src = ds["source"]
        lines.append(f"{indent}  {'source':12}" + (source_line(src) if src.get("from") == "file" else
                     f"logs: {src.get('interactions', 0)} interactions, {src.get('feedback', 0)} feedback"))
    rows = data.get("interactions") or []
    if rows:
        lines.append(f"{indent}  interactions ({len(rows)}):")
        for r in rows[:SHOWN]:
            when = r["ts"][:19].replace("T", " ")
            lines.append(f"{indent}    {when}  {r['id']}  {r['model']}  key {r['key'] or '-'}  "
                         f"{r['rating'] or 'unrated'}{'  corrected' if r['corrected'] else ''}")
        if len(rows) > SHOWN:
            lines.append(f"{indent}    ... and {len(rows) - SHOWN} more (--json lists all)")
    lines += [f"{indent}  missing: {m}" for m in data.get("missing", [])]
    return lines


def _response_lines(data: dict[str, Any]) -> list[str]:
    r = data["response"]
    lines = [f"response {r['id']}  ({r['ts'][:19].replace('T', ' ')}, key {r['key'] or '-'}, status {r['status']})",
             f"  answered by  model {r['model']}, route {r['route'] or '-'}, upstream {r['upstream'] or '-'}"]
    for fb in data["feedback"]:
        lines.append(f"  feedback     {fb['rating']}{' with a correction' if fb['correction'] else ''}")
    lines.append(f"  in datasets  {', '.join(data['datasets']) or '-'}")
    lines += [f"  missing: {m}" for m in data["missing"]]
    if data.get("model"):
        lines += lineage_lines(data["model"], indent="  ")
    return lines


def _report(saved: Saved, as_json: bool) -> None:
    v = saved.version
    if as_json:
        print_json({"status": "created" if saved.created else "unchanged", "dataset": v.to_dict(),
                    "counts": saved.counts, "problems": list(saved.problems)})
        return
    c = saved.counts
    if saved.created:
        typer.echo(f"built {v.ref} ({v.kind}): {c['train']} train, {c['eval']} eval, sha256 {v.sha256[:12]}")
    else:
        typer.echo(f"unchanged: {v.ref} has the same content (sha256 {v.sha256[:12]}); no new version")
    if c.get("dropped"):
        typer.echo(f"dropped: {_dropped(c['dropped'])}")


def _dropped(dropped: dict[str, int]) -> str:
    return ", ".join(f"{n} {reason.replace('_', ' ')}" for reason, n in dropped.items())


def _gate(verdict: dict[str, Any] | None) -> str:
    if not verdict:
        return "not run (--no-gate)"
    reason = f": {verdict['reason']}" if verdict.get("reason") else ""
    return ("passed" if verdict.get("passed") else "NOT passed (promote needs --force)") + reason


def _plain(value: Any) -> str:
    return json.dumps(value, default=str) if isinstance(value, dict | list) else str(value)
