"""LlamaIndex ingest baseline: SimpleDirectoryReader -> IngestionPipeline(SentenceSplitter, HuggingFaceEmbedding).

Runs in its OWN virtualenv (``benchmarks/baselines/setup_llamaindex.sh`` builds
``benchmarks/.venv-llamaindex``) so that LlamaIndex's pins never touch aifab's ``.venv``. Fully offline:
the model is a local directory, HF_HUB_OFFLINE/TRANSFORMERS_OFFLINE are forced on, and the two data
files LlamaIndex's splitter wants (tiktoken's cl100k_base BPE, nltk's punkt_tab/stopwords) ship inside
llama-index-core (``llama_index/core/_static``), so neither downloads anything.

    benchmarks/.venv-llamaindex/bin/python benchmarks/baselines/llamaindex_ingest.py \\
        DIR_OR_NOTHING [--files-from LIST] --model PATH [--chunk-size 256 --chunk-overlap 32] \\
        [--batch-size 64] [--threads N] [--tokenizer minilm|tiktoken] [--metadata none|llamaindex] \\
        [--dump-nodes nodes.jsonl]

What runs, and what is timed (all on CPU, ``--threads`` torch/OpenMP threads):

* load: ``SimpleDirectoryReader(input_files=FILES).load_data()`` -- LlamaIndex's own reader; ``*.rst.txt``
  has no special extractor, so each file becomes one plain-text ``Document`` (``documents == files``).
* split + embed: ``IngestionPipeline(transformations=[SentenceSplitter(...), HuggingFaceEmbedding(...)])
  .run(documents=...)``, with the pipeline's defaults (in-memory transformation cache on, no docstore, no
  vector store, sequential). The two transformations are thin subclasses that only time their
  ``__call__``, so split and embed are reported apart; ``seconds_pipeline_other`` is what the pipeline
  spends around them (node hashing for its cache, cache puts).
* not timed in ``seconds_total``: imports, model load and a one-batch warm-up (reported apart).

Chunk tokens (``--tokenizer``): aifab chunks in the embedding model's own tokens, so by default
(``minilm``) the splitter is given the model's WordPiece tokenizer (``tokenizer.encode`` without special
tokens) and ``--chunk-size 256`` means 256 MiniLM tokens, as in aifab. ``tiktoken`` keeps LlamaIndex's
default (cl100k_base, which works offline from the copy bundled in llama-index-core); a 256-cl100k-token
chunk is ~10-20% longer in WordPiece tokens and the model truncates it at its 256-token limit.

Metadata (``--metadata``): LlamaIndex by default prepends the reader's ``file_path: ...`` to every text it
embeds and subtracts its token count from the chunk budget. ``none`` (default) excludes all metadata from
the embedded text and the budget, so chunks hold ``--chunk-size`` tokens of document text and the model
embeds exactly the chunk text -- the same work aifab does; ``llamaindex`` keeps LlamaIndex's default.

Prints ONE JSON line on stdout (everything else goes to stderr).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

T_START = time.perf_counter()


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("directory", nargs="?", type=Path, help="ingest every regular file under it, recursively")
    ap.add_argument("--files-from", type=Path, help="a file listing the files to ingest, one path a line")
    ap.add_argument("--model", required=True, help="local sentence-transformers model directory")
    ap.add_argument("--chunk-size", type=int, default=256, help="tokens per chunk (default 256)")
    ap.add_argument("--chunk-overlap", type=int, default=32, help="tokens of overlap (default 32)")
    ap.add_argument("--batch-size", type=int, default=64, help="HuggingFaceEmbedding embed_batch_size")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="torch/OpenMP threads")
    ap.add_argument("--tokenizer", choices=("minilm", "tiktoken"), default="minilm",
                    help="what SentenceSplitter counts tokens with (default: the model's own tokenizer)")
    ap.add_argument("--metadata", choices=("none", "llamaindex"), default="none",
                    help="none: embed the chunk text only; llamaindex: LlamaIndex's default (file_path prepended)")
    ap.add_argument("--no-cache", action="store_true", help="IngestionPipeline(disable_cache=True)")
    ap.add_argument("--split-only", action="store_true",
                    help="run the pipeline with the splitter alone (node counts and split time; no model run)")
    ap.add_argument("--dump-nodes", type=Path, help="write the nodes (text and embedded text) as JSONL")
    args = ap.parse_args(argv)
    if (args.directory is None) == (args.files_from is None):
        ap.error("give either a DIRECTORY or --files-from LIST")
    if not Path(args.model).is_dir():
        ap.error(f"--model must be a local model directory (offline run): {args.model}")
    return args


def collect_files(args: argparse.Namespace) -> list[str]:
    if args.files_from is not None:
        lines = args.files_from.read_text().splitlines()
        files = [str(Path(s.strip()).resolve()) for s in lines if s.strip() and not s.lstrip().startswith("#")]
    else:
        root = args.directory.resolve()
        files = sorted(str(p) for p in root.rglob("*") if p.is_file() and not p.is_symlink())
    missing = [f for f in files if not Path(f).is_file()]
    if missing:
        raise SystemExit(f"{len(missing)} listed files do not exist, e.g. {missing[0]}")
    if not files:
        raise SystemExit("no files to ingest")
    return files


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # Offline and thread settings must be in the environment before torch/transformers are imported.
    for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE"):
        os.environ[var] = "1"
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "RAYON_NUM_THREADS"):
        os.environ[var] = str(args.threads)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

    files = collect_files(args)
    total_bytes = sum(os.path.getsize(f) for f in files)

    t0 = time.perf_counter()
    import llama_index.core
    import sentence_transformers
    import tokenizers
    import torch
    import transformers
    from llama_index.core import SimpleDirectoryReader
    from llama_index.core.ingestion import IngestionPipeline
    from llama_index.core.node_parser import SentenceSplitter
    from llama_index.core.schema import MetadataMode
    from llama_index.embeddings.huggingface import HuggingFaceEmbedding

    torch.set_num_threads(args.threads)
    if "+cpu" not in torch.__version__ and torch.cuda.is_available():
        print(f"warning: torch {torch.__version__} sees CUDA; the run is pinned to device='cpu' anyway",
              file=sys.stderr)
    seconds_import = time.perf_counter() - t0

    timings = {"split": 0.0, "embed": 0.0, "split_cpu": 0.0, "embed_cpu": 0.0}

    class TimedSentenceSplitter(SentenceSplitter):
        """SentenceSplitter, unchanged, with its __call__ timed."""

        def __call__(self, nodes, **kwargs):  # type: ignore[no-untyped-def]
            t, c = time.perf_counter(), time.process_time()
            try:
                return super().__call__(nodes, **kwargs)
            finally:
                timings["split"] += time.perf_counter() - t
                timings["split_cpu"] += time.process_time() - c

    class TimedHuggingFaceEmbedding(HuggingFaceEmbedding):
        """HuggingFaceEmbedding, unchanged, with its __call__ timed."""

        def __call__(self, nodes, **kwargs):  # type: ignore[no-untyped-def]
            t, c = time.perf_counter(), time.process_time()
            try:
                return super().__call__(nodes, **kwargs)
            finally:
                timings["embed"] += time.perf_counter() - t
                timings["embed_cpu"] += time.process_time() - c

    # --- model and splitter (not in seconds_total) ---
    t0 = time.perf_counter()
    embed_model = TimedHuggingFaceEmbedding(
        model_name=args.model, embed_batch_size=args.batch_size, device="cpu", show_progress_bar=False
    )
    hf_tokenizer = transformers.AutoTokenizer.from_pretrained(args.model)
    hf_tokenizer.model_max_length = 10**9  # counting whole documents: silence the >512-token warning
    if args.tokenizer == "minilm":
        # The model's own fast tokenizer, called directly (the transformers wrapper adds ~40% per call
        # and the splitter calls it once per candidate split); same ids as AutoTokenizer.encode.
        wordpiece = tokenizers.Tokenizer.from_file(str(Path(args.model) / "tokenizer.json"))
        wordpiece.no_truncation()  # the file truncates and pads to 128 for the model's own use
        wordpiece.no_padding()

        def count_tokenizer(text: str) -> list[int]:
            return wordpiece.encode(text, add_special_tokens=False).ids

        tokenizer_desc = f"{Path(args.model).parent.name}/{Path(args.model).name}/tokenizer.json WordPiece (tokenizers, no special tokens)"
        splitter = TimedSentenceSplitter(
            chunk_size=args.chunk_size, chunk_overlap=args.chunk_overlap, tokenizer=count_tokenizer
        )
    else:
        splitter = TimedSentenceSplitter(chunk_size=args.chunk_size, chunk_overlap=args.chunk_overlap)
        tokenizer_desc = "tiktoken cl100k_base (LlamaIndex default, bundled BPE file)"
    if not args.split_only:
        embed_model.get_text_embedding_batch(["warm-up " * 50] * args.batch_size)  # thread pools, allocator
    seconds_model_load = time.perf_counter() - t0
    max_seq_length = embed_model._model.max_seq_length

    transformations = [splitter] if args.split_only else [splitter, embed_model]
    pipeline = IngestionPipeline(transformations=transformations, disable_cache=args.no_cache)

    # --- timed: load, then split + embed ---
    c_load = time.process_time()
    t_load = time.perf_counter()
    documents = SimpleDirectoryReader(input_files=files).load_data()
    if args.metadata == "none":
        for doc in documents:
            doc.excluded_embed_metadata_keys = list(doc.metadata)
            doc.excluded_llm_metadata_keys = list(doc.metadata)
    t_run = time.perf_counter()
    nodes = pipeline.run(documents=documents)
    t_end = time.perf_counter()
    c_end = time.process_time()

    seconds_load = t_run - t_load
    seconds_pipeline = t_end - t_run
    seconds_total = t_end - t_load

    # --- after the clock: what was embedded, in the model's tokens ---
    embed_texts = [n.get_content(metadata_mode=MetadataMode.EMBED) for n in nodes]
    model_tokens = [len(ids) for ids in hf_tokenizer(embed_texts, add_special_tokens=True)["input_ids"]]
    if args.dump_nodes:
        with args.dump_nodes.open("w") as fh:
            for node, embed_text, ntok in zip(nodes, embed_texts, model_tokens, strict=True):
                fh.write(json.dumps({
                    "id": node.node_id,
                    "file": node.metadata.get("file_path"),
                    "text": node.get_content(metadata_mode=MetadataMode.NONE),
                    "embed_text": embed_text,
                    "model_tokens": ntok,
                }) + "\n")
    missing_embeddings = sum(1 for n in nodes if n.embedding is None)
    dims = len(nodes[0].embedding) if nodes and nodes[0].embedding is not None else None

    result = {
        "baseline": "llamaindex",
        "files": len(files),
        "bytes": total_bytes,
        "documents": len(documents),
        "nodes": len(nodes),
        "nodes_missing_embedding": missing_embeddings,
        "dimensions": dims,
        "seconds_total": round(seconds_total, 3),
        "seconds_load": round(seconds_load, 3),
        "seconds_split_embed": round(seconds_pipeline, 3),
        "seconds_split": round(timings["split"], 3),
        "seconds_embed": round(timings["embed"], 3),
        "seconds_pipeline_other": round(seconds_pipeline - timings["split"] - timings["embed"], 3),
        "nodes_per_s": round(len(nodes) / seconds_total, 2),
        "embed_nodes_per_s": round(len(nodes) / timings["embed"], 2) if timings["embed"] else None,
        "mb_per_s": round(total_bytes / 1e6 / seconds_total, 4),
        # CPU seconds of this process (all its threads): less sensitive than wall time to other
        # processes on a shared machine; cpu / (wall * threads) < ~0.9 means it did not get its cores.
        "cpu_seconds_total": round(c_end - c_load, 3),
        "cpu_seconds_split": round(timings["split_cpu"], 3),
        "cpu_seconds_embed": round(timings["embed_cpu"], 3),
        "seconds_import": round(seconds_import, 3),
        "seconds_model_load": round(seconds_model_load, 3),
        "seconds_wall_process": round(time.perf_counter() - T_START, 3),
        "tokenizer": tokenizer_desc,
        "chunk_size": args.chunk_size,
        "chunk_overlap": args.chunk_overlap,
        "metadata": args.metadata,
        "pipeline_cache": not args.no_cache,
        "split_only": args.split_only,
        "batch_size": args.batch_size,
        "threads": args.threads,
        "model": args.model,
        "model_max_seq_length": max_seq_length,
        "model_tokens_mean": round(sum(model_tokens) / len(model_tokens), 1) if model_tokens else 0,
        "model_tokens_max": max(model_tokens, default=0),
        "nodes_truncated": sum(1 for t in model_tokens if t > max_seq_length),
        "versions": {
            "llama-index-core": llama_index.core.__version__,
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "sentence-transformers": sentence_transformers.__version__,
            "python": sys.version.split()[0],
        },
    }
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
