"""``aifab models promote|rollback|rollouts``: move a served name's traffic to a new model version through
the gateway, a canary share first; a running server follows within a second."""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import quote

import typer

from aifab.admin import state
from aifab.cli.common import ConfigOpt, DataDirOpt, JsonOpt, open_registry, print_json, settings_from
from aifab.cli.remote import server_for
from aifab.errors import InvalidRequest
from aifab.gateway.rollouts import RolloutStore


def promote(
    name: Annotated[str, typer.Argument(help="the new version: a registered model, e.g. a fine-tune")],
    canary: Annotated[float | None, typer.Option("--canary", help="percent of the traffic to send to it")] = None,
    full: Annotated[bool, typer.Option("--full", help="send it all the traffic (keeps the old one for rollback)")] = False,
    serves: Annotated[str | None, typer.Option(
        "--as", help="the model name clients call [default: the base the model was fine-tuned from]")] = None,
    force: Annotated[bool, typer.Option("--force", help="promote although its evaluation gate did not pass")] = False,
    config: ConfigOpt = None, data_dir: DataDirOpt = None, as_json: JsonOpt = False,
) -> None:
    """Promote NAME: --canary 10 sends 10% of the served name's traffic to it, --full all of it."""
    if (canary is None) == (not full):
        raise InvalidRequest("say how much traffic: --canary PERCENT or --full")
    settings = settings_from(config, data_dir)
    server = server_for(settings)
    if server is not None:
        body = {"name": name, "canary": canary, "full": full, "as": serves, "force": force}
        _show(server.call("POST", "/v1/admin/rollouts", json=body), as_json)
    else:
        rollout = state.promote(open_registry(settings), name, canary=canary, full=full, serves=serves, force=force)
        _show(rollout.to_dict(), as_json)


def rollback(
    model: Annotated[str, typer.Argument(help="the model name clients call")],
    config: ConfigOpt = None, data_dir: DataDirOpt = None, as_json: JsonOpt = False,
) -> None:
    """Stop MODEL's canary, or return a full promotion to the version before it."""
    settings = settings_from(config, data_dir)
    server = server_for(settings)
    if server is not None:
        _show(server.call("POST", f"/v1/admin/rollouts/{quote(model, safe='')}/rollback"), as_json)
    else:
        _show(RolloutStore(open_registry(settings).db).rollback(model).to_dict(), as_json)


def rollouts(config: ConfigOpt = None, data_dir: DataDirOpt = None, as_json: JsonOpt = False) -> None:
    """List the served names whose traffic is being moved, or was."""
    settings = settings_from(config, data_dir, read_only=True)
    server = server_for(settings)
    if server is not None:
        items = [{k: v for k, v in r.items() if k != "traffic"} for r in server.call("GET", "/v1/admin/rollouts")["data"]]
    else:
        items = [r.to_dict() for r in RolloutStore(open_registry(settings).db).all().values()]
    if as_json:
        print_json(items)
        return
    for r in items:
        _show(r, False)
    if not items:
        typer.echo("no rollouts")


def _show(r: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print_json(r)
        return
    split = (f"{100 - r['percent']:g}% {r['current']}, {r['percent']:g}% {r['candidate']}" if r["candidate"]
             else f"100% {r['current']}")
    back = f"; rollback returns to {r['previous']}" if r["previous"] else ""
    typer.echo(f"{r['model']}: {split}{back}")
