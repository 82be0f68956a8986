"""``aifab eval run|runs|show``: eval suites as CI gates, and the runs the state store keeps."""

from __future__ import annotations

import sys
from contextlib import ExitStack
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

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
from aifab.cli.corpus import open_corpus
from aifab.cli.rag import progress_bar
from aifab.cli.remote import RemoteHarnesses, server_for
from aifab.evals import Baseline, EvalRun, EvalRuns, Row, load_suite, run_suite
from aifab.evals.junit import junit_xml
from aifab.evals.local import LocalHarnesses
from aifab.rag import Rag


def run(
    suite_file: Annotated[Path, typer.Argument(metavar="SUITE.toml", help="the eval suite", exists=True,
                                               dir_okay=False)],
    gate: Annotated[bool, typer.Option("--gate", help="exit 1 when any check fails (a CI gate)")] = False,
    junit: Annotated[Path | None, typer.Option("--junit", help="also write a JUnit XML report here")] = None,
    baseline: Annotated[str | None, typer.Option(
        "--baseline", help="compare with 'last' (the last stored run of this suite) or a JSON file that "
                           "`aifab eval run --json` wrote")] = None,
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Run every check of an eval suite, judge it against its thresholds (and a baseline's metrics), keep
    the run in the state store and print a table. A failed metric is one line on stderr; with --gate the
    command then exits 1."""
    suite, sha256 = load_suite(suite_file)
    settings = settings_from(config, data_dir)
    with ExitStack() as stack:
        registry = open_registry(settings)
        stack.callback(registry.db.close)
        runs = EvalRuns(registry.db)
        base = _baseline(baseline, runs, suite.name)
        server = server_for(settings)
        harnesses = RemoteHarnesses(server) if server is not None else LocalHarnesses(
            settings, registry=lambda: registry, rag=lambda: Rag(settings, stack.enter_context(open_corpus(settings))))
        with progress_bar(None, suite.name, not as_json and sys.stderr.isatty()) as bar:
            task = bar.task_ids[0]
            result = run_suite(suite, sha256, harnesses, baseline=base, on_progress=lambda check, done, total:
                               bar.update(task, description=check, completed=done, total=total))
        runs.add(result)
    if junit is not None:
        junit.write_bytes(junit_xml(result))
    if baseline is None and any(c.regression for c in suite.checks):
        warn("regression limits were not judged: no --baseline given (last, or a file --json wrote)")
    if as_json:
        print_json(result.to_dict())
    else:
        _print_run(result)
    for row in result.failures:
        typer.echo(f"aifab: eval {row.verdict}: {result.suite} {row.check} {row.metric}: {row.message}", err=True)
    if gate and not result.passed:
        raise typer.Exit(1)


def _baseline(spec: str | None, runs: EvalRuns, suite: str) -> Baseline | None:
    if spec is None:
        return None
    if spec == "last":
        last = runs.last(suite)
        if last is None:
            warn(f"no stored run of the suite '{suite}' to compare with: this run will be the first")
            return None
        return Baseline.of_run(last)
    return Baseline.from_file(Path(spec))


def runs(
    suite: Annotated[str | None, typer.Option("--suite", help="only the runs of this suite")] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, help="the newest N runs")] = 20,
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """The stored eval runs, newest first."""
    found = _store(config, data_dir).list(suite, limit=limit)
    if as_json:
        print_json([r.to_dict() for r in found])
        return
    table = Table("run", "suite", "started", "seconds", "result", "baseline")
    for r in found:
        table.add_row(r.id, r.suite, r.started_at.strftime("%Y-%m-%d %H:%M:%S"),
                      f"{(r.finished_at - r.started_at).total_seconds():.1f}",
                      "passed" if r.passed else f"FAILED ({len(r.failures)})", r.baseline or "-")
    _console().print(table)


def show(
    run_id: Annotated[str, typer.Argument(metavar="RUN_ID", help="a run id (see `aifab eval runs`)")],
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """One stored eval run: its verdicts, and the hashes of what it read."""
    found = _store(config, data_dir).get(run_id)
    if as_json:
        print_json(found.to_dict())
        return
    _print_run(found)
    typer.echo(f"suite file sha256 {found.hashes.get('suite', '-')}")
    for path, digest in found.hashes.get("files", {}).items():
        typer.echo(f"{path} sha256 {digest}")


def _store(config: Path | None, data_dir: Path | None) -> EvalRuns:
    settings = settings_from(config, data_dir, read_only=True)
    return EvalRuns(open_database(settings))


def _console() -> Console:
    return Console(width=None if sys.stdout.isatty() else 160)


def _print_run(run: EvalRun) -> None:
    title = f"{run.suite} ({run.id})" + (f", baseline {run.baseline}" if run.baseline else "")
    table = Table("check", "metric", "value", "threshold", "baseline", "delta", "verdict", title=title)
    for row in run.verdicts:
        table.add_row(row.check, row.metric, _num(row.value), _limit(row), _num(row.baseline),
                      _num(row.delta, signed=True), row.verdict.upper() if row.failed else row.verdict)
    _console().print(table)
    failed = len(run.failures)
    typer.echo(f"{run.suite}: " + ("passed" if run.passed else f"FAILED ({failed} of {len(run.verdicts)} metrics)"))


def _limit(row: Row) -> str:
    if row.threshold is None:
        return "-"
    return f"{'<=' if row.lower_is_better else '>='} {row.threshold:g}"


def _num(value: float | None, signed: bool = False) -> str:
    return "-" if value is None else f"{value:+.3f}" if signed else f"{value:.3f}"
