"""The harnesses run in this process: retrieval and answers over a :class:`Rag`, task evals with the
fine-tuning evaluation. The same functions as ``aifab eval retrieval|answers`` and the fine-tuning gate.

The Rag (and with it the vector store) is opened on first use, so a suite of task checks alone never
touches the store; the embedded store belongs to one process, and is busy while ``aifab up`` runs on the
same data directory."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from aifab.config import Settings
from aifab.evals.protocol import Measured, Progress
from aifab.evals.suite import AnswersCheck, RetrievalCheck, TaskCheck
from aifab.rag import Rag
from aifab.rag.evaluate import load_qa
from aifab.rag.harness import measure_answers, measure_retrieval, open_engine, resolve_app, retrieval_settings
from aifab.registry import ModelPackage, Registry


class LocalHarnesses:
    def __init__(self, settings: Settings, *, rag: Callable[[], Rag], registry: Callable[[], Registry]) -> None:
        self.settings = settings
        self._open_rag, self._open_registry = rag, registry
        self._rag: Rag | None = None

    def rag(self) -> Rag:
        if self._rag is None:
            self._rag = self._open_rag()
        return self._rag

    def retrieval(self, check: RetrievalCheck, progress: Progress) -> Measured:
        rag = self.rag()
        qas = load_qa(check.file(check.qa))[: check.limit]
        settings = retrieval_settings(rag, mode=check.mode, reranker=check.reranker, mmr=check.mmr)
        metrics, rows = measure_retrieval(rag, check.collection, qas, settings,
                                          on_progress=lambda n: progress(n, len(qas)))
        return Measured(metrics, {"collection": _version(rag, check.collection), "settings": settings.model_dump()},
                        rows)

    def answers(self, check: AnswersCheck, progress: Progress) -> Measured:
        rag = self.rag()
        qas = load_qa(check.file(check.qa))[: check.limit]
        app = resolve_app(rag, check.app, check.collection, top_k=check.top_k, mode=check.mode)
        with open_engine(rag, app) as engine:
            metrics, rows = measure_answers(rag, app, engine, qas, on_progress=lambda n: progress(n, len(qas)))
        return Measured(metrics, {"collection": _version(rag, app.collection or ""),
                                  "model": _model(rag.corpus.registry.get(app.model or "")),
                                  "app": app.model_dump(mode="json")}, rows)

    def task(self, check: TaskCheck, progress: Progress) -> Measured:
        from aifab.finetune.data import load_dataset_dir, resolve_dataset
        from aifab.finetune.evaluation import evaluate

        package = self._open_registry().get(check.model)
        local = check.file(Path(check.dataset))  # a dataset path is relative to the suite, like a question set
        data = load_dataset_dir(resolve_dataset(str(local) if local.exists() else check.dataset,
                                                self.settings.data_dir))
        progress(0, len(data.eval))
        result = evaluate(package, data, adapter=check.adapter, generate=check.generate, match=check.match,
                          max_new_tokens=check.max_new_tokens, max_length=check.max_length)
        progress(len(data.eval), len(data.eval))
        metrics = {k: float(v) for k, v in result.items() if isinstance(v, int | float) and not isinstance(v, bool)}
        return Measured(metrics, {"model": _model(package), "adapter": check.adapter,
                                  "dataset": {"name": data.name, "version": data.version, "sha256": data.sha256}})


def _version(rag: Rag, collection: str) -> dict[str, Any]:
    v = rag.corpus.collections.version(collection)
    return {"name": collection, "version": v.version, "pipeline_hash": v.pipeline_hash, "documents": v.documents,
            "chunks": v.chunks}


def _model(package: ModelPackage) -> dict[str, Any]:
    return {"name": package.name, "sha256": package.sha256}

