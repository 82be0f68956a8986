"""Parts of ``rag.py`` for issue #17's figures: rerank cost, stored bytes per chunk, gold judged by the
strict and the old loose rule, and answers (citations, F1, supported/grounded shares, TTFT in process)
with the old prompt (whole passages, markers only) and the new one (selected sentences, attribution).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from aifab.engines import load_engine
from aifab.engines.protocol import SamplingParams
from aifab.rag import Rag
from aifab.rag.evaluate import (
    QA,
    Gold,
    containment,
    grounded_share,
    judge_answer,
    relevance,
    retrieval_metrics,
    summarise_answers,
)
from aifab.rag.rerank import make_reranker

Ranked = list[tuple[str, dict[str, Any]]]
WHOLE = ("grounded_whole", "cites_gold_whole", "gold_in_sources_whole")


def pct(values: Sequence[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q)) if len(values) else float("nan")


# --- gold, the old way ----------------------------------------------------------------------------


def loose_matches(gold: Gold, text: str, metadata: dict[str, Any]) -> bool:
    """The rule before #17: every non-text key as now, and half of the gold's words (stop words counted)
    anywhere in the passage. Kept here only to show which figures the strict rule moved."""
    rest = Gold(source=gold.source, section=gold.section, start=gold.start, end=gold.end)
    if gold.source is None and gold.section is None and gold.start is None and gold.end is None:
        ok = True
    else:
        ok = rest.matches(text, metadata)
    return ok and (gold.text is None or containment(gold.text, text) >= 0.5)


def loose_relevance(golds: Sequence[Gold], ranked: Ranked) -> list[int]:
    found: set[int] = set()
    out = []
    for text, metadata in ranked:
        hit = next((i for i, g in enumerate(golds) if i not in found and loose_matches(g, text, metadata)), -1)
        if hit >= 0:
            found.add(hit)
        out.append(hit)
    return out


def judge_both(qas: Sequence[QA], rankings: Sequence[Ranked]) -> dict[str, Any]:
    """Metrics of the strict rule, with the old rule's recall@1/5/10 beside them (``loose_*``)."""
    strict = retrieval_metrics([(len(q.gold), relevance(q.gold, r)) for q, r in zip(qas, rankings, strict=True)])
    loose = retrieval_metrics([(len(q.gold), loose_relevance(q.gold, r)) for q, r in zip(qas, rankings, strict=True)])
    return {**strict, **{f"loose_{k}": v for k, v in loose.items() if k.startswith("recall")}}


def judge_dumped(path: Path, qas: Sequence[QA]) -> dict[str, Any]:
    """Rankings another checkout dumped (``rag.py --dump-rankings``), judged by this checkout's rules."""
    dumped = json.loads(path.read_text())
    return {f"{name} [{path.stem}]": judge_both(qas, [[(t, m) for t, m in r] for r in ranked])
            for name, ranked in dumped["variants"].items()}


# --- rerank cost and storage ----------------------------------------------------------------------


def rerank_cost(rag: Rag, collection: str, questions: Sequence[str], n: int) -> dict[str, Any]:
    """Per query, the rerank step alone over ``rerank_candidates`` fused passages: stored token vectors
    (fetch + query encoding + MaxSim) against re-encoding the passages."""
    settings = rag.settings.rag.model_copy(update={"reranker": "none"})
    embedder = rag.corpus.embedder()
    stored, encode = make_reranker("maxsim", embedder), make_reranker("maxsim-encode", embedder)
    namespace = rag.corpus.collections.version(collection).namespace
    times: dict[str, list[float]] = {"maxsim": [], "maxsim-encode": []}
    for q in questions[:n]:
        pool = rag.retrieve(collection, q, settings=settings, top_k=rag.settings.rag.rerank_candidates)
        t = time.perf_counter()
        with_data = rag.retriever._with_stored(namespace, list(pool))
        stored.rerank(q, with_data)
        times["maxsim"].append((time.perf_counter() - t) * 1000)
        t = time.perf_counter()
        encode.rerank(q, list(pool))
        times["maxsim-encode"].append((time.perf_counter() - t) * 1000)
    return {name: {"p50_ms": pct(v, 50), "p99_ms": pct(v, 99), "queries": len(v),
                   "candidates": rag.settings.rag.rerank_candidates} for name, v in times.items()}


def stored_bytes(chunks: Sequence[Any]) -> dict[str, float]:
    sizes = [len(c.rerank) for c in chunks if c.rerank is not None]
    mean = float(np.mean(sizes)) if sizes else 0.0
    return {"chunks_with_data": float(len(sizes)), "chunks": float(len(chunks)), "bytes_per_chunk_mean": mean,
            "bytes_per_chunk_p99": pct(sizes, 99), "gb_per_million_chunks": mean * 1e6 / 1e9}


# --- answers --------------------------------------------------------------------------------------


