"""``aifab ask`` and ``aifab eval``: grounded answers and their measurement, in-process."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from aifab.admin.answers import Mode, Question
from aifab.cli.common import ConfigOpt, DataDirOpt, JsonOpt, print_json, settings_from
from aifab.cli.corpus import open_corpus
from aifab.cli.remote import RemoteHarnesses, Server, server_error, server_for
from aifab.errors import UpstreamError
from aifab.evals.suite import AnswersCheck, RetrievalCheck
from aifab.rag import Rag
from aifab.rag.evaluate import load_qa
from aifab.rag.harness import (
    answer,
    measure_answers,
    measure_retrieval,
    open_engine,
    resolve_app,
    retrieval_settings,
)

app = typer.Typer(help="Measure retrieval and answers on a question set (JSONL).", no_args_is_help=True)
CollectionOpt = Annotated[str | None, typer.Option("--collection", "-C", help="answer from this collection")]
AppOpt = Annotated[str | None, typer.Option("--app", help="an app of the config (its \\[apps.NAME] section: collection, model, prompt)")]
TopKOpt = Annotated[int | None, typer.Option("--top-k", min=1, max=100, help="passages to retrieve [default: rag.top_k]")]
ModeOpt = Annotated[Mode | None, typer.Option("--mode", help="hybrid, dense or lexical [default: rag.mode]")]
QaOpt = Annotated[Path, typer.Option("--qa", help="JSONL lines of {question, gold[, answer]}", exists=True, dir_okay=False)]


@contextmanager
def open_rag(config: Path | None, data_dir: Path | None) -> Iterator[Rag]:
    """Retrieval and answers only read the data directory: a missing one is not created."""
    settings = settings_from(config, data_dir, read_only=True)
    with open_corpus(settings) as corpus:
        yield Rag(settings, corpus)


def _where(c: dict[str, Any]) -> str:
    place = str(c["source"])
    if c["section"]:
        place += " § " + " > ".join(c["section"])
    if c["page"]:
        place += f", page {c['page']}"
    return f"{place} (characters {c['start']}-{c['end']})"


def ask(
    question: Annotated[str, typer.Argument(help="the question")],
    collection: CollectionOpt = None,
    app_name: AppOpt = None,
    top_k: TopKOpt = None,
    mode: ModeOpt = None,
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Answer a question from a collection, streaming the answer, then list its numbered sources
    (* = cited by a [n] marker in the answer, ~ = attributed to an answer sentence after generation).
    Says it does not know when nothing relevant is found."""
    server = server_for(settings_from(config, data_dir, read_only=True))
    if server is not None:
        q = Question(question=question, collection=collection, app=app_name, top_k=top_k, mode=mode)
        result = _ask_through(server, q, echo=not as_json)
    else:
        with open_rag(config, data_dir) as rag:
            app = resolve_app(rag, app_name, collection, top_k=top_k, mode=mode)
            with open_engine(rag, app, _announce) as engine:
                result = asyncio.run(answer(rag, app, engine, question, on_text=None if as_json else _echo))
    if as_json:
        print_json(result)
        return
    typer.echo("")
    if result["citations"]:
        typer.echo("\nSources:")
    for c in result["citations"]:
        mark = {"marker": "*", "attributed": "~"}.get(c.get("found") or "", " ")
        typer.echo(f"{mark}[{c['index']}] {_where(c)}")


def _ask_through(server: Server, q: Question, echo: bool) -> dict[str, Any]:
    """The answer of the server that holds the data directory, streamed as offline."""
    result: dict[str, Any] | None = None
    for event in server.events("/v1/admin/ask", q.model_dump(exclude_none=True)):
        if "error" in event:
            raise server_error(event)
        if "text" in event and echo:
            _echo(event["text"])
        result = event.get("result", result)
    if result is None:
        raise UpstreamError(f"the server at {server.url} ended the answer early")
    return result


def _quiet(done: int, total: int | None) -> None:
    """No progress: a server measures without telling how far it got."""


