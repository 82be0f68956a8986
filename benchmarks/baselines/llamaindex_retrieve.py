"""LlamaIndex retrieval baseline: ``VectorStoreIndex`` over given chunks, ``as_retriever(similarity_top_k)``.

Runs in its OWN virtualenv (``benchmarks/.venv-llamaindex``, built by ``setup_llamaindex.sh``), offline.
It is given the very chunks aifab indexed (``--nodes``: JSONL of ``{"id", "text", "embedding"}``, the
vectors aifab's embedder computed with the same model), so the comparison is of retrieval alone: the
nodes go into LlamaIndex's default in-memory ``SimpleVectorStore`` (exact cosine search) with their
embeddings, and every question is embedded by LlamaIndex's own ``HuggingFaceEmbedding`` of the same
local model directory, then answered by ``index.as_retriever(similarity_top_k=K).retrieve(question)``.

    benchmarks/.venv-llamaindex/bin/python benchmarks/baselines/llamaindex_retrieve.py \\
        --nodes nodes.jsonl --questions questions.jsonl --model PATH [--top-k 10] [--threads N]

Prints ONE JSON line on stdout: ``{"ranked": [[node ids best first] per question], "latency_ms": [...],
"seconds_index": ...}``; everything else goes to stderr.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--nodes", type=Path, required=True, help="JSONL of {id, text, embedding}")
    ap.add_argument("--questions", type=Path, required=True, help="JSONL with a 'question' per line")
    ap.add_argument("--model", required=True, help="local sentence-transformers model directory")
    ap.add_argument("--top-k", type=int, default=10)
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    args = ap.parse_args(argv)
    for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE"):
        os.environ[var] = "1"
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(args.threads)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

    import torch
    from llama_index.core import VectorStoreIndex
    from llama_index.core.schema import TextNode
    from llama_index.embeddings.huggingface import HuggingFaceEmbedding

    torch.set_num_threads(args.threads)
    embed_model = HuggingFaceEmbedding(model_name=args.model, device="cpu", show_progress_bar=False)
    nodes = []
    with args.nodes.open() as fh:
        for line in fh:
            row = json.loads(line)
            nodes.append(TextNode(id_=row["id"], text=row["text"], embedding=row["embedding"]))
    questions = [json.loads(line)["question"] for line in args.questions.open() if line.strip()]
    t0 = time.perf_counter()
    index = VectorStoreIndex(nodes, embed_model=embed_model, show_progress=False)
    retriever = index.as_retriever(similarity_top_k=args.top_k)
    seconds_index = time.perf_counter() - t0
    retriever.retrieve(questions[0])  # warm-up
    ranked, latency = [], []
    for q in questions:
        t = time.perf_counter()
        hits = retriever.retrieve(q)
        latency.append((time.perf_counter() - t) * 1000)
        ranked.append([h.node.node_id for h in hits])
    print(f"llamaindex: {len(nodes)} nodes, {len(questions)} questions", file=sys.stderr)
    print(json.dumps({"ranked": ranked, "latency_ms": latency, "seconds_index": seconds_index}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
