"""``aifab models promote|rollback|rollouts``: move a served name's traffic to a new model version through
the gateway, a canary share first; a running server follows within a second."""

from __future__ import annotations

from typing import Annotated

import typer

from aifab.cli.common import ConfigOpt, DataDirOpt, JsonOpt, open_registry, print_json, settings_from
from aifab.errors import InvalidRequest
from aifab.gateway.rollouts import Rollout, RolloutStore


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
    registry = open_registry(settings_from(config, data_dir))
    pkg = registry.get(name)
    gate = pkg.lineage.get("gate") or {}
    if gate.get("passed") is False and not force:
        raise InvalidRequest(f"'{name}' did not pass its evaluation gate ({gate.get('reason', 'no reason recorded')}); "
                             "--force to promote it anyway")
    public = serves or pkg.lineage.get("serves") or pkg.lineage.get("base")
    if not public:
        raise InvalidRequest(f"which model name does '{name}' serve? give --as NAME")
    store = RolloutStore(registry.db)
    rollout = store.canary(public, name, canary) if canary is not None else store.full(public, name)
    _show(rollout, as_json)


def rollback(
    model: Annotated[str, typer.Argument(help="the model name clients call")],
    config: ConfigOpt = None, data_dir: DataDirOpt = None, as_json: JsonOpt = False,
) -> None:
    """Stop MODEL's canary, or return a full promotion to the version before it."""
    registry = open_registry(settings_from(config, data_dir))
    _show(RolloutStore(registry.db).rollback(model), as_json)


def rollouts(config: ConfigOpt = None, data_dir: DataDirOpt = None, as_json: JsonOpt = False) -> None:
    """List the served names whose traffic is being moved, or was."""
    registry = open_registry(settings_from(config, data_dir, read_only=True))
    items = list(RolloutStore(registry.db).all().values())
    if as_json:
        print_json([r.to_dict() for r in items])
        return
    for r in items:
        _show(r, False)
    if not items:
        typer.echo("no rollouts")


def _show(r: Rollout, as_json: bool) -> None:
    if as_json:
        print_json(r.to_dict())
        return
    split = f"{100 - r.percent:g}% {r.current}, {r.percent:g}% {r.candidate}" if r.candidate else f"100% {r.current}"
    back = f"; rollback returns to {r.previous}" if r.previous else ""
    typer.echo(f"{r.model}: {split}{back}")
