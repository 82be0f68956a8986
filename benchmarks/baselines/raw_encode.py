"""Raw ``SentenceTransformer(path).encode(texts, batch_size=64)`` throughput on given texts.

Run with aifab's own ``.venv`` on the nodes the LlamaIndex baseline produced (``llamaindex_ingest.py
--dump-nodes FILE``), to see what LlamaIndex's pipeline costs over the bare model on identical texts:

    .venv/bin/python benchmarks/baselines/raw_encode.py --nodes nodes.jsonl --model PATH --threads 2

Modes (``--modes``, default both):

* ``all``: one ``encode(texts, batch_size=B, normalize_embeddings=True)`` call over every text, which
  lets sentence-transformers sort the whole set by length (least padding). The plain upper bound.
* ``calls``: one ``encode`` call per B texts in node order -- what LlamaIndex's ``HuggingFaceEmbedding``
  does (``get_text_embedding_batch`` cuts the list into ``embed_batch_size`` slices and encodes each),
  so length sorting only happens within a batch. ``all`` vs ``calls`` isolates that effect; ``calls`` vs
  the LlamaIndex embed time isolates LlamaIndex's own per-node overhead.

Texts are the ``embed_text`` field (exactly what LlamaIndex embedded) unless ``--field`` says otherwise.
A one-batch warm-up runs first, untimed. Prints ONE JSON line.
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
    ap.add_argument("--nodes", type=Path, required=True, help="JSONL from llamaindex_ingest.py --dump-nodes")
    ap.add_argument("--field", default="embed_text")
    ap.add_argument("--model", required=True, help="local sentence-transformers model directory")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--modes", default="all,calls", help="comma-separated: all, calls")
    args = ap.parse_args(argv)
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    if not set(modes) <= {"all", "calls"}:
        ap.error(f"unknown mode in {args.modes!r}")

    for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        os.environ[var] = "1"
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "RAYON_NUM_THREADS"):
        os.environ[var] = str(args.threads)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

    import sentence_transformers
    import torch
    from sentence_transformers import SentenceTransformer

    torch.set_num_threads(args.threads)
    texts = [json.loads(line)[args.field] for line in args.nodes.read_text().splitlines() if line.strip()]
    if not texts:
        raise SystemExit(f"no texts in {args.nodes}")

    t0 = time.perf_counter()
    model = SentenceTransformer(args.model, device="cpu")
    model.encode(["warm-up " * 50] * args.batch_size, batch_size=args.batch_size)
    seconds_model_load = time.perf_counter() - t0

    result: dict[str, object] = {
        "baseline": "sentence-transformers",
        "texts": len(texts),
        "batch_size": args.batch_size,
        "threads": args.threads,
        "model": args.model,
        "seconds_model_load": round(seconds_model_load, 3),
        "versions": {
            "torch": torch.__version__,
            "sentence-transformers": sentence_transformers.__version__,
            "python": sys.version.split()[0],
        },
    }
    for mode in modes:
        t, c = time.perf_counter(), time.process_time()
        if mode == "all":
            emb = model.encode(texts, batch_size=args.batch_size, normalize_embeddings=True)
            n = len(emb)
        else:
            n = 0
            for i in range(0, len(texts), args.batch_size):
                n += len(model.encode(texts[i : i + args.batch_size], batch_size=args.batch_size,
                                      normalize_embeddings=True))
        wall, cpu = time.perf_counter() - t, time.process_time() - c
        assert n == len(texts)
        result[f"seconds_{mode}"] = round(wall, 3)
        result[f"cpu_seconds_{mode}"] = round(cpu, 3)
        result[f"texts_per_s_{mode}"] = round(len(texts) / wall, 2)
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
