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

from aifab.admin.answers import Mode, Question, answer, resolve_app
from aifab.cli.common import ConfigOpt, DataDirOpt, JsonOpt, print_json, settings_from
from aifab.cli.corpus import open_corpus
from aifab.cli.remote import Server, server_error, server_for
from aifab.config import AppSettings
from aifab.engines import load_engine
from aifab.engines.protocol import Engine
from aifab.errors import UpstreamError
from aifab.rag import Rag
from aifab.rag.evaluate import evaluate_retrieval, judge_answer, load_qa, summarise_answers

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


def _app(rag: Rag, app_name: str | None, collection: str | None, top_k: int | None, mode: Mode | None) -> AppSettings:
    return resolve_app(rag, Question(question="", app=app_name, collection=collection, top_k=top_k, mode=mode))


@contextmanager
def _engine(rag: Rag, app: AppSettings) -> Iterator[Engine]:
    package = rag.corpus.registry.get(app.model or "")
    typer.echo(f"loading {package.name}...", err=True)
    engine = load_engine(package, rag.settings)
    try:
        yield engine
    finally:
        engine.close()


async def _answer(rag: Rag, app: AppSettings, engine: Engine, question: str, echo: bool) -> dict[str, Any]:
    return await answer(rag, app, engine, question, on_text=_echo if echo else None)


def _echo(text: str) -> None:
    sys.stdout.write(text)
    sys.stdout.flush()


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
    q = Question(question=question, collection=collection, app=app_name, top_k=top_k, mode=mode)
    server = server_for(settings_from(config, data_dir, read_only=True))
    if server is not None:
        result = _ask_through(server, q, echo=not as_json)
    else:
        with open_rag(config, data_dir) as rag:
            app = resolve_app(rag, q)
            with _engine(rag, app) as engine:
                result = asyncio.run(_answer(rag, app, engine, question, echo=not as_json))
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


def _progress(total: int, label: str, enabled: bool) -> Progress:
    bar = Progress(TextColumn(f"[bold]{label}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
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
    with open_rag(config, data_dir) as rag:
        overrides = {k: v for k, v in {"mode": mode, "reranker": reranker, "mmr": mmr}.items() if v is not None}
        settings = rag.settings.rag.model_copy(update=overrides)
        rag.corpus.collections.version(collection)
        with _progress(len(qas), "retrieval", not as_json and sys.stderr.isatty()) as bar:
            metrics, rows = evaluate_retrieval(
                lambda q: [(p.text, p.metadata) for p in rag.retrieve(collection, q, settings=settings, top_k=10)],
                qas, on_progress=lambda n: bar.update(bar.task_ids[0], completed=n),
            )
    if as_json:
        print_json({"collection": collection, "settings": settings.model_dump(), "metrics": metrics, "questions": rows})
    else:
        _print_metrics(f"retrieval on {collection} ({settings.mode}, reranker {settings.reranker})", metrics)


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
    with open_rag(config, data_dir) as rag:
        app = _app(rag, app_name, collection, None, None)
        with _engine(rag, app) as engine, _progress(len(qas), "answers", not as_json and sys.stderr.isatty()) as bar:
            rows = []
            for i, item in enumerate(qas):
                result = asyncio.run(_answer(rag, app, engine, item.question, echo=False))
                rows.append(judge_answer(item, result["answer"], result["citations"]))
                bar.update(bar.task_ids[0], completed=i + 1)
    metrics = summarise_answers(rows)
    if as_json:
        print_json({"app": app.model_dump(), "metrics": metrics, "questions": rows})
    else:
        _print_metrics(f"answers from {app.collection} by {app.model}", metrics)