def _announce(message: str) -> None:
    typer.echo(message, err=True)


def _echo(text: str) -> None:
    sys.stdout.write(text)
    sys.stdout.flush()


def progress_bar(total: int | None, label: str, enabled: bool) -> Progress:
    """A bar on stderr (where it is a terminal), one task labelled ``label``; gone when done."""
    bar = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                   console=Console(stderr=True), disable=not enabled, transient=True)
    bar.add_task(label, total=total)
    return bar


def _print_metrics(title: str, metrics: dict[str, float]) -> None:
    typer.echo(title)
    for key, value in metrics.items():
        typer.echo(f"  {key:<16} {int(value) if key == 'questions' else f'{value:.3f}'}")


@app.command("retrieval")
def eval_retrieval(
    collection: Annotated[str, typer.Option("--collection", "-C", help="collection to search")],
    qa: QaOpt,
    mode: ModeOpt = None,
    reranker: Annotated[str | None, typer.Option(help="none or maxsim [default: rag.reranker]")] = None,
    mmr: Annotated[bool | None, typer.Option("--mmr/--no-mmr", help="diversify [default: rag.mmr]")] = None,
    limit: Annotated[int | None, typer.Option(min=1, help="only the first N questions")] = None,
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """recall@1/5/10, MRR@10 and nDCG@10 of retrieval over a question set with gold passages."""
    qas = load_qa(qa)[:limit]
    server = server_for(settings_from(config, data_dir, read_only=True))
    if server is not None:  # the server that holds the store measures it, on the same question set
        check = RetrievalCheck(collection=collection, qa=qa.resolve(), mode=mode, reranker=reranker, mmr=mmr, limit=limit)
        measured = RemoteHarnesses(server).retrieval(check, _quiet)
        metrics, rows, settings = measured.metrics, measured.rows, measured.inputs["settings"]
    else:
        with open_rag(config, data_dir) as rag:
            used = retrieval_settings(rag, mode=mode, reranker=reranker, mmr=mmr)
            with progress_bar(len(qas), "retrieval", not as_json and sys.stderr.isatty()) as bar:
                metrics, rows = measure_retrieval(rag, collection, qas, used,
                                                  on_progress=lambda n: bar.update(bar.task_ids[0], completed=n))
            settings = used.model_dump()
    if as_json:
        print_json({"collection": collection, "settings": settings, "metrics": metrics, "questions": rows})
    else:
        _print_metrics(f"retrieval on {collection} ({settings['mode']}, reranker {settings['reranker']})", metrics)


@app.command("answers")
def eval_answers(
    qa: QaOpt,
    collection: CollectionOpt = None,
    app_name: AppOpt = None,
    limit: Annotated[int | None, typer.Option(min=1, help="only the first N questions")] = None,
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Answer every question, then report: share citing a gold source (by marker or attribution), exact
    match / F1 against gold answers (when given), share of answer sentences supported by the text their own
    [n] markers cite, share grounded in any source given, share abstained."""
    qas = load_qa(qa)[:limit]
    server = server_for(settings_from(config, data_dir, read_only=True))
    if server is not None:
        check = AnswersCheck(app=app_name, collection=collection, qa=qa.resolve(), limit=limit)
        measured = RemoteHarnesses(server).answers(check, _quiet)
        metrics, rows, used = measured.metrics, measured.rows, measured.inputs["app"]
    else:
        with open_rag(config, data_dir) as rag:
            app = resolve_app(rag, app_name, collection)
            with open_engine(rag, app, _announce) as engine, \
                    progress_bar(len(qas), "answers", not as_json and sys.stderr.isatty()) as bar:
                metrics, rows = measure_answers(rag, app, engine, qas,
                                                on_progress=lambda n: bar.update(bar.task_ids[0], completed=n))
            used = app.model_dump(mode="json")
    if as_json:
        print_json({"app": used, "metrics": metrics, "questions": rows})
    else:
        _print_metrics(f"answers from {used['collection']} by {used['model']}", metrics)