def answers(rag: Rag, collection: str, qas: Sequence[QA], n: int, log: Callable[[str], None]) -> dict[str, Any]:
    """The dev questions answered in process by the default chat model (greedy, 128 tokens), with the old
    prompt and the new one; one question at a time, so ``ttft`` is one user's time to the first token
    (retrieval, rerank, selection, prefill), without HTTP."""
    base = rag.settings.rag
    setups = {
        "before: whole passages, markers only": base.model_copy(update={"context_tokens": 0, "attribute": False}),
        "after: selected sentences + attribution": base,
    }
    package = rag.corpus.registry.get(rag.settings.models.chat)
    engine = load_engine(package, rag.settings)
    out: dict[str, Any] = {}
    try:
        for name, retrieval in setups.items():
            app = rag.app_for_collection(collection, retrieval=retrieval, temperature=0.0, max_tokens=128)
            rows, ttft, prompt_tokens = [], [], []
            for qa in qas[:n]:
                (prepared, text), first = asyncio.run(_one(rag, app, engine, qa.question))
                ttft.append(first)
                prompt_tokens.append(prepared.prompt_tokens)
                cites = rag.cite(prepared, text)
                row = judge_answer(qa, text, cites)
                whole = whole_chunks(rag, collection, prepared, retrieval)
                row["grounded_whole"] = grounded_share(text, list(whole.values()))
                # the gold judged against the chunk each citation points to, not the excerpt the model saw
                by_chunk = judge_answer(qa, text, [{**c, "text": whole.get(c["chunk_id"], c["text"])} for c in cites])
                row["cites_gold_whole"] = by_chunk.get("cites_gold", False)
                row["gold_in_sources_whole"] = by_chunk.get("gold_in_sources", False)
                rows.append(row)
            metrics = summarise_answers(rows)
            for key in WHOLE:
                metrics[key] = float(np.mean([r[key] for r in rows])) if rows else 0.0
            metrics.update({"ttft_p50_ms": pct(ttft, 50), "prompt_tokens_p50": pct(prompt_tokens, 50)})
            out[name] = metrics
            log(f"answers, {name}: cites gold {metrics.get('cites_gold', 0):.2f}, TTFT p50 {metrics['ttft_p50_ms']:.0f} ms")
    finally:
        engine.close()
    return out


def whole_chunks(rag: Rag, collection: str, prepared: Any, retrieval: Any) -> dict[str, str]:
    """The whole chunk of each passage the model was given, by chunk id. ``grounded`` judges an answer
    against the text in the prompt, and ``cites_gold`` a citation by its text, the excerpt; selected
    sentences are a third of a chunk. Judged against the whole chunks (``*_whole``), both prompts are
    measured by one yardstick: the one the whole-passage baseline is judged by."""
    given = {p.id for p in prepared.passages}
    return {p.id: p.text for p in rag.retrieve(collection, prepared.query, settings=retrieval) if p.id in given}


async def _one(rag: Rag, app: Any, engine: Any, question: str) -> tuple[tuple[Any, str], float]:
    t = time.perf_counter()
    prepared = await rag.prepare(app, [{"role": "user", "content": question}], engine, max_tokens=app.max_tokens)
    parts: list[str] = []
    first: float | None = None
    async for delta in rag.generate(prepared, engine, SamplingParams(temperature=0.0, max_tokens=app.max_tokens)):
        if delta.text and first is None:
            first = (time.perf_counter() - t) * 1000
        parts.append(delta.text)
    return (prepared, "".join(parts)), first if first is not None else (time.perf_counter() - t) * 1000


def print_extra(report: dict[str, Any]) -> None:
    q = report.get("quality") or {}
    if q:
        print("\nGold judged strictly (whole gold sentences) vs the old rule (half the words anywhere)")
        print(f"{'retriever':<52}{'R@1':>7}{'R@5':>7}{'R@10':>7}{'old R@5':>9}{'old R@10':>10}")
        for name, m in q.items():
            if "recall@5" in m and "loose_recall@5" in m:
                print(f"{name:<52}{m['recall@1']:>7.3f}{m['recall@5']:>7.3f}{m['recall@10']:>7.3f}"
                      f"{m['loose_recall@5']:>9.3f}{m['loose_recall@10']:>10.3f}")
    cost = report.get("rerank_cost")
    if cost:
        print("\nRerank step per query (20 fused candidates)")
        for name, m in cost.items():
            print(f"  {name:<16} p50 {m['p50_ms']:>8.1f} ms  p99 {m['p99_ms']:>8.1f} ms  ({m['queries']} queries)")
    size = report.get("stored")
    if size:
        print(f"\nStored token vectors: {size['bytes_per_chunk_mean']:.0f} bytes per chunk on average "
              f"(p99 {size['bytes_per_chunk_p99']:.0f}); {size['gb_per_million_chunks']:.1f} GB per million chunks; "
              f"{size['chunks_with_data']:.0f} of {size['chunks']:.0f} chunks have them")
    ans = report.get("answers")
    if ans:
        print("\nAnswers by the default chat model (greedy, 128 tokens), one user, in process")
        keys = ("cites_gold", "cites_gold_whole", "gold_in_sources", "gold_in_sources_whole", "attributed",
                "supported", "grounded", "grounded_whole", "f1", "abstained", "ttft_p50_ms", "prompt_tokens_p50")
        width = {k: max(12, len(k) + 2) for k in keys}
        print(f"{'setup':<44}" + "".join(f"{k:>{width[k]}}" for k in keys))
        for name, m in ans.items():
            print(f"{name:<44}" + "".join(f"{m.get(k, float('nan')):>{width[k]}.3f}" if not k.endswith(("_ms", "_p50"))
                                            else f"{m.get(k, float('nan')):>{width[k]}.0f}" for k in keys))
